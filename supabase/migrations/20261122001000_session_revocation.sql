-- Revocation held by the database (seeds 000, 003): an access token counts only while its
-- session exists and its user may sign in. A user's token whose session was signed out, timed out
-- (auth.sessions.not_after) or revoked, or whose user is banned (banned_until in the future) or
-- deleted (deleted_at set), is refused at once, on every path: by PostgREST, through its
-- db-pre-request hook (private.check_request), and by every edge function, through the role API
-- (functions/_shared/http/db.ts runs private.assert_session as it takes a user's claims). This
-- reads Supabase Auth's own tables, so it holds on hosted Supabase as it does locally.
--
-- Tokens without a user (the anon and service-role keys) are not sessions and are not checked.
--
-- A tenant admin ends a member's sessions with revoke_member_sessions (audited). Removing a member
-- ends their access to the organization at once already: every request re-checks membership.

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Why the request's user token no longer counts, or null when it does (or is no user's).
create function private.session_refusal() returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  claims jsonb := coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
  uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  usr auth.users;
begin
  if claims ->> 'sub' is null then
    return null;
  end if;
  if claims ->> 'sub' !~* uuid_pattern or coalesce(claims ->> 'session_id', '') !~* uuid_pattern then
    return 'session_invalid';
  end if;
  select u.* into usr from auth.users u where u.id = (claims ->> 'sub')::uuid;
  if usr.id is null or usr.deleted_at is not null or usr.banned_until > pg_catalog.now() then
    return 'user_disabled';
  end if;
  if not exists (select 1 from auth.sessions s
                  where s.id = (claims ->> 'session_id')::uuid and s.user_id = usr.id
                    and (s.not_after is null or s.not_after > pg_catalog.now())) then
    return 'session_revoked';
  end if;
  return null;
end
$$;
comment on function private.session_refusal() is
  'Why the request''s user token no longer counts (session_invalid, user_disabled, session_revoked), or null.';
revoke execute on function private.session_refusal() from public, anon, authenticated;

-- Refuses (401) a request whose user token no longer counts.
create function private.assert_session() returns void
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
  end if;
end
$$;
comment on function private.assert_session() is 'Refuses (401) a user token whose session or user no longer counts.';
revoke execute on function private.assert_session() from public, anon, authenticated;
grant execute on function private.assert_session() to anon, authenticated, service_role;

-- PostgREST's per-request check, now with the session's.
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
begin
  -- A user's token counts only while its session and its user do (private.assert_session).
  perform private.assert_session();
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
-- RPCs
-- =============================================================================================
-- Ends every session of a member of the caller's organization (tenant admin, in context): the
-- member's tokens stop working at once, everywhere, since a session is the user's and not one
-- organization's. Recorded in the organization's audit chain. Returns how many sessions ended.
create function public.revoke_member_sessions(p_user_id uuid) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  ended integer;
begin
  if org is null or not private.has_org_role('tenant_admin') then
    perform private.refuse_request(403, 'forbidden', 'Ending a member''s sessions needs the tenant_admin role in the organization.');
  end if;
  if not exists (select 1 from public.organization_members m where m.org_id = org and m.user_id = p_user_id) then
    perform private.refuse_request(404, 'member_not_found', 'No such member of this organization.');
  end if;
  with gone as (delete from auth.sessions s where s.user_id = p_user_id returning s.id)
  select pg_catalog.count(*)::integer into ended from gone;
  perform audit.append(org, 'member.sessions_revoked', 'auth.users', p_user_id::text, pg_catalog.jsonb_build_object('sessions', ended));
  return ended;
end
$$;
comment on function public.revoke_member_sessions(uuid) is
  'Ends every session of a member of the organization (tenant admin); their tokens stop at once. Audited.';
revoke execute on function public.revoke_member_sessions(uuid) from public, anon, authenticated;
grant execute on function public.revoke_member_sessions(uuid) to authenticated;
