-- Connections (seeds 000, 002, 003, 004): the credentials connectors use live in Vault, written
-- only through one security-definer RPC, and never come back out through the API.
--
-- A connection records the provider, a display name, the OAuth scopes granted, its status and
-- when it was verified; no column holds a secret, only the Vault secret's id, which clients can't
-- read either. `save_connection` (service role: the connectors function calls it after a live
-- verification) is the one way a credential is written; `disable_connection` deletes it from
-- Vault. Revocation at the provider and live verification happen in the edge function, which
-- must go through the egress guard (functions/_shared/egress.ts). `config` holds a connection's
-- non-secret endpoint settings (an OAuth2 provider's token, revocation and API URLs, its client id).

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.connector_provider as enum ('slack_webhook', 'discord_webhook', 'https_webhook', 'github', 'notion', 'oauth2');
create type public.connection_status as enum ('active', 'disabled');

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Scope lists of connections and tools: up to 50 scopes of 1 to 100 safe characters.
create function private.scopes_valid(p_scopes text[]) returns boolean
language sql immutable
set search_path = ''
as $$
  select coalesce(pg_catalog.cardinality(p_scopes), 0) <= 50
     and not exists (select 1 from pg_catalog.unnest(p_scopes) s where s is null or s !~ '^[A-Za-z0-9_.:/-]{1,100}$')
$$;
comment on function private.scopes_valid(text[]) is 'True for a list of up to 50 scopes of 1 to 100 characters A-Z a-z 0-9 _ . : / -.';
revoke execute on function private.scopes_valid(text[]) from public, anon;
grant execute on function private.scopes_valid(text[]) to authenticated, service_role;

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.connections (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  provider public.connector_provider not null,
  display_name text not null check (char_length(display_name) between 1 and 100),
  scopes text[] not null default '{}' check (private.scopes_valid(scopes)),
  status public.connection_status not null default 'active',
  secret_id uuid,
  token_expires_at timestamptz,
  verified_at timestamptz not null,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  disabled_at timestamptz,
  config jsonb not null default '{}' check (jsonb_typeof(config) = 'object' and pg_column_size(config) <= 4096),
  check ((status = 'active') = (secret_id is not null)),
  check ((status = 'disabled') = (disabled_at is not null)),
  unique (org_id, display_name),
  unique (org_id, id),
  unique (org_id, id, provider)
);
comment on table public.connections is
  'Connector connections of an organization. The credential is in Vault (secret_id), written only by save_connection().';
comment on column public.connections.secret_id is 'The Vault secret holding the credential; not readable by clients.';
comment on column public.connections.verified_at is 'When a live call to the provider last accepted the credential.';
comment on column public.connections.config is
  'Non-secret endpoint settings (an OAuth2 provider''s token, revocation and API URLs, client id). Never a credential.';

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- A tenant table (RLS, the context guard, ids from the context, audit); the Vault reference stays out
-- of the chain.
select private.make_tenant_table('public.connections', 'connection', array['secret_id']);

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- The one writer of connection credentials. Called by the connectors edge function as the service
-- role, after it has verified the credential with a live call; p_org_id is the organization the
-- function validated for its caller. Creates the connection, or replaces its credential.
create function public.save_connection(
  p_org_id uuid,
  p_provider public.connector_provider,
  p_display_name text,
  p_scopes text[],
  p_secret text,
  p_token_expires_at timestamptz default null,
  p_connection_id uuid default null,
  p_config jsonb default '{}'
) returns public.connections
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  connection public.connections;
begin
  if p_org_id is null or p_provider is null then
    perform private.refuse_request(400, 'invalid_connection', 'An organization and a provider are required.');
  end if;
  if p_display_name is null or pg_catalog.char_length(p_display_name) not between 1 and 100 then
    perform private.refuse_request(400, 'invalid_display_name', 'display_name must be 1 to 100 characters.');
  end if;
  if p_secret is null or pg_catalog.octet_length(p_secret) not between 1 and 8192 then
    perform private.refuse_request(400, 'invalid_secret', 'The credential must be 1 to 8192 bytes.');
  end if;
  if not private.scopes_valid(p_scopes) then
    perform private.refuse_request(400, 'invalid_scopes', 'Up to 50 scopes, each 1 to 100 of A-Z a-z 0-9 _ . : / -.');
  end if;
  if p_config is null or pg_catalog.jsonb_typeof(p_config) <> 'object' or pg_catalog.pg_column_size(p_config) > 4096 then
    perform private.refuse_request(400, 'invalid_config', 'config must be a JSON object of at most 4 KiB.');
  end if;

  if p_connection_id is null then
    insert into public.connections (org_id, provider, display_name, scopes, secret_id, token_expires_at, verified_at, config)
    values (p_org_id, p_provider, p_display_name, coalesce(p_scopes, '{}'),
            vault.create_secret(p_secret, null, 'connection credential'), p_token_expires_at, pg_catalog.now(), p_config)
    returning * into connection;
  else
    select c.* into connection from public.connections c
     where c.id = p_connection_id and c.org_id = p_org_id and c.provider = p_provider
       for update;
    if connection.id is null then
      perform private.refuse_request(404, 'connection_not_found', 'No such connection in this organization.');
    end if;
    if connection.status = 'active' then
      perform vault.update_secret(connection.secret_id, p_secret);
    else
      connection.secret_id := vault.create_secret(p_secret, null, 'connection credential');
    end if;
    update public.connections c
       set display_name = p_display_name, scopes = coalesce(p_scopes, '{}'), secret_id = connection.secret_id,
           status = 'active', disabled_at = null, token_expires_at = p_token_expires_at, verified_at = pg_catalog.now(),
           config = p_config
     where c.id = connection.id
    returning * into connection;
  end if;
  connection.secret_id := null;  -- the answer never carries even the reference
  return connection;
end
$$;
comment on function public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb) is
  'The one writer of connection credentials (service role, after live verification): stores the credential in Vault.';
revoke execute on function public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb)
  from public, anon, authenticated;
grant execute on function public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb)
  to service_role;


-- Disabling deletes the credential from Vault (the edge function revokes it at the provider first,
-- where the provider has a revocation endpoint). Tenant admins in context, or the service role.
create function public.disable_connection(p_connection_id uuid) returns public.connections
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  connection public.connections;
begin
  select c.* into connection from public.connections c
   where c.id = p_connection_id
     and (private.is_runtime() or (c.org_id = private.current_org_id() and private.has_org_role('tenant_admin')))
     for update;
  if connection.id is null then
    perform private.refuse_request(404, 'connection_not_found', 'No connection with that id that you can disable in this context.');
  end if;
  if connection.status = 'active' then
    delete from vault.secrets s where s.id = connection.secret_id;
    update public.connections c
       set status = 'disabled', secret_id = null, disabled_at = pg_catalog.now()
     where c.id = connection.id
    returning * into connection;
  end if;
  return connection;
end
$$;
comment on function public.disable_connection(uuid) is
  'Disables a connection and deletes its credential from Vault (tenant admin, or the service role).';
revoke execute on function public.disable_connection(uuid) from public, anon, authenticated;
grant execute on function public.disable_connection(uuid) to authenticated, service_role;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their organization's connections" on public.connections
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "connections are saved through save_connection" on public.connections
  for insert to authenticated
  with check (false);
create policy "connections change through their RPCs" on public.connections
  for update to authenticated
  using (false);
create policy "connections are kept for the audit trail" on public.connections
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.connections from anon, authenticated, service_role;
-- Every column but secret_id.
grant select (id, org_id, provider, display_name, scopes, status, token_expires_at, verified_at, created_by,
              created_at, disabled_at, config)
  on public.connections to authenticated;
grant select on public.connections to service_role;
