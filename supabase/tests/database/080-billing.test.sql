-- Billing (issues 18 and 23): Stripe events applied exactly once (also after a crash before
-- commit), subscription state replaced only by newer events, plans and credits from the platform's
-- plan of a price, refunds and disputes reversing what was credited whatever their order, card
-- details kept to brand, last4 and expiry, the append-only credit ledger, connector calls charged
-- the platform's price, and the platform's ceiling on postpaid spend.
begin;
\ir _helpers.psql
select plan(63);

create function pg_temp.evt(p_id text, p_type text, p_created bigint, p_object jsonb) returns jsonb
language sql as $$
  select jsonb_build_object('id', p_id, 'object', 'event', 'type', p_type, 'created', p_created, 'data', jsonb_build_object('object', p_object))
$$;
create function pg_temp.balance(p_org uuid) returns bigint language sql as $$
  select coalesce(sum(amount_micro), 0)::bigint from public.credit_ledger where org_id = p_org
$$;

select pg_temp.org('acme') as acme \gset
select pg_temp.org('globex') as globex \gset
select pg_temp.balance(:'acme') as acme_before \gset
insert into private.billing_plans (plan, stripe_price_id, mode, credits_micro, monthly_ceiling_micro)
values ('pro', 'price_TestPro00001', 'prepaid', 90000000, 500000000);

-- =============================================================================================
-- Exactly once
-- =============================================================================================
select is(private.apply_stripe_event(pg_temp.evt('evt_topup1', 'checkout.session.completed', 1900000000,
            jsonb_build_object('id', 'cs_test_1', 'mode', 'payment', 'payment_status', 'paid', 'client_reference_id', :'acme',
                               'customer', 'cus_SeedAcme0001', 'payment_intent', 'pi_topup1', 'metadata', '{"gatehouse_credits": "5000000"}'::jsonb))),
          'applied', 'a paid Checkout top-up applies');
select is(pg_temp.balance(:'acme') - :acme_before, 5000000::bigint, 'its credits are in the ledger');
select is(private.apply_stripe_event(pg_temp.evt('evt_topup1', 'checkout.session.completed', 1900000000,
            jsonb_build_object('id', 'cs_test_1', 'mode', 'payment', 'payment_status', 'paid', 'client_reference_id', :'acme',
                               'payment_intent', 'pi_topup1', 'metadata', '{"gatehouse_credits": "5000000"}'::jsonb))),
          'duplicate', 'the same event again is a duplicate');
select is(private.apply_stripe_event(pg_temp.evt('evt_topup1_again', 'checkout.session.completed', 1900000001,
            jsonb_build_object('id', 'cs_test_1', 'mode', 'payment', 'payment_status', 'paid', 'client_reference_id', :'acme',
                               'payment_intent', 'pi_topup1', 'metadata', '{"gatehouse_credits": "5000000"}'::jsonb))),
          'applied', 'another event about the same session is taken in');
select is(pg_temp.balance(:'acme') - :acme_before, 5000000::bigint, 'but the same session credits once');
select is((select count(*)::int from audit.records where org_id = :'acme' and action = 'billing.checkout.session.completed'), 2,
          'each applied event is an audit entry billing.<type>');

-- A crash between receiving and committing: the effect and the event id go together.
savepoint before_crash;
select is(private.apply_stripe_event(pg_temp.evt('evt_crash', 'invoice.paid', 1900000100,
            jsonb_build_object('id', 'in_crash', 'customer', 'cus_SeedAcme0001', 'billing_reason', 'subscription_cycle', 'amount_paid', 2000,
                               'lines', '{"data": [{"pricing": {"price_details": {"price": "price_SeedStarter01"}}}]}'::jsonb,
                               'parent', jsonb_build_object('subscription_details', jsonb_build_object('metadata', '{"gatehouse_credits": "7"}'::jsonb))))),
          'applied', 'the event applies inside the transaction that crashes');
rollback to savepoint before_crash;
select is((select count(*)::int from private.stripe_events where event_id = 'evt_crash'), 0, 'after the crash its id is not recorded');
select is((select count(*)::int from public.credit_ledger where stripe_object_id = 'in_crash'), 0, 'and nothing of it is applied');
select is(private.apply_stripe_event(pg_temp.evt('evt_crash', 'invoice.paid', 1900000100,
            jsonb_build_object('id', 'in_crash', 'customer', 'cus_SeedAcme0001', 'billing_reason', 'subscription_cycle', 'amount_paid', 2000,
                               'lines', '{"data": [{"pricing": {"price_details": {"price": "price_SeedStarter01"}}}]}'::jsonb,
                               'parent', jsonb_build_object('subscription_details', jsonb_build_object('metadata', '{"gatehouse_credits": "7"}'::jsonb))))),
          'applied', 'the retry applies it');
select is((select sum(amount_micro)::bigint from public.credit_ledger where stripe_object_id = 'in_crash'), 20000000::bigint,
          'once, with the credits of the plan of the price it bills (not its metadata''s)');

select is(private.apply_stripe_event(pg_temp.evt('evt_early_invoice', 'invoice.paid', 1900000150,
            jsonb_build_object('id', 'in_early', 'customer', 'cus_NotLinkedYet',
                               'parent', jsonb_build_object('subscription_details', jsonb_build_object('metadata',
                                 jsonb_build_object('org_id', :'globex', 'gatehouse_credits', '1000')))))),
          'applied', 'an invoice paid before its Checkout Session arrives finds its organization in the subscription''s metadata');
select is(private.apply_stripe_event(pg_temp.evt('evt_trial_invoice', 'invoice.paid', 1900000160,
            jsonb_build_object('id', 'in_trial', 'customer', 'cus_SeedAcme0001', 'billing_reason', 'subscription_create', 'amount_paid', 0,
                               'parent', jsonb_build_object('subscription_details', jsonb_build_object('metadata', '{"gatehouse_credits": "7000000"}'::jsonb))))),
          'applied', 'a trial''s $0 invoice is taken in');
select is((select count(*)::int from public.credit_ledger where stripe_object_id = 'in_trial'), 0, 'but grants no credits');
select is(private.apply_stripe_event(pg_temp.evt('evt_other', 'customer.created', 1900000200, '{"id": "cus_x"}'::jsonb)),
          'ignored', 'a type we don''t handle is ignored');
select is(private.apply_stripe_event(pg_temp.evt('evt_stranger', 'invoice.paid', 1900000200, '{"id": "in_x", "customer": "cus_Unknown"}'::jsonb)),
          'unmatched', 'an object of no organization of ours is unmatched');
select throws_like($$ select private.apply_stripe_event('{"id": "nope", "type": "invoice.paid"}') $$, '%invalid_event%',
                   'an event without a proper id, time or object is refused');

-- =============================================================================================
-- Out of order
-- =============================================================================================
select is(private.apply_stripe_event(pg_temp.evt('evt_sub_new', 'customer.subscription.updated', 1900001000,
            '{"id": "sub_SeedAcme0001", "customer": "cus_SeedAcme0001", "status": "past_due", "cancel_at_period_end": true,
              "items": {"data": [{"current_period_end": 1900500000, "price": {"id": "price_TestPro00001"}}]}, "metadata": {"plan": "gold"}}'::jsonb)),
          'applied', 'a subscription update applies');
select is(private.apply_stripe_event(pg_temp.evt('evt_sub_old', 'customer.subscription.updated', 1900000500,
            '{"id": "sub_SeedAcme0001", "customer": "cus_SeedAcme0001", "status": "active", "cancel_at_period_end": false,
              "metadata": {"plan": "starter"}}'::jsonb)),
          'stale', 'an older update that arrives later is stale');
select results_eq($$ select subscription_status, plan, cancel_at_period_end from public.billing_accounts where org_id = pg_temp.org('acme') $$,
                  $$ values ('past_due'::text, 'pro'::text, true) $$, 'and changes nothing (the plan is the price''s, not the metadata''s)');
select ok((select grace_until = to_timestamp(1900500000) + interval '14 days' from public.billing_accounts where org_id = :'acme'),
          'a lapsed subscription keeps its data 14 days past the period''s end');
select is(private.apply_stripe_event(pg_temp.evt('evt_sub_del', 'customer.subscription.deleted', 1900002000,
            '{"id": "sub_SeedAcme0001", "customer": "cus_SeedAcme0001", "status": "canceled", "ended_at": 1900002000}'::jsonb)),
          'applied', 'a deletion applies');
select results_eq($$ select subscription_status, grace_until from public.billing_accounts where org_id = pg_temp.org('acme') $$,
                  $$ values ('canceled'::text, to_timestamp(1900002000) + interval '14 days') $$, 'canceled, with its grace period from its end');

-- An event about another subscription than the live one changes nothing.
select is(private.apply_stripe_event(pg_temp.evt('evt_globex_other_sub', 'customer.subscription.updated', 1900002500,
            '{"id": "sub_SomeOtherOne", "customer": "cus_SeedGlobex001", "status": "canceled"}'::jsonb)),
          'stale', 'an event about a subscription that is not the live one is stale');
select is((select subscription_status from public.billing_accounts where org_id = :'globex'), 'active', 'and the live one stays as it was');

-- A customer that is another organization's is never linked to a second one.
insert into public.organizations (id, name, slug) values ('0f000000-0000-4000-8000-00000000000f', 'Fresh', 'fresh-billing');
select is(private.apply_stripe_event(pg_temp.evt('evt_async', 'checkout.session.async_payment_succeeded', 1900002600,
            jsonb_build_object('id', 'cs_async', 'mode', 'payment', 'payment_status', 'paid',
                               'client_reference_id', '0f000000-0000-4000-8000-00000000000f',
                               'customer', 'cus_SeedAcme0001', 'payment_intent', 'pi_async', 'metadata', '{"gatehouse_credits": "3000"}'::jsonb))),
          'applied', 'a payment that succeeds later (asynchronously) applies');
select is((select sum(amount_micro)::bigint from public.credit_ledger where payment_intent = 'pi_async'
            and org_id = '0f000000-0000-4000-8000-00000000000f'), 3000::bigint,
          'and credits the organization the session names');
select results_eq($$ select stripe_customer_id from public.billing_accounts where org_id = '0f000000-0000-4000-8000-00000000000f' $$,
                  $$ values (null::text) $$, 'but does not link it to another organization''s customer');
select is((select org_id from public.billing_accounts where stripe_customer_id = 'cus_SeedAcme0001'), :'acme'::uuid,
          'which stays its own organization''s');

-- =============================================================================================
-- Refunds and disputes
-- =============================================================================================
select is(private.apply_stripe_event(pg_temp.evt('evt_refund_half', 'charge.refunded', 1900003000,
            '{"id": "ch_1", "customer": "cus_SeedAcme0001", "payment_intent": "pi_topup1", "amount": 1000, "amount_refunded": 500}'::jsonb)),
          'applied', 'a partial refund applies');
select is((select sum(amount_micro)::bigint from public.credit_ledger where payment_intent = 'pi_topup1' and kind = 'reversal'), -2500000::bigint,
          'and reverses its share of the credits');
select is(private.apply_stripe_event(pg_temp.evt('evt_dispute', 'charge.dispute.created', 1900004000,
            '{"id": "dp_1", "object": "dispute", "payment_intent": "pi_topup1", "charge": "ch_1", "metadata": {}}'::jsonb)),
          'applied', 'a dispute applies, found through the payment it disputes (it names no customer)');
select is((select sum(amount_micro)::bigint from public.credit_ledger where payment_intent = 'pi_topup1'), 0::bigint,
          'and reverses the rest, never more than was credited');

-- Before the payment they reverse: kept, then applied when it is credited.
select is(private.apply_stripe_event(pg_temp.evt('evt_refund_early', 'charge.refunded', 1900004100,
            '{"id": "ch_2", "customer": "cus_SeedGlobex001", "payment_intent": "pi_later1", "amount": 1000, "amount_refunded": 250}'::jsonb)),
          'pending', 'a refund of a payment not credited yet is kept');
select is(private.apply_stripe_event(pg_temp.evt('evt_dispute_early', 'charge.dispute.created', 1900004200,
            '{"id": "dp_2", "object": "dispute", "payment_intent": "pi_later2", "charge": "ch_3"}'::jsonb)),
          'pending', 'so is a dispute, though it names no organization');
select is((select count(*)::int from public.credit_ledger where payment_intent in ('pi_later1', 'pi_later2')), 0, 'and neither writes to the ledger yet');
select private.apply_stripe_event(pg_temp.evt('evt_paid_later1', 'checkout.session.completed', 1900004300,
          jsonb_build_object('id', 'cs_later1', 'mode', 'payment', 'payment_status', 'paid', 'customer', 'cus_SeedGlobex001',
                             'payment_intent', 'pi_later1', 'metadata', '{"gatehouse_credits": "4000000"}'::jsonb)));
select is((select sum(amount_micro)::bigint from public.credit_ledger where payment_intent = 'pi_later1'), 3000000::bigint,
          'the payment credited later loses the refunded share, as in Stripe''s order');
select private.apply_stripe_event(pg_temp.evt('evt_paid_later2', 'checkout.session.completed', 1900004400,
          jsonb_build_object('id', 'cs_later2', 'mode', 'payment', 'payment_status', 'paid', 'customer', 'cus_SeedGlobex001',
                             'payment_intent', 'pi_later2', 'metadata', '{"gatehouse_credits": "2000000"}'::jsonb)));
select is((select sum(amount_micro)::bigint from public.credit_ledger where payment_intent = 'pi_later2'), 0::bigint,
          'and a disputed one keeps nothing');
select is((select count(*)::int from private.stripe_pending_reversals where payment_intent in ('pi_later1', 'pi_later2')), 0,
          'nothing is left pending once applied');

-- =============================================================================================
-- Cards: brand, last4 and expiry only
-- =============================================================================================
select is(private.apply_stripe_event(pg_temp.evt('evt_pm', 'payment_method.attached', 1900005000,
            '{"id": "pm_1", "customer": "cus_SeedGlobex001", "card": {"brand": "amex", "last4": "0005", "exp_month": 3, "exp_year": 2032,
              "fingerprint": "FpSecretish", "funding": "credit", "number": "378282246310005", "cvc": "1234"}}'::jsonb)),
          'applied', 'a payment method event applies');
select results_eq($$ select card_brand, card_last4, card_exp_month, card_exp_year from public.billing_accounts where org_id = pg_temp.org('globex') $$,
                  $$ values ('amex'::text, '0005'::text, 3::smallint, 2032::smallint) $$, 'brand, last4 and expiry are kept');
select is(private.apply_stripe_event(pg_temp.evt('evt_pm_older', 'payment_method.updated', 1900004900,
            '{"id": "pm_0", "customer": "cus_SeedGlobex001", "card": {"brand": "visa", "last4": "1111", "exp_month": 1, "exp_year": 2027}}'::jsonb)),
          'stale', 'an older card event that arrives later is stale');
select results_eq($$ select card_brand, card_last4 from public.billing_accounts where org_id = pg_temp.org('globex') $$,
                  $$ values ('amex'::text, '0005'::text) $$, 'and leaves the newer card in place');
select is((select count(*)::int from information_schema.columns
            where table_schema not in ('pg_catalog', 'information_schema')
              and column_name ~* '(card_?number|^pan$|_pan$|cvc|cvv|card_?code|security_code|fingerprint)'), 0,
          'no column anywhere is meant for a card number, CVC or fingerprint');

-- =============================================================================================
-- The ledger
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.adjust_credits(1000, 'goodwill') $$, '%forbidden%', 'a viewer cannot adjust credits');
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((public.adjust_credits(-1000, 'correction')).kind, 'adjustment', 'a tenant admin takes credits away with a reason');
select throws_like($$ select public.adjust_credits(1000000, 'free credits') $$, '%credits_not_granted_here%',
                   'but never adds them: credits are bought or come with the plan');
reset role;
select throws_ok($$ update public.credit_ledger set amount_micro = 1 where kind = 'adjustment' $$, 'PGRST', null,
                 'ledger entries are never changed, even by the owner');

-- =============================================================================================
-- Metering: prepaid credits cover model calls, and each call's cost is debited
-- =============================================================================================
select set_config('request.jwt.claims', '', true);
insert into public.credit_ledger (org_id, kind, amount_micro, reason)
values (:'acme', 'adjustment', 100 - pg_temp.balance(:'acme'), 'leave 100 micro-units');
create temporary table reserved (v jsonb) on commit drop;
grant all on reserved to service_role;
set local role service_role;
select throws_like(format($$ select private.reserve_model_call(%L, null, null, 'gpt-4o-mini', 1000, 2000, false) $$, pg_temp.run('acme')),
                   '%credits_exhausted%', 'a prepaid organization''s call its credits can''t cover is refused at reservation');
reset role;
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (:'acme', 'adjustment', 10000000, 'top up for the test');
set local role service_role;
insert into reserved values (private.reserve_model_call(pg_temp.run('acme'), null, null, 'gpt-4o-mini', 1000, 2000, false));
select is((select v ->> 'ok' from reserved), 'true', 'with credits it is admitted');
select private.settle_model_call((select (v ->> 'reservation_id')::uuid from reserved), 'succeeded', 400, 500, false, 90);
reset role;
select results_eq($$ select l.amount_micro from public.credit_ledger l join public.model_calls c on c.id = l.model_call_id
                      where l.org_id = pg_temp.org('acme') and l.kind = 'usage_debit' and c.run_id = pg_temp.run('acme') and c.input_tokens = 400 $$,
                  $$ select -cost_micro from public.model_calls where run_id = pg_temp.run('acme') and input_tokens = 400 $$,
                  'the settled call''s cost is debited, once');

-- Connector calls are charged the platform's price once made, whatever the tool's units.
select pg_temp.balance(:'globex') as globex_before \gset
select count(*) as globex_queued from private.stripe_meter_outbox where org_id = :'globex' \gset
select is(private.meter_connector_call(:'globex', 0), null, 'a connector call of 0 units is admitted');
select is(pg_temp.balance(:'globex'), :globex_before::bigint, 'admitting a call charges nothing yet');
select is(private.charge_connector_call(:'globex', 'delivered', 200), 1000::bigint, 'a call the provider answered is charged the platform''s price');
select is(private.charge_connector_call(:'globex', 'egress_blocked_address', null), 0::bigint, 'a call the egress guard refused before sending costs nothing');
select is(pg_temp.balance(:'globex') - :globex_before, -1000::bigint, 'so the ledger has one connector debit');
select is(private.charge_connector_call(:'globex', 'egress_timeout', null), 1000::bigint, 'a call that left and then timed out is charged');

-- The platform's ceiling on postpaid spend.
select is(private.spend_ceiling(:'acme'), null::bigint, 'a prepaid organization has no ceiling (its credits gate it)');
select is(private.spend_ceiling(:'globex'), 1000000000::bigint, 'a subscribed postpaid organization has its plan''s ceiling');
select is(private.spend_ceiling('0f000000-0000-4000-8000-00000000000f'), 5000000::bigint, 'an organization without a subscription has the free tier''s');
update public.billing_accounts set subscription_id = 'sub_FreshLapsed01', subscription_status = 'unpaid', stripe_price_id = 'price_SeedTeam00001',
                                   grace_until = now() + interval '1 day'
 where org_id = '0f000000-0000-4000-8000-00000000000f';
select is(private.spend_ceiling('0f000000-0000-4000-8000-00000000000f'), 1000000000::bigint, 'an unpaid subscription keeps its plan''s ceiling during its grace period');
update public.billing_accounts set grace_until = now() - interval '1 second' where org_id = '0f000000-0000-4000-8000-00000000000f';
select is(private.spend_ceiling('0f000000-0000-4000-8000-00000000000f'), 0::bigint, 'and nothing once the grace period is over');
select is((select count(*)::int from private.stripe_meter_outbox where org_id = :'globex' and stripe_customer_id = 'cus_SeedGlobex001') - :globex_queued, 2,
          'a subscribed postpaid organization''s connector charges are queued for Stripe''s billing meter, with the debit');

select * from finish();
rollback;
