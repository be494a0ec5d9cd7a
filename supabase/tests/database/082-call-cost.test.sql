-- A call's database cost does not grow with history (issue 24, part 0): an organization's credit
-- balance and its month's usage on the platform are running totals (private.credit_totals), kept
-- by the credit ledger's insert trigger in the same transaction as each entry, so that
-- private.credit_balance, private.prepaid_available and private.platform_spend read one row
-- instead of summing the ledger. The totals always equal the ledger's sums (a rolled-back entry
-- changes neither), and the members' view (public.credit_balances) says what it said before.
begin;
\ir _helpers.psql
select plan(14);

create function pg_temp.ledger_sum(p_org uuid) returns bigint language sql as $$
  select coalesce(sum(amount_micro), 0)::bigint from public.credit_ledger where org_id = p_org
$$;
create function pg_temp.month_usage(p_org uuid) returns bigint language sql as $$
  select coalesce(-sum(amount_micro), 0)::bigint from public.credit_ledger
   where org_id = p_org and kind = 'usage_debit' and created_at >= date_trunc('month', now(), 'UTC')
$$;
select pg_temp.org('acme') as acme \gset
select pg_temp.org('globex') as globex \gset
delete from private.model_reservations;
delete from private.connector_holds;

-- The seed's entries (grants, and the seeded calls' debits) are in the totals.
select is((select balance_micro from private.credit_totals where org_id = :'acme'), pg_temp.ledger_sum(:'acme'),
          'the running balance equals the sum of the seeded ledger');
select is((select entries from private.credit_totals where org_id = :'globex'),
          (select count(*) from public.credit_ledger where org_id = :'globex'), 'and counts its entries');

-- Every kind of entry moves the totals with it.
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (:'acme', 'top_up', 3000000, 'bought');
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (:'acme', 'adjustment', -1000, 'correction');
set local role service_role;
select private.charge_connector_call(:'globex', 'delivered', 200);
select private.settle_model_call((private.reserve_model_call(pg_temp.run('globex'), null, null, 'gpt-4o-mini', 100, 50, false)
                                  ->> 'reservation_id')::uuid, 'succeeded', 100, 50, false, 10);
reset role;
select is(private.credit_balance(:'acme'), pg_temp.ledger_sum(:'acme'), 'credit_balance equals the ledger''s sum after a top-up and an adjustment');
select is(private.credit_balance(:'globex'), pg_temp.ledger_sum(:'globex'), 'and after a connector charge and a settled model call');
select is(private.platform_spend(:'globex'), pg_temp.month_usage(:'globex'), 'platform_spend is the month''s usage debits (nothing in flight)');
select is((select balance_micro from public.credit_balances where org_id = :'acme'), pg_temp.ledger_sum(:'acme'),
          'the members'' view still says the sum of the ledger');

-- A transaction that fails leaves the ledger and the totals as they were.
select balance_micro as acme_balance, entries as acme_entries from private.credit_totals where org_id = :'acme' \gset
savepoint failing;
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (:'acme', 'top_up', 7777, 'about to fail');
rollback to savepoint failing;
select is((select balance_micro from private.credit_totals where org_id = :'acme'), :'acme_balance'::bigint,
          'a rolled-back entry leaves the running balance as it was');
select is((select entries from private.credit_totals where org_id = :'acme'), :'acme_entries'::bigint, 'and its count');
select is(private.credit_balance(:'acme'), pg_temp.ledger_sum(:'acme'), 'which is still the ledger''s sum');

-- Last month's usage is not this month's spend; this month's first debit starts the month over.
insert into public.organizations (id, name, slug) values ('0e000000-0000-4000-8000-00000000000e', 'Months', 'months');
insert into public.credit_ledger (org_id, kind, amount_micro, reason, created_at)
values ('0e000000-0000-4000-8000-00000000000e', 'usage_debit', -500, 'last month', date_trunc('month', now(), 'UTC') - interval '1 hour');
select is(private.platform_spend('0e000000-0000-4000-8000-00000000000e'), 0::bigint, 'last month''s usage is not this month''s spend');
insert into public.credit_ledger (org_id, kind, amount_micro, reason) values ('0e000000-0000-4000-8000-00000000000e', 'usage_debit', -70, 'now');
select is(private.platform_spend('0e000000-0000-4000-8000-00000000000e'), 70::bigint, 'this month''s first debit starts the month''s total');
select is(private.credit_balance('0e000000-0000-4000-8000-00000000000e'), -570::bigint, 'while the balance counts both');

-- What the reads cost: one row, whatever the ledger holds. A running total set aside from the
-- ledger shows which one they read.
update private.credit_totals set balance_micro = balance_micro + 1 where org_id = :'acme';
select is(private.credit_balance(:'acme'), pg_temp.ledger_sum(:'acme') + 1, 'credit_balance reads the running total, not the ledger');
select is(private.prepaid_available(:'acme'), pg_temp.ledger_sum(:'acme') + 1, 'and so does prepaid_available');

select * from finish();
rollback;
