-- A call's database cost must not grow with history (issue 24, part 0).
--
-- Reserving a model call read sums over the credit ledger: a prepaid organization's balance
-- (private.credit_balance, the sum of every entry it ever had) and a postpaid organization's
-- spend this month (private.platform_spend, the sum of this month's usage debits). Both grew with
-- every call, and both ran while the call held its organization's meter and rate rows, so a busy
-- tenant's calls queued behind them.
--
-- - private.credit_totals: one row per organization with a ledger: its balance and entry count,
--   and its usage debits of the current month (UTC). The ledger is append-only, so an AFTER
--   INSERT trigger keeps the row in the same transaction as each entry: a rolled-back entry
--   leaves it as it was, and concurrent entries queue on the row's upsert, so it always equals
--   the ledger's sums. Existing ledgers are summed once, here.
-- - private.credit_balance, private.prepaid_available and private.platform_spend read that row
--   (and the calls in flight, which are bounded by concurrency, not history). public.credit_balances,
--   the view members read, keeps summing the ledger: what it says does not change.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.credit_totals (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  balance_micro bigint not null default 0,
  entries bigint not null default 0 check (entries >= 0),
  -- The month (UTC) month_usage_micro is of: the latest month with a usage debit.
  usage_month date,
  month_usage_micro bigint not null default 0 check (month_usage_micro >= 0)
);
comment on table private.credit_totals is
  'Running totals of each organization''s credit ledger (balance, entries, this month''s usage debits), kept by the ledger''s insert trigger so that no call sums the ledger.';

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- AFTER INSERT trigger of the credit ledger: the entry joins its organization's totals.
create function private.add_to_credit_totals() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  month date := case when new.kind = 'usage_debit' then pg_catalog.date_trunc('month', new.created_at, 'UTC')::date end;
begin
  insert into private.credit_totals as t (org_id, balance_micro, entries, usage_month, month_usage_micro)
  values (new.org_id, new.amount_micro, 1, month, case when month is null then 0 else -new.amount_micro end)
  on conflict (org_id) do update
     set balance_micro = t.balance_micro + excluded.balance_micro,
         entries = t.entries + 1,
         usage_month = greatest(t.usage_month, excluded.usage_month),
         month_usage_micro = case when excluded.usage_month is null then t.month_usage_micro
                                  when t.usage_month is null or excluded.usage_month > t.usage_month then excluded.month_usage_micro
                                  when excluded.usage_month = t.usage_month then t.month_usage_micro + excluded.month_usage_micro
                                  -- A debit of an earlier month (its transaction began before the month turned).
                                  else t.month_usage_micro end;
  return null;
end
$$;
comment on function private.add_to_credit_totals() is
  'AFTER INSERT trigger of credit_ledger: adds the entry to its organization''s running totals (private.credit_totals).';
revoke execute on function private.add_to_credit_totals() from public, anon, authenticated;

-- The totals of the ledgers there already are, taken while no entry can be added.
lock table public.credit_ledger in share mode;
with months as (
  select l.org_id, pg_catalog.max(pg_catalog.date_trunc('month', l.created_at, 'UTC'))::date as usage_month
    from public.credit_ledger l where l.kind = 'usage_debit' group by l.org_id
)
insert into private.credit_totals (org_id, balance_micro, entries, usage_month, month_usage_micro)
select l.org_id, pg_catalog.sum(l.amount_micro)::bigint, pg_catalog.count(*), m.usage_month,
       coalesce(-pg_catalog.sum(l.amount_micro) filter (where l.kind = 'usage_debit' and l.created_at >= m.usage_month::timestamp at time zone 'UTC'), 0)::bigint
  from public.credit_ledger l left join months m on m.org_id = l.org_id
 group by l.org_id, m.usage_month;

create trigger add_to_credit_totals after insert on public.credit_ledger
  for each row execute function private.add_to_credit_totals();

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- An organization's balance: its running total (the sum of its ledger entries).
create or replace function private.credit_balance(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select t.balance_micro from private.credit_totals t where t.org_id = p_org_id), 0)::bigint
$$;
comment on function private.credit_balance(uuid) is
  'The organization''s credit balance (the sum of its ledger entries), read from its running total.';

-- What a prepaid organization can still spend: its balance less model reservations in flight and
-- connector holds, in one statement (one snapshot). Callers hold the billing row's lock.
create or replace function private.prepaid_available(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select t.balance_micro from private.credit_totals t where t.org_id = p_org_id), 0)
       - coalesce((select pg_catalog.sum(r.reserved_micro) from private.model_reservations r
                    where r.org_id = p_org_id and r.key_source = 'platform' and r.expires_at > pg_catalog.now()), 0)
       - coalesce((select pg_catalog.sum(h.micro) from private.connector_holds h
                    where h.org_id = p_org_id and h.expires_at > pg_catalog.now()), 0)
$$;
comment on function private.prepaid_available(uuid) is
  'What a prepaid organization can still spend: its running balance less model reservations in flight and connector holds.';

-- What the organization has spent on the platform this month (its usage debits, from the running
-- total) plus what calls in flight on the platform's keys have reserved.
create or replace function private.platform_spend(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select t.month_usage_micro from private.credit_totals t
                    where t.org_id = p_org_id and t.usage_month >= pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC')::date), 0)::bigint
       + coalesce((select pg_catalog.sum(r.reserved_micro) from private.model_reservations r
                    where r.org_id = p_org_id and r.key_source = 'platform' and r.expires_at > pg_catalog.now()), 0)::bigint
$$;
comment on function private.platform_spend(uuid) is
  'The organization''s usage debits this month (UTC, a running total) plus its platform-key reservations in flight (micro-units).';

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on private.credit_totals from public, anon, authenticated, service_role;
