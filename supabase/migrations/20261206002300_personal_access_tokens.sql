-- Personal access tokens, the database's half (issue 26, section 1; seed 003: "REST / Platform
-- MCP: personal access tokens with scoped permissions"). Using a token (the exchange for a
-- short-lived JWT, the scope checks in RLS and the RPCs) is the next step; this one makes, lists,
-- revokes and bounds them.
--
-- - The format: gtp_ + 30 base62 characters + a 6-character base62 CRC32 of those 30, as GitHub's
--   tokens are built (its prefixes are gh?_; ours is Gatehouse's). A secret scanner recognises the
--   prefix, and a mistyped or made-up token fails its checksum without a database lookup
--   (functions/_shared/pat/token.ts checks it; private.crc32 here makes it). Shown once, stored
--   only as its SHA-256.
-- - Scopes, from a fixed list with no "everything": runs:read, runs:write, agents:read, audit:read,
--   webhooks:ingest, tools:call. Each needs a least role (private.pat_scope_role): reading needs a
--   viewer, the others a contributor.
-- - Bound to one organization and optionally one project; an expiry is required (default 90 days,
--   at most 366); last_used_at is kept; revoked by its owner or a tenant admin.
-- - A member's tokens are revoked in the same transaction that removes them from the organization,
--   or that lowers their role below what a token's scopes need (a trigger on organization_members).
-- - A tenant table: RLS (a member reads their own tokens, a tenant admin every token of the
--   organization, to revoke a leaked one), the context guard, audited (never the hash), the
--   step-up guard. Written only through the RPCs below.

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- CRC-32 (IEEE 802.3, the one zlib, GitHub's tokens and node:zlib's crc32 use) of a text's UTF-8
-- bytes, as a number.
create function private.crc32(p_text text) returns bigint
language plpgsql immutable strict parallel safe
set search_path = ''
as $$
declare
  bytes bytea := pg_catalog.convert_to(p_text, 'UTF8');
  crc bigint := 4294967295;
  i integer;
  j integer;
begin
  for i in 0 .. pg_catalog.length(bytes) - 1 loop
    crc := crc # pg_catalog.get_byte(bytes, i);
    for j in 1 .. 8 loop
      crc := case when crc & 1 = 1 then (crc >> 1) # 3988292384 else crc >> 1 end;
    end loop;
  end loop;
  return crc # 4294967295;
end
$$;
comment on function private.crc32(text) is 'CRC-32 (IEEE, as zlib computes it) of the UTF-8 bytes of a text.';

-- A number in base 62 (0-9, A-Z, a-z), left-padded with 0 to p_width characters.
create function private.base62(p_n bigint, p_width integer) returns text
language plpgsql immutable strict parallel safe
set search_path = ''
as $$
declare
  digits constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  n bigint := p_n;
  out text := '';
begin
  loop
    out := pg_catalog.substr(digits, (n % 62)::integer + 1, 1) || out;
    n := n / 62;
    exit when n = 0;
  end loop;
  return pg_catalog.lpad(out, p_width, '0');
end
$$;
comment on function private.base62(bigint, integer) is 'A number in base 62 (0-9A-Za-z), left-padded with 0.';

-- A new token: gtp_, 30 random base62 characters (unbiased: bytes of 248 and above are skipped),
-- and the CRC-32 of those 30 in 6 base62 characters.
create function private.new_personal_access_token() returns text
language plpgsql volatile
set search_path = ''
as $$
declare
  digits constant text := '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  random bytea;
  body text := '';
  i integer;
  b integer;
begin
  while pg_catalog.length(body) < 30 loop
    random := extensions.gen_random_bytes(32);
    for i in 0 .. 31 loop
      b := pg_catalog.get_byte(random, i);
      if b < 248 and pg_catalog.length(body) < 30 then
        body := body || pg_catalog.substr(digits, b % 62 + 1, 1);
      end if;
    end loop;
  end loop;
  return 'gtp_' || body || private.base62(private.crc32(body), 6);
end
$$;
comment on function private.new_personal_access_token() is
  'A new personal access token: gtp_, 30 random base62 characters, their CRC-32 in 6 base62 characters.';

-- The least organization role a scope needs: reading needs a viewer; starting runs, calling tools
-- and taking webhooks need a contributor. Null for a name that is not a scope.
create function private.pat_scope_role(p_scope text) returns public.member_role
language sql immutable strict parallel safe
set search_path = ''
as $$
  select case p_scope
    when 'runs:read' then 'project_viewer'
    when 'agents:read' then 'project_viewer'
    when 'audit:read' then 'project_viewer'
    when 'runs:write' then 'project_contributor'
    when 'tools:call' then 'project_contributor'
    when 'webhooks:ingest' then 'project_contributor'
  end::public.member_role
$$;
comment on function private.pat_scope_role(text) is
  'The least role a personal access token scope needs (null: not a scope). The list of scopes is this function.';

-- True when role p_role is at least p_least (tenant_admin > project_admin > project_contributor > project_viewer).
create function private.role_at_least(p_role public.member_role, p_least public.member_role) returns boolean
language sql immutable strict parallel safe
set search_path = ''
as $$
  select pg_catalog.array_position(array['project_viewer', 'project_contributor', 'project_admin', 'tenant_admin']::public.member_role[], p_role)
      >= pg_catalog.array_position(array['project_viewer', 'project_contributor', 'project_admin', 'tenant_admin']::public.member_role[], p_least)
$$;
comment on function private.role_at_least(public.member_role, public.member_role) is 'Whether a role is at least another, in the organization''s order.';

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.personal_access_tokens (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  -- Null: every project of the organization the owner may see.
  project_id uuid,
  user_id uuid not null default auth.uid(),
  name text not null check (char_length(name) between 1 and 100),
  -- gtp_ and the first 4 random characters, to tell tokens apart; the rest is never stored.
  token_prefix text not null check (token_prefix ~ '^gtp_[0-9A-Za-z]{4}$'),
  token_sha256 text not null unique check (token_sha256 ~ '^[0-9a-f]{64}$'),
  scopes text[] not null check (cardinality(scopes) between 1 and 6 and array_position(scopes, null) is null),
  expires_at timestamptz not null,
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz,
  revoked_reason text check (revoked_reason in ('revoked', 'member_removed', 'role_lowered', 'leaked')),
  check ((revoked_at is null) = (revoked_reason is null)),
  check (expires_at > created_at and expires_at <= created_at + interval '366 days'),
  unique (org_id, id),
  -- Cover a member's tokens (revoked with their membership) and the project key (and say nothing
  -- new: id is unique).
  unique (org_id, user_id, id),
  unique (org_id, project_id, id),
  -- No foreign key to the membership: a removed member's tokens stay, revoked, as history.
  foreign key (org_id, project_id) references public.projects (org_id, id) on delete cascade
);
comment on table public.personal_access_tokens is
  'Personal access tokens: scoped, bound to an organization (and optionally a project), expiring, stored as SHA-256 only.';
comment on column public.personal_access_tokens.token_sha256 is 'The SHA-256 of the token (hex); the token itself is shown once and never stored.';

-- A scope list is the fixed list's names, each once.
create function private.pat_scopes_valid(p_scopes text[]) returns boolean
language sql immutable strict parallel safe
set search_path = ''
as $$
  select pg_catalog.cardinality(p_scopes) between 1 and 6
     and not exists (select 1 from pg_catalog.unnest(p_scopes) s where private.pat_scope_role(s) is null)
     and (select pg_catalog.count(distinct s) from pg_catalog.unnest(p_scopes) s) = pg_catalog.cardinality(p_scopes)
$$;
comment on function private.pat_scopes_valid(text[]) is 'Whether a list names only personal access token scopes, each once.';
alter table public.personal_access_tokens add constraint personal_access_tokens_scopes_valid check (private.pat_scopes_valid(scopes));

select private.make_tenant_table('public.personal_access_tokens', 'personal_access_token', array['token_sha256']);

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- A new token for the caller in the context's organization (optionally bound to one of its projects
-- the caller belongs to), with scopes their role allows. The token is in this answer only.
create function public.create_personal_access_token(
  p_name text, p_scopes text[], p_expires_in_days integer default 90, p_project_id uuid default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  me uuid := (select auth.uid());
  role public.member_role;
  token text := private.new_personal_access_token();
  created public.personal_access_tokens;
  short text;
begin
  if me is null then
    perform private.refuse_request(401, 'sign_in_required', 'Sign in to make a personal access token.');
  end if;
  if org is null then
    perform private.refuse_request(400, 'context_missing_org_id', 'Send X-Org-Id: the organization the token is for.');
  end if;
  select m.role into role from public.organization_members m where m.org_id = org and m.user_id = me;
  if p_name is null or char_length(pg_catalog.btrim(p_name)) not between 1 and 100 then
    perform private.refuse_request(400, 'invalid_name', 'A token''s name is 1 to 100 characters.');
  end if;
  if p_scopes is null or not private.pat_scopes_valid(p_scopes) then
    perform private.refuse_request(400, 'invalid_scopes',
      'Scopes are some of runs:read, runs:write, agents:read, audit:read, webhooks:ingest, tools:call, each once (there is no scope for everything).');
  end if;
  select s into short from pg_catalog.unnest(p_scopes) s where not private.role_at_least(role, private.pat_scope_role(s)) limit 1;
  if short is not null then
    perform private.refuse_request(403, 'scope_not_allowed', pg_catalog.format('Your role (%s) does not allow the scope %s.', role, short));
  end if;
  if p_expires_in_days is null or p_expires_in_days not between 1 and 366 then
    perform private.refuse_request(400, 'invalid_expiry', 'A token expires in 1 to 366 days (90 by default).');
  end if;
  if p_project_id is not null and not (p_project_id = any (private.project_ids_with_role('project_viewer'))) then
    perform private.refuse_request(404, 'project_not_found', 'No project of this organization that you belong to has that id.');
  end if;
  insert into public.personal_access_tokens (org_id, project_id, user_id, name, token_prefix, token_sha256, scopes, expires_at)
  values (org, p_project_id, me, pg_catalog.btrim(p_name), pg_catalog.left(token, 8), private.sha256_hex(token), p_scopes,
          pg_catalog.now() + pg_catalog.make_interval(days => p_expires_in_days))
  returning * into created;
  return (pg_catalog.to_jsonb(created) - 'token_sha256') || pg_catalog.jsonb_build_object('token', token);
end
$$;
comment on function public.create_personal_access_token(text, text[], integer, uuid) is
  'Makes a personal access token for the caller in the context''s organization (scopes their role allows, 1 to 366 days); the token is shown only here.';
revoke execute on function public.create_personal_access_token(text, text[], integer, uuid) from public, anon;
grant execute on function public.create_personal_access_token(text, text[], integer, uuid) to authenticated;

-- Revokes a token: its owner's, or any of the organization's by a tenant admin.
create function public.revoke_personal_access_token(p_token_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  revoked public.personal_access_tokens;
begin
  update public.personal_access_tokens t
     set revoked_at = pg_catalog.now(), revoked_reason = 'revoked'
   where t.id = p_token_id and t.org_id = private.current_org_id() and t.revoked_at is null
     and (t.user_id = (select auth.uid()) or private.has_org_role('tenant_admin'))
  returning t.* into revoked;
  if revoked.id is null then
    perform private.refuse_request(404, 'token_not_found', 'No live token of yours (or, for a tenant admin, of the organization) has that id.');
  end if;
  return pg_catalog.to_jsonb(revoked) - 'token_sha256';
end
$$;
comment on function public.revoke_personal_access_token(uuid) is
  'Revokes a personal access token at once: its owner''s own, or any of the organization''s by a tenant admin.';
revoke execute on function public.revoke_personal_access_token(uuid) from public, anon;
grant execute on function public.revoke_personal_access_token(uuid) to authenticated;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- A member removed, or lowered below what a token's scopes need, loses those tokens in the same
-- transaction.
create function private.revoke_member_tokens() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    update public.personal_access_tokens t set revoked_at = pg_catalog.now(), revoked_reason = 'member_removed'
     where t.org_id = old.org_id and t.user_id = old.user_id and t.revoked_at is null;
    return old;
  end if;
  update public.personal_access_tokens t set revoked_at = pg_catalog.now(), revoked_reason = 'role_lowered'
   where t.org_id = new.org_id and t.user_id = new.user_id and t.revoked_at is null
     and exists (select 1 from pg_catalog.unnest(t.scopes) s where not private.role_at_least(new.role, private.pat_scope_role(s)));
  return new;
end
$$;
comment on function private.revoke_member_tokens() is
  'Revokes a member''s personal access tokens when they leave the organization, or those whose scopes their new role no longer allows.';
revoke execute on function private.revoke_member_tokens() from public, anon, authenticated;

create trigger revoke_tokens before delete or update of role on public.organization_members
  for each row execute function private.revoke_member_tokens();

-- =============================================================================================
-- RLS policies and grants
-- =============================================================================================
create policy "members read their own tokens, tenant admins the organization's" on public.personal_access_tokens
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and (user_id = (select auth.uid()) or (select private.has_org_role('tenant_admin'))));
create policy "tokens are made by create_personal_access_token" on public.personal_access_tokens
  for insert to authenticated
  with check (false);
create policy "tokens are revoked by revoke_personal_access_token" on public.personal_access_tokens
  for update to authenticated
  using (false);
create policy "tokens are kept (revoke them)" on public.personal_access_tokens
  for delete to authenticated
  using (false);

revoke all on public.personal_access_tokens from anon, authenticated, service_role;
grant select (id, org_id, project_id, user_id, name, token_prefix, scopes, expires_at, created_at, last_used_at, revoked_at, revoked_reason)
  on public.personal_access_tokens to authenticated;
grant select, insert, update, delete on public.personal_access_tokens to service_role;
