-- The current-organization context for direct database sessions (private.set_context), and what
-- a signed-in session sees and may do without one. The HTTP side (X-Org-Id through PostgREST's
-- db-pre-request) is covered in tests/integration/tenancy.test.ts.
begin;
\ir _helpers.psql
select plan(19);

-- Without a context, tenant tables show nothing and writes are refused with a clear error.
select pg_temp.act_as(pg_temp.uid('ada'));
select is((select count(*)::int from public.agents), 0, 'without a context, a member sees no agents');
select is((select count(*)::int from public.organization_members), 0, 'without a context, a member sees no memberships');
select results_eq($$ select slug from public.organizations order by slug $$, array['acme'],
                  'without a context, a member still lists their organizations');
select throws_ok($$ insert into public.agents (org_id, project_id, name)
                    values (pg_temp.org('acme'), pg_temp.project('acme'), 'x') $$,
                 '42501', 'no organization context: insert on public.agents needs X-Org-Id (or private.set_context())',
                 'without a context, an insert is refused with a clear error');
select throws_like($$ delete from public.agents $$, '%no organization context: delete on public.agents%',
                   'without a context, a delete is refused with a clear error');

-- set_context validates membership before anything runs.
select throws_ok($$ select private.set_context(pg_temp.org('globex')) $$, '42501',
                 'not a member of organization 0b000000-0000-4000-8000-00000000000b',
                 'a member cannot set the context of an organization they do not belong to');
select throws_ok($$ select private.set_context(pg_temp.org('acme'), pg_temp.project('globex')) $$,
                 '42501', null, 'a project of another organization is refused as the context project');
select throws_ok($$ select private.set_context(null) $$, '22023', null, 'a context needs an organization');

-- A forged setting (skipping set_context) is re-validated on every statement, so it matches nothing.
select set_config('gatehouse.org_id', pg_temp.org('globex')::text, true);
select is((select count(*)::int from public.agents), 0, 'a forged context of another organization shows nothing');
select is(private.current_org_id(), null, 'a forged context is not a current organization');
set local gatehouse.org_id = 'not-a-uuid';
select is((select count(*)::int from public.agents), 0, 'a malformed context shows nothing and raises nothing');
reset role;

-- A member of both organizations sees exactly the organization in context.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select results_eq($$ select name from public.agents order by name $$, array['Returns assistant'],
                  'a member of two organizations in Acme''s context sees only Acme''s agents');
select results_eq($$ select slug from public.organizations $$, array['acme'],
                  'in a context, the organization list narrows to the current one');
reset role;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('globex'));
select results_eq($$ select name from public.agents order by name $$, array['Ticket triage'],
                  'the same member in Globex''s context sees only Globex''s agents');
select throws_ok($$ insert into public.agents (org_id, project_id, name)
                    values (pg_temp.org('acme'), pg_temp.project('acme'), 'Crossed') $$,
                 'PGRST', '{"code" : "context_org_mismatch", "message" : "The row names organization 0a000000-0000-4000-8000-00000000000a, but the context (X-Org-Id) is 0b000000-0000-4000-8000-00000000000b: leave org_id out."}',
                 'in Globex''s context, the member cannot write an Acme row (context_org_mismatch)');
reset role;

-- A project context narrows project-scoped tables to that project.
select set_config('gatehouse.org_id', '', true), set_config('gatehouse.project_id', '', true);
insert into public.projects (id, org_id, name, slug)
values ('1a000000-0000-4000-8000-0000000000c0', pg_temp.org('acme'), 'Second', 'second');
insert into public.agents (org_id, project_id, name)
values (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000c0', 'Second agent');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000c0');
select results_eq($$ select name from public.agents $$, array['Second agent'],
                  'with X-Project-Id, agents narrow to that project');
select throws_ok($$ insert into public.agents (org_id, project_id, name)
                    values (pg_temp.org('acme'), pg_temp.project('acme'), 'Other project') $$,
                 'PGRST', null, 'with X-Project-Id, writes to another project of the organization are refused (context_project_mismatch)');
select lives_ok($$ insert into public.agents (name) values ('From the context') $$,
                'a row without org_id and project_id takes both from the context');
select results_eq($$ select org_id, project_id from public.agents where name = 'From the context' $$,
                  $$ values (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000c0'::uuid) $$,
                  'the filled-in ids are the context''s');
reset role;

select * from finish();
rollback;
