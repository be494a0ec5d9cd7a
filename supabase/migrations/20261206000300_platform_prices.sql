-- Platform prices (issue 23, part 3): prices, plans and ceilings that cost the platform money
-- come from platform-owned data, never from a row a tenant can write or from metadata written once
-- (ARCHITECTURE, invariant 8).
--
-- - private.billing_plans: the plans, keyed by their Stripe price: credits per period, billing
--   mode and the monthly ceiling of postpaid spend; and the free tier (no price), the ceiling of an
--   organization without a subscription. The one source of truth for plans: the billing function
--   offers and sells these (STRIPE_PLANS is gone), and the webhook derives plan, mode and each
--   period's credits from the price a subscription or invoice names, so a downgrade in the
--   customer portal grants the cheaper plan's credits on the next renewal.
-- - A platform-set ceiling on postpaid spend on the platform's keys (private.spend_ceiling): the
--   free tier's without a subscription, the plan's with one, nothing once a cancelled or unpaid
--   subscription's grace period is over. A reservation beyond it is refused (402
--   spend_ceiling_reached), whatever budget the organization set itself in model_limits.
-- - Connector calls are charged the platform's price per call (private.billing_prices), never the
--   tool's cost_units (which stay the workspace's own weight against its monthly connector
--   budget), after the call and only when something reached the provider (an egress refusal
--   before sending costs nothing); a prepaid organization without credits is refused a
--   connector call (credits_exhausted) as it is refused a model call. An admitted call holds the
--   price (private.connector_holds, under an id the connectors function gives the call) until its
--   audit entry records and charges it, or 2 minutes pass (a runtime that died mid-call), so calls
--   racing on the last credits can't overdraw them. What a prepaid organization can spend is one
--   number, private.prepaid_available (the balance less model reservations in flight and connector
--   holds), which the meter and model reservations both read under the billing row's lock.
-- - Whatever the order Stripe delivers events in: refunds and disputes that arrive before the
--   payment they reverse are kept
--   (private.stripe_pending_reversals) and applied when that payment is credited, and an older
--   payment-method event never replaces a newer card.
-- - private.stripe_meter_outbox: each usage debit of a postpaid organization with a live
--   subscription, written in the debit's transaction and flushed by the billing function to
--   Stripe's billing meter events (identifier = the row's id), so that what is metered is what is
--   invoiced, exactly once.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.billing_plans (
  plan text primary key check (plan ~ '^[a-z][a-z0-9_-]{0,40}$'),
  -- The Stripe price a subscription to the plan names; null only for the free tier.
  stripe_price_id text unique check (stripe_price_id ~ '^price_[A-Za-z0-9]{1,250}$'),
  mode public.billing_mode not null default 'postpaid',
  -- Credits each paid period grants (micro-units).
  credits_micro bigint not null default 0 check (credits_micro >= 0),
  -- The most a postpaid organization may spend on the platform's keys in a month (micro-units).
  monthly_ceiling_micro bigint not null check (monthly_ceiling_micro >= 0),
  -- Offered in GET /billing/plans and Checkout.
  offered boolean not null default true,
  check ((plan = 'free') = (stripe_price_id is null)),
  check (plan <> 'free' or not offered)
);
comment on table private.billing_plans is
  'The platform''s plans by Stripe price (credits per period, billing mode, monthly ceiling of postpaid spend), and the free tier (no price). Written by the platform operator only.';
insert into private.billing_plans (plan, stripe_price_id, mode, credits_micro, monthly_ceiling_micro, offered)
values ('free', null, 'postpaid', 0, 5000000, false);

create table private.stripe_pending_reversals (
  event_id text primary key check (event_id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  payment_intent text not null check (payment_intent ~ '^pi_[A-Za-z0-9]{1,250}$'),
  -- Null when the event named no organization (a dispute names none): the payment will.
  org_id uuid references public.organizations (id) on delete cascade,
  fraction numeric not null check (fraction >= 0 and fraction <= 1),
  object_id text check (char_length(object_id) <= 255),
  reason text not null check (char_length(reason) between 1 and 100),
  received_at timestamptz not null default now()
);
comment on table private.stripe_pending_reversals is
  'Refunds and disputes received before the payment they reverse was credited: applied when it is.';

create table private.stripe_meter_outbox (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  stripe_customer_id text not null check (stripe_customer_id ~ '^cus_[A-Za-z0-9]{1,250}$'),
  value_micro bigint not null check (value_micro > 0),
  ledger_entry_id uuid not null unique,
  occurred_at timestamptz not null default now(),
  sent_at timestamptz
);
comment on table private.stripe_meter_outbox is
  'Postpaid usage to report to Stripe as billing meter events (identifier = id), written with the usage debit; sent_at once Stripe has it.';

create table private.connector_holds (
  org_id uuid not null references public.organizations (id) on delete cascade,
  id uuid not null,
  micro bigint not null check (micro >= 0),
  expires_at timestamptz not null,
  primary key (org_id, id)
);
comment on table private.connector_holds is
  'The price each admitted connector call of a prepaid organization holds until it is charged (or the hold expires).';

-- Connector calls are priced per call; the tool's units are only the workspace's own budget weight.
alter table private.billing_prices drop constraint billing_prices_item_check;
update private.billing_prices set item = 'connector_call' where item = 'connector_unit';
alter table private.billing_prices add constraint billing_prices_item_check check (item in ('connector_call'));
comment on table private.billing_prices is 'Credit prices of metered usage other than model calls (micro-units per connector call).';

alter table private.stripe_events drop constraint stripe_events_outcome_check;
alter table private.stripe_events add constraint stripe_events_outcome_check
  check (outcome in ('applied', 'pending', 'stale', 'ignored', 'unmatched'));

alter table public.billing_accounts add column stripe_price_id text check (stripe_price_id ~ '^price_[A-Za-z0-9]{1,250}$');
-- The card event that set the card, which only a newer one replaces (Stripe's order is not the delivery order).
alter table public.billing_accounts add column card_event_at timestamptz, add column card_event_id text;
comment on column public.billing_accounts.card_event_at is 'The time of the payment-method event that set the card fields; an older one changes nothing.';
comment on column public.billing_accounts.stripe_price_id is 'The Stripe price of the live subscription, whose plan (private.billing_plans) sets mode, credits and ceiling.';
comment on column public.agent_tools.cost_units is
  'The tool''s weight against the workspace''s own monthly connector budget. Not a price: every call is charged the platform''s connector price.';

-- =============================================================================================
-- Indexes
-- =============================================================================================
-- Unique indexes ending in the row's key, as elsewhere: each leads with what it is looked up by
-- (and the organization's covers its foreign key).
create unique index stripe_pending_reversals_by_payment on private.stripe_pending_reversals (payment_intent, event_id);
create unique index stripe_pending_reversals_by_org on private.stripe_pending_reversals (org_id, event_id);
create unique index stripe_meter_outbox_unsent on private.stripe_meter_outbox (occurred_at, id) where sent_at is null;
create unique index stripe_meter_outbox_by_org on private.stripe_meter_outbox (org_id, id);
create unique index credit_ledger_usage_by_month on public.credit_ledger (org_id, created_at, id) where kind = 'usage_debit';

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- Connector calls are no longer charged when metered (before the call) but when recorded (after).
drop trigger debit_credits on private.connector_meters;
drop function private.debit_connector_units();

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- The most the organization may spend on the platform's keys this month, or null when no ceiling
-- applies (a prepaid organization: its credits, paid in advance, gate it). Without a
-- subscription, the free tier's; with a live one, its plan's; a cancelled subscription falls back
-- to the free tier, and a cancelled or unpaid one whose grace period is over gets nothing.
create function private.spend_ceiling(p_org_id uuid) returns bigint
language plpgsql stable security definer
set search_path = ''
as $$
declare
  account public.billing_accounts;
  free bigint := (select p.monthly_ceiling_micro from private.billing_plans p where p.plan = 'free');
  plan_ceiling bigint;
begin
  select a.* into account from public.billing_accounts a where a.org_id = p_org_id;
  if account.mode = 'prepaid' then
    return null;
  end if;
  if account.subscription_id is null or account.subscription_status is null then
    return free;
  end if;
  if account.subscription_status in ('canceled', 'unpaid', 'incomplete_expired', 'past_due')
     and account.grace_until is not null and account.grace_until <= pg_catalog.now() then
    return 0;
  end if;
  if account.subscription_status not in ('active', 'trialing', 'past_due', 'unpaid') then
    return free;
  end if;
  select p.monthly_ceiling_micro into plan_ceiling from private.billing_plans p
   where p.stripe_price_id = account.stripe_price_id or (account.stripe_price_id is null and p.plan = account.plan and p.plan <> 'free');
  return coalesce(plan_ceiling, free);
end
$$;
comment on function private.spend_ceiling(uuid) is
  'The platform''s ceiling on the organization''s monthly postpaid spend on its keys (free tier, plan, or 0 after a lapsed subscription''s grace); null for prepaid.';
revoke execute on function private.spend_ceiling(uuid) from public, anon, authenticated;
grant execute on function private.spend_ceiling(uuid) to service_role;

-- What the organization has spent on the platform this month (its usage debits) plus what calls
-- in flight on the platform's keys have reserved.
create function private.platform_spend(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce((select -pg_catalog.sum(l.amount_micro) from public.credit_ledger l
                    where l.org_id = p_org_id and l.kind = 'usage_debit'
                      and l.created_at >= pg_catalog.date_trunc('month', pg_catalog.now())), 0)::bigint
       + coalesce((select pg_catalog.sum(r.reserved_micro) from private.model_reservations r
                    where r.org_id = p_org_id and r.key_source = 'platform' and r.expires_at > pg_catalog.now()), 0)::bigint
$$;
comment on function private.platform_spend(uuid) is
  'The organization''s usage debits this month plus its platform-key reservations in flight (micro-units).';
revoke execute on function private.platform_spend(uuid) from public, anon, authenticated;

-- BEFORE INSERT trigger of model reservations: a call on the platform's key that would take the
-- month's spend past the platform's ceiling is refused (402 spend_ceiling_reached), whatever the
-- organization's own budget says. Reservations of one organization take their turn on its
-- organization meter's row (reserve updates it first, in the same statement).
create function private.require_spend_ceiling() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  ceiling bigint;
  spent bigint;
begin
  if new.key_source <> 'platform' then
    return new;
  end if;
  ceiling := private.spend_ceiling(new.org_id);
  if ceiling is null then
    return new;
  end if;
  spent := private.platform_spend(new.org_id);
  if spent + new.reserved_micro > ceiling then
    perform private.refuse_request(402, 'spend_ceiling_reached', pg_catalog.format(
      'The organization has reached its plan''s monthly spend on the platform''s models (%s of %s micro-units; this call may cost %s): subscribe to a plan, or save your own key.',
      spent, ceiling, new.reserved_micro));
  end if;
  return new;
end
$$;
comment on function private.require_spend_ceiling() is
  'BEFORE INSERT trigger of model reservations: a platform-key call may not take the month''s postpaid spend past the platform''s ceiling.';
revoke execute on function private.require_spend_ceiling() from public, anon, authenticated;
create trigger require_spend_ceiling before insert on private.model_reservations
  for each row execute function private.require_spend_ceiling();

-- Reverses, for a payment, what is still credited of `fraction` of it: a partial refund takes its
-- share, a later larger one the rest of its share, a dispute everything. Returns the entry's
-- amount; null when the payment is not credited yet: the reversal is then kept and applied when
-- it is (private.apply_pending_reversals), whatever the order Stripe delivers them in.
create or replace function private.reverse_payment(p_org_id uuid, p_payment_intent text, p_fraction numeric, p_event_id text, p_object_id text, p_reason text)
returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  credited bigint;
  reversed bigint;
  target bigint;
begin
  if p_payment_intent is null or p_payment_intent !~ '^pi_[A-Za-z0-9]{1,250}$' then
    return 0;
  end if;
  -- Payments of one organization are reversed one at a time.
  perform 1 from public.billing_accounts a where a.org_id = p_org_id for update;
  select coalesce(pg_catalog.sum(l.amount_micro) filter (where l.kind in ('grant', 'top_up')), 0),
         coalesce(pg_catalog.sum(l.amount_micro) filter (where l.kind = 'reversal'), 0),
         pg_catalog.count(*) filter (where l.kind in ('grant', 'top_up'))
    into credited, reversed, target
    from public.credit_ledger l
   where l.org_id = p_org_id and l.payment_intent = p_payment_intent;
  if target = 0 then
    insert into private.stripe_pending_reversals (event_id, payment_intent, org_id, fraction, object_id, reason)
    values (p_event_id, p_payment_intent, p_org_id, least(greatest(p_fraction, 0), 1), pg_catalog.left(p_object_id, 255), p_reason)
    on conflict (event_id) do nothing;
    return null;
  end if;
  target := -pg_catalog.floor(credited * least(greatest(p_fraction, 0), 1))::bigint;
  if target - reversed >= 0 then
    return 0;
  end if;
  insert into public.credit_ledger (org_id, kind, amount_micro, reason, stripe_event_id, stripe_object_id, payment_intent)
  values (p_org_id, 'reversal', target - reversed, p_reason, p_event_id, p_object_id, p_payment_intent);
  return target - reversed;
end
$$;
comment on function private.reverse_payment(uuid, text, numeric, text, text, text) is
  'Reverses the still-credited share of a payment (refunds and disputes), once per event; keeps it for later (null) when the payment is not credited yet.';
revoke execute on function private.reverse_payment(uuid, text, numeric, text, text, text) from public, anon, authenticated;

-- AFTER INSERT trigger of the credit ledger: a payment's credit applies the refunds and disputes
-- of it that arrived first, in the order they arrived (each takes what its fraction leaves).
create function private.apply_pending_reversals() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  pending private.stripe_pending_reversals;
  amount bigint;
begin
  for pending in
    delete from private.stripe_pending_reversals p
     where p.payment_intent = new.payment_intent and (p.org_id is null or p.org_id = new.org_id)
    returning p.*
  loop
    amount := private.reverse_payment(new.org_id, pending.payment_intent, pending.fraction, pending.event_id, pending.object_id, pending.reason);
    perform audit.append(new.org_id, 'billing.reversal_applied', 'stripe.event', pending.event_id,
                         pg_catalog.jsonb_build_object('event', pending.event_id, 'payment_intent', pending.payment_intent,
                                                       'reversed_micro', amount, 'received_at', pending.received_at));
  end loop;
  return null;
end
$$;
comment on function private.apply_pending_reversals() is
  'AFTER INSERT trigger of credit_ledger: a payment''s credit applies the reversals of it received earlier.';
revoke execute on function private.apply_pending_reversals() from public, anon, authenticated;
create trigger apply_pending_reversals after insert on public.credit_ledger
  for each row when (new.kind in ('grant', 'top_up') and new.payment_intent is not null)
  execute function private.apply_pending_reversals();

-- AFTER INSERT trigger of the credit ledger: a postpaid organization's usage, with a Stripe
-- customer and a live subscription, is queued for Stripe's billing meter in the debit's own
-- transaction (the billing function flushes the queue).
create function private.enqueue_meter_event() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  account public.billing_accounts;
begin
  select a.* into account from public.billing_accounts a where a.org_id = new.org_id;
  if account.mode = 'postpaid' and account.stripe_customer_id is not null
     and account.subscription_status in ('active', 'trialing', 'past_due') then
    insert into private.stripe_meter_outbox (org_id, stripe_customer_id, value_micro, ledger_entry_id, occurred_at)
    values (new.org_id, account.stripe_customer_id, -new.amount_micro, new.id, new.created_at);
  end if;
  return null;
end
$$;
comment on function private.enqueue_meter_event() is
  'AFTER INSERT trigger of credit_ledger: a postpaid usage debit, queued as a Stripe billing meter event.';
revoke execute on function private.enqueue_meter_event() from public, anon, authenticated;
create trigger enqueue_meter_event after insert on public.credit_ledger
  for each row when (new.kind = 'usage_debit')
  execute function private.enqueue_meter_event();

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

-- Counts one connector call of p_cost units (the tool's weight, against the workspace's own
-- limits) in one statement: the row is counted only if this minute's calls stay under the rate
-- and this month's units within the budget, and concurrent calls queue on the row. A prepaid
-- organization must first have the credits for the platform's connector price (its calls take
-- their turn on its billing account's row), whatever the units, and an admitted call holds it
-- under p_hold_id. Returns null when the call is
-- admitted, else 'credits_exhausted', 'connector_rate_limited' or 'connector_budget_exhausted'
-- (nothing counted): the codes the connectors function answers with.
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


-- Charges a connector call the platform's price (private.billing_prices), once it has been made:
-- when the provider answered (an HTTP status) or the request left and then failed (a timeout, a
-- reset, a redirect or answer the guard refused). A call the egress guard refused before anything
-- left costs nothing. Returns the amount debited. The connectors function calls it with the
-- call's audit entry, in the same transaction.
create function private.charge_connector_call(p_org_id uuid, p_outcome text, p_http_status integer) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  price bigint := (select p.micro from private.billing_prices p where p.item = 'connector_call');
begin
  if p_org_id is null then
    raise exception 'charge_connector_call needs an organization' using errcode = '22023';
  end if;
  if p_http_status is null
     and coalesce(p_outcome, '') not in ('egress_request_failed', 'egress_redirect_blocked', 'egress_response_too_large',
                                         'egress_timeout', 'egress_aborted') then
    return 0;
  end if;
  if price > 0 then
    insert into public.credit_ledger (org_id, kind, amount_micro, reason)
    values (p_org_id, 'usage_debit', -price, 'Connector call');
  end if;
  return price;
end
$$;
comment on function private.charge_connector_call(uuid, text, integer) is
  'Debits a connector call at the platform''s price when something reached the provider; nothing for a call the egress guard refused before sending.';
revoke execute on function private.charge_connector_call(uuid, text, integer) from public, anon, authenticated;
grant execute on function private.charge_connector_call(uuid, text, integer) to service_role;

-- The plans on offer, for the billing function's GET /plans and Checkout.
create function private.offered_plans()
returns table (plan text, stripe_price_id text, mode public.billing_mode, credits_micro bigint, monthly_ceiling_micro bigint)
language sql stable security definer
set search_path = ''
as $$
  select p.plan, p.stripe_price_id, p.mode, p.credits_micro, p.monthly_ceiling_micro
    from private.billing_plans p where p.offered order by p.credits_micro, p.plan
$$;
comment on function private.offered_plans() is 'The plans the billing function sells (private.billing_plans, offered).';
revoke execute on function private.offered_plans() from public, anon, authenticated;
grant execute on function private.offered_plans() to service_role;

-- Up to p_limit meter events not yet sent, locked for the caller's transaction (a concurrent
-- flush skips them): the billing function sends each to Stripe with identifier = id, then marks
-- them sent in the same transaction.
create function private.claim_meter_events(p_limit integer)
returns table (id uuid, stripe_customer_id text, value_micro bigint, occurred_at timestamptz)
language sql volatile security definer
set search_path = ''
as $$
  select o.id, o.stripe_customer_id, o.value_micro, o.occurred_at
    from private.stripe_meter_outbox o
   where o.sent_at is null
   order by o.occurred_at, o.id
   limit least(greatest(coalesce(p_limit, 100), 1), 500)
   for update skip locked
$$;
comment on function private.claim_meter_events(integer) is 'Locks up to p_limit unsent Stripe meter events for this transaction (skipping any another flush holds).';
revoke execute on function private.claim_meter_events(integer) from public, anon, authenticated;
grant execute on function private.claim_meter_events(integer) to service_role;

create function private.mark_meter_events_sent(p_ids uuid[]) returns integer
language sql volatile security definer
set search_path = ''
as $$
  with sent as (
    update private.stripe_meter_outbox o set sent_at = pg_catalog.now()
     where o.id = any (p_ids) and o.sent_at is null
    returning 1
  )
  select pg_catalog.count(*)::integer from sent
$$;
comment on function private.mark_meter_events_sent(uuid[]) is 'Marks Stripe meter events as sent (Stripe has them).';
revoke execute on function private.mark_meter_events_sent(uuid[]) from public, anon, authenticated;
grant execute on function private.mark_meter_events_sent(uuid[]) to service_role;

-- Applies one verified Stripe event, exactly once (the event id is recorded in the same
-- transaction as the effect). Plan, mode and a period's credits come from the platform's plan of
-- the price the subscription or invoice names; card fields, like subscription state, are replaced
-- only by a newer event; a refund or dispute of a payment not credited yet
-- is kept and applied when it is (outcome pending). Returns applied, pending, duplicate, stale,
-- ignored or unmatched.
create or replace function private.apply_stripe_event(p_event jsonb) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  evt text := p_event ->> 'id';
  event_type text := p_event ->> 'type';
  event_at timestamptz;
  obj jsonb := p_event -> 'data' -> 'object';
  org uuid;
  result text := 'applied';
  account public.billing_accounts;
  credits bigint;
  intent text;
  fields jsonb := '{}';
  item jsonb;
  ended timestamptz;
  price_plan private.billing_plans;
begin
  if coalesce(evt, '') !~ '^evt_[A-Za-z0-9_]{1,250}$' or coalesce(event_type, '') !~ '^[a-z_.]{1,100}$'
     or coalesce(pg_catalog.jsonb_typeof(obj), '') <> 'object' or coalesce(p_event ->> 'created', '') !~ '^[0-9]{1,11}$' then
    perform private.refuse_request(400, 'invalid_event', 'The event lacks an id, type, creation time or object.');
  end if;
  event_at := pg_catalog.to_timestamp((p_event ->> 'created')::bigint);

  -- The one writer of an event id: a concurrent duplicate waits here, then finds it taken.
  insert into private.stripe_events (event_id, type, created_at_stripe, outcome)
  values (evt, event_type, event_at, 'applied')
  on conflict on constraint stripe_events_pkey do nothing;
  if not found then
    return 'duplicate';
  end if;

  if event_type not in ('checkout.session.completed', 'checkout.session.async_payment_succeeded', 'invoice.paid', 'customer.subscription.created',
                        'customer.subscription.updated', 'customer.subscription.deleted', 'charge.refunded',
                        'charge.dispute.created', 'payment_method.attached', 'payment_method.updated') then
    update private.stripe_events set outcome = 'ignored' where stripe_events.event_id = evt;
    return 'ignored';
  end if;

  org := private.stripe_object_org(obj);
  if org is null and event_type in ('charge.refunded', 'charge.dispute.created') then
    -- A dispute names neither customer nor metadata: the payment it is about names the organization.
    select l.org_id into org from public.credit_ledger l where l.payment_intent = obj ->> 'payment_intent' limit 1;
  end if;
  if org is null and event_type in ('charge.refunded', 'charge.dispute.created')
     and coalesce(obj ->> 'payment_intent', '') ~ '^pi_[A-Za-z0-9]{1,250}$' then
    -- Before the payment it reverses: kept, and applied when that payment is credited.
    insert into private.stripe_pending_reversals (event_id, payment_intent, fraction, object_id, reason)
    values (evt, obj ->> 'payment_intent',
            case when event_type = 'charge.dispute.created' then 1
                 when (obj ->> 'amount')::numeric > 0 then least((obj ->> 'amount_refunded')::numeric / (obj ->> 'amount')::numeric, 1) else 0 end,
            pg_catalog.left(obj ->> 'id', 255),
            case when event_type = 'charge.dispute.created' then 'Payment disputed' else 'Payment refunded' end);
    update private.stripe_events set outcome = 'pending' where stripe_events.event_id = evt;
    return 'pending';
  end if;
  if org is null then
    update private.stripe_events set outcome = 'unmatched' where stripe_events.event_id = evt;
    return 'unmatched';
  end if;
  insert into public.billing_accounts (org_id) values (org) on conflict (org_id) do nothing;
  select a.* into account from public.billing_accounts a where a.org_id = org for update;
  -- The customer becomes the organization's the first time an object of ours names it.
  if account.stripe_customer_id is null and pg_catalog.jsonb_typeof(obj -> 'customer') = 'string'
     and not exists (select 1 from public.billing_accounts a where a.stripe_customer_id = obj ->> 'customer') then
    update public.billing_accounts set stripe_customer_id = obj ->> 'customer', updated_at = pg_catalog.now()
     where billing_accounts.org_id = org;
  end if;

  case event_type
    -- A session paid at once, or later (bank debits and the like: async_payment_succeeded).
    when 'checkout.session.completed', 'checkout.session.async_payment_succeeded' then
      if obj ->> 'mode' = 'payment' then
        credits := private.stripe_credits(obj -> 'metadata');
        intent := case when pg_catalog.jsonb_typeof(obj -> 'payment_intent') = 'string' then obj ->> 'payment_intent' end;
        if obj ->> 'payment_status' = 'paid' and credits > 0 then
          insert into public.credit_ledger (org_id, kind, amount_micro, reason, stripe_event_id, stripe_object_id, payment_intent)
          values (org, 'top_up', credits, 'Credits bought with Checkout', evt, obj ->> 'id', intent)
          on conflict do nothing;
        end if;
        fields := pg_catalog.jsonb_build_object('session', obj ->> 'id', 'mode', 'payment', 'credits_micro', credits);
      elsif obj ->> 'mode' = 'subscription' then
        update public.billing_accounts
           set subscription_id = coalesce(subscription_id, obj ->> 'subscription'), updated_at = pg_catalog.now()
         where billing_accounts.org_id = org;
        fields := pg_catalog.jsonb_build_object('session', obj ->> 'id', 'mode', 'subscription', 'subscription', obj ->> 'subscription');
      end if;

    when 'invoice.paid' then
      -- The period's credits are the plan's of the price the invoice bills (not a proration's):
      -- after a downgrade in the portal, the cheaper plan's.
      select p.* into price_plan
        from pg_catalog.jsonb_array_elements(case when pg_catalog.jsonb_typeof(obj -> 'lines' -> 'data') = 'array'
                                                  then obj -> 'lines' -> 'data' else '[]'::jsonb end) with ordinality as l (line, ord)
        join private.billing_plans p
          on p.stripe_price_id = coalesce(l.line -> 'pricing' -> 'price_details' ->> 'price', l.line -> 'price' ->> 'id')
       where not coalesce(l.line -> 'parent' -> 'subscription_item_details' ->> 'proration', l.line ->> 'proration', 'false') = 'true'
       order by l.ord
       limit 1;
      credits := price_plan.credits_micro;
      intent := coalesce(obj ->> 'payment_intent', obj -> 'payments' -> 'data' -> 0 -> 'payment' ->> 'payment_intent');
      -- A period's credits come with the invoice that starts or renews it, and only when it was
      -- paid (not a trial's $0 invoice, not a proration's).
      if credits > 0 and obj ->> 'billing_reason' in ('subscription_create', 'subscription_cycle')
         and coalesce(obj ->> 'amount_paid', '') ~ '^[1-9][0-9]*$' then
        insert into public.credit_ledger (org_id, kind, amount_micro, reason, stripe_event_id, stripe_object_id, payment_intent)
        values (org, 'grant', credits, 'Credits of the paid period', evt, obj ->> 'id',
                case when intent ~ '^pi_' then intent end)
        on conflict do nothing;
      end if;
      fields := pg_catalog.jsonb_build_object('invoice', obj ->> 'id', 'plan', price_plan.plan, 'credits_micro', credits);

    when 'customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted' then
      if (account.subscription_event_at is not null
          and (account.subscription_event_at, account.subscription_event_id) >= (event_at, evt))
         -- An event about another subscription than the live one (an old, canceled one) changes nothing.
         or (account.subscription_id is not null and account.subscription_id <> obj ->> 'id'
             and coalesce(account.subscription_status, '') not in ('canceled', 'incomplete_expired')) then
        result := 'stale';
        fields := pg_catalog.jsonb_build_object('subscription', obj ->> 'id', 'stale', true);
      else
        item := obj -> 'items' -> 'data' -> 0;
        -- Plan and mode are the platform's plan of the subscription's current price (changed in the
        -- portal or not), never metadata written at Checkout.
        select p.* into price_plan from private.billing_plans p where p.stripe_price_id = item -> 'price' ->> 'id';
        ended := case when obj ->> 'ended_at' ~ '^[0-9]+$' then pg_catalog.to_timestamp((obj ->> 'ended_at')::bigint) end;
        update public.billing_accounts set
          subscription_id = obj ->> 'id',
          subscription_status = case when event_type = 'customer.subscription.deleted' then 'canceled' else pg_catalog.left(obj ->> 'status', 40) end,
          stripe_price_id = case when item -> 'price' ->> 'id' ~ '^price_[A-Za-z0-9]{1,250}$' then item -> 'price' ->> 'id' end,
          plan = price_plan.plan,
          mode = coalesce(price_plan.mode, mode),
          cancel_at_period_end = coalesce((obj ->> 'cancel_at_period_end')::boolean, false),
          current_period_end = case when coalesce(item ->> 'current_period_end', obj ->> 'current_period_end') ~ '^[0-9]+$'
                                    then pg_catalog.to_timestamp(coalesce(item ->> 'current_period_end', obj ->> 'current_period_end')::bigint)
                                    else current_period_end end,
          ended_at = ended,
          subscription_event_at = event_at,
          subscription_event_id = evt,
          updated_at = pg_catalog.now()
        where billing_accounts.org_id = org
        returning * into account;
        -- A lapsed subscription keeps the data 14 days past its end (or its period's end).
        update public.billing_accounts set grace_until =
          case when subscription_status in ('canceled', 'unpaid', 'incomplete_expired', 'past_due')
               then coalesce(ended_at, current_period_end, pg_catalog.now()) + interval '14 days' end
         where billing_accounts.org_id = org
        returning * into account;
        fields := pg_catalog.jsonb_build_object('subscription', account.subscription_id, 'status', account.subscription_status,
                                                'plan', account.plan, 'price', account.stripe_price_id, 'cancel_at_period_end', account.cancel_at_period_end,
                                                'current_period_end', account.current_period_end, 'grace_until', account.grace_until);
      end if;

    when 'charge.refunded' then
      credits := private.reverse_payment(org, obj ->> 'payment_intent',
                   case when (obj ->> 'amount')::numeric > 0 then (obj ->> 'amount_refunded')::numeric / (obj ->> 'amount')::numeric else 0 end,
                   evt, obj ->> 'id', 'Payment refunded');
      result := case when credits is null then 'pending' else result end;
      fields := pg_catalog.jsonb_build_object('charge', obj ->> 'id', 'reversed_micro', credits);

    when 'charge.dispute.created' then
      credits := private.reverse_payment(org, obj ->> 'payment_intent', 1, evt, obj ->> 'id', 'Payment disputed');
      result := case when credits is null then 'pending' else result end;
      fields := pg_catalog.jsonb_build_object('dispute', obj ->> 'id', 'reversed_micro', credits);

    when 'payment_method.attached', 'payment_method.updated' then
      if account.card_event_at is not null and (account.card_event_at, account.card_event_id) >= (event_at, evt) then
        result := 'stale';
      elsif obj -> 'card' is not null then
        update public.billing_accounts set
          card_brand = pg_catalog.left(obj -> 'card' ->> 'brand', 32),
          card_last4 = case when obj -> 'card' ->> 'last4' ~ '^[0-9]{4}$' then obj -> 'card' ->> 'last4' end,
          card_exp_month = case when obj -> 'card' ->> 'exp_month' ~ '^([1-9]|1[0-2])$' then (obj -> 'card' ->> 'exp_month')::smallint end,
          card_exp_year = case when obj -> 'card' ->> 'exp_year' ~ '^2[0-9]{3}$' then (obj -> 'card' ->> 'exp_year')::smallint end,
          card_event_at = event_at,
          card_event_id = evt,
          updated_at = pg_catalog.now()
        where billing_accounts.org_id = org;
      end if;
      fields := pg_catalog.jsonb_build_object('payment_method', obj ->> 'id', 'brand', obj -> 'card' ->> 'brand');
  end case;

  update private.stripe_events set org_id = org, outcome = result
   where stripe_events.event_id = evt;
  perform audit.append(org, 'billing.' || event_type, 'stripe.event', evt,
                       pg_catalog.jsonb_strip_nulls(fields || pg_catalog.jsonb_build_object('event', evt, 'outcome', result)));
  return result;
end
$$;
comment on function private.apply_stripe_event(jsonb) is
  'Applies a verified Stripe event exactly once (its id is recorded with its effect); returns applied, pending, duplicate, stale, ignored or unmatched.';
revoke execute on function private.apply_stripe_event(jsonb) from public, anon, authenticated;
grant execute on function private.apply_stripe_event(jsonb) to service_role;

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on private.billing_plans, private.stripe_pending_reversals, private.stripe_meter_outbox
  from public, anon, authenticated, service_role;
