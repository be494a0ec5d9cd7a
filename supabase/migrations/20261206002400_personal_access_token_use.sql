-- Using a personal access token (issue 26, part 2; the tokens themselves are …002300).
--
-- A program presents `Authorization: Bearer gtp_…`. The `tokens` function (or the gateway, which
-- asks it) checks the checksum without a lookup, then private.exchange_personal_access_token finds
-- the token by its SHA-256 and answers what it acts for; the function signs a 5-minute access token
-- (role `authenticated`, sub = the owner) with one more claim, `pat`:
--
--   "pat": { "id": <token id>, "org_id": …, "project_id": … or null, "scopes": [ … ] }
--
-- From then on the database treats the request as the owner's, narrowed three ways, each held here:
--   1. Liveness, on every request: private.session_refusal checks the token row itself (revoked,
--      expired, or claims that disagree with the row are refused with 401), so revoking a token, or
--      removing or demoting its owner (which revokes it in the same transaction), stops it at once,
--      whatever access token it was exchanged for.
--   2. The owner's role, capped: the context helpers every policy and RPC uses (org_role,
--      visible_org_ids, is_org_member, project_ids_with_role) see only the token's organization and
--      project, and a role no higher than the token's scopes need; the context is the token's
--      organization (check_request sets it, and set_context takes no other, through
--      is_org_member). A token can never do more than both its scopes and its owner's current role
--      allow.
--   3. Scopes, through one helper, private.token_allows(scope): PostgREST's pre-request hook lets a
--      token reach only the routes a scope opens (private.token_route_scope); every tenant table has
--      four restrictive policies (a token reads a table only with the scope that names it, within
--      its project, and writes none directly); and the writes a scope allows check it again where
--      they happen (a run started needs runs:write, an action proposed tools:call, a run token
--      minted runs:write).

-- =============================================================================================
-- Tables
-- =============================================================================================
-- When the token's expiry was recorded in the audit chain (by its first refused use, or the sweep).
alter table public.personal_access_tokens add column expiry_recorded_at timestamptz;

-- Using a token moves last_used_at (and expiring it, expiry_recorded_at): neither is an audited
-- change of the row. First use and expiry are audit entries of their own.
drop trigger audit on public.personal_access_tokens;
create trigger audit after insert or delete on public.personal_access_tokens
  for each row execute function audit.record_change('personal_access_token', 'token_sha256');
create trigger audit_changes after update on public.personal_access_tokens
  for each row
  when ((pg_catalog.to_jsonb(old) - '{last_used_at,expiry_recorded_at}'::text[])
        is distinct from (pg_catalog.to_jsonb(new) - '{last_used_at,expiry_recorded_at}'::text[]))
  execute function audit.record_change('personal_access_token', 'token_sha256', 'last_used_at', 'expiry_recorded_at');

-- =============================================================================================
-- Helper functions: the token a request acts with
-- =============================================================================================
-- The request's `pat` claim, or null when no personal access token is behind it.
create function private.request_token() returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  claims text := pg_catalog.current_setting('request.jwt.claims', true);
begin
  -- Most requests are no token's: a string search spares them parsing the claims (this runs in
  -- the policies of every tenant table).
  if claims is null or pg_catalog.strpos(claims, '"pat"') = 0 then
    return null;
  end if;
  return nullif(claims::jsonb -> 'pat', 'null'::jsonb);
end
$$;
comment on function private.request_token() is 'The request''s personal access token claim ({id, org_id, project_id, scopes}), or null.';
revoke execute on function private.request_token() from public, anon, authenticated;
grant execute on function private.request_token() to authenticated, service_role;

-- THE scope check: true for a request without a token; for a token's, true only when it holds
-- the scope. token_allows(null) is "no token": what no scope opens.
create function private.token_allows(p_scope text) returns boolean
language sql stable
set search_path = ''
as $$
  select case when t is null then true else coalesce((t -> 'scopes') ? p_scope, false) end
    from (select private.request_token() as t) x
$$;
comment on function private.token_allows(text) is
  'The one scope check: true without a personal access token; with one, whether it holds the scope (never for null).';
revoke execute on function private.token_allows(text) from public, anon, authenticated;
grant execute on function private.token_allows(text) to authenticated, service_role;

-- The organization a token is bound to (null without a token).
create function private.token_org_id() returns uuid
language sql stable
set search_path = ''
as $$
  select (private.request_token() ->> 'org_id')::uuid
$$;
revoke execute on function private.token_org_id() from public, anon, authenticated;
grant execute on function private.token_org_id() to authenticated;


-- For the read policies of tables with a project, in one value: null when the request is no
-- token's, or a token with the scope and no project (no narrowing); the token's project when it is
-- bound to one; none ('{}') when it lacks the scope.
create function private.token_read_projects(p_scope text) returns uuid[]
language plpgsql stable
set search_path = ''
as $$
declare
  token jsonb;
begin
  -- The string search first, here too: this runs once a statement on every tenant table.
  if pg_catalog.strpos(coalesce(pg_catalog.current_setting('request.jwt.claims', true), ''), '"pat"') = 0 then
    return null;
  end if;
  token := private.request_token();
  if token is null then
    return null;
  end if;
  if not coalesce((token -> 'scopes') ? p_scope, false) then
    return '{}';
  end if;
  if token ->> 'project_id' is null then
    return null;
  end if;
  return array[(token ->> 'project_id')::uuid];
end
$$;
comment on function private.token_read_projects(text) is
  'The projects a request''s token may read with a scope: null for no narrowing (no token, or one of every project), else its project or none.';
revoke execute on function private.token_read_projects(text) from public, anon, authenticated;
grant execute on function private.token_read_projects(text) to authenticated;

-- The highest role a token's scopes need (its ceiling): never above project_contributor. Null
-- without a token. Roles sort most privileged first, so the ceiling is the least of the needs.
create function private.token_role_ceiling() returns public.member_role
language sql stable
set search_path = ''
as $$
  select pg_catalog.min(private.pat_scope_role(s))
    from pg_catalog.jsonb_array_elements_text(private.request_token() -> 'scopes') s
$$;
comment on function private.token_role_ceiling() is
  'The highest role a request''s personal access token may act with (what its scopes need), or null without one.';
revoke execute on function private.token_role_ceiling() from public, anon, authenticated;
grant execute on function private.token_role_ceiling() to authenticated;

-- The scope a PostgREST route needs from a token, or null when no scope opens it. The routes a
-- token may use at all are this list.
create function private.token_route_scope(p_method text, p_path text) returns text
language sql immutable
set search_path = ''
as $$
  select case
    when p_method in ('GET', 'HEAD') and p_path in ('/agent_runs', '/agent_run_events', '/agent_run_messages', '/action_requests', '/pending_approvals')
      then 'runs:read'
    when p_method = 'POST' and p_path in ('/rpc/start_agent_run', '/rpc/mint_run_token')
      then 'runs:write'
    when p_method in ('GET', 'HEAD') and p_path in ('/agents', '/agent_versions', '/agent_tools', '/agent_schedules')
      then 'agents:read'
    when p_method in ('GET', 'HEAD') and p_path = '/audit_log'
      then 'audit:read'
    when p_method in ('GET', 'POST') and p_path in ('/rpc/verify_audit_chain', '/rpc/latest_audit_checkpoint', '/rpc/audit_signing_keys')
      then 'audit:read'
    when p_method = 'POST' and p_path = '/rpc/propose_action'
      then 'tools:call'
  end
$$;
comment on function private.token_route_scope(text, text) is
  'The scope a personal access token needs for a REST route; null: no token may use it.';
revoke execute on function private.token_route_scope(text, text) from public, anon, authenticated;

-- The scope a token needs to read a table (null: no token reads it).
create function private.token_read_scope(p_table regclass) returns text
language sql stable
set search_path = ''
as $$
  select case p_table::text
    when 'public.agent_runs' then 'runs:read'
    when 'public.agent_run_events' then 'runs:read'
    when 'public.agent_run_messages' then 'runs:read'
    when 'public.action_requests' then 'runs:read'
    when 'public.approval_decisions' then 'runs:read'
    when 'public.agents' then 'agents:read'
    when 'public.agent_versions' then 'agents:read'
    when 'public.agent_tools' then 'agents:read'
    when 'public.agent_schedules' then 'agents:read'
  end
$$;
comment on function private.token_read_scope(regclass) is 'The personal access token scope that reads a tenant table; null: none does.';
revoke execute on function private.token_read_scope(regclass) from public, anon, authenticated;

-- Puts a table behind the token rules: four restrictive policies (the posture suite wants one
-- command per policy). Reading needs the table's scope and, for a project-bound token and a table
-- with a project, that project; a token writes no table directly (the RPCs a scope opens write for
-- it, and check the scope where they write).
create function private.guard_from_tokens(p_table regclass) returns void
language plpgsql
set search_path = ''
as $$
declare
  scope text := private.token_read_scope(p_table);
  has_project boolean := exists (select 1 from pg_catalog.pg_attribute a
                                  where a.attrelid = p_table and a.attname = 'project_id' and a.attnum > 0 and not a.attisdropped);
  -- Most requests are no token's: built-ins alone tell them apart, in an initplan, so that their
  -- statements call no function for these policies (npm run bench -- rls). The helpers then decide
  -- for a token's.
  -- (The setting also in a select of its own, as Supabase's linter reads it: auth_rls_initplan.)
  no_token constant text := $q$(select pg_catalog.strpos(coalesce((select pg_catalog.current_setting('request.jwt.claims', true)), ''), '"pat"') = 0)$q$;
  read_rule text := pg_catalog.format('%s or (select private.token_allows(%L))', no_token, scope);
  write_rule text := pg_catalog.format('%s or (select private.token_allows(null))', no_token);
begin
  if scope is not null and has_project then
    read_rule := pg_catalog.format('%s or coalesce(project_id = any ((select private.token_read_projects(%L))::uuid[]), true)', no_token, scope);
  end if;
  execute pg_catalog.format('create policy "tokens read with their scope" on %s as restrictive for select to authenticated using (%s)',
                            p_table, read_rule);
  execute pg_catalog.format('create policy "tokens insert nothing directly" on %s as restrictive for insert to authenticated '
                            'with check (%s)', p_table, write_rule);
  execute pg_catalog.format('create policy "tokens update nothing directly" on %s as restrictive for update to authenticated '
                            'using (%s)', p_table, write_rule);
  execute pg_catalog.format('create policy "tokens delete nothing directly" on %s as restrictive for delete to authenticated '
                            'using (%s)', p_table, write_rule);
end
$$;
comment on function private.guard_from_tokens(regclass) is
  'The personal access token rules of a table: read with its scope (and project), write nothing directly.';
revoke execute on function private.guard_from_tokens(regclass) from public, anon, authenticated;

-- A tenant table now gets the token rules too.
create or replace function private.make_tenant_table(p_table regclass, p_subject text, p_unrecorded text[] default '{}')
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute pg_catalog.format('alter table %s enable row level security', p_table);
  execute pg_catalog.format('alter table %s force row level security', p_table);
  execute pg_catalog.format('create trigger require_org_context before insert or update or delete on %s '
                            'for each statement execute function private.require_org_context()', p_table);
  perform private.take_ids_from_context(p_table);
  execute pg_catalog.format('create trigger audit after insert or update or delete on %s '
                            'for each row execute function audit.record_change(%s)', p_table,
                            (select pg_catalog.string_agg(pg_catalog.quote_literal(a), ', ' order by o)
                               from pg_catalog.unnest(array[p_subject] || p_unrecorded) with ordinality as x (a, o)));
  perform private.guard_with_step_up(p_table);
  perform private.guard_from_tokens(p_table);
end
$$;
comment on function private.make_tenant_table(regclass, text, text[]) is
  'Makes a table a tenant table: RLS enabled and forced, the context guard, ids from the context, audited changes, '
  'the step-up guard (unless exempt), the personal access token rules.';

-- The migration guard: a tenant table without the token rules is a gap, as one without RLS is.
create or replace function private.tenant_table_gap(p_relid oid) returns text
language plpgsql stable
set search_path = ''
as $$
declare
  rel pg_catalog.pg_class%rowtype;
  missing text[];
begin
  select * into rel from pg_catalog.pg_class where oid = p_relid;
  if not found or not private.is_tenant_table(p_relid) then
    return null;
  end if;
  if not rel.relrowsecurity then
    return 'row-level security is disabled';
  end if;
  if not rel.relforcerowsecurity then
    return 'row-level security is not forced';
  end if;
  select array_agg(cmd.name order by cmd.ord) into missing
    from (values (1, 'SELECT', 'r'), (2, 'INSERT', 'a'), (3, 'UPDATE', 'w'), (4, 'DELETE', 'd')) as cmd (ord, name, code)
   where not exists (
     select 1 from pg_catalog.pg_policy p where p.polrelid = p_relid and p.polcmd in (cmd.code, '*') and p.polpermissive
   );
  if missing is not null then
    return 'it has no policy for ' || pg_catalog.array_to_string(missing, ', ');
  end if;
  select array_agg(cmd.name order by cmd.ord) into missing
    from (values (1, 'SELECT', 'r'), (2, 'INSERT', 'a'), (3, 'UPDATE', 'w'), (4, 'DELETE', 'd')) as cmd (ord, name, code)
   where not exists (
     select 1 from pg_catalog.pg_policy p
      where p.polrelid = p_relid and p.polcmd = cmd.code and not p.polpermissive and p.polname like 'tokens %'
   );
  if missing is not null then
    return 'personal access tokens are not held to their scopes for ' || pg_catalog.array_to_string(missing, ', ')
        || ' (select private.guard_from_tokens(table), or make it with private.make_tenant_table)';
  end if;
  return null;
end
$$;

-- =============================================================================================
-- Helper functions: the request context, narrowed for a token
-- =============================================================================================
create or replace function private.is_org_member(p_org_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.organization_members m
     where m.org_id = p_org_id and m.user_id = (select auth.uid())
       and (private.token_org_id() is null or m.org_id = private.token_org_id())
  )
$$;

create or replace function private.org_role() returns public.member_role
language plpgsql stable security definer
set search_path = ''
as $$
declare
  member_role public.member_role;
  token jsonb := case when pg_catalog.strpos(coalesce(pg_catalog.current_setting('request.jwt.claims', true), ''), '"pat"') > 0
                      then private.request_token() end;
begin
  select m.role into member_role
    from public.organization_members m
   where m.org_id = private.setting_uuid('gatehouse.org_id')
     and m.user_id = (select auth.uid());
  if token is null then
    return member_role;
  end if;
  -- A token's role is its owner's, in its organization only, no higher than its scopes need
  -- (greatest: the less privileged).
  if private.setting_uuid('gatehouse.org_id') is distinct from (token ->> 'org_id')::uuid then
    return null;
  end if;
  return greatest(member_role, private.token_role_ceiling());
end
$$;

create or replace function private.project_ids_with_role(p_at_least public.member_role) returns uuid[]
language plpgsql stable security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  org uuid := private.setting_uuid('gatehouse.org_id');
  project uuid := private.setting_uuid('gatehouse.project_id');
  token jsonb := case when pg_catalog.strpos(coalesce(pg_catalog.current_setting('request.jwt.claims', true), ''), '"pat"') > 0
                      then private.request_token() end;
  token_org uuid := (token ->> 'org_id')::uuid;
  token_project uuid := (token ->> 'project_id')::uuid;
  ceiling public.member_role := case when token is not null then private.token_role_ceiling() end;
  project_ids uuid[];
begin
  -- A malformed project setting narrows to nothing rather than widening to every project.
  if project is null and coalesce(pg_catalog.current_setting('gatehouse.project_id', true), '') <> '' then
    return '{}';
  end if;
  -- The effective role on a project is the higher of the organization role and the project role;
  -- for a token, no higher than its scopes need, and only in its organization and project.
  select coalesce(pg_catalog.array_agg(p.id), '{}') into project_ids
    from public.organization_members m
    join public.projects p on p.org_id = m.org_id
    left join public.project_members pm on pm.org_id = p.org_id and pm.project_id = p.id and pm.user_id = m.user_id
   where m.org_id = org and m.user_id = (select auth.uid())
     and (project is null or p.id = project)
     and (token is null or (m.org_id = token_org and (token_project is null or p.id = token_project)))
     and greatest(least(m.role, pm.role), ceiling) <= p_at_least;
  return project_ids;
end
$$;

create or replace function private.visible_org_ids() returns uuid[]
language plpgsql stable security definer
set search_path = ''
as $$
declare
  org uuid := private.setting_uuid('gatehouse.org_id');
  token_org uuid := private.token_org_id();
  org_ids uuid[];
begin
  select coalesce(pg_catalog.array_agg(m.org_id), '{}') into org_ids
    from public.organization_members m
   where m.user_id = (select auth.uid())
     and (org is null or m.org_id = org)
     and (token_org is null or m.org_id = token_org);
  return org_ids;
end
$$;

-- =============================================================================================
-- Helper functions: liveness
-- =============================================================================================
-- Why the request's user token no longer counts, or null when it does (or is no user's). A
-- personal access token's access token counts while the token row does: not revoked, not expired,
-- and saying what the row says.
create or replace function private.session_refusal() returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  claims jsonb := coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
  uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  usr auth.users;
  pat public.personal_access_tokens;
begin
  if claims ->> 'sub' is null then
    return null;
  end if;
  if claims ->> 'sub' !~* uuid_pattern then
    return 'session_invalid';
  end if;
  if claims ? 'pat' then
    if coalesce(claims -> 'pat' ->> 'id', '') !~* uuid_pattern then
      return 'token_invalid';
    end if;
    select t.* into pat from public.personal_access_tokens t where t.id = (claims -> 'pat' ->> 'id')::uuid;
    if pat.id is null or pat.user_id::text <> claims ->> 'sub' or pat.org_id::text is distinct from claims -> 'pat' ->> 'org_id'
       or pat.project_id::text is distinct from claims -> 'pat' ->> 'project_id'
       or pg_catalog.to_jsonb(pat.scopes) is distinct from claims -> 'pat' -> 'scopes' then
      return 'token_invalid';
    end if;
    if pat.revoked_at is not null then
      return 'token_revoked';
    end if;
    if pat.expires_at <= pg_catalog.now() then
      return 'token_expired';
    end if;
  elsif coalesce(claims ->> 'session_id', '') !~* uuid_pattern then
    return 'session_invalid';
  end if;
  select u.* into usr from auth.users u where u.id = (claims ->> 'sub')::uuid;
  if usr.id is null or usr.deleted_at is not null or usr.banned_until > pg_catalog.now() then
    return 'user_disabled';
  end if;
  if pat.id is null and not exists (select 1 from auth.sessions s
                  where s.id = (claims ->> 'session_id')::uuid and s.user_id = usr.id
                    and (s.not_after is null or s.not_after > pg_catalog.now())) then
    return 'session_revoked';
  end if;
  return null;
end
$$;

create or replace function private.assert_session() returns void
language plpgsql stable security definer
set search_path = ''
as $$
declare
  refusal text := private.session_refusal();
begin
  if refusal = 'session_invalid' then
    perform private.refuse_request(401, 'session_invalid', 'The token names no session; sign in again.');
  elsif refusal = 'user_disabled' then
    perform private.refuse_request(401, 'user_disabled', 'This account is disabled.');
  elsif refusal = 'session_revoked' then
    perform private.refuse_request(401, 'session_revoked', 'This session has ended (signed out, timed out or revoked); sign in again.');
  elsif refusal = 'token_invalid' then
    perform private.refuse_request(401, 'token_invalid', 'The personal access token is not valid.');
  elsif refusal = 'token_revoked' then
    perform private.refuse_request(401, 'token_revoked', 'The personal access token has been revoked.');
  elsif refusal = 'token_expired' then
    perform private.refuse_request(401, 'token_expired', 'The personal access token has expired.');
  end if;
end
$$;

-- PostgREST's per-request check: the session's (or token's), then a token's route and context,
-- then the context.
create or replace function private.check_request() returns void
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
  token jsonb := private.request_token();
  route_scope text;
begin
  -- A user's token counts only while its session and its user do (private.assert_session); a
  -- personal access token's, while the token does.
  perform private.assert_session();
  if token is not null then
    route_scope := private.token_route_scope(pg_catalog.current_setting('request.method', true),
                                             pg_catalog.current_setting('request.path', true));
    if route_scope is null then
      perform private.refuse_request(403, 'token_route_not_allowed',
        'A personal access token cannot use this route; see docs/tokens.md for the routes each scope opens.');
    end if;
    if not private.token_allows(route_scope) then
      perform private.refuse_request(403, 'token_scope', pg_catalog.format('This needs a token with the %s scope.', route_scope));
    end if;
    -- The token's organization (and project) is the context; naming another is refused.
    if raw_org is null then
      raw_org := token ->> 'org_id';
    elsif raw_org !~* uuid_pattern or raw_org::uuid <> (token ->> 'org_id')::uuid then
      perform private.refuse_request(403, 'token_org_mismatch', 'The token is bound to another organization than X-Org-Id names.');
    end if;
    if token ->> 'project_id' is not null then
      if raw_project is null then
        raw_project := token ->> 'project_id';
      elsif raw_project !~* uuid_pattern or raw_project::uuid <> (token ->> 'project_id')::uuid then
        perform private.refuse_request(403, 'token_project_mismatch', 'The token is bound to another project than X-Project-Id names.');
      end if;
    end if;
  end if;
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

-- =============================================================================================
-- Helper functions: exchange and expiry
-- =============================================================================================
-- Names a user as the actor of the audit entries the rest of the transaction appends (after its
-- writes: a user in the claims would bring their step-up rules to them).
create function private.act_as_owner(p_user_id uuid) returns void
language sql volatile
set search_path = ''
as $$
  select null::void from pg_catalog.set_config('request.jwt.claims',
    pg_catalog.jsonb_build_object('sub', p_user_id, 'role', 'service_role')::text, true)
$$;
revoke execute on function private.act_as_owner(uuid) from public, anon, authenticated;

-- Records a token's expiry in the chain, once.
create function private.record_token_expiry(p_token public.personal_access_tokens) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  update public.personal_access_tokens t set expiry_recorded_at = pg_catalog.now()
   where t.id = p_token.id and t.expiry_recorded_at is null;
  if found then
    perform audit.append(p_token.org_id, 'personal_access_token.expired', 'public.personal_access_tokens', p_token.id::text,
      pg_catalog.jsonb_build_object('name', p_token.name, 'token_prefix', p_token.token_prefix, 'expires_at', p_token.expires_at,
                                    'user_id', p_token.user_id));
  end if;
end
$$;
revoke execute on function private.record_token_expiry(public.personal_access_tokens) from public, anon, authenticated;

-- What a presented token acts for, for the tokens function to sign an access token with:
-- {id, user_id, org_id, project_id, scopes, expires_at}, or {refusal} (token_invalid,
-- token_revoked, token_expired, user_disabled). Using it moves last_used_at; its first use, and the
-- first refused use after it expired, are audit entries (committed: a refusal is an answer here,
-- not an error).
create function private.exchange_personal_access_token(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  pat public.personal_access_tokens;
  usr auth.users;
begin
  if p_token is null or p_token !~ '^gtp_[0-9A-Za-z]{36}$' then
    return '{"refusal": "token_invalid"}';
  end if;
  -- No row lock: the requests of one token must not queue behind each other here (every inbound
  -- delivery and every request through the rest function exchanges its token).
  select t.* into pat from public.personal_access_tokens t where t.token_sha256 = private.sha256_hex(p_token);
  if pat.id is null then
    return '{"refusal": "token_invalid"}';
  end if;
  if pat.revoked_at is not null then
    return '{"refusal": "token_revoked"}';
  end if;
  if pat.expires_at <= pg_catalog.now() then
    perform private.record_token_expiry(pat);
    return '{"refusal": "token_expired"}';
  end if;
  select u.* into usr from auth.users u where u.id = pat.user_id;
  if usr.id is null or usr.deleted_at is not null or usr.banned_until > pg_catalog.now() then
    return '{"refusal": "user_disabled"}';
  end if;
  -- last_used_at moves at most once a minute (a write a request otherwise); the first use is the
  -- update that finds it null, which one exchange alone can be.
  update public.personal_access_tokens t set last_used_at = pg_catalog.now()
   where t.id = pat.id and t.last_used_at is null;
  if not found then
    update public.personal_access_tokens t set last_used_at = pg_catalog.now()
     where t.id = pat.id and t.last_used_at < pg_catalog.now() - interval '1 minute';
  else
    perform private.act_as_owner(pat.user_id);
    perform audit.append(pat.org_id, 'personal_access_token.first_use', 'public.personal_access_tokens', pat.id::text,
      pg_catalog.jsonb_build_object('name', pat.name, 'token_prefix', pat.token_prefix, 'scopes', pat.scopes, 'project_id', pat.project_id));
  end if;
  return pg_catalog.jsonb_build_object('id', pat.id, 'user_id', pat.user_id, 'org_id', pat.org_id, 'project_id', pat.project_id,
                                       'scopes', pat.scopes, 'expires_at', pat.expires_at);
end
$$;
comment on function private.exchange_personal_access_token(text) is
  'What a personal access token acts for (or why it is refused); moves last_used_at (at most once a minute) and records first use and expiry.';
revoke execute on function private.exchange_personal_access_token(text) from public, anon, authenticated;
grant execute on function private.exchange_personal_access_token(text) to service_role;

-- The sweep: every token that has expired since the last sweep gets its audit entry (scheduled
-- hourly with the transcript purge). Returns how many.
create function private.record_expired_tokens() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  pat public.personal_access_tokens;
  recorded integer := 0;
begin
  for pat in
    select t.* from public.personal_access_tokens t
     where t.expires_at <= pg_catalog.now() and t.expiry_recorded_at is null and t.revoked_at is null
     order by t.expires_at
     limit 10000
  loop
    perform private.record_token_expiry(pat);
    recorded := recorded + 1;
  end loop;
  return recorded;
end
$$;
comment on function private.record_expired_tokens() is 'Records the expiry of every personal access token that expired unrecorded.';
revoke execute on function private.record_expired_tokens() from public, anon, authenticated;

-- A leaked token reported by a secret scanner (the tokens function has verified the report's
-- signature): revoked, with an audit entry naming where it was found. Returns
-- {found, org_id, revoked} (revoked false when it was already).
create function private.revoke_leaked_token(p_token text, p_url text, p_source text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  pat public.personal_access_tokens;
begin
  if p_token is null or p_token !~ '^gtp_[0-9A-Za-z]{36}$' then
    return '{"found": false}';
  end if;
  select t.* into pat from public.personal_access_tokens t where t.token_sha256 = private.sha256_hex(p_token) for update;
  if pat.id is null then
    return '{"found": false}';
  end if;
  if pat.revoked_at is null then
    perform pg_catalog.set_config('gatehouse.org_id', pat.org_id::text, true);
    update public.personal_access_tokens t set revoked_at = pg_catalog.now(), revoked_reason = 'leaked' where t.id = pat.id;
  end if;
  perform audit.append(pat.org_id, 'personal_access_token.leak_reported', 'public.personal_access_tokens', pat.id::text,
    pg_catalog.jsonb_build_object('token_prefix', pat.token_prefix, 'user_id', pat.user_id,
                                  'url', pg_catalog.left(p_url, 2000), 'source', pg_catalog.left(p_source, 100),
                                  'was_revoked', pat.revoked_at is not null));
  return pg_catalog.jsonb_build_object('found', true, 'org_id', pat.org_id, 'revoked', pat.revoked_at is null);
end
$$;
comment on function private.revoke_leaked_token(text, text, text) is
  'Revokes a personal access token a secret scanner found (reason leaked) and records where it was found.';
revoke execute on function private.revoke_leaked_token(text, text, text) from public, anon, authenticated;
grant execute on function private.revoke_leaked_token(text, text, text) to service_role;

-- =============================================================================================
-- Triggers: the writes a scope allows, checked where they happen
-- =============================================================================================
create function private.require_token_scope() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not private.token_allows(nullif(tg_argv[0], '')) then
    perform private.refuse_request(403, 'token_scope', case when tg_argv[0] = '' then 'No personal access token may do this.'
      else pg_catalog.format('This needs a token with the %s scope.', tg_argv[0]) end);
  end if;
  return new;
end
$$;
comment on function private.require_token_scope() is
  'BEFORE INSERT trigger: refuses the write to a request whose personal access token lacks the scope named.';
revoke execute on function private.require_token_scope() from public, anon, authenticated;

create trigger require_token_scope before insert on public.agent_runs
  for each row execute function private.require_token_scope('runs:write');
create trigger require_token_scope before insert on public.action_requests
  for each row execute function private.require_token_scope('tools:call');
create trigger require_token_scope before insert on private.run_tokens
  for each row execute function private.require_token_scope('runs:write');
-- Decisions are people's: no scope opens them.
create trigger require_token_scope before insert on public.approval_decisions
  for each row execute function private.require_token_scope('');
-- A token makes and revokes no token.
create trigger require_token_scope before insert or update on public.personal_access_tokens
  for each row execute function private.require_token_scope('');

-- =============================================================================================
-- RLS policies
-- =============================================================================================
-- Every tenant table there is now gets the token rules (make_tenant_table gives them to new ones).
do $$
declare
  t regclass;
begin
  for t in
    select c.oid::regclass
      from pg_catalog.pg_class c
     where private.is_tenant_table(c.oid)
     order by 1
  loop
    perform private.guard_from_tokens(t);
  end loop;
end
$$;
-- The organizations table has no org_id (it is the organization); tokens read no row of it.
select private.guard_from_tokens('public.organizations');

-- The audit chain reads with audit:read (the chain is the organization's, whatever project a token is bound to).
create policy "tokens read the chain with audit:read" on audit.entries as restrictive
  for select to authenticated using ((select private.token_allows('audit:read')));
create policy "tokens read the chain with audit:read" on audit.records as restrictive
  for select to authenticated using ((select private.token_allows('audit:read')));
create policy "tokens read the chain with audit:read" on audit.heads as restrictive
  for select to authenticated using ((select private.token_allows('audit:read')));
create policy "tokens read the chain with audit:read" on audit.checkpoints as restrictive
  for select to authenticated using ((select private.token_allows('audit:read')));
