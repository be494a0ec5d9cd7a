-- What the signed-in person may do in the organization of their context (issue 25): one RPC the
-- console reads to decide which controls to offer, so that no rule lives in the browser. Each
-- answer is computed with the same helpers the policies and RPCs use (private.has_org_role,
-- private.project_ids_with_role), so it can't drift from what the database allows; and the
-- database still refuses what it refuses, whatever a screen offers.

create function public.my_permissions() returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  admins uuid[];
  contributors uuid[];
  viewers uuid[];
begin
  if (select auth.uid()) is null then
    perform private.refuse_request(401, 'sign_in_required', 'Sign in to see what you may do.');
  end if;
  if org is null then
    perform private.refuse_request(400, 'context_missing_org_id', 'Send X-Org-Id: the organization to answer for.');
  end if;
  admins := private.project_ids_with_role('project_admin');
  contributors := private.project_ids_with_role('project_contributor');
  viewers := private.project_ids_with_role('project_viewer');
  return pg_catalog.jsonb_build_object(
    'org_id', org,
    'org_role', private.org_role(),
    'organization', pg_catalog.jsonb_build_object(
      -- tenant_admin: the organization's settings, members and invitations, domains, projects,
      -- connections, model keys and limits, billing.
      'manage_organization', private.has_org_role('tenant_admin'),
      'manage_members', private.has_org_role('tenant_admin'),
      'manage_connections', private.has_org_role('tenant_admin'),
      'manage_models', private.has_org_role('tenant_admin'),
      'manage_billing', private.has_org_role('tenant_admin'),
      'create_projects', private.has_org_role('tenant_admin')),
    'projects', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', p.id,
               'name', p.name,
               'role', case when p.id = any (admins) then 'project_admin'
                            when p.id = any (contributors) then 'project_contributor'
                            else 'project_viewer' end,
               -- project_contributor: agents and their drafts, starting and cancelling runs, the
               -- widgets' review queue.
               'edit_agents', p.id = any (contributors),
               'run_agents', p.id = any (contributors),
               'review_widgets', p.id = any (contributors),
               -- project_admin: publishing, tools, approval policies, widgets, schedules, the project's members.
               'manage_agents', p.id = any (admins),
               'manage_widgets', p.id = any (admins),
               'manage_schedules', p.id = any (admins),
               'manage_project', p.id = any (admins)) order by p.name)
        from public.projects p
       where p.org_id = org and p.id = any (viewers)), '[]'::jsonb));
end
$$;
comment on function public.my_permissions() is
  'What the signed-in person may do in the organization of their context, per organization and project, as the database decides it.';
revoke execute on function public.my_permissions() from public, anon, authenticated;
grant execute on function public.my_permissions() to authenticated;
