-- A prepaid organization's connector calls can't overdraw its credits, however many race (issue
-- 23). The meter checked the balance when it admitted a call and the call was charged after it
-- was made, so calls admitted together each saw the same credits: with one call's worth left, any
-- number went through. Now an admitted call of a prepaid organization holds the platform's price
-- (private.connector_holds, under an id the connectors function gives the call) until the call is
-- recorded (private.release_connector_hold, with its charge) or the hold expires (2 minutes: a
-- runtime that died mid-call). What a prepaid organization can spend is one number,
-- private.prepaid_available: the balance less what model calls in flight reserved and what
-- connector calls hold. The meter and the model reservations both read it, under the same row lock.
-- Revocations (no hold id) are counted but never held back.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.connector_holds (
  org_id uuid not null references public.organizations (id) on delete cascade,
  id uuid not null,
  micro bigint not null check (micro >= 0),
  expires_at timestamptz not null,
  primary key (org_id, id)
);
comment on table private.connector_holds is
  'The price each admitted connector call of a prepaid organization holds until it is charged (or the hold expires).';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
create function private.prepaid_available(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select private.credit_balance(p_org_id)
       - coalesce((select pg_catalog.sum(r.reserved_micro) from private.model_reservations r
                    where r.org_id = p_org_id and r.key_source = 'platform' and r.expires_at > pg_catalog.now()), 0)
       - coalesce((select pg_catalog.sum(h.micro) from private.connector_holds h
                    where h.org_id = p_org_id and h.expires_at > pg_catalog.now()), 0)
$$;
comment on function private.prepaid_available(uuid) is
  'What a prepaid organization can still spend: its balance less model reservations in flight and connector holds.';
revoke execute on function private.prepaid_available(uuid) from public, anon, authenticated;

-- Ends a call's hold once the call is recorded (and charged); expired holds go with it.
create function private.release_connector_hold(p_org_id uuid, p_hold_id uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
  delete from private.connector_holds h
   where h.org_id = p_org_id and (h.id = p_hold_id or h.expires_at <= pg_catalog.now())
$$;
comment on function private.release_connector_hold(uuid, uuid) is 'Releases a connector call''s credit hold (and any expired ones of the organization).';
revoke execute on function private.release_connector_hold(uuid, uuid) from public, anon, authenticated;
grant execute on function private.release_connector_hold(uuid, uuid) to service_role;

-- The meter, with the call's hold. (The two-argument form goes: every caller names the hold, or null.)
drop function private.meter_connector_call(uuid, integer);
create function private.meter_connector_call(p_org_id uuid, p_cost integer, p_hold_id uuid default null) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  this_minute timestamptz := pg_catalog.date_trunc('minute', pg_catalog.now());
  this_month timestamptz := pg_catalog.date_trunc('month', pg_catalog.now());
  limit_budget bigint;
  used_calls integer;
  used_units bigint;
  price bigint := (select p.micro from private.billing_prices p where p.item = 'connector_call');
  prepaid boolean;
begin
  if p_org_id is null or p_cost is null or p_cost < 0 then
    raise exception 'meter_connector_call needs an organization and a cost of zero or more' using errcode = '22023';
  end if;
  prepaid := exists (select 1 from public.billing_accounts a where a.org_id = p_org_id and a.mode = 'prepaid');
  if prepaid and p_hold_id is not null then
    -- Calls of one prepaid organization take turns here; each admitted one holds the price.
    perform 1 from public.billing_accounts a where a.org_id = p_org_id for update;
    if private.prepaid_available(p_org_id) < greatest(price, 1) then
      return 'credits_exhausted';
    end if;
  end if;
  with limits as (
    select coalesce(l.calls_per_minute, 60) as per_minute, coalesce(l.monthly_budget_units, 100000) as budget
      from (select 1) one left join public.connector_limits l on l.org_id = p_org_id
  )
  insert into private.connector_meters as m (org_id, minute_start, minute_calls, month_start, month_units)
  select p_org_id, this_minute, 1, this_month, p_cost
    from limits
   where limits.per_minute >= 1 and p_cost <= limits.budget
  on conflict (org_id) do update
     set minute_calls = case when m.minute_start = excluded.minute_start then m.minute_calls + 1 else 1 end,
         minute_start = excluded.minute_start,
         month_units = case when m.month_start = excluded.month_start then m.month_units + excluded.month_units
                            else excluded.month_units end,
         month_start = excluded.month_start
   where (case when m.minute_start = excluded.minute_start then m.minute_calls else 0 end) < (select l.per_minute from limits l)
     and (case when m.month_start = excluded.month_start then m.month_units else 0 end) + excluded.month_units
         <= (select l.budget from limits l)
  returning m.minute_calls into used_calls;
  if used_calls is not null then
    if prepaid and p_hold_id is not null then
      insert into private.connector_holds (org_id, id, micro, expires_at)
      values (p_org_id, p_hold_id, price, pg_catalog.now() + interval '2 minutes');
    end if;
    return null;
  end if;

  -- Refused: say which limit (this read counts nothing).
  select coalesce(l.monthly_budget_units, 100000) into limit_budget
    from (select 1) one left join public.connector_limits l on l.org_id = p_org_id;
  select case when m.minute_start = this_minute then m.minute_calls else 0 end,
         case when m.month_start = this_month then m.month_units else 0 end
    into used_calls, used_units
    from private.connector_meters m where m.org_id = p_org_id;
  if coalesce(used_units, 0) + p_cost > limit_budget then
    return 'connector_budget_exhausted';
  end if;
  return 'connector_rate_limited';
end
$$;
comment on function private.meter_connector_call(uuid, integer, uuid) is
  'Admits and counts one connector call (a prepaid organization''s credits, held under p_hold_id until the call is recorded; the rate limit; the monthly budget); null, credits_exhausted, connector_rate_limited or connector_budget_exhausted.';
revoke execute on function private.meter_connector_call(uuid, integer, uuid) from public, anon, authenticated;
grant execute on function private.meter_connector_call(uuid, integer, uuid) to service_role;

-- Model reservations of a prepaid organization meet the connector holds too.
create or replace function private.require_credits() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  available bigint;
begin
  if new.key_source <> 'platform'
     or not exists (select 1 from public.billing_accounts a where a.org_id = new.org_id and a.mode = 'prepaid') then
    return new;
  end if;
  perform 1 from public.billing_accounts a where a.org_id = new.org_id for update;
  available := private.prepaid_available(new.org_id);
  if available - new.reserved_micro < 0 then
    perform private.refuse_request(402, 'credits_exhausted', pg_catalog.format(
      'The organization''s prepaid credits can''t cover this call (%s micro-units available, it may cost %s): buy credits.',
      greatest(available, 0), new.reserved_micro));
  end if;
  return new;
end
$$;
