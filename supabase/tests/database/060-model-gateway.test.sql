-- The model gateway, database side (20261122000800_model_gateway.sql): only the gateway writes
-- model_calls, members read their own organization's, keys never come back out, and reserve and
-- settle keep every budget: burst limits (GCRA), reservations against each budget, release on
-- settlement, expired reservations closed at their maximum, the soft threshold once a month.
-- The edge function around them is tested end to end in tests/integration/model_gateway.test.ts;
-- the isolation matrix (900) covers the new tables and view.
begin;
\ir _helpers.psql
select plan(37);

-- ---------------------------------------------------------------------------------------------
-- Reach: reserve, settle and the catalog belong to the gateway (service role).
-- ---------------------------------------------------------------------------------------------
select is((select array_agg(r || ': ' || f order by r, f)
             from unnest(array['anon', 'authenticated']) r,
                  unnest(array['private.reserve_model_call(uuid, uuid, uuid, text, integer, integer, boolean)',
                               'private.settle_model_call(uuid, public.model_call_outcome, integer, integer, boolean, integer, text)',
                               'private.allowed_models(uuid, uuid)',
                               'public.save_model_provider_key(uuid, public.model_provider, text, text)']) f
            where has_function_privilege(r, f, 'execute')), null,
          'no client role can reserve, settle, list the catalog through the gateway''s helper or save a key');
select is((select count(*)::int from information_schema.table_privileges
            where table_schema = 'private' and table_name in ('model_catalog', 'model_meters', 'model_rates', 'model_reservations')
              and grantee in ('anon', 'authenticated', 'service_role')), 0,
          'no client role can read or write the catalog, meters, burst state or reservations');

-- Only the gateway writes model_calls: not a member (not even a tenant admin), not the service role directly.
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            format($$insert into public.model_calls (project_id, agent_id, provider, model, key_source, stream, input_tokens,
                      output_tokens, reserved_micro, cost_micro, latency_ms, outcome, started_at)
                      values (%L, %L, 'openai', 'gpt-4o-mini', 'platform', false, 1, 1, 1, 1, 1, 'succeeded', now())$$,
                   pg_temp.project('acme'), pg_temp.agent('acme'))),
          'denied', 'a tenant admin cannot write a model call');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), 'update public.model_calls set cost_micro = 0'),
          'denied', 'nor change one');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), 'delete from public.model_calls'),
          'denied', 'nor delete one');
set local role service_role;
select throws_ok($$ insert into public.model_calls (org_id, project_id, agent_id, provider, model, key_source, stream, input_tokens,
                    output_tokens, reserved_micro, cost_micro, latency_ms, outcome, started_at)
                    values ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
                            '2a000000-0000-4000-8000-00000000000a', 'openai', 'gpt-4o-mini', 'platform', false, 1, 1, 1, 1, 1,
                            'succeeded', now()) $$,
                 '42501', null, 'the service role cannot write one directly either');
select throws_ok($$ update public.model_calls set cost_micro = 0 $$, '42501', null, 'nor change one');
select throws_ok($$ delete from public.model_calls $$, '42501', null, 'nor delete one');
reset role;
select throws_like($$ update public.model_calls set cost_micro = 0 $$, '%model_calls_are_final%',
                   'even the owner cannot change a model call: the ledger is final');

-- Members read their own organization's calls.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select array_agg(distinct org_id) from public.model_calls), array[pg_temp.org('acme')],
          'a member reads only their organization''s calls');
select is((select array_agg(distinct org_id) from public.model_usage_daily), array[pg_temp.org('acme')],
          'and only its usage');
select throws_ok($$ select secret_id from public.model_provider_keys $$, '42501', null, 'nobody reads a key''s Vault reference');
reset role;
-- From here the gateway calls as the agent runtime: the service role with no user.
select set_config('request.jwt.claims', '', true);

-- ---------------------------------------------------------------------------------------------
-- A call: reserve, then settle.
-- ---------------------------------------------------------------------------------------------
-- Acme's meter as the other suites left it (spent b; nothing in flight), and a budget of b + 10,000
-- with its soft threshold at b + 3,000.
create temporary table b on commit drop as
  select coalesce((select spent_micro from private.model_meters where scope = 'organization' and scope_id = pg_temp.org('acme')
                    and period = date_trunc('month', now())::date), 0)::int as spent;
create function pg_temp.acme_meter() returns int[] language sql as $$
  select array[coalesce(m.committed_micro, 0) - b.spent, coalesce(m.spent_micro, 0) - b.spent]::int[]
    from b left join private.model_meters m on m.scope = 'organization' and m.scope_id = pg_temp.org('acme')
     and m.period = date_trunc('month', now())::date
$$;
update public.model_limits set monthly_budget_micro = (select spent from b) + 10000, soft_budget_micro = (select spent from b) + 3000,
       allowed_models = null
 where org_id = pg_temp.org('acme');
delete from public.model_caps where org_id = pg_temp.org('acme');
delete from public.model_budget_events where org_id = pg_temp.org('acme');
create temporary table r (n serial, v jsonb) on commit drop;
grant all on r, r_n_seq to service_role;

set local role service_role;
-- gpt-4o-mini: 1,000 prompt tokens and 2,000 output tokens at most: 150 + 1,200 = 1,350 micro-units.
insert into r (v) values (private.reserve_model_call(pg_temp.run('acme'), null, null, 'gpt-4o-mini', 1000, 2000, false));
reset role;
select is((select v ->> 'reserved_micro' from r where n = 1), '1350', 'the maximum cost is reserved: input bound and max_tokens at the list price');
select is((select v - 'reservation_id' - 'api_key' - 'base_url' - 'reserved_micro' from r where n = 1),
          jsonb_build_object('ok', true, 'org_id', pg_temp.org('acme'), 'project_id', pg_temp.project('acme'),
                             'agent_id', pg_temp.agent('acme'), 'run_id', pg_temp.run('acme'), 'provider', 'openai',
                             'upstream_model', 'gpt-4o-mini', 'key_source', 'platform', 'max_tokens', 2000),
          'the run names the organization, project and agent; the platform key pays without a key of the organization''s own');
select is(pg_temp.acme_meter(), array[1350, 0], 'the organization''s meter holds the reservation');

set local role service_role;
select is(private.settle_model_call((select (v ->> 'reservation_id')::uuid from r where n = 1), 'succeeded', 400, 500, false, 90)
            ->> 'cost_micro', '360', 'settling charges the actual usage: 60 + 300');
select is(private.settle_model_call((select (v ->> 'reservation_id')::uuid from r where n = 1), 'succeeded', 400, 500, false, 90),
          null, 'a reservation settles once');
reset role;
select is(pg_temp.acme_meter(), array[360, 360], 'the rest of the reservation is released');
select is((select count(*)::int from audit.records where action = 'model.call' and target_id = (
             select id::text from public.model_calls where run_id = pg_temp.run('acme') order by created_at desc limit 1)), 1,
          'the call is in the audit chain as model.call');

-- The budget: 10,000 micro-units left, 360 spent. Reservations of 1,350 fit seven times, not eight.
set local role service_role;
insert into r (v) select private.reserve_model_call(pg_temp.run('acme'), null, null, 'gpt-4o-mini', 1000, 2000, false)
  from generate_series(1, 8);
reset role;
select is((select count(*)::int from r where n > 1 and (v ->> 'ok')::boolean), 7, 'reservations stop where the budget ends');
select is((select v - 'message' - 'needed_micro' - 'run_id' from r order by n desc limit 1),
          '{"ok": false, "reason": "model_budget_exhausted", "scope": "organization", "model": "gpt-4o-mini"}'::jsonb,
          'the eighth is refused with a stable code, naming the budget');
select is(pg_temp.acme_meter(), array[360 + 7 * 1350, 360], 'the refused call reserved nothing');
select ok(exists (select 1 from audit.records where action = 'model.refused' and org_id = pg_temp.org('acme')
                   and payload::jsonb ->> 'reason' = 'model_budget_exhausted'), 'the refusal is in the audit chain');

-- A failed call releases its whole reservation; crossing the soft threshold is recorded once.
set local role service_role;
select private.settle_model_call((v ->> 'reservation_id')::uuid, 'failed', 0, 0, false, 5, 'model_upstream_unavailable') from r where n = 2;
select private.settle_model_call((v ->> 'reservation_id')::uuid, 'succeeded', 1000, 2000, false, 5) from r where n between 3 and 5;
reset role;
select is(pg_temp.acme_meter(), array[360 + 3 * 1350 + 3 * 1350, 360 + 3 * 1350],
          'the failed call cost nothing and released its reservation; three settled at their maximum');
select is((select count(*)::int from public.model_budget_events where org_id = pg_temp.org('acme')
            and period = date_trunc('month', now())::date), 1, 'crossing the soft threshold (3,000) recorded one event');

-- An expired reservation nobody settled is closed at its maximum by the next reservation.
update private.model_reservations set expires_at = now() - interval '1 second'
 where id = (select (v ->> 'reservation_id')::uuid from r where n = 6);
set local role service_role;
insert into r (v) values (private.reserve_model_call(pg_temp.run('acme'), null, null, 'gpt-4o-mini', 10, 10, false));
reset role;
select is((select array[outcome::text, cost_micro::text, error_code] from public.model_calls where outcome = 'abandoned'),
          array['abandoned', '1350', 'reservation_expired'], 'the expired reservation is closed as abandoned, charged its maximum');

-- ---------------------------------------------------------------------------------------------
-- Burst limits and allowlists.
-- ---------------------------------------------------------------------------------------------
update public.model_limits set monthly_budget_micro = 1000000000, requests_per_minute = 60, burst = 3
 where org_id = pg_temp.org('globex');
delete from private.model_rates where org_id = pg_temp.org('globex');
create temporary table burst (g int, v jsonb) on commit drop;
grant all on burst to service_role;
set local role service_role;
insert into burst
  select g, private.reserve_model_call(pg_temp.run('globex'), null, null, 'gpt-4o-mini', 10, 10, false) from generate_series(1, 5) g;
reset role;
select is((select array_agg((v ->> 'ok')::boolean order by g) from burst), array[true, true, true, false, false],
          'a burst of three is admitted at once, then calls are paced');
select is((select array_agg(distinct v ->> 'reason') from burst where not (v ->> 'ok')::boolean), array['model_rate_limited'],
          'with the rate-limit code');
select ok((select bool_and((v ->> 'retry_after')::int between 1 and 2) from burst where not (v ->> 'ok')::boolean),
          'and retry_after: one call a second at 60 per minute');
select is((select array_agg(payload::jsonb ->> 'refused_calls') from audit.records
            where org_id = pg_temp.org('globex') and action = 'model.refused' and xid = pg_current_xact_id()),
          array['1'], 'the first refusal of a burst is in the audit chain, the next ones are counted for the next entry');

update public.model_limits set allowed_models = '{claude-haiku-4-5}' where org_id = pg_temp.org('globex');
set local role service_role;
select throws_like(format($$ select private.reserve_model_call(%L, null, null, 'gpt-4o-mini', 10, 10, false) $$, pg_temp.run('globex')),
                   '%model_not_allowed%', 'a model outside the allowlist is refused before anything is counted');
reset role;

-- A key's row going takes its Vault secret with it.
create temporary table gone on commit drop as select secret_id from public.model_provider_keys where org_id = pg_temp.org('globex');
delete from public.model_provider_keys where org_id = pg_temp.org('globex');
select is((select count(*)::int from vault.secrets where id in (select secret_id from gone)), 0,
          'deleting a key (or its organization) deletes it from Vault');

-- A member of one organization can't reserve for another's agent.
select set_config('request.jwt.claims', json_build_object('sub', pg_temp.uid('ada'), 'role', 'service_role')::text, true);
set local role service_role;
select throws_like(format($$ select private.reserve_model_call(null, %L, %L, 'gpt-4o-mini', 10, 10, false) $$,
                          pg_temp.org('globex'), pg_temp.agent('globex')),
                   '%context_not_a_member%', 'a member calls only in their own organization');
reset role;

-- An allowlist names catalog models only: a typo is refused, by name, and changes nothing.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like($$ update public.model_limits set allowed_models = array['gpt-4o-mini', 'gpt-4o-mni'] where org_id = pg_temp.org('acme') $$,
                   '%unknown_model%gpt-4o-mni%', 'a model name the catalog doesn''t have is refused');
select throws_like($$ insert into public.model_caps (project_id, agent_id, allowed_models)
                      values (pg_temp.project('acme'), pg_temp.agent('acme'), array['claude-nonexistent']) $$,
                   '%unknown_model%', 'on an agent''s cap too');
select is(coalesce((select allowed_models from public.model_limits where org_id = pg_temp.org('acme')) @> array['gpt-4o-mni'], false), false, 'nothing was saved');
select lives_ok($$ update public.model_limits set allowed_models = array['gpt-4o-mini'] where org_id = pg_temp.org('acme') $$,
                'catalog models are taken');
reset role;

select * from finish();
rollback;
