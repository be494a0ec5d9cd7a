-- Billing (issue 18; seeds 000, 002, 003): Stripe's events applied exactly once, and a credit ledger.
--
-- - billing_accounts: one per organization: its Stripe customer, billing mode (prepaid or
--   postpaid), plan and subscription state, and of its card only brand, last four and expiry.
-- - credit_ledger: append-only entries (grants, top-ups, usage debits, reversals, adjustments). The
--   balance is the sum of the entries (credit_balances), never a number anyone can write.
-- - private.stripe_events: the id of every event received, written in the same transaction as its
--   effect (private.apply_stripe_event), so that a replay, a concurrent duplicate or a retry after a
--   crash applies nothing twice. Only the id, type and time are kept, never the payload.
--
-- Amounts are micro-units (millionths of a dollar), as model costs are. Stripe objects name their
-- organization with client_reference_id or metadata.org_id (set by the billing function when it
-- creates them) or through the organization's Stripe customer; their credits come from
-- metadata.gatehouse_credits (micro-units), set on the Checkout Session or the subscription.
--
-- Subscription state is replaced only by a newer event: ordered by the event's creation time, then
-- its id. Every applied event is an audit entry billing.<type> with the event id and the fields it
-- changed; every ledger entry is one too (credit_entry.insert).

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.billing_mode as enum ('postpaid', 'prepaid');
create type public.credit_entry_kind as enum ('grant', 'top_up', 'usage_debit', 'reversal', 'adjustment');

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.billing_accounts (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  mode public.billing_mode not null default 'postpaid',
  stripe_customer_id text unique check (stripe_customer_id ~ '^cus_[A-Za-z0-9]{1,250}$'),
  plan text check (char_length(plan) <= 100),
  subscription_id text unique check (subscription_id ~ '^sub_[A-Za-z0-9]{1,250}$'),
  -- Stripe's status, as Stripe says it (a status Stripe adds later must not make its events fail).
  subscription_status text check (char_length(subscription_status) <= 40),
  cancel_at_period_end boolean not null default false,
  current_period_end timestamptz,
  ended_at timestamptz,
  -- Until when a lapsed subscription keeps the organization's data (the purge reads it).
  grace_until timestamptz,
  -- The event that set the subscription state, which only a newer one replaces.
  subscription_event_at timestamptz,
  subscription_event_id text,
  -- The card on file, as much as the console shows: never a number, never a CVC.
  card_brand text check (char_length(card_brand) <= 32),
  card_last4 text check (card_last4 ~ '^[0-9]{4}$'),
  card_exp_month smallint check (card_exp_month between 1 and 12),
  card_exp_year smallint check (card_exp_year between 2000 and 2200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table public.billing_accounts is
  'Each organization''s billing: Stripe customer, mode, plan and subscription state, and its card''s brand, last4 and expiry only. Written by the billing code paths.';
comment on column public.billing_accounts.grace_until is 'Until when a lapsed or canceled subscription keeps the organization''s data.';

create table public.credit_ledger (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  kind public.credit_entry_kind not null,
  amount_micro bigint not null,
  reason text check (char_length(reason) between 1 and 500),
  -- Where the entry comes from: a Stripe event and object, a model call, a person.
  stripe_event_id text check (char_length(stripe_event_id) <= 255),
  stripe_object_id text check (char_length(stripe_object_id) <= 255),
  payment_intent text check (payment_intent ~ '^pi_[A-Za-z0-9]{1,250}$'),
  model_call_id uuid,
  created_by uuid,
  created_at timestamptz not null default now(),
  unique (org_id, id),
  check (case kind
           when 'grant' then amount_micro > 0
           when 'top_up' then amount_micro > 0
           when 'usage_debit' then amount_micro < 0
           when 'reversal' then amount_micro < 0
           else amount_micro <> 0 and reason is not null
         end)
);
comment on table public.credit_ledger is
  'Append-only credit entries: grants, top-ups, usage debits, reversals, adjustments (with a reason). The balance is their sum.';

-- What usage costs in credits, beyond model calls (whose cost is the model's price).
create table private.billing_prices (
  item text primary key check (item in ('connector_unit')),
  micro bigint not null check (micro >= 0)
);
comment on table private.billing_prices is 'Credit prices of metered usage other than model calls (micro-units per unit).';
insert into private.billing_prices (item, micro) values ('connector_unit', 1000);

create table private.stripe_events (
  event_id text primary key check (event_id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  type text not null check (char_length(type) <= 100),
  created_at_stripe timestamptz not null,
  org_id uuid,
  outcome text not null check (outcome in ('applied', 'stale', 'ignored', 'unmatched')),
  received_at timestamptz not null default now()
);
comment on table private.stripe_events is
  'Every Stripe event received, by id, written with its effect: what makes delivery exactly once. No payload is kept.';

-- =============================================================================================
-- Indexes
-- =============================================================================================
-- One credit per Stripe object and kind: a second event about the same payment grants nothing.
create unique index credit_ledger_once_per_stripe_object on public.credit_ledger (stripe_object_id, kind)
  where stripe_object_id is not null and kind in ('grant', 'top_up');
-- One entry per Stripe event (a reversal's event, say).
create unique index credit_ledger_once_per_stripe_event on public.credit_ledger (stripe_event_id)
  where stripe_event_id is not null;
-- One debit per model call.
create unique index credit_ledger_once_per_model_call on public.credit_ledger (model_call_id)
  where model_call_id is not null;

-- =============================================================================================
-- Triggers
-- =============================================================================================
select private.make_tenant_table('public.billing_accounts', 'billing_account');
select private.make_tenant_table('public.credit_ledger', 'credit_entry');
create trigger final before update on public.credit_ledger
  for each row execute function private.refuse_final_change('credit_entries_are_final', 'The credit ledger is append-only: entries are never changed.');

-- =============================================================================================
-- Views
-- =============================================================================================
create view public.credit_balances with (security_invoker = true) as
  select l.org_id, pg_catalog.sum(l.amount_micro)::bigint as balance_micro, pg_catalog.count(*)::bigint as entries
    from public.credit_ledger l
   group by l.org_id;
comment on view public.credit_balances is 'Each organization''s credit balance: the sum of its ledger entries.';
create trigger refuse_write instead of insert or update or delete on public.credit_balances
  for each row execute function private.refuse_view_write();

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- An organization's balance, from its entries.
create function private.credit_balance(p_org_id uuid) returns bigint
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.sum(l.amount_micro), 0)::bigint from public.credit_ledger l where l.org_id = p_org_id
$$;
comment on function private.credit_balance(uuid) is 'The organization''s credit balance: the sum of its ledger entries.';
revoke execute on function private.credit_balance(uuid) from public, anon, authenticated;

-- The organization a Stripe object belongs to: client_reference_id or metadata.org_id (an
-- invoice's, its subscription's) when it names an organization, else the one whose Stripe customer
-- it is. So an invoice paid before the Checkout Session that started its subscription arrives
-- still finds its organization.
create function private.stripe_object_org(p_object jsonb) returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
  named text := coalesce(p_object ->> 'client_reference_id', p_object -> 'metadata' ->> 'org_id',
                         p_object -> 'parent' -> 'subscription_details' -> 'metadata' ->> 'org_id');
  org uuid;
begin
  if named ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select o.id into org from public.organizations o where o.id = named::uuid;
    if org is not null then
      return org;
    end if;
  end if;
  select a.org_id into org from public.billing_accounts a
   where a.stripe_customer_id = case pg_catalog.jsonb_typeof(p_object -> 'customer')
                                  when 'string' then p_object ->> 'customer'
                                  when 'object' then p_object -> 'customer' ->> 'id' end;
  return org;
end
$$;
comment on function private.stripe_object_org(jsonb) is 'The organization a Stripe object belongs to (client_reference_id, metadata.org_id, or its customer).';
revoke execute on function private.stripe_object_org(jsonb) from public, anon, authenticated;

-- Credits of an object's metadata.gatehouse_credits (micro-units), or null.
create function private.stripe_credits(p_metadata jsonb) returns bigint
language sql immutable
set search_path = ''
as $$
  select case when p_metadata ->> 'gatehouse_credits' ~ '^[0-9]{1,15}$' then (p_metadata ->> 'gatehouse_credits')::bigint end
$$;
revoke execute on function private.stripe_credits(jsonb) from public, anon, authenticated;

-- Reverses, for a payment, what is still credited of `fraction` of it: a partial refund takes its
-- share, a later larger one the rest of its share, a dispute everything. Returns the entry's amount.
create function private.reverse_payment(p_org_id uuid, p_payment_intent text, p_fraction numeric, p_event_id text, p_object_id text, p_reason text)
returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  credited bigint;
  reversed bigint;
  target bigint;
begin
  if p_payment_intent is null then
    return 0;
  end if;
  -- Payments of one organization are reversed one at a time.
  perform 1 from public.billing_accounts a where a.org_id = p_org_id for update;
  select coalesce(pg_catalog.sum(l.amount_micro) filter (where l.kind in ('grant', 'top_up')), 0),
         coalesce(pg_catalog.sum(l.amount_micro) filter (where l.kind = 'reversal'), 0)
    into credited, reversed
    from public.credit_ledger l
   where l.org_id = p_org_id and l.payment_intent = p_payment_intent;
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
  'Reverses the still-credited share of a payment (refunds and disputes), once per event.';
revoke execute on function private.reverse_payment(uuid, text, numeric, text, text, text) from public, anon, authenticated;

-- Applies one verified Stripe event, exactly once: the event id is recorded in the same
-- transaction as the effect, so a duplicate (concurrent or later) finds it and applies nothing.
-- Returns the outcome: applied, duplicate, stale (an older subscription state), ignored (a type we
-- don't handle) or unmatched (no organization of ours).
create function private.apply_stripe_event(p_event jsonb) returns text
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
      credits := private.stripe_credits(coalesce(obj -> 'parent' -> 'subscription_details' -> 'metadata', obj -> 'subscription_details' -> 'metadata', obj -> 'metadata'));
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
      fields := pg_catalog.jsonb_build_object('invoice', obj ->> 'id', 'credits_micro', credits);

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
        ended := case when obj ->> 'ended_at' ~ '^[0-9]+$' then pg_catalog.to_timestamp((obj ->> 'ended_at')::bigint) end;
        update public.billing_accounts set
          subscription_id = obj ->> 'id',
          subscription_status = case when event_type = 'customer.subscription.deleted' then 'canceled' else pg_catalog.left(obj ->> 'status', 40) end,
          plan = pg_catalog.left(coalesce(obj -> 'metadata' ->> 'plan', item -> 'price' ->> 'lookup_key', plan), 100),
          mode = case obj -> 'metadata' ->> 'gatehouse_mode' when 'prepaid' then 'prepaid'::public.billing_mode
                                                             when 'postpaid' then 'postpaid'::public.billing_mode else mode end,
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
                                                'plan', account.plan, 'cancel_at_period_end', account.cancel_at_period_end,
                                                'current_period_end', account.current_period_end, 'grace_until', account.grace_until);
      end if;

    when 'charge.refunded' then
      credits := private.reverse_payment(org, obj ->> 'payment_intent',
                   case when (obj ->> 'amount')::numeric > 0 then (obj ->> 'amount_refunded')::numeric / (obj ->> 'amount')::numeric else 0 end,
                   evt, obj ->> 'id', 'Payment refunded');
      fields := pg_catalog.jsonb_build_object('charge', obj ->> 'id', 'reversed_micro', credits);

    when 'charge.dispute.created' then
      credits := private.reverse_payment(org, obj ->> 'payment_intent', 1, evt, obj ->> 'id', 'Payment disputed');
      fields := pg_catalog.jsonb_build_object('dispute', obj ->> 'id', 'reversed_micro', credits);

    when 'payment_method.attached', 'payment_method.updated' then
      if obj -> 'card' is not null then
        update public.billing_accounts set
          card_brand = pg_catalog.left(obj -> 'card' ->> 'brand', 32),
          card_last4 = case when obj -> 'card' ->> 'last4' ~ '^[0-9]{4}$' then obj -> 'card' ->> 'last4' end,
          card_exp_month = case when obj -> 'card' ->> 'exp_month' ~ '^([1-9]|1[0-2])$' then (obj -> 'card' ->> 'exp_month')::smallint end,
          card_exp_year = case when obj -> 'card' ->> 'exp_year' ~ '^2[0-9]{3}$' then (obj -> 'card' ->> 'exp_year')::smallint end,
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
  'Applies a verified Stripe event exactly once (its id is recorded with its effect); returns applied, duplicate, stale, ignored or unmatched.';
revoke execute on function private.apply_stripe_event(jsonb) from public, anon, authenticated;
grant execute on function private.apply_stripe_event(jsonb) to service_role;

-- Metering: a prepaid organization's model calls need credits. A reservation is refused (402
-- credits_exhausted) when the balance, less what calls in flight have reserved, can't cover the
-- new reservation's maximum; reservations of one prepaid organization take their turn on its
-- billing account's row, so that two can't both spend the last credits.
create function private.require_credits() returns trigger
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
  available := private.credit_balance(new.org_id)
             - coalesce((select pg_catalog.sum(r.reserved_micro) from private.model_reservations r
                          where r.org_id = new.org_id and r.key_source = 'platform' and r.expires_at > pg_catalog.now()), 0);
  if available - new.reserved_micro < 0 then
    perform private.refuse_request(402, 'credits_exhausted', pg_catalog.format(
      'The organization''s prepaid credits can''t cover this call (%s micro-units available, it may cost %s): buy credits.',
      greatest(available, 0), new.reserved_micro));
  end if;
  return new;
end
$$;
comment on function private.require_credits() is
  'BEFORE INSERT trigger of model reservations: a prepaid organization''s call needs credits to cover its maximum cost.';
revoke execute on function private.require_credits() from public, anon, authenticated;
create trigger require_credits before insert on private.model_reservations
  for each row execute function private.require_credits();

-- Every settled call on the platform's key debits its cost (an organization's own key costs it
-- nothing here): one usage_debit per model call.
create function private.debit_model_call() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.key_source = 'platform' and new.cost_micro > 0 then
    insert into public.credit_ledger (org_id, kind, amount_micro, reason, model_call_id)
    values (new.org_id, 'usage_debit', -new.cost_micro, pg_catalog.format('Model call (%s)', new.model), new.id);
  end if;
  return null;
end
$$;
comment on function private.debit_model_call() is 'AFTER INSERT trigger of model_calls: the call''s cost, as a usage debit of the credit ledger.';
revoke execute on function private.debit_model_call() from public, anon, authenticated;
create trigger debit_credits after insert on public.model_calls
  for each row execute function private.debit_model_call();

-- The organization's Stripe customer: the one it has, or `p_customer` (just created by the billing
-- function) if it has none yet. Returns the one that stands.
create function private.link_stripe_customer(p_org_id uuid, p_customer text) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  linked text;
begin
  if p_customer !~ '^cus_[A-Za-z0-9]{1,250}$' then
    perform private.refuse_request(502, 'stripe_unexpected', 'Stripe answered a customer id of an unexpected form.');
  end if;
  insert into public.billing_accounts (org_id, stripe_customer_id) values (p_org_id, p_customer)
  on conflict (org_id) do update set stripe_customer_id = coalesce(billing_accounts.stripe_customer_id, excluded.stripe_customer_id),
                                     updated_at = pg_catalog.now()
  returning stripe_customer_id into linked;
  return linked;
end
$$;
comment on function private.link_stripe_customer(uuid, text) is
  'Links a Stripe customer to the organization unless it has one; returns the one that stands.';
revoke execute on function private.link_stripe_customer(uuid, text) from public, anon, authenticated;
grant execute on function private.link_stripe_customer(uuid, text) to service_role;

-- Every connector call the meter admits debits its units at the connector price: the meter's
-- month_units grow by the call's cost, in the same statement.
create function private.debit_connector_units() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  added bigint := new.month_units - case when tg_op = 'UPDATE' and old.month_start = new.month_start then old.month_units else 0 end;
  price bigint := (select p.micro from private.billing_prices p where p.item = 'connector_unit');
begin
  if added > 0 and price > 0 then
    insert into public.credit_ledger (org_id, kind, amount_micro, reason)
    values (new.org_id, 'usage_debit', -(added * price), pg_catalog.format('Connector call (%s units)', added));
  end if;
  return null;
end
$$;
comment on function private.debit_connector_units() is 'AFTER INSERT OR UPDATE trigger of connector meters: a call''s units, as a usage debit.';
revoke execute on function private.debit_connector_units() from public, anon, authenticated;
create trigger debit_credits after insert or update on private.connector_meters
  for each row execute function private.debit_connector_units();

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- A tenant admin's downward adjustment of the organization's credits, with a reason (audited).
create function public.adjust_credits(p_amount_micro bigint, p_reason text) returns public.credit_ledger
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  entry public.credit_ledger;
begin
  if org is null or not private.has_org_role('tenant_admin') then
    perform private.refuse_request(403, 'forbidden', 'Adjusting credits needs the tenant_admin role in the organization.');
  end if;
  if p_amount_micro is null or p_amount_micro = 0 or pg_catalog.abs(p_amount_micro) > 1000000000000 then
    perform private.refuse_request(400, 'invalid_amount', 'The adjustment is a nonzero amount of at most 1,000,000 dollars (in micro-units).');
  end if;
  -- Credits are bought (Checkout) or come with the plan: an organization's own admins may take
  -- credits away (a correction), never add them.
  if p_amount_micro > 0 then
    perform private.refuse_request(403, 'credits_not_granted_here', 'Credits are bought with Checkout or come with the plan; an adjustment here can only take credits away.');
  end if;
  if p_reason is null or pg_catalog.char_length(pg_catalog.btrim(p_reason)) not between 1 and 500 then
    perform private.refuse_request(400, 'invalid_reason', 'An adjustment needs a reason of 1 to 500 characters.');
  end if;
  insert into public.credit_ledger (org_id, kind, amount_micro, reason, created_by)
  values (org, 'adjustment', p_amount_micro, pg_catalog.btrim(p_reason), (select auth.uid()))
  returning * into entry;
  return entry;
end
$$;
comment on function public.adjust_credits(bigint, text) is
  'Takes credits away from the organization, with a reason (tenant admin); an audited ledger entry.';
revoke execute on function public.adjust_credits(bigint, text) from public, anon, authenticated;
grant execute on function public.adjust_credits(bigint, text) to authenticated;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their organization's billing account" on public.billing_accounts
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "billing accounts are written by billing" on public.billing_accounts
  for insert to authenticated
  with check (false);
create policy "billing accounts are changed by billing" on public.billing_accounts
  for update to authenticated
  using (false);
create policy "billing accounts are kept" on public.billing_accounts
  for delete to authenticated
  using (false);

create policy "members read their organization's credit ledger" on public.credit_ledger
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "credit entries are written by billing and metering" on public.credit_ledger
  for insert to authenticated
  with check (false);
create policy "credit entries are final" on public.credit_ledger
  for update to authenticated
  using (false);
create policy "credit entries are kept" on public.credit_ledger
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.billing_accounts, public.credit_ledger, public.credit_balances from anon, authenticated, service_role;
revoke all on private.stripe_events, private.billing_prices from public, anon, authenticated, service_role;
grant select on public.billing_accounts, public.credit_ledger, public.credit_balances to authenticated, service_role;
