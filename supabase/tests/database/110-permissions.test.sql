-- What a person may do (issue 25): public.my_permissions answers from the database's own role
-- helpers, per organization and project, so the console offers controls without rules of its own.
begin;
\ir _helpers.psql
select plan(12);

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select public.my_permissions() as ada \gset
reset role;
select is(:'ada'::jsonb ->> 'org_role', 'tenant_admin', 'a tenant admin''s role');
select is((:'ada'::jsonb -> 'organization') - 'manage_organization' - 'manage_members' - 'manage_connections' - 'manage_models'
            - 'manage_billing' - 'create_projects', '{}'::jsonb, 'the organization''s permissions are the listed ones');
select ok((select bool_and(v::boolean) from jsonb_each_text(:'ada'::jsonb -> 'organization') as e (k, v)), 'a tenant admin may do all of them');
select is(:'ada'::jsonb -> 'projects' -> 0 ->> 'role', 'project_admin', 'and administers every project');

select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select public.my_permissions() as victor \gset
reset role;
select ok(not (select bool_or(v::boolean) from jsonb_each_text(:'victor'::jsonb -> 'organization') as e (k, v)), 'a viewer may do none of the organization''s');
select is(:'victor'::jsonb -> 'projects' -> 0 ->> 'role', 'project_viewer', 'and views its projects');
select ok(not (select bool_or(v::boolean) from jsonb_each_text(:'victor'::jsonb -> 'projects' -> 0) as e (k, v) where k not in ('id', 'name', 'role')),
          'with no write permission in them');

select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('globex'));
select public.my_permissions() as casey \gset
reset role;
select is((:'casey'::jsonb ->> 'org_id')::uuid, pg_temp.org('globex'), 'the answer is for the context''s organization');
select is(:'casey'::jsonb -> 'organization' ->> 'manage_members', 'false', 'a contributor manages no members');
select is(:'casey'::jsonb -> 'projects' -> 0 ->> 'run_agents', 'true', 'but runs agents in a project of theirs');

-- The model catalog the console offers (…_model_catalog_rpc.sql): any signed-in member, not anon.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'), $$select * from public.model_catalog()$$), 'allowed',
          'a member reads the model catalog');
select is(pg_temp.probe(null, null, $$select * from public.model_catalog()$$), 'denied', 'anon does not');

select * from finish();
rollback;
