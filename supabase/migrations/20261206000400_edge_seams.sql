-- Issue 23, part 4: edges that outside testing found, closed in the database.
--
-- - Rotating a widget key ends the old key's conversations for good: widget_message_begin no
--   longer finds a conversation that started before the key's last rotation, whatever session
--   asks (the widget function also refuses to renew a session across key versions).
-- - A widget message its limits refuse writes no rate state and no row: the visitor's limit and
--   the model gateway's (the organization's and the agent's) are read first without a write, then
--   the key's is taken, then the visitor's, so that a flood of fresh sessions any of them refuses
--   creates no row.
-- - The widget function answers CORS only for an origin a live key allows
--   (private.widget_origin_allowed), never by reflecting the request's.
-- - RPCs with an argument naming an organization act on that organization when the caller may,
--   or refuse a mismatch with the caller's context, never silently acting on another one:
--   remove_model_provider_key (which ignored p_org_id for members, and refused an admin of the
--   organization it named without X-Org-Id); save_connection and save_model_provider_key (the
--   service role acting for a user acts only for a tenant admin of the organization it names,
--   checked in the statement that writes, so that a member removed or demoted during the
--   function's slow live check saves nothing).
-- - The model gateway's model list answers the callers of chat completions only
--   (private.member_allowed_models: project contributor or above in the agent's project).

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- The organization an RPC that takes an organization argument acts on, for a member: the
-- context's, when the argument is absent or names it; the one named, when there is no context
-- and the caller is a member of it (its context is then set for the rest of the transaction).
-- An argument naming another organization than the context's is refused: never acted on.
create function private.organization_named(p_org_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  context uuid := private.current_org_id();
begin
  if p_org_id is null then
    return context;
  end if;
  if context is not null then
    if context <> p_org_id then
      perform private.refuse_request(409, 'context_org_mismatch',
        'The organization named is not the one in X-Org-Id: send one, or the same in both.');
    end if;
    return context;
  end if;
  if not private.is_org_member(p_org_id) then
    perform private.refuse_request(403, 'context_not_a_member', 'You are not a member of the organization named.');
  end if;
  perform private.set_context(p_org_id);
  return p_org_id;
end
$$;
comment on function private.organization_named(uuid) is
  'The organization a member''s RPC acts on: the context''s, or (without one) the one named if a member; a mismatch is refused (409 context_org_mismatch).';
revoke execute on function private.organization_named(uuid) from public, anon, authenticated;

-- For the writers the service role calls on behalf of a user (save_connection,
-- save_model_provider_key): the user must be a tenant admin of the organization named, now, in
-- the statement that writes (the function checked before its live call, which may take a while).
-- The service role on its own (a token refresh, the runtime) names the organization itself.
create function private.assert_acting_for_admin(p_org_id uuid) returns void
language plpgsql stable security definer
set search_path = ''
as $$
begin
  if (select auth.uid()) is not null
     and not exists (select 1 from public.organization_members m
                      where m.org_id = p_org_id and m.user_id = (select auth.uid()) and m.role = 'tenant_admin') then
    perform private.refuse_request(403, 'forbidden', 'This needs the tenant_admin role in the organization named.');
  end if;
end
$$;
comment on function private.assert_acting_for_admin(uuid) is
  'Refuses (403 forbidden) the service role acting for a user who is not, now, a tenant admin of the organization named.';
revoke execute on function private.assert_acting_for_admin(uuid) from public, anon, authenticated;

-- A GCRA limit read without a write: null when a call would be admitted now, else the seconds to
-- wait. (take_model_rate counts the call; this only looks, so that a refused call leaves no row.)
create function private.peek_model_rate(p_org_id uuid, p_scope text, p_scope_id uuid, p_per_minute integer, p_burst integer)
returns numeric
language sql stable
set search_path = ''
as $$
  select case when greatest(r.tat, now_at) - now_at <= pg_catalog.make_interval(secs => 60.0 / p_per_minute * (p_burst - 1)) then null
              else greatest(extract(epoch from r.tat - pg_catalog.make_interval(secs => 60.0 / p_per_minute * (p_burst - 1)) - now_at), 0.001)
         end
    from private.model_rates r, (select pg_catalog.clock_timestamp() as now_at) t
   where r.org_id = p_org_id and r.scope = p_scope and r.scope_id = p_scope_id
$$;
comment on function private.peek_model_rate(uuid, text, uuid, integer, integer) is
  'GCRA without a write: null when a call would be admitted now, else the seconds to wait.';
revoke execute on function private.peek_model_rate(uuid, text, uuid, integer, integer) from public, anon, authenticated;

-- Whether a live widget key (of an agent that is not disabled) allows an origin: the widget
-- function's CORS answer, which never reflects an origin no key allows.
create function private.widget_origin_allowed(p_origin text) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (select 1 from public.widget_keys k
                   join public.agents a on a.org_id = k.org_id and a.id = k.agent_id
                  where k.disabled_at is null and a.disabled_at is null and k.allowed_origins @> array[p_origin])
$$;
comment on function private.widget_origin_allowed(text) is 'True when a live widget key allows the origin (the widget function''s CORS).';
revoke execute on function private.widget_origin_allowed(text) from public, anon, authenticated;
grant execute on function private.widget_origin_allowed(text) to service_role;

-- The models a member may call for an agent (the model gateway's GET /v1/models): the same
-- callers as a chat completion, a member of the organization with project_contributor or above
-- in the agent's project (private.reserve_model_call's rule).
create function private.member_allowed_models(p_org_id uuid, p_agent_id uuid)
returns table (model text, provider public.model_provider)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  caller uuid := (select auth.uid());
  agent public.agents;
begin
  if caller is null or not exists (select 1 from public.organization_members m where m.org_id = p_org_id and m.user_id = caller) then
    perform private.refuse_request(403, 'context_not_a_member', 'You are not a member of this organization.');
  end if;
  select a.* into agent from public.agents a where a.org_id = p_org_id and a.id = p_agent_id;
  if agent.id is null then
    perform private.refuse_request(404, 'agent_not_found', 'No such agent in this organization.');
  end if;
  if not exists (
    select 1 from public.organization_members m
      left join public.project_members pm on pm.org_id = m.org_id and pm.project_id = agent.project_id and pm.user_id = m.user_id
     where m.org_id = agent.org_id and m.user_id = caller and least(m.role, pm.role) <= 'project_contributor') then
    perform private.refuse_request(403, 'forbidden', 'Listing models needs the project_contributor role in the agent''s project.');
  end if;
  return query select m.model, m.provider from private.allowed_models(p_org_id, p_agent_id) m;
end
$$;
comment on function private.member_allowed_models(uuid, uuid) is
  'The models a member may call for an agent (project contributor or above in its project), or a refusal.';
revoke execute on function private.member_allowed_models(uuid, uuid) from public, anon, authenticated;
grant execute on function private.member_allowed_models(uuid, uuid) to authenticated, service_role;

-- =============================================================================================
-- Helper functions: the widget function's message path
-- =============================================================================================
-- As before (20261122000900_widgets.sql), with two changes: a conversation from before the key's
-- last rotation is not found, and a message the limits refuse writes no rate state.
create or replace function private.widget_message_begin(
  p_key_id uuid, p_key_version integer, p_visitor_id uuid, p_origin text, p_conversation_id uuid, p_content text,
  p_wants_human boolean, p_lead_email text, p_notice text
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  key public.widget_keys;
  agent public.agents;
  config jsonb;
  conversation public.widget_conversations;
  wait numeric;
  org_limits public.model_limits;
  agent_rate integer;
  history jsonb;
  bound integer;
  admitted jsonb;
  refusal text;
begin
  select k.* into key from public.widget_keys k where k.id = p_key_id;
  if key.id is null or key.disabled_at is not null or key.version <> p_key_version then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_session_expired');
  end if;
  if not (p_origin = any (key.allowed_origins)) then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_origin_not_allowed');
  end if;
  if p_conversation_id is not null then
    select c.* into conversation from public.widget_conversations c
     where c.org_id = key.org_id and c.id = p_conversation_id and c.widget_key_id = key.id and c.visitor_id = p_visitor_id
       -- A rotation ends the old key's conversations, whoever asks.
       and (key.rotated_at is null or c.started_at >= key.rotated_at);
    if conversation.id is null then
      return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_conversation_not_found');
    end if;
  end if;

  -- The visitor's limit, then the key's: a minute's worth may come at once, then they are paced.
  -- The visitor's, the organization's and the agent's (the model gateway's, which
  -- admit_model_call counts below) are read first without a write, so that one visitor over their
  -- own limit spends nothing of the key's, and a message any limit refuses leaves no row behind
  -- (not a visitor's rate state, not a conversation), however many fresh visitors send one. Then
  -- the key's is taken, then the visitor's.
  wait := private.peek_model_rate(key.org_id, 'visitor', p_visitor_id, key.visitor_requests_per_minute, key.visitor_requests_per_minute);
  if wait is null then
    select l.* into org_limits from (select 1) one left join public.model_limits l on l.org_id = key.org_id;
    wait := private.peek_model_rate(key.org_id, 'organization', key.org_id, coalesce(org_limits.requests_per_minute, 600),
                                    coalesce(org_limits.burst, 60));
  end if;
  if wait is null then
    select c.requests_per_minute into agent_rate from public.model_caps c
     where c.org_id = key.org_id and c.project_id = key.project_id and c.agent_id = key.agent_id;
    if agent_rate is not null then
      wait := private.peek_model_rate(key.org_id, 'agent', key.agent_id, agent_rate, least(coalesce(org_limits.burst, 60), agent_rate));
    end if;
  end if;
  if wait is null then
    wait := private.take_model_rate(key.org_id, 'widget_key', key.id, key.requests_per_minute, key.requests_per_minute);
  end if;
  if wait is null then
    wait := private.take_model_rate(key.org_id, 'visitor', p_visitor_id, key.visitor_requests_per_minute, key.visitor_requests_per_minute);
  end if;
  if wait is not null then
    -- Not stored: a flood of messages must not become a flood of rows. An existing conversation
    -- hears why, once the limit lets it.
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_rate_limited', 'retry_after', pg_catalog.ceil(wait)::integer,
                                         'conversation_id', conversation.id);
  end if;

  select a.* into agent from public.agents a where a.org_id = key.org_id and a.id = key.agent_id;
  select v.config into config from public.agent_versions v
   where v.org_id = key.org_id and v.agent_id = key.agent_id and v.published_at is not null
   order by v.version desc limit 1;
  if conversation.id is null then
    insert into public.widget_conversations (org_id, project_id, agent_id, widget_key_id, visitor_id, origin)
    values (key.org_id, key.project_id, key.agent_id, key.id, p_visitor_id, p_origin)
    returning * into conversation;
  else
    update public.widget_conversations c set last_message_at = pg_catalog.now() where c.id = conversation.id;
  end if;
  insert into public.widget_messages (org_id, project_id, conversation_id, role, content)
  values (key.org_id, key.project_id, conversation.id, 'visitor', p_content);
  if p_lead_email is not null and p_lead_email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$' then
    insert into public.review_items (org_id, project_id, agent_id, conversation_id, kind, summary, lead_email)
    select key.org_id, key.project_id, key.agent_id, conversation.id, 'lead', 'A visitor left an email address.', p_lead_email
     where not exists (select 1 from public.review_items i where i.org_id = key.org_id and i.conversation_id = conversation.id
                                                              and i.kind = 'lead' and i.lead_email = p_lead_email);
  end if;
  if p_wants_human then
    perform private.escalate(conversation, 'The visitor asked for a person.', false);
  end if;

  -- What goes upstream: the instructions, then the last 20 turns; bounded as the gateway bounds a
  -- prompt (UTF-8 bytes of the JSON, plus 16 a message).
  -- The window starts on a visitor's turn (providers refuse a conversation that opens with the
  -- assistant).
  with recent as (
    select w.role, w.content, pg_catalog.row_number() over (order by w.created_at) as ord
      from (select * from public.widget_messages x
             where x.org_id = key.org_id and x.conversation_id = conversation.id and x.role <> 'notice'
             order by x.created_at desc limit 20) w
  )
  select pg_catalog.jsonb_agg(turns.m order by turns.ord) into history from (
    select 0 as ord, pg_catalog.jsonb_build_object('role', 'system', 'content', config ->> 'instructions') as m
     where coalesce(config ->> 'instructions', '') <> ''
    union all
    select r.ord, pg_catalog.jsonb_build_object('role', case when r.role = 'visitor' then 'user' else 'assistant' end, 'content', r.content)
      from recent r
     where r.ord >= (select pg_catalog.min(v.ord) from recent v where v.role = 'visitor')
  ) turns (ord, m);
  bound := pg_catalog.octet_length(history::text) + 16 * pg_catalog.jsonb_array_length(history);

  begin
    admitted := private.admit_model_call(agent, null, null, coalesce(config ->> 'model', 'gpt-4o-mini'), bound, null, true,
      pg_catalog.jsonb_build_object('scope', 'widget_key', 'scope_id', key.id, 'budget', key.monthly_budget_micro));
  exception when sqlstate 'PGRST' then
    -- A refusal of the model gateway's (the agent's model is not allowed, the organization's
    -- prepaid credits or the platform's ceiling can't cover the call): the visitor is told
    -- politely, and the refusal keeps its own code for the team and the embed.
    get stacked diagnostics refusal = message_text;
    admitted := pg_catalog.jsonb_build_object('ok', false, 'reason', coalesce(refusal::jsonb ->> 'code', 'widget_model_unavailable'));
  end;
  if admitted ->> 'reason' = 'model_rate_limited' then
    -- The agent's own rate (the model gateway's): busy, like the key's and the visitor's limits.
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_rate_limited', 'retry_after', admitted -> 'retry_after',
                                         'conversation_id', conversation.id);
  end if;
  if not (admitted ->> 'ok')::boolean then
    insert into public.widget_messages (org_id, project_id, conversation_id, role, content)
    values (key.org_id, key.project_id, conversation.id, 'notice', p_notice);
    perform private.escalate(conversation, pg_catalog.format('The widget could not answer (%s).', admitted ->> 'reason'), true);
    return pg_catalog.jsonb_build_object('ok', false, 'reason', admitted ->> 'reason', 'conversation_id', conversation.id);
  end if;
  return pg_catalog.jsonb_build_object('ok', true, 'conversation_id', conversation.id, 'reservation', admitted,
                                       'messages', history, 'input_bound', bound, 'hold', key.hold_answers);
end
$$;
comment on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text) is
  'A widget message before its answer, in one statement: session key and origin, rate limits, storage, review items, the model reservation.';
revoke execute on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text)
  from public, anon, authenticated;
grant execute on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text) to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- Removes an organization's own key for a provider, deleting it from Vault; calls go back to the
-- platform's key. A tenant admin acts in the context's organization, or without a context in the
-- one p_org_id names; p_org_id naming another organization than the context's is refused (409
-- context_org_mismatch). The service role names the organization. Answers whether there was one.
create or replace function public.remove_model_provider_key(p_provider public.model_provider, p_org_id uuid default null)
returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid;
  removed uuid;
begin
  if private.is_runtime() then
    if p_org_id is null then
      perform private.refuse_request(400, 'missing_org_id', 'The service role names the organization with p_org_id.');
    end if;
    org := p_org_id;
  else
    -- The context's organization, or the one named when there is no context; never another.
    org := private.organization_named(p_org_id);
    if org is null or not private.has_org_role('tenant_admin') then
      perform private.refuse_request(403, 'forbidden', 'Removing a model key needs the tenant_admin role in the organization.');
    end if;
  end if;
  -- The row's trigger (forget_secret) deletes the key from Vault.
  delete from public.model_provider_keys k where k.org_id = org and k.provider = p_provider returning k.secret_id into removed;
  return removed is not null;
end
$$;
comment on function public.remove_model_provider_key(public.model_provider, uuid) is
  'Removes an organization''s own model key (tenant admin of the organization in context, or without one of the organization named: another than the context''s is refused, 409 context_org_mismatch) and deletes it from Vault.';
revoke execute on function public.remove_model_provider_key(public.model_provider, uuid) from public, anon, authenticated;
grant execute on function public.remove_model_provider_key(public.model_provider, uuid) to authenticated, service_role;

-- The one writer of connection credentials, as before (20261122000600_connections.sql), now
-- refusing the service role acting for a user who is not a tenant admin of p_org_id.
create or replace function public.save_connection(
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
  -- Acting for a user: a tenant admin of this organization, now (after the live check).
  perform private.assert_acting_for_admin(p_org_id);
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
  'The one writer of connection credentials (service role, after live verification; acting for a tenant admin of the organization): stores the credential in Vault.';
revoke execute on function public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb)
  from public, anon, authenticated;
grant execute on function public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb)
  to service_role;

-- The one writer of organizations' own model keys, as before (20261122000800_model_gateway.sql),
-- now refusing the service role acting for a user who is not a tenant admin of p_org_id.
create or replace function public.save_model_provider_key(p_org_id uuid, p_provider public.model_provider, p_api_key text,
                                               p_base_url text default null)
returns public.model_provider_keys
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  saved public.model_provider_keys;
  hint text;
begin
  if p_org_id is null or p_provider is null then
    perform private.refuse_request(400, 'invalid_body', 'An organization and a provider are required.');
  end if;
  -- Acting for a user: a tenant admin of this organization, now (after the live check).
  perform private.assert_acting_for_admin(p_org_id);
  if p_api_key is null or pg_catalog.octet_length(p_api_key) not between 8 and 4096 or p_api_key ~ '\s' then
    perform private.refuse_request(400, 'invalid_api_key', 'The key must be 8 to 4096 bytes without whitespace.');
  end if;
  hint := '…' || pg_catalog.regexp_replace(pg_catalog.right(p_api_key, 4), '[^A-Za-z0-9_-]', '', 'g');
  select k.* into saved from public.model_provider_keys k where k.org_id = p_org_id and k.provider = p_provider for update;
  if saved.id is null then
    insert into public.model_provider_keys (org_id, provider, base_url, key_hint, secret_id, verified_at)
    values (p_org_id, p_provider, p_base_url, hint, vault.create_secret(p_api_key, null, 'model provider key'), pg_catalog.now())
    returning * into saved;
  else
    perform vault.update_secret(saved.secret_id, p_api_key);
    update public.model_provider_keys k
       set base_url = p_base_url, key_hint = hint, verified_at = pg_catalog.now()
     where k.id = saved.id
    returning * into saved;
  end if;
  saved.secret_id := null;  -- the answer never carries even the reference
  return saved;
end
$$;
comment on function public.save_model_provider_key(uuid, public.model_provider, text, text) is
  'The one writer of an organization''s own model vendor keys (service role, after live verification; acting for a tenant admin of the organization): Vault only.';
revoke execute on function public.save_model_provider_key(uuid, public.model_provider, text, text) from public, anon, authenticated;
grant execute on function public.save_model_provider_key(uuid, public.model_provider, text, text) to service_role;
