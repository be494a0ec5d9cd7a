-- Connectors (seeds 000, 002, 003, 004): the database side of the connectors edge function.
--
-- - agent_tools: each tool an agent may call declares its provider, the scopes it needs and what a
--   call costs; a new connection asks for the union of the scopes of the enabled tools of its
--   provider in the workspace, and no more. A tool is bound to one connection of its provider.
-- - connector_limits and private.connector_meters: a per-workspace rate limit (calls per minute)
--   and monthly budget (units), checked and counted in one statement per call
--   (private.meter_connector_call), so concurrent calls can never overshoot either.
-- - private.oauth_authorizations: OAuth2 authorizations in flight, keyed by the SHA-256 of their
--   state, single use, with the client secret and PKCE verifier held in Vault until the code is
--   exchanged.
-- - Disabling an agent (disable_agent) disables its tools and names the connections nothing
--   enabled uses any more, which the edge function then revokes at the provider and disables.
--
-- The credential readers are security-definer functions in `private`, executable by the service
-- role only: the connectors function runs them as the service role over its database connection
-- (functions/_shared/http/db.ts), and PostgREST never exposes `private`, so no API call reaches them.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table public.agents add column disabled_at timestamptz;
comment on column public.agents.disabled_at is
  'When the agent was disabled (disable_agent); its tools are disabled and connections only it used are revoked.';


create table public.agent_tools (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  tool text not null check (tool ~ '^[a-z][a-z0-9_.-]{0,99}$'),
  provider public.connector_provider not null,
  connection_id uuid,
  scopes text[] not null default '{}' check (private.scopes_valid(scopes)),
  cost_units integer not null default 1 check (cost_units between 0 and 1000000),
  enabled boolean not null default true,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  -- One tool of a name per agent (the agent fixes the project); the index covers the agent key.
  unique (org_id, project_id, agent_id, tool),
  -- Covers the connection key (and says nothing new: id is unique).
  unique (org_id, connection_id, provider, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade,
  -- A tool is bound to a connection of its own organization and provider, or to none yet.
  foreign key (org_id, connection_id, provider) references public.connections (org_id, id, provider)
);
comment on table public.agent_tools is
  'The tools an agent may call: provider, the scopes each needs, cost per call, and the connection it calls through.';
comment on column public.agent_tools.cost_units is 'What one call costs against the workspace''s monthly connector budget.';

create table public.connector_limits (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  calls_per_minute integer not null default 60 check (calls_per_minute between 1 and 100000),
  monthly_budget_units bigint not null default 100000 check (monthly_budget_units between 0 and 1000000000000),
  updated_at timestamptz not null default now()
);
comment on table public.connector_limits is
  'Per-workspace connector limits; an organization without a row gets the column defaults.';

-- One row per organization that has called a connector: the current minute's calls and the
-- current month's units. Written only by private.meter_connector_call.
create table private.connector_meters (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  minute_start timestamptz not null,
  minute_calls integer not null,
  month_start timestamptz not null,
  month_units bigint not null
);
comment on table private.connector_meters is 'Connector calls counted per organization: this minute''s calls, this month''s units.';

create table private.oauth_authorizations (
  org_id uuid not null references public.organizations (id) on delete cascade,
  state_sha256 text not null check (state_sha256 ~ '^[0-9a-f]{64}$'),
  display_name text not null check (char_length(display_name) between 1 and 100),
  config jsonb not null check (jsonb_typeof(config) = 'object' and pg_column_size(config) <= 4096),
  scopes text[] not null check (private.scopes_valid(scopes)),
  secret_id uuid not null,
  created_by uuid,
  expires_at timestamptz not null,
  primary key (org_id, state_sha256)
);
comment on table private.oauth_authorizations is
  'OAuth2 authorizations in flight: single use, keyed by the SHA-256 of the state; the client secret and PKCE verifier wait in Vault.';

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- Tenant tables, one line each (RLS, the context guard, ids from the context, audit).
select private.make_tenant_table('public.agent_tools', 'agent_tool');
select private.make_tenant_table('public.connector_limits', 'connector_limits');

-- =============================================================================================
-- Helper functions (the connectors function runs them as the service role; no client role may,
-- and PostgREST never exposes `private`)
-- =============================================================================================
-- The scopes a new connection of p_provider asks for: the union of those its enabled tools in
-- the organization need, sorted.
create function private.scopes_needed(p_org_id uuid, p_provider public.connector_provider) returns text[]
language sql stable security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(distinct s order by s), '{}')
    from public.agent_tools t
    join public.agents a on a.id = t.agent_id and a.org_id = t.org_id
   cross join lateral pg_catalog.unnest(t.scopes) s
   where t.org_id = p_org_id and t.provider = p_provider and t.enabled and a.disabled_at is null
$$;
comment on function private.scopes_needed(uuid, public.connector_provider) is
  'The union of the scopes the enabled tools of a provider need in an organization: what a connection asks for.';
revoke execute on function private.scopes_needed(uuid, public.connector_provider) from public, anon, authenticated;
grant execute on function private.scopes_needed(uuid, public.connector_provider) to service_role;

-- Counts one connector call of p_cost units against the organization's limits, in one statement:
-- the row is counted only if this minute's calls stay under the rate and this month's units
-- within the budget, and concurrent calls queue on the row. Returns null when the call is
-- admitted, else 'connector_rate_limited' or 'connector_budget_exhausted' (nothing counted): the
-- codes the connectors function answers with.
create function private.meter_connector_call(p_org_id uuid, p_cost integer) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  this_minute timestamptz := pg_catalog.date_trunc('minute', pg_catalog.now());
  this_month timestamptz := pg_catalog.date_trunc('month', pg_catalog.now());
  limit_budget bigint;
  used_calls integer;
  used_units bigint;
begin
  if p_org_id is null or p_cost is null or p_cost < 0 then
    raise exception 'meter_connector_call needs an organization and a cost of zero or more' using errcode = '22023';
  end if;
  with limits as (
    select coalesce(l.calls_per_minute, 60) as per_minute, coalesce(l.monthly_budget_units, 100000) as budget
      from (select 1) one left join public.connector_limits l on l.org_id = p_org_id
  )
  insert into private.connector_meters as m (org_id, minute_start, minute_calls, month_start, month_units)
  select p_org_id, this_minute, 1, this_month, p_cost
    from limits
   where limits.per_minute >= 1 and p_cost <= limits.budget
  on conflict (org_id) do update
     set minute_calls = case when m.minute_start = excluded.minute_start then m.minute_calls + 1 else 1 end,
         minute_start = excluded.minute_start,
         month_units = case when m.month_start = excluded.month_start then m.month_units + excluded.month_units
                            else excluded.month_units end,
         month_start = excluded.month_start
   where (case when m.minute_start = excluded.minute_start then m.minute_calls else 0 end) < (select l.per_minute from limits l)
     and (case when m.month_start = excluded.month_start then m.month_units else 0 end) + excluded.month_units
         <= (select l.budget from limits l)
  returning m.minute_calls into used_calls;
  if used_calls is not null then
    return null;
  end if;

  -- Refused: say which limit (this read counts nothing).
  select coalesce(l.monthly_budget_units, 100000) into limit_budget
    from (select 1) one left join public.connector_limits l on l.org_id = p_org_id;
  select case when m.minute_start = this_minute then m.minute_calls else 0 end,
         case when m.month_start = this_month then m.month_units else 0 end
    into used_calls, used_units
    from private.connector_meters m where m.org_id = p_org_id;
  if coalesce(used_units, 0) + p_cost > limit_budget then
    return 'connector_budget_exhausted';
  end if;
  return 'connector_rate_limited';
end
$$;
comment on function private.meter_connector_call(uuid, integer) is
  'Admits and counts one connector call against the rate limit and monthly budget in one statement; null, connector_rate_limited or connector_budget_exhausted.';
revoke execute on function private.meter_connector_call(uuid, integer) from public, anon, authenticated;
grant execute on function private.meter_connector_call(uuid, integer) to service_role;

-- A connection with its decrypted credential, for the connectors function to use and never to
-- return. Null when there is no such active connection.
create function private.connection_credential(p_connection_id uuid)
returns table (id uuid, org_id uuid, provider public.connector_provider, display_name text, config jsonb, scopes text[],
               token_expires_at timestamptz, credential text)
language sql stable security definer
set search_path = ''
as $$
  select c.id, c.org_id, c.provider, c.display_name, c.config, c.scopes, c.token_expires_at, s.decrypted_secret
    from public.connections c
    join vault.decrypted_secrets s on s.id = c.secret_id
   where c.id = p_connection_id and c.status = 'active'
$$;
comment on function private.connection_credential(uuid) is
  'An active connection and its decrypted credential: for the connectors function (service role) only, never returned.';
revoke execute on function private.connection_credential(uuid) from public, anon, authenticated;
grant execute on function private.connection_credential(uuid) to service_role;

-- Starts an OAuth2 authorization: keeps its settings, and its secrets (client secret and PKCE
-- verifier, as JSON, in Vault), under the state's hash for 10 minutes.
create function private.begin_oauth_authorization(
  p_state_sha256 text, p_org_id uuid, p_display_name text, p_config jsonb, p_scopes text[], p_secret text,
  p_created_by uuid
) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  -- Authorizations nobody finished go, with their secrets.
  with expired as (
    delete from private.oauth_authorizations a where a.expires_at < pg_catalog.now() returning a.secret_id
  )
  delete from vault.secrets s using expired e where s.id = e.secret_id;
  insert into private.oauth_authorizations (state_sha256, org_id, display_name, config, scopes, secret_id, created_by, expires_at)
  values (p_state_sha256, p_org_id, p_display_name, p_config, p_scopes,
          vault.create_secret(p_secret, null, 'oauth2 authorization in flight'), p_created_by,
          pg_catalog.now() + interval '10 minutes');
end
$$;
comment on function private.begin_oauth_authorization(text, uuid, text, jsonb, text[], text, uuid) is
  'Records an OAuth2 authorization in flight, its secrets in Vault.';
revoke execute on function private.begin_oauth_authorization(text, uuid, text, jsonb, text[], text, uuid)
  from public, anon, authenticated;
grant execute on function private.begin_oauth_authorization(text, uuid, text, jsonb, text[], text, uuid) to service_role;

-- Takes (once) the unexpired authorization of an organization with this state hash, with its
-- secrets, and deletes them from Vault. No row when there is none.
create function private.take_oauth_authorization(p_state_sha256 text, p_org_id uuid)
returns table (display_name text, config jsonb, scopes text[], secret text, created_by uuid)
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  taken private.oauth_authorizations;
begin
  delete from private.oauth_authorizations a
   where a.state_sha256 = p_state_sha256 and a.org_id = p_org_id
  returning * into taken;
  if taken.state_sha256 is null then
    return;
  end if;
  select taken.display_name, taken.config, taken.scopes, s.decrypted_secret, taken.created_by
    into display_name, config, scopes, secret, created_by
    from vault.decrypted_secrets s where s.id = taken.secret_id;
  delete from vault.secrets s where s.id = taken.secret_id;
  if taken.expires_at >= pg_catalog.now() then
    return next;
  end if;
end
$$;
comment on function private.take_oauth_authorization(text, uuid) is
  'Takes an OAuth2 authorization in flight once (expired ones are consumed but not returned) with its secrets.';
revoke execute on function private.take_oauth_authorization(text, uuid) from public, anon, authenticated;
grant execute on function private.take_oauth_authorization(text, uuid) to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- Disables an agent (project admin of its project in context, or the service role): marks it
-- disabled, disables its tools, and returns the active connections that no enabled tool of an
-- enabled agent uses any more, for the caller to revoke and disable.
create function public.disable_agent(p_agent_id uuid) returns setof uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
begin
  select a.* into agent from public.agents a
   where a.id = p_agent_id
     and (private.is_runtime()
          or (a.org_id = private.current_org_id() and a.project_id = any (private.admin_project_ids())))
     for update;
  if agent.id is null then
    perform private.refuse_request(404, 'agent_not_found', 'No agent with that id that you can disable in this context.');
  end if;
  if agent.disabled_at is null then
    update public.agents a set disabled_at = pg_catalog.now() where a.id = agent.id;
  end if;
  update public.agent_tools t set enabled = false where t.org_id = agent.org_id and t.agent_id = agent.id and t.enabled;
  return query
    select distinct c.id
      from public.agent_tools t
      join public.connections c on c.org_id = t.org_id and c.id = t.connection_id
     where t.org_id = agent.org_id and t.agent_id = agent.id and c.status = 'active'
       and not exists (select 1 from public.agent_tools o
                         join public.agents oa on oa.org_id = o.org_id and oa.id = o.agent_id
                        where o.org_id = c.org_id and o.connection_id = c.id and o.enabled and oa.disabled_at is null);
end
$$;
comment on function public.disable_agent(uuid) is
  'Disables an agent and its tools; returns the connections nothing enabled uses any more (to revoke and disable).';
revoke execute on function public.disable_agent(uuid) from public, anon, authenticated;
grant execute on function public.disable_agent(uuid) to authenticated, service_role;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their projects' agent tools" on public.agent_tools
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "project admins add agent tools" on public.agent_tools
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins change agent tools" on public.agent_tools
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins remove agent tools" on public.agent_tools
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));

create policy "members read their organization's connector limits" on public.connector_limits
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "tenant admins set connector limits" on public.connector_limits
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "tenant admins change connector limits" on public.connector_limits
  for update to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "connector limits are kept" on public.connector_limits
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.agent_tools, public.connector_limits from anon, authenticated;
grant select, delete, insert (org_id, project_id, agent_id, tool, provider, connection_id, scopes, cost_units, enabled),
      update (connection_id, scopes, cost_units, enabled) on public.agent_tools to authenticated;
grant select, insert (org_id, calls_per_minute, monthly_budget_units), update (calls_per_minute, monthly_budget_units, updated_at)
  on public.connector_limits to authenticated;
grant select, insert, update, delete on public.agent_tools, public.connector_limits to service_role;
