-- Connectors, database side (20261122000700_connectors.sql): the scopes a connection asks for,
-- the one-statement meter, OAuth2 authorizations in flight, disable_agent, who may change tools
-- and limits, and that the credential readers are out of every client's reach. The edge function
-- around them is tested end to end in tests/integration/connectors.test.ts.
begin;
\ir _helpers.psql
select plan(33);

-- ---------------------------------------------------------------------------------------------
-- Reach: the credential readers and the meter belong to the connectors function (service role).
-- ---------------------------------------------------------------------------------------------
select is((select array_agg(r order by r) from unnest(array['anon', 'authenticated']) r
            where has_function_privilege(r, 'private.connection_credential(uuid)', 'execute')
               or has_function_privilege(r, 'private.meter_connector_call(uuid, integer, uuid)', 'execute')
               or has_function_privilege(r, 'private.take_oauth_authorization(text, uuid)', 'execute')
               or has_function_privilege(r, 'private.begin_oauth_authorization(text, uuid, text, jsonb, text[], text, uuid)', 'execute')
               or has_function_privilege(r, 'private.scopes_needed(uuid, public.connector_provider)', 'execute')), null,
          'no client role can run the credential readers, the meter or the OAuth2 store');
select ok(has_function_privilege('service_role', 'private.connection_credential(uuid)', 'execute')
          and has_function_privilege('service_role', 'private.meter_connector_call(uuid, integer, uuid)', 'execute')
          and has_function_privilege('service_role', 'private.take_oauth_authorization(text, uuid)', 'execute'),
          'the service role (the connectors function) runs them');
select is((select count(*)::int from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'private' and p.proname in ('connection_credential', 'meter_connector_call', 'take_oauth_authorization',
                                                           'begin_oauth_authorization', 'scopes_needed')
              and not p.prosecdef), 0, 'each runs as its owner (security definer), so the service role needs no table grants');
select is((select count(*)::int from information_schema.column_privileges
            where table_schema = 'private' and table_name in ('connector_meters', 'oauth_authorizations')
              and grantee in ('anon', 'authenticated', 'service_role')), 0, 'no client role can read the meters or authorizations in flight');

-- ---------------------------------------------------------------------------------------------
-- Scopes: a connection asks for the union of what the enabled tools of its provider need.
-- ---------------------------------------------------------------------------------------------
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, scopes)
values (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), 'gh.issues', 'github', '{repo,read:org}'),
       (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), 'gh.status', 'github', '{repo:status,repo}'),
       (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), 'gh.admin', 'github', '{admin:org}');
update public.agent_tools set enabled = false where tool = 'gh.admin';
select is(private.scopes_needed(pg_temp.org('acme'), 'github'), '{read:org,repo,repo:status}',
          'the union of the enabled tools'' scopes, sorted, without a disabled tool''s');
select is(private.scopes_needed(pg_temp.org('globex'), 'github'), '{repo:status}', 'another organization''s tools are not counted');
select is(private.scopes_needed(pg_temp.org('acme'), 'notion'), '{}', 'no tools, no scopes');
select throws_ok($$ insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, scopes)
                    values (pg_temp.org('acme'), pg_temp.project('acme'),
                            pg_temp.agent('acme'), 'bad.scopes', 'github', '{"has space"}') $$,
                 '23514', null, 'a malformed scope is refused');

-- A tool binds only to a connection of its own organization and provider.
select throws_ok($$ update public.agent_tools set connection_id = pg_temp.connection('globex') where tool = 'gh.issues' $$,
                 '23503', null, 'a tool cannot bind to another organization''s connection');
select throws_ok($$ update public.agent_tools set connection_id = pg_temp.connection('acme') where tool = 'gh.issues' $$,
                 '23503', null, 'a GitHub tool cannot bind to a Slack connection');

-- Tools are a project admin's to change.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'),
            $$ update public.agent_tools set scopes = '{admin:org}' where tool = 'gh.issues' $$), 'denied',
          'a viewer cannot widen a tool''s scopes');
select is(pg_temp.probe(pg_temp.uid('casey'), pg_temp.org('acme'),
            $$ update public.agent_tools set scopes = '{repo}' where tool = 'gh.issues' $$), 'allowed',
          'a project admin changes a tool''s scopes');
select is(pg_temp.probe(pg_temp.uid('grace'), pg_temp.org('acme'),
            $$ update public.agent_tools set scopes = '{repo}' where tool = 'gh.issues' $$), 'denied',
          'another organization''s admin cannot, even with a forged context');

-- Limits are a tenant admin's.
select is(pg_temp.probe(pg_temp.uid('casey'), pg_temp.org('acme'),
            $$ update public.connector_limits set monthly_budget_units = 999999999 $$), 'denied',
          'a project admin cannot raise the workspace budget');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            $$ update public.connector_limits set monthly_budget_units = 5 $$), 'allowed',
          'a tenant admin sets the workspace budget');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            $$ delete from public.connector_limits $$), 'denied', 'limits are never deleted by clients');

-- ---------------------------------------------------------------------------------------------
-- The meter: checked and counted together; refused calls count nothing.
-- ---------------------------------------------------------------------------------------------
update public.connector_limits set calls_per_minute = 3, monthly_budget_units = 10 where org_id = pg_temp.org('acme');
delete from private.connector_meters;
select is(array(select private.meter_connector_call(pg_temp.org('acme'), 2) from generate_series(1, 4)),
          array[null, null, null, 'connector_rate_limited'], 'three calls a minute pass, the fourth is refused');
select is((select minute_calls || '/' || month_units from private.connector_meters where org_id = pg_temp.org('acme')), '3/6',
          'the refused call counted nothing');
update private.connector_meters set minute_start = minute_start - interval '1 minute';
select is(private.meter_connector_call(pg_temp.org('acme'), 5), 'connector_budget_exhausted', 'a call past the monthly budget is refused, with its reason');
select is(private.meter_connector_call(pg_temp.org('acme'), 4), null, 'a call that fits the budget exactly passes');
select is((select minute_calls || '/' || month_units from private.connector_meters where org_id = pg_temp.org('acme')), '1/10',
          'a new minute starts its count again; the month keeps its units');
update private.connector_meters set month_start = month_start - interval '1 month';
select is(private.meter_connector_call(pg_temp.org('acme'), 10), null, 'a new month starts the budget again');
select is(private.meter_connector_call(pg_temp.org('globex'), 1), null, 'another organization has its own meter');
select throws_ok($$ select private.meter_connector_call(pg_temp.org('acme'), -1) $$, '22023', null,
                 'a negative cost is refused');

-- ---------------------------------------------------------------------------------------------
-- OAuth2 authorizations in flight: single use, organization-bound, secrets deleted when taken.
-- ---------------------------------------------------------------------------------------------
select private.begin_oauth_authorization(repeat('a', 64), pg_temp.org('acme'), 'Helpdesk', '{"client_id":"c"}', '{tickets:read}',
                                         '{"client_secret":"oauth-PLANTED","code_verifier":"v"}', pg_temp.uid('ada'));
select secret_id as flight_secret from private.oauth_authorizations where state_sha256 = repeat('a', 64) \gset
select is((select count(*)::int from private.take_oauth_authorization(repeat('a', 64), pg_temp.org('globex'))), 0,
          'another organization cannot take the authorization');
select is((select secret from private.take_oauth_authorization(repeat('a', 64), pg_temp.org('acme'))),
          '{"client_secret":"oauth-PLANTED","code_verifier":"v"}', 'the organization takes it with its secrets');
select is((select count(*)::int from private.take_oauth_authorization(repeat('a', 64), pg_temp.org('acme'))), 0, 'only once');
select is((select count(*)::int from vault.secrets where id = :'flight_secret'), 0, 'taking it deletes its secrets from Vault');
select private.begin_oauth_authorization(repeat('b', 64), pg_temp.org('acme'), 'Late', '{}', '{}', '{"client_secret":"x"}', null);
update private.oauth_authorizations set expires_at = now() - interval '1 second' where state_sha256 = repeat('b', 64);
select is((select count(*)::int from private.take_oauth_authorization(repeat('b', 64), pg_temp.org('acme'))), 0,
          'an expired authorization is not returned');

-- ---------------------------------------------------------------------------------------------
-- disable_agent: project admins; hands back the connections nothing enabled uses any more.
-- ---------------------------------------------------------------------------------------------
-- The seeded agent's Slack tool uses the seeded connection (integration tests may have rebound it).
update public.agent_tools set connection_id = pg_temp.connection('acme'), enabled = true
 where agent_id = pg_temp.agent('acme') and tool = 'slack.post_message';
insert into public.agents (id, org_id, project_id, name)
values ('2a000000-0000-4000-8000-0000000000ff', pg_temp.org('acme'), pg_temp.project('acme'), 'Short-lived');
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
values (pg_temp.org('acme'), pg_temp.project('acme'), '2a000000-0000-4000-8000-0000000000ff', 'slack.post_message',
        'slack_webhook', pg_temp.connection('acme'));
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.disable_agent('2a000000-0000-4000-8000-0000000000ff') $$, '%agent_not_found%',
                   'a viewer cannot disable an agent');
reset role;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select is(array(select public.disable_agent('2a000000-0000-4000-8000-0000000000ff')), '{}'::uuid[],
          'a connection another enabled agent still uses is not handed back for revocation');
reset role;
update public.agent_tools set enabled = false where agent_id = pg_temp.agent('acme') and tool = 'slack.post_message';
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select is(array(select public.disable_agent('2a000000-0000-4000-8000-0000000000ff')), array[pg_temp.connection('acme')::uuid],
          'once nothing enabled uses it, the connection is handed back (disabling again is harmless)');
reset role;
select is((select disabled_at is not null and not bool_or(t.enabled) from public.agents a join public.agent_tools t on t.agent_id = a.id
            where a.id = '2a000000-0000-4000-8000-0000000000ff' group by a.disabled_at), true,
          'the agent is disabled, and so are its tools');

select * from finish();
rollback;
