-- An approval pins the whole effect, not only the payload (issue 23; seed 000: "the platform
-- refuses to execute any payload whose hash does not match the approved one").
--
-- Before this, policies and execution followed the tool's *name*, a value a project admin can
-- re-point at any time: binding the name to another connection after a human approved "post to
-- Slack" delivered the approved payload elsewhere, and binding a name an `allow` policy covers to
-- another connection let any proposal through with no decision. Approvers saw the proposer's free
-- text as the "connector".
--
-- Now:
--   * connections.destination is the host a connection's deliveries go to, derived here from the
--     credential in Vault (a webhook's URL) or the settings (an OAuth2 API URL) by a trigger, so no
--     writer can set it apart from the credential it describes.
--   * propose_action resolves the agent's tool and records its target: tool id, provider,
--     connection and destination. It refuses a tool the agent doesn't have (404 tool_not_found) or
--     one that is disabled or bound to no active connection (409 tool_not_bound). The proposer no
--     longer names a connector.
--   * approval_sha256 is the SHA-256 of the RFC 8785 text of {connection_id, destination,
--     payload_sha256, provider, tool, tool_id}: approvers decide on it (decide_action's
--     p_approval_sha256), so what they approve names the real connection and host.
--   * execute_action refuses (approval_target_changed) when the tool, its binding, the connection
--     or its destination is not what was approved, and hands the runtime the pinned connection,
--     which it delivers through (not whatever the name points at now).
--   * Changing a tool's binding (its connection, disabling or deleting it) or a connection's
--     destination or status ends every request on it that is pending or approved but not executed
--     (status withdrawn).
--   * An `allow` policy names the connection it allows (and pins that connection's destination): it
--     applies only while the tool is bound there, so no renaming or rebinding reaches it.
--   * A policy sets a minimum risk (min_risk): the effective risk of a request is the higher of the
--     policy's and the proposer's, so an agent can't label a dangerous action `medium` to skip
--     step-up or dual control. The proposer's own label is kept (proposed_risk).
--
-- Open requests from before this migration: pending ones are pinned to their tool's current
-- binding when it has one; approved-but-unexecuted ones were approved without seeing their target,
-- so they are withdrawn, as are pending ones with nothing to pin.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table public.connections add column destination text
  check (char_length(destination) between 1 and 300 and destination !~ '[[:space:]/?#@]');
comment on column public.connections.destination is
  'The host this connection''s deliveries go to (a webhook URL''s host, an OAuth2 API''s host, the provider''s API), derived from the credential by a trigger.';

alter table public.action_requests
  add column tool_id uuid,
  add column provider public.connector_provider,
  add column connection_id uuid,
  add column destination text,
  add column proposed_risk public.risk_level,
  add column approval_sha256 text,
  add column withdrawn_at timestamptz;
comment on column public.action_requests.tool_id is
  'The agent tool the request was proposed for (its id when proposed: a tool re-created under the same name is another tool).';
comment on column public.action_requests.connection_id is 'The connection the action goes through, pinned when proposed.';
comment on column public.action_requests.destination is 'The host the connection delivered to when proposed, pinned.';
comment on column public.action_requests.risk is 'The effective risk: the higher of the policy''s minimum and the proposer''s.';
comment on column public.action_requests.proposed_risk is 'The risk the proposer named.';
comment on column public.action_requests.approval_sha256 is
  'SHA-256 of the RFC 8785 text of {connection_id, destination, payload_sha256, provider, tool, tool_id}: what approvers decide on.';
comment on column public.action_requests.withdrawn_at is
  'When the request ended because its tool''s binding or its connection changed before it was executed.';

alter table public.approval_decisions rename column payload_sha256 to approval_sha256;
comment on table public.approval_decisions is
  'Approvals and rejections, each bound to the approval hash (payload and target) the approver was shown. Written only through decide_action().';

alter table public.approval_policies
  add column connection_id uuid,
  add column destination text,
  add column min_risk public.risk_level not null default 'low',
  add constraint approval_policies_connection_fkey
    foreign key (org_id, connection_id) references public.connections (org_id, id);
comment on column public.approval_policies.connection_id is
  'The connection an allow policy allows (required for allow): it applies only to a tool bound there.';
comment on column public.approval_policies.destination is
  'The connection''s destination when the policy was written (set by a trigger): an allow policy stops applying if it changes.';
comment on column public.approval_policies.min_risk is
  'The least risk a request under this policy has, whatever the proposer says.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- The host of an absolute URL, as WHATWG's URL.host spells it for the URLs connections accept
-- (lowercase, no userinfo, no default https port; a backslash ends the authority, as it does for
-- WHATWG's special schemes). Null for anything else. The connectors function derives the same
-- host with the URL parser before it delivers, and refuses when the two disagree.
create function private.url_host(p_url text) returns text
language sql immutable
set search_path = ''
as $$
  select pg_catalog.regexp_replace(
           pg_catalog.lower(pg_catalog.substring(p_url, '^[Hh][Tt][Tt][Pp][Ss]?://(?:[^@/?#\\]*@)?([^/?#\\]+)')),
           '^(.*):443$', '\1')
$$;
comment on function private.url_host(text) is 'The host (and non-default port) of an http(s) URL, lowercase; null when there is none.';
revoke execute on function private.url_host(text) from public, anon, authenticated;

-- Where a connection's deliveries go: the webhook URL's host, the OAuth2 API's host, or the fixed
-- provider's API (operator configuration, which no tenant can change).
create function private.connection_destination(p_provider public.connector_provider, p_credential text, p_config jsonb)
returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  return case p_provider
    when 'github' then 'api.github.com'
    when 'notion' then 'api.notion.com'
    when 'oauth2' then private.url_host(p_config ->> 'api_url')
    else private.url_host((p_credential::jsonb) ->> 'url')
  end;
exception when invalid_text_representation then
  return null;
end
$$;
comment on function private.connection_destination(public.connector_provider, text, jsonb) is
  'The host a connection delivers to, from its provider, credential and settings.';
revoke execute on function private.connection_destination(public.connector_provider, text, jsonb) from public, anon, authenticated;

-- The approval hash: what approvers decide on and execution re-checks.
create function private.approval_sha256(
  p_payload_sha256 text, p_tool text, p_tool_id uuid, p_provider public.connector_provider, p_connection_id uuid,
  p_destination text
) returns text
language sql immutable
set search_path = ''
as $$
  select private.sha256_hex(private.jcs(pg_catalog.jsonb_build_object(
    'connection_id', p_connection_id, 'destination', p_destination, 'payload_sha256', p_payload_sha256,
    'provider', p_provider, 'tool', p_tool, 'tool_id', p_tool_id)))
$$;
comment on function private.approval_sha256(text, text, uuid, public.connector_provider, uuid, text) is
  'SHA-256 of the RFC 8785 text of {connection_id, destination, payload_sha256, provider, tool, tool_id}.';
revoke execute on function private.approval_sha256(text, text, uuid, public.connector_provider, uuid, text) from public, anon;
grant execute on function private.approval_sha256(text, text, uuid, public.connector_provider, uuid, text) to authenticated, service_role;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- A connection's destination follows its credential: derived on every write from the secret in
-- Vault, whoever writes.
create function private.derive_connection_destination() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.secret_id is not null then
    new.destination := private.connection_destination(
      new.provider, (select s.decrypted_secret from vault.decrypted_secrets s where s.id = new.secret_id), new.config);
    if new.destination is null then
      perform private.refuse_request(400, 'invalid_destination', 'The connection''s credential names no host to deliver to.');
    end if;
  end if;
  return new;
end
$$;
comment on function private.derive_connection_destination() is
  'Sets connections.destination from the credential in Vault and the settings, on every write.';
revoke execute on function private.derive_connection_destination() from public, anon, authenticated;

create trigger derive_destination before insert or update on public.connections
  for each row execute function private.derive_connection_destination();

-- Ends the requests a change of target leaves behind: pending, or approved and not executed.
create function private.withdraw_requests(p_org_id uuid, p_tool_id uuid, p_connection_id uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
  update public.action_requests r
     set status = 'withdrawn', withdrawn_at = pg_catalog.now()
   where r.org_id = p_org_id
     and r.status in ('pending', 'approved')
     and (r.tool_id = p_tool_id or r.connection_id = p_connection_id)
$$;
comment on function private.withdraw_requests(uuid, uuid, uuid) is
  'Withdraws the open (pending, or approved and unexecuted) requests on a tool or a connection.';
revoke execute on function private.withdraw_requests(uuid, uuid, uuid) from public, anon, authenticated;

create function private.withdraw_on_rebinding() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE'
     or new.connection_id is distinct from old.connection_id
     or new.provider is distinct from old.provider
     or new.tool is distinct from old.tool
     or (old.enabled and not new.enabled) then
    perform private.withdraw_requests(old.org_id, old.id, null);
  end if;
  return null;
end
$$;
comment on function private.withdraw_on_rebinding() is
  'A tool rebound, disabled, renamed or deleted ends its open requests.';
revoke execute on function private.withdraw_on_rebinding() from public, anon, authenticated;

create trigger withdraw_requests after update or delete on public.agent_tools
  for each row execute function private.withdraw_on_rebinding();

create function private.withdraw_on_connection_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if new.destination is distinct from old.destination or (old.status = 'active' and new.status <> 'active') then
    perform private.withdraw_requests(old.org_id, null, old.id);
  end if;
  return null;
end
$$;
comment on function private.withdraw_on_connection_change() is
  'A connection that delivers elsewhere, or no longer delivers, ends its open requests.';
revoke execute on function private.withdraw_on_connection_change() from public, anon, authenticated;

create trigger withdraw_requests after update on public.connections
  for each row execute function private.withdraw_on_connection_change();

-- A policy's pinned destination is the connection's, never the writer's.
create function private.pin_policy_destination() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  new.destination := (select c.destination from public.connections c
                       where c.org_id = new.org_id and c.id = new.connection_id and c.status = 'active');
  if new.connection_id is not null and new.destination is null then
    perform private.refuse_request(409, 'connection_inactive', 'A policy can only name an active connection of the organization.');
  end if;
  return new;
end
$$;
comment on function private.pin_policy_destination() is 'Sets approval_policies.destination from the named connection.';
revoke execute on function private.pin_policy_destination() from public, anon, authenticated;

create trigger pin_destination before insert or update on public.approval_policies
  for each row execute function private.pin_policy_destination();

-- =============================================================================================
-- What was there before
-- =============================================================================================
update public.connections c
   set config = c.config  -- the trigger derives the destination
 where c.status = 'active';
update public.connections c
   set destination = case c.provider when 'github' then 'api.github.com' when 'notion' then 'api.notion.com'
                                     when 'oauth2' then private.url_host(c.config ->> 'api_url') end
 where c.status = 'disabled';

update public.action_requests r
   set tool_id = t.id, provider = t.provider, connection_id = t.connection_id, destination = c.destination,
       proposed_risk = r.risk,
       approval_sha256 = private.approval_sha256(r.payload_sha256, r.tool, t.id, t.provider, t.connection_id, c.destination)
  from public.agent_tools t
  join public.connections c on c.org_id = t.org_id and c.id = t.connection_id and c.status = 'active'
 where r.status = 'pending' and t.org_id = r.org_id and t.agent_id = r.agent_id and t.tool = r.tool and t.enabled;
update public.action_requests r
   set status = 'withdrawn', withdrawn_at = pg_catalog.now()
 where r.status = 'approved' or (r.status = 'pending' and r.approval_sha256 is null);
update public.action_requests r set proposed_risk = r.risk where r.proposed_risk is null;

-- Allow policies that name no connection allowed whatever the name pointed at: they become
-- require_approval (a person now decides, and can pin one to a connection).
update public.approval_policies p set mode = 'require_approval' where p.mode = 'allow';

-- The review view names the column that goes; it is made again below.
drop view public.pending_approvals;
alter table public.action_requests
  drop column connector,
  alter column proposed_risk set not null,
  add constraint action_requests_target_pinned
    check (status not in ('pending', 'approved')
           or (tool_id is not null and provider is not null and connection_id is not null and destination is not null
               and approval_sha256 is not null)),
  add constraint action_requests_approval_sha256
    check (approval_sha256 is null
           or approval_sha256 = private.approval_sha256(payload_sha256, tool, tool_id, provider, connection_id, destination)),
  add constraint action_requests_withdrawn
    check ((status = 'withdrawn') = (withdrawn_at is not null)),
  add constraint action_requests_connection_fkey
    foreign key (org_id, connection_id, provider) references public.connections (org_id, id, provider);
-- Cover the connection key and the tool's requests (withdrawals look them up); they say nothing
-- new, id being unique.
alter table public.action_requests
  add constraint action_requests_connection_key unique (org_id, connection_id, provider, id),
  add constraint action_requests_tool_key unique (org_id, tool_id, id);

alter table public.approval_policies
  add constraint approval_policies_allow_names_a_connection check (mode <> 'allow' or connection_id is not null);
alter table public.approval_policies add constraint approval_policies_connection_key unique (org_id, connection_id, id);

-- =============================================================================================
-- Helper functions that read the new columns
-- =============================================================================================
-- The policy that applies to a tool bound to a connection with a destination: agent and tool,
-- then agent, then tool, then the project's default. An allow policy counts only for the
-- connection it names, at the destination it had; otherwise the next one down applies, and
-- without any the project asks one approver.
drop function private.approval_policy_for(uuid, uuid, uuid, text);
create function private.approval_policy_for(
  p_org_id uuid, p_project_id uuid, p_agent_id uuid, p_tool text, p_connection_id uuid, p_destination text
) returns public.approval_policies
language sql stable
set search_path = ''
as $$
  select p.*
    from public.approval_policies p
   where p.org_id = p_org_id and p.project_id = p_project_id
     and (p.agent_id is null or p.agent_id = p_agent_id)
     and (p.tool is null or p.tool = p_tool)
     and (p.mode <> 'allow' or (p.connection_id = p_connection_id and p.destination = p_destination))
   order by p.agent_id is not null desc, p.tool is not null desc
   limit 1
$$;
comment on function private.approval_policy_for(uuid, uuid, uuid, text, uuid, text) is
  'The most specific approval policy for an agent''s tool through a connection; an allow policy only for the connection it names.';
revoke execute on function private.approval_policy_for(uuid, uuid, uuid, text, uuid, text) from public, anon, authenticated;

-- Whether a request's target is still what was approved: the same tool (by id, under the same
-- name, of the same agent), enabled, bound to the same connection, which is active and delivers
-- to the same destination.
create function private.target_unchanged(p_request public.action_requests) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select 1
      from public.agent_tools t
      join public.agents a on a.org_id = t.org_id and a.id = t.agent_id
      join public.connections c on c.org_id = t.org_id and c.id = t.connection_id
     where t.org_id = p_request.org_id and t.id = p_request.tool_id and t.agent_id = p_request.agent_id
       and t.tool = p_request.tool and t.provider = p_request.provider and t.connection_id = p_request.connection_id
       and t.enabled and a.disabled_at is null
       and c.status = 'active' and c.destination = p_request.destination)
$$;
comment on function private.target_unchanged(public.action_requests) is
  'True while a request''s tool, binding, connection and destination are what was proposed and approved.';
revoke execute on function private.target_unchanged(public.action_requests) from public, anon, authenticated;

-- =============================================================================================
-- RPCs
-- =============================================================================================
drop function public.propose_action(uuid, text, text, jsonb, public.risk_level, integer);
drop function public.decide_action(uuid, text, boolean, text);

create function public.propose_action(
  p_run_id uuid,
  p_tool text,
  p_payload jsonb,
  p_risk public.risk_level default 'medium',
  p_expires_in_seconds integer default 3600
) returns public.action_requests
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs;
  bound_tool public.agent_tools;
  bound_destination text;
  policy public.approval_policies;
  canonical text;
  payload_hash text;
  mode public.approval_mode;
  effective_risk public.risk_level;
  request public.action_requests;
  runtime boolean := private.is_runtime();
begin
  select r.* into run from public.agent_runs r where r.id = p_run_id;
  if run.id is null
     or (not runtime
         and (run.org_id is distinct from private.current_org_id()
              or not run.project_id = any (private.project_ids_with_role('project_contributor')))) then
    perform private.refuse_request(404, 'run_not_found', 'No run with that id that you can act for in this context.');
  end if;
  if run.status <> 'running' then
    perform private.refuse_request(409, 'run_not_running', 'The run has ended; it can propose no more actions.');
  end if;
  if p_tool is null or p_tool !~ '^[a-z][a-z0-9_.-]{0,99}$' then
    perform private.refuse_request(400, 'invalid_tool', 'tool must match ^[a-z][a-z0-9_.-]{0,99}$.');
  end if;
  if p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
    perform private.refuse_request(400, 'invalid_payload', 'payload must be a JSON object.');
  end if;
  if p_risk is null then
    perform private.refuse_request(400, 'invalid_risk', 'risk must be low, medium, high or critical.');
  end if;
  if p_expires_in_seconds is null or p_expires_in_seconds not between 60 and 604800 then
    perform private.refuse_request(400, 'invalid_expiry', 'expires_in_seconds must be between 60 and 604800 (7 days).');
  end if;
  canonical := private.jcs(p_payload);
  if pg_catalog.octet_length(canonical) > 65536 then
    perform private.refuse_request(413, 'payload_too_large', 'The canonical payload is limited to 65536 bytes.');
  end if;

  -- The target: the agent's tool of that name, and the connection it is bound to now. The row
  -- lock keeps the binding from changing until this request is recorded against it.
  select t.* into bound_tool from public.agent_tools t
   where t.org_id = run.org_id and t.agent_id = run.agent_id and t.tool = p_tool
     for share;
  if bound_tool.id is null then
    perform private.refuse_request(404, 'tool_not_found', 'The run''s agent has no tool of that name.');
  end if;
  select c.destination into bound_destination from public.connections c
   where c.org_id = bound_tool.org_id and c.id = bound_tool.connection_id and c.status = 'active'
     for share;
  if not bound_tool.enabled or bound_destination is null then
    perform private.refuse_request(409, 'tool_not_bound', 'The tool is disabled or bound to no active connection.');
  end if;

  policy := private.approval_policy_for(run.org_id, run.project_id, run.agent_id, p_tool, bound_tool.connection_id, bound_destination);
  mode := coalesce(policy.mode, 'require_approval');
  effective_risk := greatest(p_risk, policy.min_risk);
  if mode = 'require_approval' and effective_risk >= policy.dual_control_from_risk then
    mode := 'require_dual_control';
  end if;
  payload_hash := private.sha256_hex(canonical);

  insert into public.action_requests (
    org_id, project_id, agent_id, run_id, tool, tool_id, provider, connection_id, destination, canonical_payload,
    payload_sha256, approval_sha256, risk, proposed_risk, policy_id, mode, approvals_required, approver_role, status,
    requested_by, requested_via, expires_at, decided_at)
  values (
    run.org_id, run.project_id, run.agent_id, run.id, p_tool, bound_tool.id, bound_tool.provider, bound_tool.connection_id,
    bound_destination, canonical, payload_hash,
    private.approval_sha256(payload_hash, p_tool, bound_tool.id, bound_tool.provider, bound_tool.connection_id, bound_destination),
    effective_risk, p_risk, policy.id, mode,
    case mode when 'require_approval' then 1 when 'require_dual_control' then 2 else 0 end,
    coalesce(policy.approver_role, 'project_admin'),
    case mode when 'allow' then 'approved' when 'deny' then 'denied' else 'pending' end::public.action_status,
    case when runtime then run.started_by else (select auth.uid()) end,
    case when runtime then 'agent_runtime' else 'member' end,
    pg_catalog.now() + pg_catalog.make_interval(secs => p_expires_in_seconds),
    case when mode in ('allow', 'deny') then pg_catalog.now() end)
  returning * into request;
  return request;
end
$$;
comment on function public.propose_action(uuid, text, jsonb, public.risk_level, integer) is
  'An agent run proposes an external action through its agent''s tool; the request pins the tool, connection and destination, and the policy decides whether it waits for approval, is approved or is denied.';
revoke execute on function public.propose_action(uuid, text, jsonb, public.risk_level, integer) from public, anon, authenticated;
grant execute on function public.propose_action(uuid, text, jsonb, public.risk_level, integer) to authenticated, service_role;

create function public.decide_action(
  p_request_id uuid,
  p_approval_sha256 text,
  p_approve boolean,
  p_comment text default null
) returns public.action_requests
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  request public.action_requests;
  approver uuid := (select auth.uid());
  approvals integer;
begin
  if approver is null then
    perform private.refuse_request(401, 'sign_in_required', 'Approvals are decided by signed-in people.');
  end if;
  -- The row lock orders decisions (and executions, and withdrawals) on one request.
  select r.* into request
    from public.action_requests r
   where r.id = p_request_id and r.org_id = private.current_org_id()
     for update;
  if request.id is null then
    perform private.refuse_request(404, 'action_request_not_found', 'No action request with that id in this organization.');
  end if;
  if p_approve is null then
    perform private.refuse_request(400, 'invalid_decision', 'approve must be true or false.');
  end if;
  if p_approval_sha256 is null or p_approval_sha256 !~ '^[0-9a-f]{64}$' then
    perform private.refuse_request(400, 'invalid_approval_hash', 'approval_sha256 must be 64 lowercase hex digits.');
  end if;
  if p_comment is not null and pg_catalog.char_length(p_comment) > 1000 then
    perform private.refuse_request(400, 'invalid_comment', 'The comment is limited to 1000 characters.');
  end if;
  if request.status = 'withdrawn' then
    perform private.refuse_request(409, 'approval_target_changed',
      'The tool''s binding or its connection changed after this request was proposed; it was withdrawn.');
  end if;
  if request.status <> 'pending' then
    perform private.refuse_request(409, 'action_request_not_pending',
      pg_catalog.format('The request is %s; only pending requests are decided.', request.status));
  end if;
  if request.expires_at <= pg_catalog.now() then
    perform private.refuse_request(409, 'action_request_expired', 'The request has expired.');
  end if;
  case private.decision_refusal(request)
    when 'approver_role_required' then
      perform private.refuse_request(403, 'approver_role_required',
        pg_catalog.format('Deciding needs the %s role on the project.', request.approver_role));
    when 'self_approval' then
      perform private.refuse_request(403, 'self_approval', 'Nobody decides an action they requested or whose run they started.');
    when 'already_decided' then
      perform private.refuse_request(409, 'already_decided', 'You have already decided this request; a second approval needs another person.');
    else
      null;
  end case;
  if p_approval_sha256 <> request.approval_sha256 then
    perform private.refuse_request(409, 'stale_approval_hash',
      'The approval hash you were shown is not the request''s; reload the request and review its payload and target.');
  end if;

  insert into public.approval_decisions (org_id, project_id, request_id, decided_by, approve, approval_sha256, comment)
  values (request.org_id, request.project_id, request.id, approver, p_approve, p_approval_sha256, p_comment);

  select pg_catalog.count(*) into approvals
    from public.approval_decisions d
   where d.org_id = request.org_id and d.project_id = request.project_id and d.request_id = request.id and d.approve;
  if not p_approve or approvals >= request.approvals_required then
    update public.action_requests r
       set status = case when p_approve then 'approved' else 'rejected' end::public.action_status,
           decided_at = pg_catalog.now()
     where r.id = request.id
    returning * into request;
  end if;
  return request;
end
$$;
comment on function public.decide_action(uuid, text, boolean, text) is
  'Approves or rejects a pending action, bound to the approval hash (payload and target) the approver was shown.';
revoke execute on function public.decide_action(uuid, text, boolean, text) from public, anon, authenticated;
grant execute on function public.decide_action(uuid, text, boolean, text) to authenticated;

-- Answers {"ok":true, request_id, tool, tool_id, provider, connection_id, destination,
-- canonical_payload, payload_sha256, approval_sha256} or {"ok":false, reason, request_id,
-- payload_sha256} with reason one of already_executed, approval_target_changed, not_approved,
-- expired, payload_mismatch. Both are committed to the audit chain.
create or replace function public.execute_action(p_request_id uuid, p_payload jsonb) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  request public.action_requests;
  presented text;
  reason text;
begin
  -- Two executors racing queue on this lock; the second sees the first's result.
  select r.* into request
    from public.action_requests r
   where r.id = p_request_id
     and (private.is_runtime()
          or (r.org_id = private.current_org_id()
              and r.project_id = any (private.project_ids_with_role('project_contributor'))))
     for update;
  if request.id is null then
    perform private.refuse_request(404, 'action_request_not_found', 'No action request with that id that you can execute in this context.');
  end if;
  presented := case when pg_catalog.jsonb_typeof(p_payload) = 'object' then private.payload_sha256(p_payload) end;
  reason := case
    when request.status = 'executed' then 'already_executed'
    when request.status = 'withdrawn' then 'approval_target_changed'
    when request.status <> 'approved' then 'not_approved'
    when request.expires_at <= pg_catalog.now() then 'expired'
    when not private.target_unchanged(request) then 'approval_target_changed'
    when presented is distinct from request.payload_sha256 then 'payload_mismatch'
  end;

  if reason is not null then
    perform audit.append(request.org_id, 'action_request.execution_refused', 'public.action_requests', request.id::text,
      pg_catalog.jsonb_build_object('reason', reason, 'status', request.status,
                                    'approved_sha256', request.payload_sha256, 'presented_sha256', presented,
                                    'approval_sha256', request.approval_sha256));
    return pg_catalog.jsonb_build_object('ok', false, 'reason', reason, 'request_id', request.id, 'payload_sha256', presented);
  end if;

  update public.action_requests r
     set status = 'executed', executed_at = pg_catalog.now(), executed_by = (select auth.uid())
   where r.id = request.id;
  return pg_catalog.jsonb_build_object('ok', true, 'request_id', request.id, 'tool', request.tool, 'tool_id', request.tool_id,
    'provider', request.provider, 'connection_id', request.connection_id, 'destination', request.destination,
    'canonical_payload', request.canonical_payload, 'payload_sha256', request.payload_sha256,
    'approval_sha256', request.approval_sha256);
end
$$;
comment on function public.execute_action(uuid, jsonb) is
  'The execution gate: lets an approved, unexpired, unexecuted action through once, for a payload canonically equal to the approved one, to the target that was approved.';

-- What an approver reviews: pending, unexpired requests with the exact canonical payload, the
-- target (tool, provider, connection and its name, destination), the approval hash, the approvals
-- so far, and whether the caller can decide it now.
create view public.pending_approvals with (security_invoker = true) as
  select r.id, r.org_id, r.project_id, r.agent_id, r.run_id, r.tool, r.tool_id, r.provider, r.connection_id,
         c.display_name as connection_name, r.destination, r.risk, r.proposed_risk, r.mode, r.approvals_required,
         (select pg_catalog.count(*) from public.approval_decisions d
           where d.org_id = r.org_id and d.project_id = r.project_id and d.request_id = r.id and d.approve)::integer as approvals,
         r.canonical_payload, r.payload_sha256, r.approval_sha256, r.requested_by, r.requested_via, r.created_at, r.expires_at,
         private.decision_refusal(r) is null as awaiting_you
    from public.action_requests r
    left join public.connections c on c.org_id = r.org_id and c.id = r.connection_id
   where r.status = 'pending' and r.expires_at > pg_catalog.now();
create trigger refuse_write instead of insert or update or delete on public.pending_approvals
  for each row execute function private.refuse_view_write();
comment on view public.pending_approvals is
  'Pending, unexpired action requests with their exact canonical payload, their target and the approval hash, for approvers.';

-- =============================================================================================
-- Grants
-- =============================================================================================
grant select (destination) on public.connections to authenticated;
revoke all on public.pending_approvals from anon, authenticated;
grant select on public.pending_approvals to authenticated, service_role;
grant insert (connection_id, min_risk), update (connection_id, min_risk) on public.approval_policies to authenticated;
