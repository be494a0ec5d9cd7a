-- Agent versions (seed 003): numbered by the database; a published version is an immutable
-- snapshot for every role, the service role and the table owner included.
begin;
\ir _helpers.psql
select plan(11);

select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
insert into public.agent_versions (org_id, project_id, agent_id, config)
values (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), '{"model":"m3"}');
select results_eq($$ select version from public.agent_versions where agent_id = pg_temp.agent('acme') order by version $$,
                  array[1, 2, 3], 'versions are numbered by the database, one past the latest');
select throws_ok($$ insert into public.agent_versions (org_id, project_id, agent_id, version)
                    values (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), 99) $$,
                 '42501', null, 'a client cannot pick a version number');
select throws_ok($$ update public.agent_versions set published_at = now() where id = '3a000000-0000-4000-8000-00000000002a' $$,
                 '42501', null, 'a draft cannot be published by writing published_at');

-- Published version 1 of Acme's agent.
select throws_ok($$ update public.agent_versions set config = '{"model":"evil"}' where id = '3a000000-0000-4000-8000-00000000001a' $$,
                 '23514', 'agent version 3a000000-0000-4000-8000-00000000001a (v1) is published and immutable',
                 'a project admin cannot change a published version');
select throws_ok($$ delete from public.agent_versions where id = '3a000000-0000-4000-8000-00000000001a' $$,
                 '23514', null, 'a project admin cannot delete a published version');
select throws_ok($$ delete from public.agents where id = pg_temp.agent('acme') $$,
                 '23514', null, 'an agent with a published version cannot be deleted');

select is((select version from public.publish_agent_version('3a000000-0000-4000-8000-00000000002a')), 2,
          'a project admin publishes a draft');
select throws_ok($$ select public.publish_agent_version('3a000000-0000-4000-8000-00000000002a') $$,
                 '42501', null, 'a published version cannot be published again');
select throws_ok($$ update public.agent_versions set config = '{}' where id = '3a000000-0000-4000-8000-00000000002a' $$,
                 '23514', null, 'a version is immutable from the moment it is published');
reset role;

set local role service_role;
select throws_ok($$ update public.agent_versions set config = '{}' where id = '3a000000-0000-4000-8000-00000000001a' $$,
                 '23514', null, 'the service role cannot change a published version');
reset role;

set local session_replication_role = replica;
select throws_ok($$ delete from public.agent_versions where id = '3a000000-0000-4000-8000-00000000001a' $$,
                 '23514', null, 'the table owner cannot delete a published version, even with triggers in replica mode');
set local session_replication_role = origin;

select * from finish();
rollback;
