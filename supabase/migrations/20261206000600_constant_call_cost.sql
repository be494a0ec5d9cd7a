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
-- - Model calls, ledger entries and Stripe meter events get ids ordered by the second (UUIDv7,
--   private.time_ordered_uuid): their indexes that lead with the organization, (org_id, id) and
--   the like, then grow at the organization's end instead of at a random place among all its
--   earlier rows, where every insert dirtied (and after each checkpoint wrote out whole) another
--   page of an index that grows with the organization's history.
-- - private.credit_balance, private.prepaid_available and private.platform_spend read the totals' row
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
-- Helper functions: time-ordered ids
-- =============================================================================================
-- A UUIDv7 (RFC 9562) whose time is whole seconds: the Unix time in milliseconds, rounded down to
-- the second, then random bits. Ids made in different seconds sort by time, so an index over
-- (org_id, id) grows at the organization's end and never touches the pages of its history; ids
-- made in the same second are random among themselves, so concurrent inserts of one organization
-- spread over that second's pages instead of queueing on one (with millisecond time they all
-- met on the index's last page, and one tenant's calls per second fell by a quarter). The time in
-- it is the row's creation time, which the row shows anyway.
create function private.time_ordered_uuid() returns uuid
language sql volatile
set search_path = ''
as $$
  select pg_catalog.encode(
           pg_catalog.set_bit(pg_catalog.set_bit(
             pg_catalog.overlay(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()),
                                pg_catalog.substr(pg_catalog.int8send(
                                  pg_catalog.floor(extract(epoch from pg_catalog.clock_timestamp()))::bigint * 1000), 3),
                                1, 6),
             52, 1), 53, 1),
           'hex')::uuid
$$;
comment on function private.time_ordered_uuid() is 'A UUIDv7 with its time in whole seconds: ordered by second, random within one; for ids of rows appended per organization.';
revoke execute on function private.time_ordered_uuid() from public, anon, authenticated;

alter table public.model_calls alter column id set default private.time_ordered_uuid();
alter table public.credit_ledger alter column id set default private.time_ordered_uuid();
alter table private.stripe_meter_outbox alter column id set default private.time_ordered_uuid();

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

-- The totals of the ledgers there already are, and the trigger that keeps them from now on, in one
-- statement (db push runs a migration's statements outside a transaction block) that holds the
-- ledger against inserts: no entry can land between the sums and the trigger. The trigger is named
-- to fire last of the ledger's AFTER INSERT triggers (they fire in name order): the totals' row is
-- the organization's hot one, held from there until the commit.
do $$
begin
  lock table public.credit_ledger in share mode;
  with months as (
    select l.org_id, pg_catalog.max(pg_catalog.date_trunc('month', l.created_at, 'UTC'))::date as usage_month
      from public.credit_ledger l where l.kind = 'usage_debit' group by l.org_id
  )
  insert into private.credit_totals (org_id, balance_micro, entries, usage_month, month_usage_micro)
  select l.org_id, pg_catalog.sum(l.amount_micro)::bigint, pg_catalog.count(*), m.usage_month,
         coalesce(-pg_catalog.sum(l.amount_micro) filter (where l.kind = 'usage_debit'
                                                            and l.created_at >= m.usage_month::timestamp at time zone 'UTC'), 0)::bigint
    from public.credit_ledger l left join months m on m.org_id = l.org_id
   group by l.org_id, m.usage_month;
  create trigger tally after insert on public.credit_ledger
    for each row execute function private.add_to_credit_totals();
end
$$;

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
-- Helper functions: reserve and settle hold the organization's rows for less time
-- =============================================================================================
-- Every call of an organization updates the same rows: its burst limit's (model_rates), its
-- meters', its credit totals' and, when prepaid, takes its billing account's lock. A row updated
-- stays locked until the transaction commits, so whatever a call does after taking one is what the
-- organization's other calls wait for. Reserve now reads (and decrypts) the organization's own key
-- before it takes the burst limit's row; settle writes the call's row (its audit record, its
-- ledger entry, the credit totals last of the ledger's triggers) before it moves the meters. So
-- that no two paths take an organization's rows in opposite orders, reserve takes a prepaid
-- organization's billing row before the meters (it took it after them, in require_credits). Neither
-- changes what is checked, or in which order the meters are locked.

-- Closes a reservation: the call is written to model_calls (recorded in the audit chain, debited
-- on the ledger), then the meters move from the reserved amount to the cost, and the soft
-- threshold is recorded the first time this month's spend crosses it. The cost is the usage at
-- the reservation's prices, and never more than was reserved. Returns the call's row.
create or replace function private.close_model_reservation(
  p_reservation private.model_reservations, p_outcome public.model_call_outcome, p_input_tokens integer,
  p_output_tokens integer, p_usage_estimated boolean, p_latency_ms integer, p_error_code text
) returns public.model_calls
language plpgsql volatile
set search_path = ''
as $$
declare
  cost bigint;
  settled public.model_calls;
  soft bigint;
  spent bigint;
  org_meter jsonb;
begin
  cost := case when p_outcome = 'abandoned' then p_reservation.reserved_micro
               else least(private.model_cost(p_input_tokens, p_output_tokens, p_reservation.input_micro_per_mtok,
                                             p_reservation.output_micro_per_mtok), p_reservation.reserved_micro) end;
  insert into public.model_calls (org_id, project_id, agent_id, run_id, user_id, provider, model, key_source, stream,
                                  input_tokens, output_tokens, usage_estimated, reserved_micro, cost_micro, latency_ms,
                                  outcome, error_code, started_at)
  values (p_reservation.org_id, p_reservation.project_id, p_reservation.agent_id, p_reservation.run_id, p_reservation.user_id,
          p_reservation.provider, p_reservation.model, p_reservation.key_source, p_reservation.stream,
          p_input_tokens, p_output_tokens, p_usage_estimated, p_reservation.reserved_micro, cost, p_latency_ms,
          p_outcome, p_error_code, p_reservation.started_at)
  returning * into settled;
  -- The meters are the organization's hot rows: taken last, so that they are held only until the commit.
  perform private.move_model_meters(p_reservation.org_id, p_reservation.meters, p_reservation.reserved_micro, cost);

  -- The soft threshold, on the organization's meter of the month the call was reserved in.
  select l.soft_budget_micro into soft from public.model_limits l where l.org_id = p_reservation.org_id;
  org_meter := pg_catalog.jsonb_path_query_first(p_reservation.meters, '$[*] ? (@.scope == "organization")');
  if soft is not null and cost > 0 and org_meter is not null then
    select m.spent_micro into spent from private.model_meters m
     where m.org_id = p_reservation.org_id and m.scope = 'organization' and m.scope_id = p_reservation.org_id
       and m.period = (org_meter ->> 'period')::date;
    if spent >= soft and spent - cost < soft then
      insert into public.model_budget_events (org_id, period, kind, threshold_micro, spent_micro)
      values (p_reservation.org_id, (org_meter ->> 'period')::date, 'soft_budget_crossed', soft, spent)
      on conflict (org_id, period, kind) do nothing;
    end if;
  end if;
  return settled;
end
$$;
comment on function private.close_model_reservation(private.model_reservations, public.model_call_outcome, integer, integer, boolean, integer, text) is
  'Settles a reservation on its meters at the actual cost and writes its model_calls row.';
revoke execute on function private.close_model_reservation(private.model_reservations, public.model_call_outcome, integer, integer, boolean, integer, text)
  from public, anon, authenticated;

-- Admits a call of `agent`'s and reserves its maximum cost (see 20261122000800_model_gateway.sql):
-- the same checks in the same order, the organization's own key read before any hot row.
create or replace function private.admit_model_call(
  agent public.agents, run public.agent_runs, caller uuid, p_model text, p_input_bound integer, p_max_tokens integer,
  p_stream boolean, p_extra_meter jsonb default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  model private.model_catalog;
  limits public.model_limits;
  agent_cap public.model_caps;
  project_cap public.model_caps;
  own_key record;
  wait numeric;
  max_tokens integer;
  amount bigint;
  this_month date := pg_catalog.date_trunc('month', pg_catalog.now())::date;
  meters jsonb := '[]'::jsonb;
  meter record;
  over_scope text;
  reservation private.model_reservations;
  expired private.model_reservations;
  refusal jsonb;
  refused_calls integer;
begin
  if p_model is null or p_input_bound is null or p_input_bound < 0 or p_max_tokens < 1 then
    raise exception 'admit_model_call needs a model, an input bound of zero or more and a positive max_tokens'
      using errcode = '22023';
  end if;
  if agent.disabled_at is not null then
    perform private.refuse_request(409, 'agent_disabled', 'The agent is disabled.');
  end if;

  -- What may be called, and how much of it.
  select m.* into model from private.model_catalog m where m.model = p_model;
  if model.model is null then
    perform private.refuse_request(404, 'model_not_found', pg_catalog.format('No model %s in the catalog (GET /v1/models lists them).', p_model));
  end if;
  select l.* into limits from (select 1) one left join public.model_limits l on l.org_id = agent.org_id;
  limits.requests_per_minute := coalesce(limits.requests_per_minute, 600);
  limits.burst := coalesce(limits.burst, 60);
  limits.monthly_budget_micro := coalesce(limits.monthly_budget_micro, 50000000);
  limits.default_max_tokens := coalesce(limits.default_max_tokens, 1024);
  select c.* into agent_cap from public.model_caps c
   where c.org_id = agent.org_id and c.project_id = agent.project_id and c.agent_id = agent.id;
  select c.* into project_cap from public.model_caps c
   where c.org_id = agent.org_id and c.project_id = agent.project_id and c.agent_id is null;
  if not (p_model = any (coalesce(limits.allowed_models, array[p_model])))
     or not (p_model = any (coalesce(agent_cap.allowed_models, array[p_model]))) then
    perform private.refuse_request(403, 'model_not_allowed',
      pg_catalog.format('%s is not among the models this %s may call.', p_model,
                        case when p_model = any (coalesce(limits.allowed_models, array[p_model])) then 'agent' else 'organization' end));
  end if;
  max_tokens := coalesce(p_max_tokens, least(limits.default_max_tokens, model.max_output_tokens));
  if max_tokens > model.max_output_tokens then
    perform private.refuse_request(400, 'max_tokens_too_large',
      pg_catalog.format('%s writes at most %s tokens.', p_model, model.max_output_tokens));
  end if;

  -- Whose key: the organization's own, if it saved one for the provider. Read (and decrypted)
  -- before the burst limits, the first of the organization's rows this call locks until it commits.
  select k.base_url, s.decrypted_secret as api_key into own_key
    from public.model_provider_keys k join vault.decrypted_secrets s on s.id = k.secret_id
   where k.org_id = agent.org_id and k.provider = model.provider;

  -- Burst limits: the organization's, then the agent's.
  wait := private.take_model_rate(agent.org_id, 'organization', agent.org_id, limits.requests_per_minute, limits.burst);
  if wait is null and agent_cap.requests_per_minute is not null then
    wait := private.take_model_rate(agent.org_id, 'agent', agent.id, agent_cap.requests_per_minute,
                                    least(limits.burst, agent_cap.requests_per_minute));
  end if;
  if wait is not null then
    refusal := pg_catalog.jsonb_build_object(
      'reason', 'model_rate_limited', 'model', p_model, 'run_id', run.id,
      'retry_after', pg_catalog.ceil(wait)::integer,
      'message', 'Too many model calls at once; retry after the given seconds.');
    refused_calls := private.rate_refusals_to_record(agent.org_id);
    if refused_calls is null then
      return refusal || '{"ok": false}';
    end if;
    return private.refuse_model_call(agent.org_id, agent.id, refusal || pg_catalog.jsonb_build_object('refused_calls', refused_calls));
  end if;

  -- A prepaid organization's reservations on the platform's key take turns on its billing row
  -- (require_credits checks the credits under it). It is taken here, before the expired
  -- reservations are closed and the meters are taken, in the order every path takes an
  -- organization's rows (billing row, credit totals, meters), so that no calls can wait on each
  -- other in a cycle: a Stripe event takes the billing row then the totals, settle the totals then
  -- the meters.
  if own_key.api_key is null then
    perform 1 from public.billing_accounts a where a.org_id = agent.org_id and a.mode = 'prepaid' for update;
  end if;

  -- Reservations of this organization that nobody settled, and that have expired, are closed
  -- at their reserved maximum before anything new is reserved.
  for expired in
    delete from private.model_reservations r
     where r.org_id = agent.org_id and r.expires_at < pg_catalog.now()
    returning r.*
  loop
    perform private.close_model_reservation(expired, 'abandoned', 0, 0, true,
      greatest(extract(epoch from pg_catalog.clock_timestamp() - expired.started_at) * 1000, 0)::integer, 'reservation_expired');
  end loop;

  -- The reservation: the most the call can cost, on every budget that applies, in a fixed order.
  amount := private.model_cost(p_input_bound, max_tokens, model.input_micro_per_mtok, model.output_micro_per_mtok);
  begin
    for meter in
      select * from (values
        (1, 'organization', agent.org_id, this_month, limits.monthly_budget_micro),
        (2, 'project', agent.project_id, this_month, project_cap.monthly_budget_micro),
        (3, 'agent', agent.id, this_month, agent_cap.monthly_budget_micro),
        (4, 'run', run.id, '-infinity'::date, agent_cap.run_budget_micro),
        (5, p_extra_meter ->> 'scope', (p_extra_meter ->> 'scope_id')::uuid, this_month, (p_extra_meter ->> 'budget')::bigint)
      ) as m (ord, scope, scope_id, period, budget)
      where m.budget is not null and m.scope_id is not null
      order by m.ord
    loop
      insert into private.model_meters as m (org_id, scope, scope_id, period, committed_micro, spent_micro)
      select agent.org_id, meter.scope, meter.scope_id, meter.period, amount, 0
       where amount <= meter.budget
      on conflict (org_id, scope, scope_id, period) do update
         set committed_micro = m.committed_micro + excluded.committed_micro
       where m.committed_micro + excluded.committed_micro <= meter.budget;
      if not found then
        over_scope := meter.scope;
        -- Undo this block's reservations on the scopes before it.
        raise exception using errcode = 'GH402';
      end if;
      meters := meters || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'scope', meter.scope, 'scope_id', meter.scope_id, 'period', meter.period));
    end loop;
  exception when sqlstate 'GH402' then
    return private.refuse_model_call(agent.org_id, agent.id, pg_catalog.jsonb_build_object(
      'reason', 'model_budget_exhausted', 'scope', over_scope, 'model', p_model, 'run_id', run.id,
      'needed_micro', amount,
      'message', pg_catalog.format('The %s''s model budget has too little left for this call (it may cost %s micro-units).',
                                   over_scope, amount)));
  end;

  insert into private.model_reservations (org_id, project_id, agent_id, run_id, user_id, model, provider, key_source, stream,
                                          input_micro_per_mtok, output_micro_per_mtok, reserved_micro, meters, expires_at)
  values (agent.org_id, agent.project_id, agent.id, run.id, caller, model.model, model.provider,
          case when own_key.api_key is null then 'platform' else 'byok' end::public.model_key_source, coalesce(p_stream, false),
          model.input_micro_per_mtok, model.output_micro_per_mtok, amount, meters,
          pg_catalog.now() + interval '15 minutes')
  returning * into reservation;

  return pg_catalog.jsonb_build_object(
    'ok', true, 'reservation_id', reservation.id, 'org_id', agent.org_id, 'project_id', agent.project_id,
    'agent_id', agent.id, 'run_id', run.id, 'provider', model.provider, 'upstream_model', model.upstream_model,
    'key_source', reservation.key_source, 'api_key', own_key.api_key, 'base_url', own_key.base_url,
    'max_tokens', max_tokens, 'reserved_micro', amount);
end
$$;
comment on function private.admit_model_call(public.agents, public.agent_runs, uuid, text, integer, integer, boolean, jsonb) is
  'Admits an agent''s model call (allowlists, burst limits) and reserves its maximum cost on every budget that applies.';
revoke execute on function private.admit_model_call(public.agents, public.agent_runs, uuid, text, integer, integer, boolean, jsonb)
  from public, anon, authenticated;


-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on private.credit_totals from public, anon, authenticated, service_role;
