-- A prepaid organization's connector calls can't overdraw its credits, however many race (issue
-- 23): the meter admits a call only if the balance, less what model calls in flight reserved and
-- what admitted connector calls hold, covers the platform's price, and it holds that price until
-- the call is charged or its hold expires. Model reservations see the holds too.
begin;
\ir _helpers.psql
select plan(9);

create function pg_temp.balance(p_org uuid) returns bigint language sql as $$
  select coalesce(sum(amount_micro), 0)::bigint from public.credit_ledger where org_id = p_org
$$;
select pg_temp.org('acme') as acme \gset
select micro as price from private.billing_prices where item = 'connector_call' \gset

-- Acme is prepaid: leave it exactly one connector call's worth of credits.
insert into public.credit_ledger (org_id, kind, amount_micro, reason)
values (:'acme', 'adjustment', :price - pg_temp.balance(:'acme'), 'leave one connector call');
delete from private.model_reservations where org_id = :'acme';

set local role service_role;
select is(private.meter_connector_call(:'acme', 1, '11111111-1111-4111-8111-111111111111'), null,
          'a call the credits cover is admitted');
select is(private.meter_connector_call(:'acme', 1, '22222222-2222-4222-8222-222222222222'), 'credits_exhausted',
          'a second call admitted before the first is charged is refused: the first holds the price');
select throws_like(format($$ select private.reserve_model_call(%L, null, null, 'gpt-4o-mini', 10, 10, false) $$, pg_temp.run('acme')),
                   '%credits_exhausted%', 'a model call meets the held price too');
-- The first call is made and charged: its hold goes with the charge.
select is(private.charge_connector_call(:'acme', 'delivered', 200), :price::bigint, 'the first call is charged');
select private.release_connector_hold(:'acme', '11111111-1111-4111-8111-111111111111');
reset role;
select is(pg_temp.balance(:'acme'), 0::bigint, 'the balance ends at zero, never below');
select is((select count(*)::int from private.connector_holds where org_id = :'acme'), 0, 'nothing is held once the call is recorded');

-- A hold that was never released (a runtime that died mid-call) stops counting when it expires.
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (:'acme', 'adjustment', :price, 'one more call');
set local role service_role;
select is(private.meter_connector_call(:'acme', 1, '33333333-3333-4333-8333-333333333333'), null, 'admitted, and held');
reset role;
update private.connector_holds set expires_at = now() - interval '1 second' where org_id = :'acme';
set local role service_role;
select is(private.meter_connector_call(:'acme', 1, '44444444-4444-4444-8444-444444444444'), null, 'an expired hold no longer counts');
-- Revocations are counted but never held back, and hold nothing.
select is(private.meter_connector_call(:'acme', 0, null), null, 'a call with no hold (a revocation) is not held back');
reset role;

select * from finish();
rollback;
