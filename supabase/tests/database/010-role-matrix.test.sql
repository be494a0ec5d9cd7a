-- The role matrix of docs/tenancy.md ("Role matrix"), cell by cell: each action is run by one member of
-- each role, in Acme's context, and must be allowed or denied exactly as the table says.
-- Roles here are organization-wide; the last cells cover a project membership that raises an
-- organization viewer to project admin on one project only.
begin;
\ir _helpers.psql

-- Fixtures: one member per role, a scratch project with an agent and a draft version, a member to
-- manage, an invitation and an unverified domain (all in Acme).
insert into auth.users (id, email, email_confirmed_at) values
  ('d0000000-0000-4000-8000-000000000001', 'role-admin@acme.test', now()),
  ('d0000000-0000-4000-8000-000000000002', 'role-project-admin@acme.test', now()),
  ('d0000000-0000-4000-8000-000000000003', 'role-contributor@acme.test', now()),
  ('d0000000-0000-4000-8000-000000000004', 'role-viewer@acme.test', now()),
  ('d0000000-0000-4000-8000-000000000005', 'role-managed@acme.test', now()),
  ('d0000000-0000-4000-8000-000000000006', 'role-raised@acme.test', now());
insert into public.organization_members (org_id, user_id, role) values
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000001', 'tenant_admin'),
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000002', 'project_admin'),
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000003', 'project_contributor'),
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000004', 'project_viewer'),
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000005', 'project_viewer'),
  (pg_temp.org('acme'), 'd0000000-0000-4000-8000-000000000006', 'project_viewer');
insert into public.projects (id, org_id, name, slug) values
  ('1a000000-0000-4000-8000-0000000000f0', pg_temp.org('acme'), 'Role matrix', 'role-matrix');
insert into public.project_members (org_id, project_id, user_id, role) values
  (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', 'd0000000-0000-4000-8000-000000000005', 'project_viewer'),
  (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', 'd0000000-0000-4000-8000-000000000006', 'project_admin'),
  (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', 'd0000000-0000-4000-8000-000000000003', 'project_viewer');
insert into public.agents (id, org_id, project_id, name) values
  ('2a000000-0000-4000-8000-0000000000f0', pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', 'Scratch');
insert into public.agent_versions (id, org_id, project_id, agent_id) values
  ('3a000000-0000-4000-8000-0000000000f0', pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', '2a000000-0000-4000-8000-0000000000f0');
insert into public.invitations (id, org_id, email, role, token_hash) values
  ('4a000000-0000-4000-8000-0000000000f0', pg_temp.org('acme'), 'pending@acme.test', 'project_viewer',
   extensions.digest('role-matrix', 'sha256'));
insert into public.organization_domains (org_id, domain) values (pg_temp.org('acme'), 'unverified.acme.test');

create temporary table cells (
  ord serial,
  resource text,
  action text,
  statement text,
  tenant_admin text,
  project_admin text,
  project_contributor text,
  project_viewer text
) on commit drop;

-- Placeholders: :org Acme, :project the scratch project, :agent its agent, :draft its draft
-- version, :managed the member being managed, :invite the pending invitation.
insert into cells (resource, action, statement, tenant_admin, project_admin, project_contributor, project_viewer) values
  ('organizations', 'read their organization', $$select 1 from public.organizations where id = :org$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('organizations', 'rename the organization', $$update public.organizations set name = 'Acme II' where id = :org$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organizations', 'restrict it to verified domains', $$update public.organizations set restrict_to_verified_domains = true where id = :org$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organization_members', 'read the members', $$select 1 from public.organization_members where org_id = :org$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('organization_members', 'add a member directly', $$insert into public.organization_members (org_id, user_id, role) values (:org, pg_temp.uid('mallory'), 'project_viewer')$$, 'denied', 'denied', 'denied', 'denied'),
  ('organization_members', 'change a member''s role', $$update public.organization_members set role = 'project_contributor' where user_id = :managed$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organization_members', 'remove a member', $$delete from public.organization_members where user_id = :managed$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organization_members', 'leave the organization', $$select public.leave_organization()$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('invitations', 'read invitations', $$select 1 from public.invitations where org_id = :org$$, 'allowed', 'denied', 'denied', 'denied'),
  ('invitations', 'invite someone', $$select public.create_invitation('someone@acme.test', 'project_viewer')$$, 'allowed', 'denied', 'denied', 'denied'),
  ('invitations', 'insert an invitation directly', $$insert into public.invitations (org_id, email, role, token_hash) values (:org, 'x@acme.test', 'tenant_admin', '\x00')$$, 'denied', 'denied', 'denied', 'denied'),
  ('invitations', 'revoke an invitation', $$delete from public.invitations where id = :invite$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organization_domains', 'read domains', $$select 1 from public.organization_domains where org_id = :org$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('organization_domains', 'claim a domain', $$insert into public.organization_domains (org_id, domain) values (:org, 'new.acme.test')$$, 'allowed', 'denied', 'denied', 'denied'),
  ('organization_domains', 'mark a domain verified', $$update public.organization_domains set verified_at = now() where org_id = :org$$, 'denied', 'denied', 'denied', 'denied'),
  ('organization_domains', 'release a domain', $$delete from public.organization_domains where domain = 'unverified.acme.test'$$, 'allowed', 'denied', 'denied', 'denied'),
  ('projects', 'read projects', $$select 1 from public.projects where id = :project$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('projects', 'create a project', $$insert into public.projects (org_id, name, slug) values (:org, 'New', 'new')$$, 'allowed', 'denied', 'denied', 'denied'),
  ('projects', 'rename a project', $$update public.projects set name = 'Renamed' where id = :project$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('projects', 'delete a project', $$delete from public.projects where id = :project$$, 'allowed', 'denied', 'denied', 'denied'),
  ('project_members', 'read project members', $$select 1 from public.project_members where project_id = :project$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('project_members', 'add a project member', $$insert into public.project_members (org_id, project_id, user_id, role) values (:org, :project, 'd0000000-0000-4000-8000-000000000004', 'project_contributor')$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('project_members', 'change a project role', $$update public.project_members set role = 'project_contributor' where user_id = :managed$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('project_members', 'remove a project member', $$delete from public.project_members where user_id = :managed$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('agents', 'read agents', $$select 1 from public.agents where id = :agent$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('agents', 'create an agent', $$insert into public.agents (org_id, project_id, name) values (:org, :project, 'New agent')$$, 'allowed', 'allowed', 'allowed', 'denied'),
  ('agents', 'edit an agent', $$update public.agents set description = 'Edited' where id = :agent$$, 'allowed', 'allowed', 'allowed', 'denied'),
  ('agents', 'delete an agent', $$delete from public.agents where id = :agent$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('agent_versions', 'read versions', $$select 1 from public.agent_versions where id = :draft$$, 'allowed', 'allowed', 'allowed', 'allowed'),
  ('agent_versions', 'draft a version', $$insert into public.agent_versions (org_id, project_id, agent_id, config) values (:org, :project, :agent, '{"model":"m"}')$$, 'allowed', 'allowed', 'allowed', 'denied'),
  ('agent_versions', 'edit a draft', $$update public.agent_versions set config = '{"model":"m2"}' where id = :draft$$, 'allowed', 'allowed', 'allowed', 'denied'),
  ('agent_versions', 'discard a draft', $$delete from public.agent_versions where id = :draft$$, 'allowed', 'allowed', 'allowed', 'denied'),
  ('agent_versions', 'publish a draft', $$select public.publish_agent_version(:draft)$$, 'allowed', 'allowed', 'denied', 'denied'),
  ('model gateway', 'list the models an agent may call (GET /v1/models)', $$select 1 from private.member_allowed_models(:org, :agent)$$, 'allowed', 'allowed', 'allowed', 'denied');

update cells set statement = replace(replace(replace(replace(replace(replace(statement,
  ':org', quote_literal(pg_temp.org('acme')) || '::uuid'),
  ':project', quote_literal('1a000000-0000-4000-8000-0000000000f0') || '::uuid'),
  ':agent', quote_literal('2a000000-0000-4000-8000-0000000000f0') || '::uuid'),
  ':draft', quote_literal('3a000000-0000-4000-8000-0000000000f0') || '::uuid'),
  ':managed', quote_literal('d0000000-0000-4000-8000-000000000005') || '::uuid'),
  ':invite', quote_literal('4a000000-0000-4000-8000-0000000000f0') || '::uuid');

create temporary view role_cases as
  select c.ord, r.ord as role_ord, r.role, r.member, c.resource, c.action, c.statement,
         case r.role when 'tenant_admin' then c.tenant_admin when 'project_admin' then c.project_admin
                     when 'project_contributor' then c.project_contributor else c.project_viewer end as expected
    from cells c
   cross join (values (1, 'tenant_admin', 'd0000000-0000-4000-8000-000000000001'::uuid),
                      (2, 'project_admin', 'd0000000-0000-4000-8000-000000000002'::uuid),
                      (3, 'project_contributor', 'd0000000-0000-4000-8000-000000000003'::uuid),
                      (4, 'project_viewer', 'd0000000-0000-4000-8000-000000000004'::uuid)) as r (ord, role, member);

select plan((select count(*)::int from role_cases) + 4);

select is(pg_temp.probe(member, pg_temp.org('acme'), statement), expected,
          format('%s %s %s (%s)', role, case expected when 'allowed' then 'can' else 'cannot' end, action, resource))
  from role_cases order by ord, role_ord;

-- A project membership raises an organization viewer on that project only.
select is(pg_temp.probe('d0000000-0000-4000-8000-000000000006', pg_temp.org('acme'),
            $$update public.projects set name = 'Raised' where id = '1a000000-0000-4000-8000-0000000000f0'$$),
          'allowed', 'a viewer raised to project_admin can rename that project');
select is(pg_temp.probe('d0000000-0000-4000-8000-000000000006', pg_temp.org('acme'),
            $$select public.publish_agent_version('3a000000-0000-4000-8000-0000000000f0')$$),
          'allowed', 'a viewer raised to project_admin can publish in that project');
select is(pg_temp.probe('d0000000-0000-4000-8000-000000000006', pg_temp.org('acme'),
            $$insert into public.agents (org_id, project_id, name) values (pg_temp.org('acme'), pg_temp.project('acme'), 'Elsewhere')$$),
          'denied', 'a viewer raised on one project is still a viewer on the others');
select is(pg_temp.probe('d0000000-0000-4000-8000-000000000003', pg_temp.org('acme'),
            $$insert into public.agents (org_id, project_id, name) values (pg_temp.org('acme'), '1a000000-0000-4000-8000-0000000000f0', 'Not lowered')$$),
          'allowed', 'a project membership never lowers a member''s organization role');

select * from finish();
rollback;
