-- Tenancy: projects, project memberships, invitations, verified email domains, agents and their
-- versions, and the per-request organization context that every tenant policy keys on.
--
-- Why (seeds 000, 002, 003, 004): isolation must hold even when application code is wrong. So a
-- request names its organization (X-Org-Id, optionally X-Project-Id); `private.check_request()`
-- (PostgREST's db-pre-request) or `private.set_context()` (direct sessions) validates it against
-- membership and stores it in transaction-local settings; and every tenant policy compares the
-- row's org_id with `private.current_org_id()`, which re-validates membership on every statement,
-- so a forged setting matches nothing. Without a context, tenant tables show no rows and writes
-- are refused with a clear error.
--
-- Roles (seed 003), most to least privileged: tenant_admin > project_admin > project_contributor >
-- project_viewer. A member's organization role applies to every project of the organization; a
-- project membership can raise it for one project. The effective role is the higher of the two.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table public.organizations
  add column restrict_to_verified_domains boolean not null default false;
comment on column public.organizations.restrict_to_verified_domains is
  'When true, only users whose email domain the organization has verified can be invited or join.';

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  slug text not null check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$'),
  created_at timestamptz not null default now(),
  unique (org_id, id),
  unique (org_id, slug)
);
comment on table public.projects is 'Projects inside an organization; agents and their runs live in a project.';

create table public.project_members (
  org_id uuid not null,
  project_id uuid not null,
  user_id uuid not null,
  role public.member_role not null check (role <> 'tenant_admin'),
  created_at timestamptz not null default now(),
  primary key (org_id, project_id, user_id),
  unique (org_id, user_id, project_id),
  foreign key (org_id, project_id) references public.projects (org_id, id) on delete cascade,
  -- A project member is always a member of the project's organization.
  foreign key (org_id, user_id) references public.organization_members (org_id, user_id) on delete cascade
);
comment on table public.project_members is
  'Project-level roles. They can raise a member''s organization role for one project, never lower it.';

create table public.invitations (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  email text not null check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and char_length(email) <= 254),
  role public.member_role not null,
  -- Only the SHA-256 of the token is stored; the token itself is shown once, to the inviter.
  token_hash bytea not null unique check (octet_length(token_hash) = 32),
  invited_by uuid,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz,
  accepted_by uuid
);
comment on table public.invitations is
  'Invitations to join an organization. Created and accepted through RPCs; the token is never stored.';
comment on column public.invitations.invited_by is 'Who invited; no foreign key, so history survives the user.';

create table public.organization_domains (
  org_id uuid not null references public.organizations (id) on delete cascade,
  domain text not null check (domain = lower(domain) and domain ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$'),
  -- Published by the tenant as a DNS TXT record; not a secret.
  verification_token text not null default encode(extensions.gen_random_bytes(16), 'hex'),
  verified_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (org_id, domain)
);
comment on table public.organization_domains is
  'Email domains an organization has claimed. verified_at is set only by the server-side verifier.';

create table public.agents (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  name text not null check (char_length(name) between 1 and 100),
  description text not null default '' check (char_length(description) <= 2000),
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  unique (org_id, project_id, id),
  unique (org_id, project_id, name),
  -- Composite key: an agent can never point at another organization's project.
  foreign key (org_id, project_id) references public.projects (org_id, id) on delete cascade
);
comment on table public.agents is 'AI agents. Each belongs to one project of one organization.';
comment on column public.agents.created_by is 'Who created it; no foreign key, so history survives the user.';

create table public.agent_versions (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  version integer not null check (version > 0),
  config jsonb not null default '{}' check (jsonb_typeof(config) = 'object' and pg_column_size(config) <= 65536),
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  published_at timestamptz,
  published_by uuid,
  check ((published_at is null) = (published_by is null)),
  unique (org_id, project_id, agent_id, version),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.agent_versions is
  'Versions of an agent''s configuration. Drafts are editable; a published version is an immutable snapshot.';

-- =============================================================================================
-- Indexes
-- =============================================================================================
-- One pending invitation per address and organization (the org_id index of the table).
create unique index invitations_one_pending_per_email on public.invitations (org_id, email) where accepted_at is null;
-- A domain, once verified, belongs to one organization.
create unique index organization_domains_verified_once on public.organization_domains (domain) where verified_at is not null;

-- =============================================================================================
-- Helper functions: the request context
-- =============================================================================================
-- These run once per statement (policies wrap them as `(select private.fn())`), so they are
-- PL/pgSQL, whose plans are cached for the session (a non-inlined SQL function is re-planned on
-- every statement), and the two that every policy calls keep one generic plan instead of
-- re-planning per call. `npm run bench -- rls` measures what they cost.

-- A setting read as a uuid, or null when it is unset or not a uuid in canonical (lowercase) form,
-- the form check_request() and set_context() store.
create function private.setting_uuid(p_name text) returns uuid
language plpgsql stable
set search_path = ''
as $$
declare
  raw text := pg_catalog.current_setting(p_name, true);
begin
  if raw ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return raw::uuid;
  end if;
  return null;
end
$$;
comment on function private.setting_uuid(text) is 'A configuration setting read as a uuid; null when unset or malformed.';
revoke execute on function private.setting_uuid(text) from public, anon, authenticated;

create function private.org_role() returns public.member_role
language plpgsql stable security definer
set search_path = ''
as $$
declare
  member_role public.member_role;
begin
  select m.role into member_role
    from public.organization_members m
   where m.org_id = private.setting_uuid('gatehouse.org_id')
     and m.user_id = (select auth.uid());
  return member_role;
end
$$;
comment on function private.org_role() is
  'The caller''s role in the organization of the context; null without a context or a membership.';
revoke execute on function private.org_role() from public, anon, authenticated;

create function private.current_org_id() returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
  context text := pg_catalog.current_setting('gatehouse.org_id', true);
  member_of uuid;
begin
  -- The context setting alone proves nothing (a direct session can set it): it counts only while
  -- the caller is a member of that organization. Compared as text, so a malformed setting
  -- matches nothing instead of raising.
  select m.org_id into member_of
    from public.organization_members m
   where m.user_id = (select auth.uid()) and m.org_id::text = context;
  return member_of;
end
$$;
comment on function private.current_org_id() is
  'The organization of the current request, re-validated against the caller''s membership; null if none.';
revoke execute on function private.current_org_id() from public, anon, authenticated;
grant execute on function private.current_org_id() to authenticated;

create function private.has_org_role(p_at_least public.member_role) returns boolean
language plpgsql stable security definer
set search_path = ''
as $$
begin
  -- Enum order runs from most to least privileged, so "at least" means "sorts no later than".
  return coalesce(private.org_role() <= p_at_least, false);
end
$$;
comment on function private.has_org_role(public.member_role) is
  'True when the caller''s role in the current organization is at least the given one.';
revoke execute on function private.has_org_role(public.member_role) from public, anon, authenticated;
grant execute on function private.has_org_role(public.member_role) to authenticated;

create function private.project_ids_with_role(p_at_least public.member_role) returns uuid[]
language plpgsql stable security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  org uuid := private.setting_uuid('gatehouse.org_id');
  project uuid := private.setting_uuid('gatehouse.project_id');
  project_ids uuid[];
begin
  -- A malformed project setting narrows to nothing rather than widening to every project.
  if project is null and coalesce(pg_catalog.current_setting('gatehouse.project_id', true), '') <> '' then
    return '{}';
  end if;
  -- The effective role on a project is the higher of the organization role and the project role.
  select coalesce(pg_catalog.array_agg(p.id), '{}') into project_ids
    from public.organization_members m
    join public.projects p on p.org_id = m.org_id
    left join public.project_members pm on pm.org_id = p.org_id and pm.project_id = p.id and pm.user_id = m.user_id
   where m.org_id = org and m.user_id = (select auth.uid())
     and (project is null or p.id = project)
     and least(m.role, pm.role) <= p_at_least;
  return project_ids;
end
$$;
comment on function private.project_ids_with_role(public.member_role) is
  'Projects of the current context (just one, if X-Project-Id is set) where the caller has at least the given role.';
revoke execute on function private.project_ids_with_role(public.member_role) from public, anon, authenticated;
grant execute on function private.project_ids_with_role(public.member_role) to authenticated;

-- The project-admin write rule, one helper: the projects of the context where the caller is
-- project_admin or above. Policies write `project_id = any ((select private.admin_project_ids())::uuid[])`:
-- the `(select …)` runs it once per statement, and the cast makes `any` read an array, not a subquery.
create function private.admin_project_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
begin
  return private.project_ids_with_role('project_admin');
end
$$;
comment on function private.admin_project_ids() is
  'Projects of the current context the caller administers (project_admin or above): the write rule of project-admin policies.';
revoke execute on function private.admin_project_ids() from public, anon, authenticated;
grant execute on function private.admin_project_ids() to authenticated;

create function private.visible_org_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
declare
  org uuid := private.setting_uuid('gatehouse.org_id');
  org_ids uuid[];
begin
  select coalesce(pg_catalog.array_agg(m.org_id), '{}') into org_ids
    from public.organization_members m
   where m.user_id = (select auth.uid())
     and (org is null or m.org_id = org);
  return org_ids;
end
$$;
comment on function private.visible_org_ids() is
  'The organizations the caller may see: the current one in a context, all of theirs without one.';
revoke execute on function private.visible_org_ids() from public, anon, authenticated;
grant execute on function private.visible_org_ids() to authenticated;

create function private.set_context(p_org_id uuid, p_project_id uuid default null) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if p_org_id is null then
    raise exception 'an organization id is required' using errcode = 'invalid_parameter_value';
  end if;
  if not private.is_org_member(p_org_id) then
    raise exception 'not a member of organization %', p_org_id
      using errcode = 'insufficient_privilege', hint = 'Name an organization you belong to.';
  end if;
  if p_project_id is not null
     and not exists (select 1 from public.projects p where p.id = p_project_id and p.org_id = p_org_id) then
    raise exception 'project % is not in organization %', p_project_id, p_org_id
      using errcode = 'insufficient_privilege';
  end if;
  perform pg_catalog.set_config('gatehouse.org_id', p_org_id::text, true);
  perform pg_catalog.set_config('gatehouse.project_id', coalesce(p_project_id::text, ''), true);
end
$$;
comment on function private.set_context(uuid, uuid) is
  'Direct-session equivalent of the X-Org-Id / X-Project-Id headers: validates membership, then sets the '
  'context for the rest of the transaction.';
revoke execute on function private.set_context(uuid, uuid) from public, anon, authenticated;
grant execute on function private.set_context(uuid, uuid) to authenticated;

-- Raises a PostgREST error with an HTTP status and a stable code.
create function private.refuse_request(p_status integer, p_code text, p_message text) returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.json_build_object('code', p_code, 'message', p_message)::text,
    detail = pg_catalog.json_build_object('status', p_status, 'headers', pg_catalog.json_build_object())::text;
end
$$;
revoke execute on function private.refuse_request(integer, text, text) from public, anon, authenticated;
-- It only raises; invoker-rights triggers of the API's roles (check_context_ids) call it.
grant execute on function private.refuse_request(integer, text, text) to anon, authenticated, service_role;

-- PostgREST's db-pre-request: runs after the role and claims are set, before the query.
create function private.check_request() returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  headers jsonb := coalesce(nullif(pg_catalog.current_setting('request.headers', true), ''), '{}')::jsonb;
  raw_org text := headers ->> 'x-org-id';
  raw_project text := headers ->> 'x-project-id';
  uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  -- The role PostgREST switched to (current_user is this function's owner).
  api_role text := pg_catalog.current_setting('role', true);
begin
  if raw_org is null then
    if raw_project is not null then
      perform private.refuse_request(400, 'context_project_without_org', 'X-Project-Id needs X-Org-Id.');
    end if;
    return;
  end if;
  if raw_org !~* uuid_pattern then
    perform private.refuse_request(400, 'context_invalid_org_id', 'X-Org-Id must be a uuid.');
  end if;
  if raw_project is not null and raw_project !~* uuid_pattern then
    perform private.refuse_request(400, 'context_invalid_project_id', 'X-Project-Id must be a uuid.');
  end if;
  if api_role = 'anon' then
    perform private.refuse_request(401, 'context_requires_sign_in', 'Sign in to act in an organization.');
  end if;
  if api_role <> 'service_role' and not private.is_org_member(raw_org::uuid) then
    perform private.refuse_request(403, 'context_not_a_member', 'You are not a member of this organization.');
  end if;
  if raw_project is not null and not exists (
    select 1 from public.projects p where p.id = raw_project::uuid and p.org_id = raw_org::uuid
  ) then
    perform private.refuse_request(403, 'context_project_not_in_org', 'That project is not in this organization.');
  end if;
  -- Stored in canonical (lowercase) form, as the policies compare it with uuid::text.
  perform pg_catalog.set_config('gatehouse.org_id', raw_org::uuid::text, true);
  perform pg_catalog.set_config('gatehouse.project_id', coalesce(raw_project::uuid::text, ''), true);
end
$$;
comment on function private.check_request() is
  'PostgREST db-pre-request: validates X-Org-Id / X-Project-Id against membership and sets the context.';
revoke execute on function private.check_request() from public, anon, authenticated;
grant usage on schema private to anon;
grant execute on function private.check_request() to anon, authenticated, service_role;

create function private.email_domain_allowed(p_org_id uuid, p_email text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select not o.restrict_to_verified_domains
      or exists (
           select 1 from public.organization_domains d
            where d.org_id = o.id and d.verified_at is not null
              and d.domain = pg_catalog.lower(pg_catalog.split_part(p_email, '@', 2))
         )
    from public.organizations o
   where o.id = p_org_id
$$;
comment on function private.email_domain_allowed(uuid, text) is
  'True unless the organization restricts membership to verified domains and the email''s domain is not one.';
revoke execute on function private.email_domain_allowed(uuid, text) from public, anon, authenticated;

-- Seed 004's worker trust boundary: background work names a row, and its organization comes from
-- the row itself, never from the job's payload.
create function private.row_org_id(p_table regclass, p_id uuid) returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
declare
  found_org uuid;
begin
  if not private.is_tenant_table(p_table) then
    raise exception '% is not a tenant table', p_table using errcode = 'invalid_parameter_value';
  end if;
  execute pg_catalog.format('select org_id from %s where id = $1', p_table) into found_org using p_id;
  return found_org;
end
$$;
comment on function private.row_org_id(regclass, uuid) is
  'The org_id stored on a tenant row (null if there is no such row); what workers scope their work by.';
revoke execute on function private.row_org_id(regclass, uuid) from public, anon, authenticated;
grant usage on schema private to service_role;
grant execute on function private.row_org_id(regclass, uuid) to service_role;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- A row inserted in a context gets its organization (and project, when the context names one)
-- from the validated context, so a client need not repeat X-Org-Id in the body: org_id and
-- project_id default to the context's (so the generated API types make them optional), and a row
-- that names another organization or project than the context is refused with a stable code.
-- Without a context (direct SQL, the service role without X-Org-Id) nothing changes, and the check
-- applies to the API's roles only (definer RPCs and the owner write what they mean to).
create function private.context_org_id() returns uuid
language sql stable security definer
set search_path = ''
as $$
  select private.setting_uuid('gatehouse.org_id')
$$;
comment on function private.context_org_id() is 'The organization the request context names (its column default for org_id); null without one.';
revoke execute on function private.context_org_id() from public, anon, authenticated;
grant execute on function private.context_org_id() to authenticated, service_role;

create function private.context_project_id() returns uuid
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if coalesce(pg_catalog.current_setting('gatehouse.project_id', true), '') = '' then
    return null;
  end if;
  -- A malformed project setting narrows to nothing (the nil uuid is no project) rather than
  -- widening to every project.
  return coalesce(private.setting_uuid('gatehouse.project_id'), '00000000-0000-0000-0000-000000000000');
end
$$;
comment on function private.context_project_id() is
  'The project the request context narrows to (the read rule, and the column default for project_id); null without one.';
revoke execute on function private.context_project_id() from public, anon, authenticated;
grant execute on function private.context_project_id() to authenticated, service_role;

-- Runs as the writer (not security definer), so current_user tells a client's own write from one
-- made inside a definer RPC.
create function private.check_context_ids() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  context_org uuid := private.context_org_id();
  context_project uuid := private.context_project_id();
  ids jsonb := pg_catalog.to_jsonb(new);
begin
  -- The API's roles only: a definer RPC (running as its owner) may write rows of another
  -- organization on purpose (create_organization), and so may direct SQL as the owner.
  if current_user not in ('anon', 'authenticated', 'service_role') then
    return new;
  end if;
  if context_org is not null and (ids ->> 'org_id')::uuid is distinct from context_org then
    perform private.refuse_request(400, 'context_org_mismatch',
      pg_catalog.format('The row names organization %s, but the context (X-Org-Id) is %s: leave org_id out.', ids ->> 'org_id', context_org));
  end if;
  if context_project is not null and ids ? 'project_id' and (ids ->> 'project_id')::uuid is distinct from context_project then
    perform private.refuse_request(400, 'context_project_mismatch',
      pg_catalog.format('The row names project %s, but the context (X-Project-Id) is %s.', ids ->> 'project_id', context_project));
  end if;
  return new;
end
$$;
comment on function private.check_context_ids() is 'Refuses an inserted row whose org_id (or project_id) is not the request context''s.';
revoke execute on function private.check_context_ids() from public, anon, authenticated;

-- Makes a tenant table take org_id (and project_id) from the context: the column defaults and the
-- context_ids trigger. One line per tenant table, beside its other guards.
create function private.take_ids_from_context(p_table regclass) returns void
language plpgsql
set search_path = ''
as $$
begin
  execute pg_catalog.format('alter table %s alter column org_id set default private.context_org_id()', p_table);
  if exists (select 1 from pg_catalog.pg_attribute a where a.attrelid = p_table and a.attname = 'project_id' and not a.attisdropped) then
    execute pg_catalog.format('alter table %s alter column project_id set default private.context_project_id()', p_table);
  end if;
  execute pg_catalog.format(
    'create trigger context_ids before insert on %s for each row execute function private.check_context_ids()', p_table);
end
$$;
comment on function private.take_ids_from_context(regclass) is
  'Gives a tenant table context defaults for org_id and project_id, and the trigger that refuses other ids.';
revoke execute on function private.take_ids_from_context(regclass) from public, anon, authenticated;

-- Views PostgreSQL can't update (a union, an aggregate) answer a write with "cannot insert into
-- view" (SQLSTATE 55000) before any privilege check, which PostgREST reports as a 500. With this
-- INSTEAD OF trigger on every exposed view, a client's write meets the privilege check (no client
-- role may write a view: PostgREST's 403), and a role that may write gets a 405 read_only_view.
create function private.refuse_view_write() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform private.refuse_request(405, 'read_only_view', pg_catalog.format('%I.%I is read-only.', tg_table_schema, tg_table_name));
  return null;
end
$$;
comment on function private.refuse_view_write() is 'Refuses a write to a read-only view with a 405 read_only_view.';
revoke execute on function private.refuse_view_write() from public, anon, authenticated;

-- Statement-level guard on every tenant table: a signed-in caller without a valid context gets a
-- clear error instead of a silent no-op (or a generic RLS violation).
create function private.require_org_context() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if current_user in ('anon', 'authenticated') and private.current_org_id() is null then
    raise exception 'no organization context: % on %.% needs X-Org-Id (or private.set_context())',
                    pg_catalog.lower(tg_op), tg_table_schema, tg_table_name
      using errcode = 'insufficient_privilege',
            hint = 'Send the X-Org-Id header of an organization you belong to.';
  end if;
  return null;
end
$$;
comment on function private.require_org_context() is 'Refuses writes to tenant tables from a caller without a valid context.';
revoke execute on function private.require_org_context() from public, anon, authenticated;

create trigger require_org_context before update on public.organizations
  for each statement execute function private.require_org_context();
create trigger require_org_context before insert or update or delete on public.organization_members
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.organization_members');
create trigger require_org_context before insert or update or delete on public.projects
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.projects');
create trigger require_org_context before insert or update or delete on public.project_members
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.project_members');
create trigger require_org_context before insert or update or delete on public.invitations
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.invitations');
create trigger require_org_context before insert or update or delete on public.organization_domains
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.organization_domains');
create trigger require_org_context before insert or update or delete on public.agents
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.agents');
create trigger require_org_context before insert or update or delete on public.agent_versions
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.agent_versions');

-- Domain verification (seed 003): enforced for every path, including the service role.
create function private.enforce_member_domain() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  member_email text := (select u.email from auth.users u where u.id = new.user_id);
begin
  if not coalesce(private.email_domain_allowed(new.org_id, member_email), false) then
    raise exception 'organization % only admits verified email domains; % is not one',
                    new.org_id, pg_catalog.split_part(member_email, '@', 2)
      using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;
revoke execute on function private.enforce_member_domain() from public, anon, authenticated;
create trigger enforce_member_domain before insert on public.organization_members
  for each row execute function private.enforce_member_domain();

create function private.enforce_invitation_domain() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if not coalesce(private.email_domain_allowed(new.org_id, new.email), false) then
    raise exception 'organization % only admits verified email domains; % is not one',
                    new.org_id, pg_catalog.split_part(new.email, '@', 2)
      using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;
revoke execute on function private.enforce_invitation_domain() from public, anon, authenticated;
create trigger enforce_invitation_domain before insert on public.invitations
  for each row execute function private.enforce_invitation_domain();

create function private.require_verified_domain_to_restrict() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.restrict_to_verified_domains and not old.restrict_to_verified_domains and not exists (
    select 1 from public.organization_domains d where d.org_id = new.id and d.verified_at is not null
  ) then
    raise exception 'verify a domain before restricting organization % to verified domains', new.id
      using errcode = 'check_violation';
  end if;
  return new;
end
$$;
revoke execute on function private.require_verified_domain_to_restrict() from public, anon, authenticated;
create trigger require_verified_domain_to_restrict before update of restrict_to_verified_domains on public.organizations
  for each row execute function private.require_verified_domain_to_restrict();

-- An organization always keeps a tenant admin.
create function private.keep_a_tenant_admin() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if old.role = 'tenant_admin'
     and (tg_op = 'DELETE' or new.role <> 'tenant_admin')
     and exists (select 1 from public.organizations o where o.id = old.org_id)
     and not exists (
       select 1 from public.organization_members m
        where m.org_id = old.org_id and m.role = 'tenant_admin' and m.user_id <> old.user_id
     ) then
    raise exception 'organization % must keep at least one tenant_admin', old.org_id
      using errcode = 'check_violation';
  end if;
  return coalesce(new, old);
end
$$;
revoke execute on function private.keep_a_tenant_admin() from public, anon, authenticated;
create trigger keep_a_tenant_admin before update of role or delete on public.organization_members
  for each row execute function private.keep_a_tenant_admin();

-- Versions are numbered per agent by the database, never by the client.
create function private.number_agent_version() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  -- Serialize numbering per agent; the unique key is the backstop.
  perform 1 from public.agents a where a.id = new.agent_id for update;
  new.version := coalesce((select max(v.version) from public.agent_versions v where v.agent_id = new.agent_id), 0) + 1;
  new.published_at := null;
  new.published_by := null;
  return new;
end
$$;
revoke execute on function private.number_agent_version() from public, anon, authenticated;
create trigger number_agent_version before insert on public.agent_versions
  for each row execute function private.number_agent_version();

-- Seed 003: published versions are immutable snapshots. This holds for every role, the service
-- role and the table owner included.
create function private.freeze_published_versions() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.published_at is not null then
    raise exception 'agent version % (v%) is published and immutable', old.id, old.version
      using errcode = 'check_violation', hint = 'Create a new version instead.';
  end if;
  return coalesce(new, old);
end
$$;
revoke execute on function private.freeze_published_versions() from public, anon, authenticated;
create trigger freeze_published_versions before update or delete on public.agent_versions
  for each row execute function private.freeze_published_versions();
alter table public.agent_versions enable always trigger freeze_published_versions;

-- =============================================================================================
-- RPCs
-- =============================================================================================
create function public.create_organization(p_name text, p_slug text) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  new_org uuid;
begin
  if (select auth.uid()) is null then
    raise exception 'sign in to create an organization' using errcode = 'insufficient_privilege';
  end if;
  insert into public.organizations (name, slug) values (p_name, p_slug) returning id into new_org;
  insert into public.organization_members (org_id, user_id, role) values (new_org, (select auth.uid()), 'tenant_admin');
  return new_org;
end
$$;
comment on function public.create_organization(text, text) is 'Creates an organization with the caller as its tenant admin.';
revoke execute on function public.create_organization(text, text) from public, anon, authenticated;
grant execute on function public.create_organization(text, text) to authenticated;

create function public.create_invitation(p_email text, p_role public.member_role) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  token text := pg_catalog.encode(extensions.gen_random_bytes(32), 'hex');
begin
  if org is null then
    raise exception 'no organization context: send X-Org-Id' using errcode = 'insufficient_privilege';
  end if;
  if not private.has_org_role('tenant_admin') then
    raise exception 'only a tenant_admin can invite members' using errcode = 'insufficient_privilege';
  end if;
  -- Re-inviting an address replaces its pending invitation (and so revokes the old token).
  delete from public.invitations i where i.org_id = org and i.email = pg_catalog.lower(p_email) and i.accepted_at is null;
  insert into public.invitations (org_id, email, role, token_hash, invited_by)
  values (org, pg_catalog.lower(p_email), p_role, extensions.digest(token, 'sha256'), (select auth.uid()));
  return token;
end
$$;
comment on function public.create_invitation(text, public.member_role) is
  'Invites an email address to the current organization (tenant_admin only); returns the token once.';
revoke execute on function public.create_invitation(text, public.member_role) from public, anon, authenticated;
grant execute on function public.create_invitation(text, public.member_role) to authenticated;

create function public.accept_invitation(p_token text) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  invite public.invitations%rowtype;
  caller auth.users%rowtype;
begin
  select * into caller from auth.users u where u.id = (select auth.uid());
  if caller.id is null then
    raise exception 'sign in to accept an invitation' using errcode = 'insufficient_privilege';
  end if;
  select * into invite from public.invitations i
   where i.token_hash = extensions.digest(coalesce(p_token, ''), 'sha256')
   for update;
  -- One answer for unknown, used and foreign tokens, so tokens can't be probed.
  if invite.id is null or invite.accepted_at is not null or invite.email <> pg_catalog.lower(caller.email) then
    perform private.refuse_request(404, 'invitation_not_found', 'No invitation with that token is addressed to you.');
  end if;
  if caller.email_confirmed_at is null then
    raise exception 'confirm your email address before accepting' using errcode = 'insufficient_privilege';
  end if;
  if invite.expires_at <= pg_catalog.now() then
    raise exception 'invitation expired at %', invite.expires_at using errcode = 'invalid_parameter_value';
  end if;
  insert into public.organization_members (org_id, user_id, role)
  values (invite.org_id, caller.id, invite.role)
  on conflict (org_id, user_id) do nothing;
  update public.invitations set accepted_at = pg_catalog.now(), accepted_by = caller.id where id = invite.id;
  return invite.org_id;
end
$$;
comment on function public.accept_invitation(text) is
  'Accepts an invitation addressed to the caller''s confirmed email; returns the organization id.';
revoke execute on function public.accept_invitation(text) from public, anon, authenticated;
grant execute on function public.accept_invitation(text) to authenticated;

create function public.leave_organization() returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
begin
  if org is null then
    raise exception 'no organization context: send X-Org-Id of the organization to leave'
      using errcode = 'insufficient_privilege';
  end if;
  delete from public.organization_members m where m.org_id = org and m.user_id = (select auth.uid());
end
$$;
comment on function public.leave_organization() is
  'Removes the caller from the current organization (refused for its last tenant_admin).';
revoke execute on function public.leave_organization() from public, anon, authenticated;
grant execute on function public.leave_organization() to authenticated;

create function public.publish_agent_version(p_version_id uuid) returns public.agent_versions
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  published public.agent_versions;
begin
  update public.agent_versions v
     set published_at = pg_catalog.now(), published_by = (select auth.uid())
   where v.id = p_version_id
     and v.org_id = private.current_org_id()
     and v.project_id = any (private.admin_project_ids())
     and v.published_at is null
  returning * into published;
  if published.id is null then
    raise exception 'no draft version % that you can publish in this context', p_version_id
      using errcode = 'insufficient_privilege', hint = 'Publishing needs project_admin on the agent''s project.';
  end if;
  return published;
end
$$;
comment on function public.publish_agent_version(uuid) is
  'Publishes a draft agent version (project_admin or above); it is immutable from then on.';
revoke execute on function public.publish_agent_version(uuid) from public, anon, authenticated;
grant execute on function public.publish_agent_version(uuid) to authenticated;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
-- Reads of project-scoped rows need no role lookup: every member's organization role is at least
-- project_viewer on every project of the organization, so `org_id = current_org_id()` decides, and
-- X-Project-Id (already validated) narrows to one project: `project_id = coalesce((select
-- private.context_project_id()), project_id)`, the one read rule, evaluated once per statement. That keeps a read at one membership lookup per statement
-- (`npm run bench -- rls`). Writes check the role on each project.
-- organizations: without a context, members list all of theirs (the organization picker); in a
-- context, only the current one. Renamed and configured by its tenant admins, in context.
drop policy "members read their organizations" on public.organizations;
create policy "members read their organizations" on public.organizations
  for select to authenticated
  using (id = any ((select private.visible_org_ids())::uuid[]));
create policy "tenant admins update their organization" on public.organizations
  for update to authenticated
  using (id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (id = (select private.current_org_id()));

-- organization_members: read in context; roles changed and members removed by tenant admins.
-- Members join through accept_invitation and leave through leave_organization only.
drop policy "members read their organization's members" on public.organization_members;
drop policy "memberships are not changed directly" on public.organization_members;
drop policy "memberships are not removed directly" on public.organization_members;
create policy "members read their organization's members" on public.organization_members
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "tenant admins change member roles" on public.organization_members
  for update to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (org_id = (select private.current_org_id()));
create policy "tenant admins remove members" on public.organization_members
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));

alter table public.projects enable row level security;
alter table public.projects force row level security;
create policy "members read their organization's projects" on public.projects
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and id = coalesce((select private.context_project_id()), id));
create policy "tenant admins create projects" on public.projects
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "project admins update their projects" on public.projects
  for update to authenticated
  using (org_id = (select private.current_org_id()) and id = any ((select private.admin_project_ids())::uuid[]))
  with check (org_id = (select private.current_org_id()));
create policy "tenant admins delete projects" on public.projects
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));

alter table public.project_members enable row level security;
alter table public.project_members force row level security;
create policy "members read project memberships" on public.project_members
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "project admins add project members" on public.project_members
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins change project roles" on public.project_members
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins remove project members" on public.project_members
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));

alter table public.invitations enable row level security;
alter table public.invitations force row level security;
create policy "tenant admins read invitations" on public.invitations
  for select to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "invitations are created through create_invitation" on public.invitations
  for insert to authenticated
  with check (false);
create policy "invitations are accepted through accept_invitation" on public.invitations
  for update to authenticated
  using (false);
create policy "tenant admins revoke invitations" on public.invitations
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));

alter table public.organization_domains enable row level security;
alter table public.organization_domains force row level security;
create policy "members read their organization's domains" on public.organization_domains
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "tenant admins claim domains" on public.organization_domains
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "domains are verified by the server" on public.organization_domains
  for update to authenticated
  using (false);
create policy "tenant admins release domains" on public.organization_domains
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));

alter table public.agents enable row level security;
alter table public.agents force row level security;
create policy "members read their projects' agents" on public.agents
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "contributors create agents" on public.agents
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));
create policy "contributors update agents" on public.agents
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));
create policy "project admins delete agents" on public.agents
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));

alter table public.agent_versions enable row level security;
alter table public.agent_versions force row level security;
create policy "members read their projects' agent versions" on public.agent_versions
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "contributors draft agent versions" on public.agent_versions
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));
create policy "contributors edit draft agent versions" on public.agent_versions
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));
create policy "contributors discard draft agent versions" on public.agent_versions
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.projects, public.project_members, public.invitations, public.organization_domains,
              public.agents, public.agent_versions
  from anon, authenticated;
grant update (name, restrict_to_verified_domains) on public.organizations to authenticated;
grant update (role), delete on public.organization_members to authenticated;
grant select, delete, insert (org_id, name, slug), update (name, slug) on public.projects to authenticated;
grant select, delete, insert (org_id, project_id, user_id, role), update (role) on public.project_members to authenticated;
grant select (id, org_id, email, role, invited_by, created_at, expires_at, accepted_at, accepted_by), delete
  on public.invitations to authenticated;
grant select, delete, insert (org_id, domain) on public.organization_domains to authenticated;
grant select, delete, insert (org_id, project_id, name, description), update (name, description) on public.agents to authenticated;
grant select, delete, insert (org_id, project_id, agent_id, config), update (config) on public.agent_versions to authenticated;
grant select, insert, update, delete on public.projects, public.project_members, public.invitations,
  public.organization_domains, public.agents, public.agent_versions to service_role;

-- PostgREST runs the context check before every request (hosted and local alike).
alter role authenticator set pgrst.db_pre_request to 'private.check_request';
notify pgrst, 'reload config';
