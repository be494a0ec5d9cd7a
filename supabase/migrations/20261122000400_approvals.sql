-- Approvals (seed 000): an agent can't run an external action unless a human approved its exact
-- payload.
--
-- An agent run proposes an action (tool, connector, payload). The database stores the payload's
-- RFC 8785 canonical text and its SHA-256 (private.jcs / private.payload_sha256, the same functions
-- that seal the audit chain), decides from the most specific policy whether it needs no approval,
-- one approver, two distinct approvers, or is denied, and copies that decision onto the request so a
-- later policy edit never changes an open request. Approvers decide on the hash they were shown; a
-- stale hash is refused. Execution presents the payload about to be sent: the database recomputes
-- its canonical hash and lets it through once, only if it equals the approved hash, the approval
-- is complete and the request has not expired. Refusals are returned (not raised), so that they are
-- committed to the audit chain like everything else here.
--
-- Who may act:
--   * propose: the agent runtime (service_role; the organization comes from the run) or a
--     project_contributor of the run's project;
--   * decide: a person holding the policy's approver role on the project (never a viewer), who is
--     neither the requester nor the run's starter, counted once;
--   * execute: the agent runtime or a project_contributor of the project;
--   * policies: project admins.

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.approval_mode as enum ('allow', 'require_approval', 'require_dual_control', 'deny');
comment on type public.approval_mode is
  'What a policy asks of an action: nothing (recorded), one approver, two distinct approvers, or refusal.';
create type public.risk_level as enum ('low', 'medium', 'high', 'critical');
create type public.action_status as enum ('pending', 'approved', 'rejected', 'denied', 'executed');
create type public.run_status as enum ('running', 'succeeded', 'failed', 'cancelled');

-- =============================================================================================
-- Tables
-- =============================================================================================
-- What agent_runs' composite foreign key to agent_versions points at.
alter table public.agent_versions add constraint agent_versions_org_id_project_id_agent_id_id_key
  unique (org_id, project_id, agent_id, id);

create table public.agent_runs (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  agent_version_id uuid not null,
  status public.run_status not null default 'running',
  started_by uuid default auth.uid(),
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  check ((status = 'running') = (ended_at is null)),
  unique (org_id, project_id, agent_id, id),
  unique (org_id, project_id, agent_id, agent_version_id, id),
  -- Composite keys: a run belongs to a version of its own agent, in its own project and organization.
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade,
  foreign key (org_id, project_id, agent_id, agent_version_id)
    references public.agent_versions (org_id, project_id, agent_id, id)
);
comment on table public.agent_runs is 'Runs of a published agent version. Started through start_agent_run().';
comment on column public.agent_runs.started_by is 'The person who started the run (null when the runtime did on a schedule).';

create table public.approval_policies (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid,
  tool text check (tool ~ '^[a-z][a-z0-9_.-]{0,99}$'),
  mode public.approval_mode not null,
  approver_role public.member_role not null default 'project_admin' check (approver_role <> 'project_viewer'),
  dual_control_from_risk public.risk_level,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  -- One policy per (agent or any, tool or any) in a project.
  unique nulls not distinct (org_id, project_id, agent_id, tool),
  foreign key (org_id, project_id) references public.projects (org_id, id) on delete cascade,
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.approval_policies is
  'Approval policies of a project, per agent (null: any) and tool (null: any). The most specific applies; none means require_approval.';
comment on column public.approval_policies.approver_role is 'The least role an approver must hold on the project.';
comment on column public.approval_policies.dual_control_from_risk is
  'From this risk level up, a require_approval policy needs two distinct approvers.';

create table public.action_requests (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  run_id uuid not null,
  tool text not null check (tool ~ '^[a-z][a-z0-9_.-]{0,99}$'),
  connector text not null check (connector ~ '^[a-z][a-z0-9_-]{0,62}$'),
  canonical_payload text not null check (octet_length(canonical_payload) <= 65536),
  payload_sha256 text not null,
  risk public.risk_level not null,
  -- The policy's answer when the action was proposed.
  policy_id uuid,
  mode public.approval_mode not null,
  approvals_required smallint not null check (approvals_required between 0 and 2),
  approver_role public.member_role not null,
  status public.action_status not null,
  requested_by uuid,
  requested_via text not null check (requested_via in ('member', 'agent_runtime')),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  decided_at timestamptz,
  executed_at timestamptz,
  executed_by uuid,
  outcome text check (outcome in ('delivered', 'failed')),
  outcome_detail text check (char_length(outcome_detail) <= 500),
  completed_at timestamptz,
  check (payload_sha256 = pg_catalog.encode(extensions.digest(pg_catalog.convert_to(canonical_payload, 'UTF8'), 'sha256'), 'hex')),
  check (expires_at > created_at),
  check ((status = 'executed') = (executed_at is not null)),
  check (outcome is null or status = 'executed'),
  unique (org_id, project_id, id),
  unique (org_id, project_id, agent_id, run_id, id),
  foreign key (org_id, project_id, agent_id, run_id) references public.agent_runs (org_id, project_id, agent_id, id) on delete cascade
);
comment on table public.action_requests is
  'External actions proposed by agent runs, pinned to the SHA-256 of their RFC 8785 payload. Written only through the approval RPCs.';
comment on column public.action_requests.requested_by is
  'The person the action was requested by or for (the proposer, or the run''s starter); never an approver of it.';

create table public.approval_decisions (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  request_id uuid not null,
  decided_by uuid not null,
  approve boolean not null,
  payload_sha256 text not null check (payload_sha256 ~ '^[0-9a-f]{64}$'),
  comment text check (char_length(comment) <= 1000),
  decided_at timestamptz not null default now(),
  -- One person counts once.
  unique (org_id, project_id, request_id, decided_by),
  foreign key (org_id, project_id, request_id) references public.action_requests (org_id, project_id, id) on delete cascade
);
comment on table public.approval_decisions is
  'Approvals and rejections, each bound to the payload hash the approver was shown. Written only through decide_action().';

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- Tenant tables, one line each (RLS, the context guard, ids from the context, audit). Payloads
-- stay out of the chain (only their hash is in it), so an action's content can't outlive a purge.
select private.make_tenant_table('public.agent_runs', 'agent_run');
select private.make_tenant_table('public.approval_policies', 'approval_policy');
select private.make_tenant_table('public.action_requests', 'action_request', array['canonical_payload']);
select private.make_tenant_table('public.approval_decisions', 'approval_decision');

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- True when the caller is the agent runtime: the service role, which PostgREST (or an edge
-- function, through functions/_shared/http/db.ts asService) has switched to. current_setting('role') is the
-- role switched to, even inside a security-definer function.
create function private.is_runtime() returns boolean
language sql stable
set search_path = ''
as $$
  select pg_catalog.current_setting('role', true) = 'service_role'
$$;
comment on function private.is_runtime() is 'True when the caller acts as the service role (the agent runtime).';
revoke execute on function private.is_runtime() from public, anon, authenticated;

-- The policy that applies to an action: agent and tool, then agent, then tool, then the project's
-- default; null when the project has none (which means require_approval).
create function private.approval_policy_for(p_org_id uuid, p_project_id uuid, p_agent_id uuid, p_tool text)
returns public.approval_policies
language sql stable
set search_path = ''
as $$
  select p.*
    from public.approval_policies p
   where p.org_id = p_org_id and p.project_id = p_project_id
     and (p.agent_id is null or p.agent_id = p_agent_id)
     and (p.tool is null or p.tool = p_tool)
   order by p.agent_id is not null desc, p.tool is not null desc
   limit 1
$$;
comment on function private.approval_policy_for(uuid, uuid, uuid, text) is
  'The most specific approval policy for an agent''s tool: agent+tool, agent, tool, then project default.';
revoke execute on function private.approval_policy_for(uuid, uuid, uuid, text) from public, anon, authenticated;

-- Why the caller may not decide a request, or null when they may: the approver role on its
-- project, neither its requester nor its run's starter, and not decided by them already. One
-- definition for decide_action() and pending_approvals.awaiting_you.
create function private.decision_refusal(p_request public.action_requests) returns text
language plpgsql stable security definer
set search_path = ''
as $$
declare
  approver uuid := (select auth.uid());
begin
  if not p_request.project_id = any (private.project_ids_with_role(p_request.approver_role)) then
    return 'approver_role_required';
  end if;
  if approver = p_request.requested_by
     or exists (select 1 from public.agent_runs r where r.id = p_request.run_id and r.started_by = approver) then
    return 'self_approval';
  end if;
  if exists (select 1 from public.approval_decisions d
              where d.org_id = p_request.org_id and d.project_id = p_request.project_id
                and d.request_id = p_request.id and d.decided_by = approver) then
    return 'already_decided';
  end if;
  return null;
end
$$;
comment on function private.decision_refusal(public.action_requests) is
  'Why the caller may not decide an action request (approver_role_required, self_approval, already_decided), or null.';
revoke execute on function private.decision_refusal(public.action_requests) from public, anon, authenticated;
grant execute on function private.decision_refusal(public.action_requests) to authenticated, service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
create function public.start_agent_run(p_agent_id uuid) returns public.agent_runs
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
  version_id uuid;
  run public.agent_runs;
begin
  select a.* into agent from public.agents a where a.id = p_agent_id;
  if agent.id is null
     or (not private.is_runtime()
         and (agent.org_id is distinct from private.current_org_id()
              or not agent.project_id = any (private.project_ids_with_role('project_contributor')))) then
    perform private.refuse_request(404, 'agent_not_found', 'No agent with that id that you can run in this context.');
  end if;
  select v.id into version_id
    from public.agent_versions v
   where v.org_id = agent.org_id and v.project_id = agent.project_id and v.agent_id = agent.id
     and v.published_at is not null
   order by v.version desc
   limit 1;
  if version_id is null then
    perform private.refuse_request(409, 'agent_not_published', 'Publish a version of the agent before running it.');
  end if;
  insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, started_by)
  values (agent.org_id, agent.project_id, agent.id, version_id, (select auth.uid()))
  returning * into run;
  return run;
end
$$;
comment on function public.start_agent_run(uuid) is
  'Starts a run of the agent''s latest published version (project_contributor, or the runtime).';
revoke execute on function public.start_agent_run(uuid) from public, anon, authenticated;
grant execute on function public.start_agent_run(uuid) to authenticated, service_role;

create function public.propose_action(
  p_run_id uuid,
  p_tool text,
  p_connector text,
  p_payload jsonb,
  p_risk public.risk_level default 'medium',
  p_expires_in_seconds integer default 3600
) returns public.action_requests
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs;
  policy public.approval_policies;
  canonical text;
  mode public.approval_mode;
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
  if p_connector is null or p_connector !~ '^[a-z][a-z0-9_-]{0,62}$' then
    perform private.refuse_request(400, 'invalid_connector', 'connector must match ^[a-z][a-z0-9_-]{0,62}$.');
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

  policy := private.approval_policy_for(run.org_id, run.project_id, run.agent_id, p_tool);
  mode := coalesce(policy.mode, 'require_approval');
  if mode = 'require_approval' and p_risk >= policy.dual_control_from_risk then
    mode := 'require_dual_control';
  end if;

  insert into public.action_requests (
    org_id, project_id, agent_id, run_id, tool, connector, canonical_payload, payload_sha256, risk,
    policy_id, mode, approvals_required, approver_role, status, requested_by, requested_via,
    expires_at, decided_at)
  values (
    run.org_id, run.project_id, run.agent_id, run.id, p_tool, p_connector, canonical, private.sha256_hex(canonical), p_risk,
    policy.id, mode,
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
comment on function public.propose_action(uuid, text, text, jsonb, public.risk_level, integer) is
  'An agent run proposes an external action; the policy decides whether it waits for approval, is approved or is denied.';
revoke execute on function public.propose_action(uuid, text, text, jsonb, public.risk_level, integer) from public, anon, authenticated;
grant execute on function public.propose_action(uuid, text, text, jsonb, public.risk_level, integer) to authenticated, service_role;

create function public.decide_action(
  p_request_id uuid,
  p_payload_sha256 text,
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
  -- The row lock orders decisions (and executions) on one request.
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
  if p_payload_sha256 is null or p_payload_sha256 !~ '^[0-9a-f]{64}$' then
    perform private.refuse_request(400, 'invalid_payload_hash', 'payload_sha256 must be 64 lowercase hex digits.');
  end if;
  if p_comment is not null and pg_catalog.char_length(p_comment) > 1000 then
    perform private.refuse_request(400, 'invalid_comment', 'The comment is limited to 1000 characters.');
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
  if p_payload_sha256 <> request.payload_sha256 then
    perform private.refuse_request(409, 'stale_payload_hash',
      'The payload hash you were shown is not the request''s; reload the request and review its payload.');
  end if;

  insert into public.approval_decisions (org_id, project_id, request_id, decided_by, approve, payload_sha256, comment)
  values (request.org_id, request.project_id, request.id, approver, p_approve, p_payload_sha256, p_comment);

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
  'Approves or rejects a pending action, bound to the payload hash the approver was shown.';
revoke execute on function public.decide_action(uuid, text, boolean, text) from public, anon, authenticated;
grant execute on function public.decide_action(uuid, text, boolean, text) to authenticated;

-- Answers {"ok":true,"request_id","connector","tool","canonical_payload","payload_sha256"} or
-- {"ok":false,"reason","request_id","payload_sha256"} with reason one of already_executed,
-- not_approved, expired, payload_mismatch. Both are committed to the audit chain.
create function public.execute_action(p_request_id uuid, p_payload jsonb) returns jsonb
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
    when request.status <> 'approved' then 'not_approved'
    when request.expires_at <= pg_catalog.now() then 'expired'
    when presented is distinct from request.payload_sha256 then 'payload_mismatch'
  end;

  if reason is not null then
    perform audit.append(request.org_id, 'action_request.execution_refused', 'public.action_requests', request.id::text,
      pg_catalog.jsonb_build_object('reason', reason, 'status', request.status,
                                    'approved_sha256', request.payload_sha256, 'presented_sha256', presented));
    return pg_catalog.jsonb_build_object('ok', false, 'reason', reason, 'request_id', request.id, 'payload_sha256', presented);
  end if;

  update public.action_requests r
     set status = 'executed', executed_at = pg_catalog.now(), executed_by = (select auth.uid())
   where r.id = request.id;
  return pg_catalog.jsonb_build_object('ok', true, 'request_id', request.id, 'connector', request.connector,
    'tool', request.tool, 'canonical_payload', request.canonical_payload, 'payload_sha256', request.payload_sha256);
end
$$;
comment on function public.execute_action(uuid, jsonb) is
  'The execution gate: lets an approved, unexpired, unexecuted action through once, for a payload canonically equal to the approved one.';
revoke execute on function public.execute_action(uuid, jsonb) from public, anon, authenticated;
grant execute on function public.execute_action(uuid, jsonb) to authenticated, service_role;

create function public.record_action_outcome(p_request_id uuid, p_delivered boolean, p_detail text default null)
returns public.action_requests
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  request public.action_requests;
begin
  if p_delivered is null then
    perform private.refuse_request(400, 'invalid_outcome', 'delivered must be true or false.');
  end if;
  update public.action_requests r
     set outcome = case when p_delivered then 'delivered' else 'failed' end,
         outcome_detail = pg_catalog.left(p_detail, 500),
         completed_at = pg_catalog.now()
   where r.id = p_request_id and r.status = 'executed' and r.outcome is null
  returning * into request;
  if request.id is null then
    perform private.refuse_request(409, 'action_not_awaiting_outcome', 'Only an executed action without an outcome takes one.');
  end if;
  return request;
end
$$;
comment on function public.record_action_outcome(uuid, boolean, text) is
  'The runtime reports whether an action the gate let through was delivered (once per action; service role only).';
revoke execute on function public.record_action_outcome(uuid, boolean, text) from public, anon, authenticated;
grant execute on function public.record_action_outcome(uuid, boolean, text) to service_role;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their projects' runs" on public.agent_runs
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "runs are started through start_agent_run" on public.agent_runs
  for insert to authenticated
  with check (false);
create policy "contributors end runs" on public.agent_runs
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.project_ids_with_role('project_contributor'))::uuid[]));
create policy "runs are kept" on public.agent_runs
  for delete to authenticated
  using (false);

create policy "members read their projects' approval policies" on public.approval_policies
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "project admins add approval policies" on public.approval_policies
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins change approval policies" on public.approval_policies
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "project admins remove approval policies" on public.approval_policies
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));

create policy "members read their projects' action requests" on public.action_requests
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "actions are proposed through propose_action" on public.action_requests
  for insert to authenticated
  with check (false);
create policy "actions are decided and executed through their RPCs" on public.action_requests
  for update to authenticated
  using (false);
create policy "action requests are kept" on public.action_requests
  for delete to authenticated
  using (false);

create policy "members read their projects' approval decisions" on public.approval_decisions
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "decisions are made through decide_action" on public.approval_decisions
  for insert to authenticated
  with check (false);
create policy "decisions are final" on public.approval_decisions
  for update to authenticated
  using (false);
create policy "decisions are kept" on public.approval_decisions
  for delete to authenticated
  using (false);

-- What an approver reviews: pending, unexpired requests with the exact canonical payload and its
-- hash, the approvals so far, and whether the caller can decide it now.
create view public.pending_approvals with (security_invoker = true) as
  select r.id, r.org_id, r.project_id, r.agent_id, r.run_id, r.tool, r.connector, r.risk, r.mode,
         r.approvals_required,
         (select pg_catalog.count(*) from public.approval_decisions d
           where d.org_id = r.org_id and d.project_id = r.project_id and d.request_id = r.id and d.approve)::integer as approvals,
         r.canonical_payload, r.payload_sha256, r.requested_by, r.requested_via, r.created_at, r.expires_at,
         private.decision_refusal(r) is null as awaiting_you
    from public.action_requests r
   where r.status = 'pending' and r.expires_at > pg_catalog.now();
create trigger refuse_write instead of insert or update or delete on public.pending_approvals
  for each row execute function private.refuse_view_write();
comment on view public.pending_approvals is
  'Pending, unexpired action requests with their exact canonical payload and hash, for approvers.';

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.agent_runs, public.approval_policies, public.action_requests, public.approval_decisions,
              public.pending_approvals
  from anon, authenticated;
grant select, update (status, ended_at) on public.agent_runs to authenticated;
grant select, delete, insert (org_id, project_id, agent_id, tool, mode, approver_role, dual_control_from_risk),
      update (mode, approver_role, dual_control_from_risk) on public.approval_policies to authenticated;
grant select on public.action_requests, public.approval_decisions, public.pending_approvals to authenticated;
grant select on public.agent_runs, public.approval_policies, public.action_requests, public.approval_decisions,
                public.pending_approvals to service_role;
grant insert, update, delete on public.approval_policies to service_role;
