-- Local Supabase platform layer.
--
-- Hosted Supabase (and `supabase start`) ship these objects built in. This machine has no Docker, so
-- the local stack applies this file to a bare Postgres before running the project's migrations, and
-- only where the real platform is absent (scripts/stack/platform.ts checks). It reproduces what our
-- migrations rely on, with the same names, signatures and attributes, so that the same migrations
-- run unchanged on hosted Supabase:
--   * the API roles anon, authenticated, service_role, authenticator (and supabase_auth_admin for
--     the local auth stand-in);
--   * the `extensions` schema with pgcrypto, on the search_path as on the platform;
--   * `auth`: users, sessions, refresh tokens, MFA factors, challenges and amr claims, one-time
--     tokens for email links, and auth.uid()/jwt()/role()/email() reading request.jwt.claims
--     exactly as Supabase's do;
--   * `vault`: Supabase Vault's API (vault.secrets, vault.decrypted_secrets, vault.create_secret,
--     vault.update_secret). Secrets are encrypted-then-MACed (AES-256-CBC + HMAC-SHA-256, the row id
--     bound in as associated data) under a root key that lives in a file outside the database, so a
--     dump of the database shows only ciphertext. Hosted Vault keeps its root key outside the
--     database too.
--
-- The placeholder {{ROOT_KEY_FILE}} is replaced by the launcher with the key file's path.

-- ---------------------------------------------------------------------------------------------
-- Roles (Supabase's attributes)
-- ---------------------------------------------------------------------------------------------
do $roles$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit;
  end if;
end
$roles$;

grant anon, authenticated, service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

-- ---------------------------------------------------------------------------------------------
-- Schemas and extensions
-- ---------------------------------------------------------------------------------------------
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;

alter role postgres set search_path = "$user", public, extensions;

grant usage on schema public to anon, authenticated, service_role;
-- Supabase stops auto-granting table privileges in `public` (2026): every table gets explicit grants.
revoke create on schema public from public;

-- ---------------------------------------------------------------------------------------------
-- auth: the tables Supabase Auth owns, reduced to what the local stand-in needs
-- ---------------------------------------------------------------------------------------------
create schema if not exists auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key default gen_random_uuid(),
  aud varchar(255) not null default 'authenticated',
  role varchar(255) not null default 'authenticated',
  email varchar(255) unique,
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb not null default '{"provider":"email","providers":["email"]}',
  raw_user_meta_data jsonb not null default '{}',
  is_super_admin boolean,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  phone text unique,
  banned_until timestamptz,
  deleted_at timestamptz,
  is_sso_user boolean not null default false,
  is_anonymous boolean not null default false
);
comment on table auth.users is 'Supabase Auth users (local platform layer; hosted Supabase owns this table).';

create table if not exists auth.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  not_after timestamptz,
  aal text not null default 'aal1'
);
create index if not exists sessions_user_id_idx on auth.sessions (user_id);
comment on table auth.sessions is 'Supabase Auth sessions (local platform layer).';

create table if not exists auth.refresh_tokens (
  id bigserial primary key,
  token_hash text not null unique,
  user_id uuid not null references auth.users (id) on delete cascade,
  session_id uuid not null references auth.sessions (id) on delete cascade,
  revoked boolean not null default false,
  parent text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index if not exists refresh_tokens_session_id_idx on auth.refresh_tokens (session_id);
create index if not exists refresh_tokens_user_id_idx on auth.refresh_tokens (user_id);
comment on table auth.refresh_tokens is
  'Refresh tokens (local platform layer). Only a SHA-256 of each token is stored, never the token.';

-- Columns hosted Supabase Auth has and the stand-in uses, added to databases made before them.
alter table auth.users add column if not exists invited_at timestamptz;
alter table auth.users add column if not exists confirmation_sent_at timestamptz;
alter table auth.users add column if not exists recovery_sent_at timestamptz;
-- refreshed_at is the last refresh (idle time counts from it, or from created_at); factor_id is the
-- factor that raised the session to aal2.
alter table auth.sessions add column if not exists factor_id uuid;
alter table auth.sessions add column if not exists refreshed_at timestamptz;
alter table auth.sessions add column if not exists user_agent text;
alter table auth.sessions add column if not exists ip inet;

create table if not exists auth.mfa_factors (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  friendly_name text,
  factor_type text not null check (factor_type in ('totp', 'phone', 'webauthn')),
  status text not null check (status in ('unverified', 'verified')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  secret text,
  phone text,
  last_challenged_at timestamptz
);
create index if not exists mfa_factors_user_id_idx on auth.mfa_factors (user_id);
create unique index if not exists mfa_factors_user_friendly_name_unique
  on auth.mfa_factors (friendly_name, user_id) where trim(friendly_name) <> '';
comment on table auth.mfa_factors is
  'Supabase Auth MFA factors (local platform layer). A TOTP secret is stored encrypted (AES-256-GCM, '
  'the factor id bound in), under a key derived from the stack''s JWT secret.';

create table if not exists auth.mfa_challenges (
  id uuid primary key default gen_random_uuid(),
  factor_id uuid not null references auth.mfa_factors (id) on delete cascade,
  created_at timestamptz not null default now(),
  verified_at timestamptz,
  ip_address inet not null
);
create index if not exists mfa_challenges_factor_id_idx on auth.mfa_challenges (factor_id);
comment on table auth.mfa_challenges is 'Supabase Auth MFA challenges (local platform layer): each verifies once, within 5 minutes.';

create table if not exists auth.mfa_amr_claims (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references auth.sessions (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  authentication_method text not null,
  constraint mfa_amr_claims_session_id_authentication_method_pkey unique (session_id, authentication_method)
);
comment on table auth.mfa_amr_claims is
  'How each session authenticated, and when (the JWT''s amr claim; local platform layer).';

create table if not exists auth.one_time_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id) on delete cascade,
  token_type text not null check (token_type in ('confirmation_token', 'recovery_token')),
  token_hash text not null check (char_length(token_hash) > 0),
  relates_to text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index if not exists one_time_tokens_user_id_token_type_key on auth.one_time_tokens (user_id, token_type);
create index if not exists one_time_tokens_token_hash_idx on auth.one_time_tokens (token_hash);
comment on table auth.one_time_tokens is
  'Email link tokens (local platform layer): one live token per user and type, used once. Only a '
  'SHA-256 of the link''s token hash is stored, so a copy of this table opens nothing.';

alter table auth.users owner to supabase_auth_admin;
alter table auth.sessions owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
alter table auth.mfa_factors owner to supabase_auth_admin;
alter table auth.mfa_challenges owner to supabase_auth_admin;
alter table auth.mfa_amr_claims owner to supabase_auth_admin;
alter table auth.one_time_tokens owner to supabase_auth_admin;
revoke all on auth.users, auth.sessions, auth.refresh_tokens from anon, authenticated;
revoke all on auth.mfa_factors, auth.mfa_challenges, auth.mfa_amr_claims, auth.one_time_tokens from anon, authenticated, service_role;
grant select on auth.users to service_role;

-- Like hosted Supabase's, these have no SET clause, so the planner can inline them into the
-- queries (and policies) that call them. Everything they name lives in pg_catalog, which is always
-- searched first, so no search_path can redirect them.
create or replace function auth.uid() returns uuid
language sql stable
as $$
  select nullif(
    coalesce(
      nullif(current_setting('request.jwt.claim.sub', true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    ),
    ''
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;
grant execute on function auth.uid(), auth.role(), auth.email(), auth.jwt() to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- vault: Supabase Vault's API over a local authenticated-encryption scheme
-- ---------------------------------------------------------------------------------------------
create schema if not exists vault;
revoke all on schema vault from public;
grant usage on schema vault to service_role;

create table if not exists vault.secrets (
  id uuid primary key default gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index if not exists secrets_name_idx on vault.secrets (name) where name is not null;
comment on table vault.secrets is
  'Vault secrets: `secret` is base64(AES-256-CBC ciphertext || HMAC-SHA-256 tag); `nonce` is the IV. '
  'The root key lives in a file outside the database.';
revoke all on vault.secrets from public, anon, authenticated;
grant select, delete on vault.secrets to service_role;

-- The root key never enters a table, a setting or a log: it is read from its file on use. While
-- the root key rotates (npm run rotate -- vault-root-key), the key it replaces waits in a file
-- beside it, <root key file>.previous, so that secrets not yet re-encrypted still open and nothing
-- stops reading while the rotation runs.
create or replace function vault._key_file(suffix text, missing_ok boolean) returns bytea
language plpgsql stable security definer
set search_path = ''
as $$
declare
  hex text := btrim(pg_catalog.pg_read_file({{ROOT_KEY_FILE}} || suffix, 0, 1024, missing_ok), E' \n\r\t');
begin
  if hex is null then
    return null;
  end if;
  if hex !~ '^[0-9a-f]{64}$' then
    raise exception 'vault root key file% is malformed', suffix using errcode = 'XX000';
  end if;
  return pg_catalog.decode(hex, 'hex');
end
$$;
revoke execute on function vault._key_file(text, boolean) from public, anon, authenticated, service_role;

create or replace function vault._root_key() returns bytea
language sql stable security definer
set search_path = ''
as $$ select vault._key_file('', false) $$;
revoke execute on function vault._root_key() from public, anon, authenticated, service_role;

-- The key being replaced while a rotation runs; null when none is under way.
create or replace function vault._previous_root_key() returns bytea
language sql stable security definer
set search_path = ''
as $$ select vault._key_file('.previous', true) $$;
revoke execute on function vault._previous_root_key() from public, anon, authenticated, service_role;

-- Separate keys for encryption and authentication, derived from a root key.
create or replace function vault._subkey_of(root bytea, purpose text) returns bytea
language sql immutable security definer
set search_path = ''
as $$
  select extensions.hmac(pg_catalog.convert_to('gatehouse-vault/' || purpose, 'UTF8'), root, 'sha256')
$$;
revoke execute on function vault._subkey_of(bytea, text) from public, anon, authenticated, service_role;

-- (vault._subkey(purpose), which read the key file on each call, is replaced by _subkey_of.)
drop function if exists vault._subkey(text);

-- Whether a sealed secret's tag holds under `root`: it was sealed under that key.
create or replace function vault._sealed_under(root bytea, id uuid, sealed text, iv bytea) returns boolean
language sql immutable security definer
set search_path = ''
as $$
  select pg_catalog.length(r.raw) >= 48 and pg_catalog.substr(r.raw, pg_catalog.length(r.raw) - 31) =
         extensions.hmac(pg_catalog.convert_to(id::text, 'UTF8') || iv || pg_catalog.substr(r.raw, 1, pg_catalog.length(r.raw) - 32),
                         vault._subkey_of(root, 'mac'), 'sha256')
    from (select pg_catalog.decode(sealed, 'base64') as raw) r
$$;
revoke execute on function vault._sealed_under(bytea, uuid, text, bytea) from public, anon, authenticated, service_role;

create or replace function vault._seal(id uuid, plaintext text, iv bytea) returns text
language sql stable security definer
set search_path = ''
as $$
  with k as (select vault._root_key() as root),
  c as (
    select extensions.encrypt_iv(pg_catalog.convert_to(plaintext, 'UTF8'), vault._subkey_of(k.root, 'enc'), iv, 'aes-cbc/pad:pkcs') as ct, k.root
      from k
  )
  select pg_catalog.encode(
    c.ct || extensions.hmac(pg_catalog.convert_to(id::text, 'UTF8') || iv || c.ct, vault._subkey_of(c.root, 'mac'), 'sha256'),
    'base64'
  )
  from c
$$;
revoke execute on function vault._seal(uuid, text, bytea) from public, anon, authenticated, service_role;

-- Returns the plaintext, or raises if the ciphertext, IV or row id was tampered with. It reads the
-- root key once; mid-rotation, a secret not re-encrypted yet opens under the key being replaced.
create or replace function vault._open(id uuid, sealed text, iv bytea) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  raw bytea := pg_catalog.decode(sealed, 'base64');
  root bytea;
begin
  if pg_catalog.length(raw) < 48 then
    raise exception 'vault secret % is malformed', id using errcode = 'XX001';
  end if;
  root := vault._root_key();
  if not vault._sealed_under(root, id, sealed, iv) then
    root := vault._previous_root_key();
    if root is null or not vault._sealed_under(root, id, sealed, iv) then
      raise exception 'vault secret % failed authentication', id using errcode = 'XX001';
    end if;
  end if;
  return pg_catalog.convert_from(extensions.decrypt_iv(pg_catalog.substr(raw, 1, pg_catalog.length(raw) - 32),
                                                       vault._subkey_of(root, 'enc'), iv, 'aes-cbc/pad:pkcs'), 'UTF8');
end
$$;
revoke execute on function vault._open(uuid, text, bytea) from public, anon, authenticated;
-- A view's functions run with the privileges of the user querying the view.
grant execute on function vault._open(uuid, text, bytea) to service_role;

create or replace view vault.decrypted_secrets as
  select s.id, s.name, s.description, s.secret,
         vault._open(s.id, s.secret, s.nonce) as decrypted_secret,
         s.key_id, s.nonce, s.created_at, s.updated_at
  from vault.secrets s;
comment on view vault.decrypted_secrets is 'Vault secrets with their plaintext; readable by service_role only.';
revoke all on vault.decrypted_secrets from public, anon, authenticated;
grant select on vault.decrypted_secrets to service_role;

create or replace function vault.create_secret(
  new_secret text,
  new_name text default null,
  new_description text default '',
  new_key_id uuid default null
) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  new_id uuid := gen_random_uuid();
  iv bytea := extensions.gen_random_bytes(16);
begin
  if new_secret is null then
    raise exception 'vault.create_secret: new_secret must not be null' using errcode = '22004';
  end if;
  insert into vault.secrets (id, name, description, secret, key_id, nonce)
  values (new_id, new_name, coalesce(new_description, ''), vault._seal(new_id, new_secret, iv), new_key_id, iv);
  return new_id;
end
$$;
revoke execute on function vault.create_secret(text, text, text, uuid) from public, anon, authenticated;
grant execute on function vault.create_secret(text, text, text, uuid) to service_role;

-- The root key's rotation, a batch at a time (npm run rotate -- vault-root-key): up to `p_limit`
-- secrets still sealed under the previous key are opened and sealed again under the current one,
-- with a new IV, each in place. Returns how many; 0 once none is left. Readers never wait: a
-- secret opens under either key until its turn comes.
create or replace function vault._reencrypt(p_limit integer) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  previous bytea := vault._previous_root_key();
  current_key bytea := vault._root_key();
  s record;
  iv bytea;
  n integer := 0;
begin
  if previous is null then
    return 0;
  end if;
  for s in
    select x.id, x.secret, x.nonce from vault.secrets x
     where not vault._sealed_under(current_key, x.id, x.secret, x.nonce)
     limit p_limit for update skip locked
  loop
    iv := extensions.gen_random_bytes(16);
    update vault.secrets x set secret = vault._seal(x.id, vault._open(x.id, x.secret, x.nonce), iv), nonce = iv, updated_at = pg_catalog.now()
     where x.id = s.id;
    n := n + 1;
  end loop;
  return n;
end
$$;
revoke execute on function vault._reencrypt(integer) from public, anon, authenticated, service_role;

-- How many secrets the current root key opens, and how many it does not (rotation's check).
create or replace function vault._sealed_count(out under_current bigint, out not_under_current bigint)
language sql stable security definer
set search_path = ''
as $$
  select pg_catalog.count(*) filter (where x.sealed), pg_catalog.count(*) filter (where not x.sealed)
    from (select vault._root_key() as root) k
   cross join lateral (select vault._sealed_under(k.root, s.id, s.secret, s.nonce) as sealed from vault.secrets s) x
$$;
revoke execute on function vault._sealed_count() from public, anon, authenticated, service_role;

create or replace function vault.update_secret(
  secret_id uuid,
  new_secret text default null,
  new_name text default null,
  new_description text default null,
  new_key_id uuid default null
) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  iv bytea := extensions.gen_random_bytes(16);
begin
  update vault.secrets s
     set secret = case when new_secret is null then s.secret else vault._seal(s.id, new_secret, iv) end,
         nonce = case when new_secret is null then s.nonce else iv end,
         name = coalesce(new_name, s.name),
         description = coalesce(new_description, s.description),
         key_id = coalesce(new_key_id, s.key_id),
         updated_at = now()
   where s.id = secret_id;
  if not found then
    raise exception 'vault.update_secret: no secret %', secret_id using errcode = 'P0002';
  end if;
end
$$;
revoke execute on function vault.update_secret(uuid, text, text, text, uuid) from public, anon, authenticated;
grant execute on function vault.update_secret(uuid, text, text, text, uuid) to service_role;

comment on schema vault is 'gatehouse-local-platform';
