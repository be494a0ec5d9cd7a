-- Foundation: the `private` schema for security-definer helpers, and the tenant root
-- (organizations and their members) that every tenant-scoped table hangs off.
--
-- Why: every later concern (agents, audit, approvals, connectors, billing) keys its rows to an
-- organization and checks membership through `private` helpers that PostgREST never exposes.
-- The fuller tenancy model (projects, invitations, context headers, the migration guard) builds
-- on these two tables.

-- =============================================================================================
-- Schemas
-- =============================================================================================
create schema if not exists private;
comment on schema private is 'Security-definer helpers; never exposed through PostgREST.';
revoke all on schema private from public, anon, authenticated;

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.member_role as enum ('tenant_admin', 'project_admin', 'project_contributor', 'project_viewer');
comment on type public.member_role is 'Roles of seed 003, from most to least privileged.';

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.organizations (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 100),
  slug text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$'),
  created_at timestamptz not null default now()
);
comment on table public.organizations is 'Tenants (workspaces). Every tenant-scoped row carries one of these ids.';

create table public.organization_members (
  org_id uuid not null references public.organizations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.member_role not null,
  created_at timestamptz not null default now(),
  primary key (org_id, user_id),
  unique (user_id, org_id)
);
comment on table public.organization_members is 'Who belongs to which organization, and with which role.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
create function private.is_org_member(p_org_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.organization_members m
     where m.org_id = p_org_id and m.user_id = (select auth.uid())
  )
$$;
comment on function private.is_org_member(uuid) is 'True when the calling user is a member of the organization.';
revoke execute on function private.is_org_member(uuid) from public, anon, authenticated;
grant usage on schema private to authenticated;
grant execute on function private.is_org_member(uuid) to authenticated;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
alter table public.organizations enable row level security;
alter table public.organizations force row level security;
create policy "members read their organizations" on public.organizations
  for select to authenticated
  using ((select private.is_org_member(id)));

alter table public.organization_members enable row level security;
alter table public.organization_members force row level security;
create policy "members read their organization's members" on public.organization_members
  for select to authenticated
  using ((select private.is_org_member(org_id)));

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.organizations, public.organization_members from anon, authenticated;
grant select on public.organizations, public.organization_members to authenticated;
grant select, insert, update, delete on public.organizations, public.organization_members to service_role;
