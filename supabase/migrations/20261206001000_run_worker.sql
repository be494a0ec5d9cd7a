-- The run worker (issue 24, sections 3 and 4): runs execute on graphile-worker, a Postgres job
-- engine, and every step of a run goes through the database's controls.
--
-- The job engine. graphile-worker keeps its jobs in its own schema (graphile_worker), which it
-- installs and migrates itself; it must exist before this migration (npm start installs it first;
-- on hosted Supabase: `npx graphile-worker --schema-only -c "$DB_URL"`, README "Runs"). No client
-- role has any privilege on that schema; only these definer functions enqueue. A job names a run
-- and nothing else: the worker re-derives the organization, project and agent from the run row,
-- and whatever else a payload says is ignored.
--
-- When a run is enqueued, always in the transaction that makes it need a worker:
--   - its start: the run is created queued (private.start_run, …_run_schedules.sql, which
--     start_agent_run and the schedules share);
--   - a step that ends with more to do (a tool's result for the model);
--   - the decision on the action a waiting run waits for (a trigger on action_requests), so an
--     approval and the resume it needs commit together or not at all;
--   - private.sweep_runs: a step whose worker stopped (its lease ran out) is enqueued again.
-- The job key is the run's, so a run has at most one job waiting; a duplicate enqueue replaces it.
--
-- A step is one model turn and the tool calls it made. Its work is idempotent per (run, step):
--   - private.claim_run_step leases the step to one worker (private.run_steps: run, step, lease,
--     lease_until) and hands it the run's transcript, its agent's published model and
--     instructions, its tools, and a run token; a second worker finds the step leased and does
--     nothing; a step whose lease ran out (its worker was killed) is taken over, at most three times.
--   - private.record_model_turn keeps the model's answer in the transcript, so that a step taken
--     over does not call the model again once its answer is kept.
--   - private.propose_run_action proposes a tool call once per (run, step, tool call id): taken
--     over, the step finds its request again instead of proposing twice. Execution goes through
--     the execution gate (public.execute_action), which lets an approved action through once; an
--     action the gate let through whose delivery's outcome was never recorded (its worker was
--     killed while delivering) is reported to the model as unknown, never delivered again.
--   - private.record_tool_result and private.finish_run_step write only while the caller's lease
--     holds, so a worker that lost its step (taken over, or the run ended) changes nothing.
-- Time-based ends (the run's deadline, an approval that expired while the run waited) are taken
-- by private.sweep_runs, which every worker runs every few seconds, and by the claim itself.

do $$
begin
  if pg_catalog.to_regnamespace('graphile_worker') is null then
    raise exception 'the job engine''s schema graphile_worker is missing'
      using hint = 'Install it before the migrations: npx graphile-worker --schema-only -c "$SUPABASE_DB_URL" (npm start does this itself).';
  end if;
end
$$;

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.run_steps (
  run_id uuid not null references public.agent_runs (id) on delete cascade,
  step integer not null check (step between 1 and 200),
  org_id uuid not null references public.organizations (id) on delete cascade,
  -- The current attempt's lease: its id, the worker that holds it, and until when.
  lease uuid not null,
  worker text not null check (char_length(worker) between 1 and 200),
  attempt integer not null default 1 check (attempt between 1 and 3),
  lease_until timestamptz not null,
  -- The model's answer, once kept: its place in the transcript.
  answer_seq integer,
  -- The action request the step waits for while the run is waiting_approval.
  waiting_for uuid,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  primary key (run_id, step),
  unique (org_id, run_id, step)
);
comment on table private.run_steps is
  'A run''s steps (a model turn and its tool calls): which worker holds each under a lease, and how far it got.';
-- One unfinished step per run (also the sweep's way to the open steps).
create unique index run_steps_one_open on private.run_steps (run_id) where finished_at is null;

create table private.run_step_actions (
  run_id uuid not null,
  step integer not null,
  call_id text not null check (call_id ~ '^[A-Za-z0-9_-]{1,128}$'),
  org_id uuid not null references public.organizations (id) on delete cascade,
  request_id uuid not null references public.action_requests (id) on delete cascade,
  primary key (run_id, step, call_id),
  unique (org_id, run_id, step, call_id),
  unique (request_id),
  foreign key (run_id, step) references private.run_steps (run_id, step) on delete cascade
);
comment on table private.run_step_actions is
  'The action request each tool call of a run''s step became: a step taken over finds it instead of proposing again.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Enqueues the run's next step in the caller's transaction. The job carries the run's id only;
-- its key is the run's, so a run has one job waiting at most.
create function private.enqueue_run(p_run_id uuid) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  perform graphile_worker.add_job('run_step', pg_catalog.json_build_object('run_id', p_run_id),
                                  job_key => 'run:' || p_run_id::text, max_attempts => 5);
end
$$;
comment on function private.enqueue_run(uuid) is 'Enqueues a run''s next step on the job engine, in the caller''s transaction (one job per run).';
revoke execute on function private.enqueue_run(uuid) from public, anon, authenticated;

-- Ends an active run (status, end code, result), and closes its open step. Audited (agent_runs).
create function private.end_run(p_run_id uuid, p_status public.run_status, p_end_code text, p_result jsonb default null)
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  update public.agent_runs r
     set status = p_status, end_code = p_end_code, result = coalesce(p_result, r.result)
   where r.id = p_run_id and r.ended_at is null;
  update private.run_steps s set finished_at = pg_catalog.now()
   where s.run_id = p_run_id and s.finished_at is null;
end
$$;
comment on function private.end_run(uuid, public.run_status, text, jsonb) is 'Ends an active run with a status (and code, result), closing its open step.';
revoke execute on function private.end_run(uuid, public.run_status, text, jsonb) from public, anon, authenticated;

-- The run a step belongs to, locked, while `p_lease` still holds the step; otherwise refuses
-- (409 run_ended, or 409 step_lease_lost when another worker took the step over).
create function private.held_step(p_run_id uuid, p_step integer, p_lease uuid) returns public.agent_runs
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs;
begin
  select r.* into run from public.agent_runs r where r.id = p_run_id for update;
  if run.id is null or run.ended_at is not null then
    perform private.refuse_request(409, 'run_ended', 'The run has ended; the step is void.');
  end if;
  if not exists (select 1 from private.run_steps s
                  where s.run_id = p_run_id and s.step = p_step and s.lease = p_lease and s.finished_at is null) then
    perform private.refuse_request(409, 'step_lease_lost', 'Another worker took this step over.');
  end if;
  -- (A refusal rolls back whatever its transaction did, so the sweep or the next claim ends it.)
  if run.deadline_at <= pg_catalog.now() then
    perform private.refuse_request(409, 'run_deadline_passed', 'The run reached its deadline; the step is void.');
  end if;
  return run;
end
$$;
comment on function private.held_step(uuid, integer, uuid) is 'Locks a run whose step the lease still holds; run_ended or step_lease_lost otherwise.';
revoke execute on function private.held_step(uuid, integer, uuid) from public, anon, authenticated;

-- Appends a message to a run's transcript (the caller holds the run's row lock); its seq.
create function private.append_run_message(p_run public.agent_runs, p_message jsonb) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  next_seq integer;
begin
  select coalesce(pg_catalog.max(m.seq) + 1, 0) into next_seq
    from public.agent_run_messages m
   where m.org_id = p_run.org_id and m.project_id = p_run.project_id and m.agent_id = p_run.agent_id and m.run_id = p_run.id;
  insert into public.agent_run_messages (org_id, project_id, agent_id, run_id, seq, role, content)
  values (p_run.org_id, p_run.project_id, p_run.agent_id, p_run.id, next_seq, p_message ->> 'role', p_message);
  return next_seq;
end
$$;
comment on function private.append_run_message(public.agent_runs, jsonb) is 'Appends a message to a run''s transcript; its sequence number.';
revoke execute on function private.append_run_message(public.agent_runs, jsonb) from public, anon, authenticated;

-- Records a run's telemetry event (the table's check holds meta to {tool_name, ms, code, iter}).
create function private.add_run_event(p_run public.agent_runs, p_meta jsonb) returns void
language sql volatile security definer
set search_path = ''
as $$
  insert into public.agent_run_events (org_id, project_id, agent_id, run_id, meta)
  select p_run.org_id, p_run.project_id, p_run.agent_id, p_run.id, p_meta
   where p_meta is not null
$$;
comment on function private.add_run_event(public.agent_runs, jsonb) is 'Records a run''s telemetry event (meta is {tool_name, ms, code, iter}).';
revoke execute on function private.add_run_event(public.agent_runs, jsonb) from public, anon, authenticated;

-- The function name a tool is offered to the model under: both vendors take 1 to 64 letters,
-- digits, _ or -, so a dot becomes _ (a name that still does not fit is not offered).
create function private.tool_function_name(p_tool text) returns text
language sql immutable
set search_path = ''
as $$
  select case when n ~ '^[A-Za-z0-9_-]{1,64}$' then n end from pg_catalog.translate(p_tool, '.', '_') n
$$;
comment on function private.tool_function_name(text) is 'The function name a tool is offered to a model under (null when none fits).';
revoke execute on function private.tool_function_name(text) from public, anon, authenticated;

-- =============================================================================================
-- The worker's functions (the service role's: our worker, a process beside the database)
-- =============================================================================================
-- Leases the run's next step to `p_worker` for `p_lease_seconds`, or says why there is nothing
-- to do: {"action":"none","reason":…} (the run ended, another worker holds its step, it waits for
-- a decision). With {"action":"step"} comes what the step needs: the run's ids (from its row),
-- the model and instructions of the version it runs, its tools, its transcript, the model's kept
-- answer and the tool calls already answered (a step taken over), and a run token.
create function private.claim_run_step(p_run_id uuid, p_worker text, p_lease_seconds integer default 60) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs;
  open_step private.run_steps;
  request public.action_requests;
  config jsonb;
  step_no integer;
  new_lease uuid := gen_random_uuid();
  lease_for interval := pg_catalog.make_interval(secs => greatest(2, least(coalesce(p_lease_seconds, 60), 3600)));
  answered jsonb;
  answer jsonb;
begin
  if p_worker is null or pg_catalog.char_length(p_worker) not between 1 and 200 then
    perform private.refuse_request(400, 'invalid_worker', 'Name the worker (1 to 200 characters).');
  end if;
  select r.* into run from public.agent_runs r where r.id = p_run_id for update;
  if run.id is null then
    return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_not_found');
  end if;
  if run.ended_at is not null then
    return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_ended');
  end if;
  if run.deadline_at <= pg_catalog.now() then
    perform private.end_run(run.id, 'timed_out', 'run_deadline_passed');
    return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_ended');
  end if;

  select s.* into open_step from private.run_steps s where s.run_id = run.id and s.finished_at is null;
  if open_step.run_id is not null and open_step.lease_until > pg_catalog.now() then
    return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'step_in_progress');
  end if;
  if run.status = 'waiting_approval' then
    select r.* into request from public.action_requests r where r.id = open_step.waiting_for;
    if request.status = 'pending' and request.expires_at > pg_catalog.now() then
      return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'waiting_approval');
    end if;
    if request.status = 'pending' then
      perform private.end_run(run.id, 'approval_expired', 'approval_expired');
      return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_ended');
    end if;
  end if;
  if run.status <> 'running' then
    update public.agent_runs r set status = 'running' where r.id = run.id returning * into run;
  end if;

  if open_step.run_id is not null then
    -- A step whose worker stopped (or that waited for a decision): taken over under a new lease.
    if open_step.waiting_for is null and open_step.attempt >= 3 then
      perform private.end_run(run.id, 'failed', 'step_attempts_exhausted');
      return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_ended');
    end if;
    update private.run_steps s
       set lease = new_lease, worker = p_worker, lease_until = pg_catalog.now() + lease_for,
           attempt = case when s.waiting_for is null then s.attempt + 1 else s.attempt end, waiting_for = null
     where s.run_id = run.id and s.step = open_step.step
    returning * into open_step;
    step_no := open_step.step;
  else
    if run.steps >= run.max_steps then
      perform private.end_run(run.id, 'steps_exhausted', 'run_step_limit');
      return pg_catalog.jsonb_build_object('action', 'none', 'reason', 'run_ended');
    end if;
    step_no := run.steps + 1;
    insert into private.run_steps (run_id, step, org_id, lease, worker, lease_until)
    values (run.id, step_no, run.org_id, new_lease, p_worker, pg_catalog.now() + lease_for)
    returning * into open_step;
  end if;

  select v.config into config from public.agent_versions v
   where v.org_id = run.org_id and v.project_id = run.project_id and v.agent_id = run.agent_id and v.id = run.agent_version_id;
  -- The first step starts the transcript: the version's instructions, then the run's input.
  if not exists (select 1 from public.agent_run_messages m
                  where m.org_id = run.org_id and m.project_id = run.project_id and m.agent_id = run.agent_id and m.run_id = run.id) then
    if coalesce(config ->> 'instructions', '') <> '' then
      perform private.append_run_message(run, pg_catalog.jsonb_build_object('role', 'system', 'content', config ->> 'instructions'));
    end if;
    perform private.append_run_message(run, pg_catalog.jsonb_build_object('role', 'user', 'content',
      case when pg_catalog.jsonb_typeof(run.input -> 'prompt') = 'string' then run.input ->> 'prompt' else run.input::text end));
  end if;
  if open_step.answer_seq is not null then
    select m.content into answer from public.agent_run_messages m
     where m.org_id = run.org_id and m.project_id = run.project_id and m.agent_id = run.agent_id and m.run_id = run.id
       and m.seq = open_step.answer_seq;
    select coalesce(pg_catalog.jsonb_agg(m.content ->> 'tool_call_id'), '[]') into answered
      from public.agent_run_messages m
     where m.org_id = run.org_id and m.project_id = run.project_id and m.agent_id = run.agent_id and m.run_id = run.id
       and m.seq > open_step.answer_seq and m.role = 'tool';
  end if;

  return pg_catalog.jsonb_build_object(
    'action', 'step', 'step', step_no, 'lease', new_lease, 'attempt', open_step.attempt,
    'run', pg_catalog.jsonb_build_object('id', run.id, 'org_id', run.org_id, 'project_id', run.project_id, 'agent_id', run.agent_id),
    'model', coalesce(config ->> 'model', 'gpt-4o-mini'),
    'tools', (select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                      'name', private.tool_function_name(t.tool), 'tool', t.tool, 'provider', t.provider) order by t.tool), '[]')
                from public.agent_tools t
               where t.org_id = run.org_id and t.agent_id = run.agent_id and t.enabled and t.connection_id is not null
                 and private.tool_function_name(t.tool) is not null),
    'messages', (select coalesce(pg_catalog.jsonb_agg(m.content order by m.seq), '[]')
                   from public.agent_run_messages m
                  where m.org_id = run.org_id and m.project_id = run.project_id and m.agent_id = run.agent_id and m.run_id = run.id
                    and (open_step.answer_seq is null or m.seq < open_step.answer_seq)),
    'answer', answer,
    'answered', coalesce(answered, '[]'),
    'token', private.issue_run_token(run) ->> 'token');
end
$$;
comment on function private.claim_run_step(uuid, text, integer) is
  'Leases a run''s next step to a worker, with what the step needs (ids from the run row, model, tools, transcript, a run token); or why there is nothing to do.';
revoke execute on function private.claim_run_step(uuid, text, integer) from public, anon, authenticated;
grant execute on function private.claim_run_step(uuid, text, integer) to service_role;

-- Keeps a step's lease while its worker is still at it (a long model call).
create function private.renew_run_step(p_run_id uuid, p_step integer, p_lease uuid, p_lease_seconds integer default 60) returns boolean
language sql volatile security definer
set search_path = ''
as $$
  with renewed as (
    update private.run_steps s
       set lease_until = pg_catalog.now() + pg_catalog.make_interval(secs => greatest(2, least(coalesce(p_lease_seconds, 60), 3600)))
     where s.run_id = p_run_id and s.step = p_step and s.lease = p_lease and s.finished_at is null
    returning 1)
  select exists (select 1 from renewed)
$$;
comment on function private.renew_run_step(uuid, integer, uuid, integer) is 'Extends a step''s lease for the worker that holds it; false when it no longer does.';
revoke execute on function private.renew_run_step(uuid, integer, uuid, integer) from public, anon, authenticated;
grant execute on function private.renew_run_step(uuid, integer, uuid, integer) to service_role;

-- Gives a step back at once (a failure the job engine retries), so the retry need not wait for the lease.
create function private.release_run_step(p_run_id uuid, p_step integer, p_lease uuid) returns void
language sql volatile security definer
set search_path = ''
as $$
  update private.run_steps s set lease_until = pg_catalog.now()
   where s.run_id = p_run_id and s.step = p_step and s.lease = p_lease and s.finished_at is null
$$;
comment on function private.release_run_step(uuid, integer, uuid) is 'Releases a step''s lease at once, for the job engine''s retry.';
revoke execute on function private.release_run_step(uuid, integer, uuid) from public, anon, authenticated;
grant execute on function private.release_run_step(uuid, integer, uuid) to service_role;

-- Keeps the model's answer of a step (an assistant message) in the transcript, with its event.
create function private.record_model_turn(p_run_id uuid, p_step integer, p_lease uuid, p_message jsonb, p_meta jsonb)
returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs := private.held_step(p_run_id, p_step, p_lease);
  seq integer;
begin
  if pg_catalog.jsonb_typeof(p_message) <> 'object' or p_message ->> 'role' <> 'assistant' then
    perform private.refuse_request(400, 'invalid_message', 'A model turn is an assistant message.');
  end if;
  if exists (select 1 from private.run_steps s where s.run_id = p_run_id and s.step = p_step and s.answer_seq is not null) then
    perform private.refuse_request(409, 'model_turn_kept', 'The step''s model answer is kept already.');
  end if;
  seq := private.append_run_message(run, p_message);
  update private.run_steps s set answer_seq = seq where s.run_id = p_run_id and s.step = p_step;
  perform private.add_run_event(run, p_meta);
  return seq;
end
$$;
comment on function private.record_model_turn(uuid, integer, uuid, jsonb, jsonb) is
  'Keeps a step''s model answer in the run''s transcript (once), with its telemetry, while the worker''s lease holds.';
revoke execute on function private.record_model_turn(uuid, integer, uuid, jsonb, jsonb) from public, anon, authenticated;
grant execute on function private.record_model_turn(uuid, integer, uuid, jsonb, jsonb) to service_role;

-- A tool call of a step as an action request: proposed once per (run, step, call id) through
-- public.propose_action (the agent's bound tool, pinned; the policy decides), found again when
-- the step is taken over. Answers the request's id, status, and a delivery's recorded outcome.
create function private.propose_run_action(p_run_id uuid, p_step integer, p_lease uuid, p_call_id text, p_tool text, p_payload jsonb)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs := private.held_step(p_run_id, p_step, p_lease);
  request public.action_requests;
begin
  select r.* into request
    from private.run_step_actions a join public.action_requests r on r.id = a.request_id
   where a.run_id = p_run_id and a.step = p_step and a.call_id = p_call_id;
  if request.id is null then
    request := public.propose_action(run.id, p_tool, p_payload);
    insert into private.run_step_actions (run_id, step, call_id, org_id, request_id)
    values (run.id, p_step, p_call_id, run.org_id, request.id);
  end if;
  return pg_catalog.jsonb_build_object('request_id', request.id, 'status', request.status, 'expired', request.expires_at <= pg_catalog.now(),
                                       'outcome', request.outcome, 'outcome_detail', request.outcome_detail);
end
$$;
comment on function private.propose_run_action(uuid, integer, uuid, text, text, jsonb) is
  'Proposes a step''s tool call as an action request once per (run, step, call id); the request''s status either way.';
revoke execute on function private.propose_run_action(uuid, integer, uuid, text, text, jsonb) from public, anon, authenticated;
grant execute on function private.propose_run_action(uuid, integer, uuid, text, text, jsonb) to service_role;

-- Keeps a tool call's result (a tool message) in the transcript, once, with its event.
create function private.record_tool_result(p_run_id uuid, p_step integer, p_lease uuid, p_call_id text, p_content text, p_meta jsonb)
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs := private.held_step(p_run_id, p_step, p_lease);
  answer_at integer;
begin
  select s.answer_seq into answer_at from private.run_steps s where s.run_id = p_run_id and s.step = p_step;
  if answer_at is null then
    perform private.refuse_request(409, 'model_turn_missing', 'A tool''s result follows the model turn that called it.');
  end if;
  if exists (select 1 from public.agent_run_messages m
              where m.org_id = run.org_id and m.project_id = run.project_id and m.agent_id = run.agent_id and m.run_id = run.id
                and m.seq > answer_at and m.role = 'tool' and m.content ->> 'tool_call_id' = p_call_id) then
    return;
  end if;
  perform private.append_run_message(run, pg_catalog.jsonb_build_object('role', 'tool', 'tool_call_id', p_call_id, 'content', p_content));
  perform private.add_run_event(run, p_meta);
end
$$;
comment on function private.record_tool_result(uuid, integer, uuid, text, text, jsonb) is
  'Keeps a tool call''s result in the run''s transcript (once per call), with its telemetry, while the worker''s lease holds.';
revoke execute on function private.record_tool_result(uuid, integer, uuid, text, text, jsonb) from public, anon, authenticated;
grant execute on function private.record_tool_result(uuid, integer, uuid, text, text, jsonb) to service_role;

-- Ends a step, in one transaction with what follows it:
--   continue                the step is done; the run's next step is enqueued
--   wait                    the run waits for `p_request_id`'s decision (which enqueues the resume)
--   succeeded               the run ends with `p_result`
--   failed | budget_exhausted | approval_expired   the run ends with that status and `p_end_code`
create function private.finish_run_step(
  p_run_id uuid, p_step integer, p_lease uuid, p_next text, p_result jsonb default null, p_end_code text default null,
  p_request_id uuid default null, p_meta jsonb default null
) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs := private.held_step(p_run_id, p_step, p_lease);
begin
  perform private.add_run_event(run, p_meta);
  case p_next
    when 'continue' then
      update private.run_steps s set finished_at = pg_catalog.now() where s.run_id = run.id and s.step = p_step;
      update public.agent_runs r set steps = p_step where r.id = run.id;
      perform private.enqueue_run(run.id);
    when 'wait' then
      if not exists (select 1 from private.run_step_actions a
                      where a.run_id = run.id and a.step = p_step and a.request_id = p_request_id) then
        perform private.refuse_request(400, 'invalid_request', 'A step waits for an action request it proposed.');
      end if;
      update private.run_steps s set waiting_for = p_request_id, lease_until = pg_catalog.now()
       where s.run_id = run.id and s.step = p_step;
      update public.agent_runs r set status = 'waiting_approval' where r.id = run.id;
      -- A decision taken between the proposal and now found the run still running: resume at once.
      if (select r.status from public.action_requests r where r.id = p_request_id) <> 'pending' then
        perform private.enqueue_run(run.id);
      end if;
    when 'succeeded' then
      update public.agent_runs r set steps = p_step where r.id = run.id;
      perform private.end_run(run.id, 'succeeded', null, p_result);
    when 'failed', 'budget_exhausted', 'approval_expired' then
      perform private.end_run(run.id, p_next::public.run_status, coalesce(p_end_code, p_next), p_result);
    else
      perform private.refuse_request(400, 'invalid_next', 'next is continue, wait, succeeded, failed, budget_exhausted or approval_expired.');
  end case;
  return p_next;
end
$$;
comment on function private.finish_run_step(uuid, integer, uuid, text, jsonb, text, uuid, jsonb) is
  'Ends a run''s step while the worker''s lease holds: continue (enqueues the next), wait for a decision, or end the run.';
revoke execute on function private.finish_run_step(uuid, integer, uuid, text, jsonb, text, uuid, jsonb) from public, anon, authenticated;
grant execute on function private.finish_run_step(uuid, integer, uuid, text, jsonb, text, uuid, jsonb) to service_role;

-- What every worker runs every few seconds: runs past their deadline end timed_out, runs waiting
-- for an approval that expired end approval_expired, and steps whose lease ran out (their worker
-- stopped) are enqueued again. Runs another transaction holds are left for the next sweep.
create function private.sweep_runs() returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run record;
  timed_out integer := 0;
  expired integer := 0;
  resumed integer := 0;
begin
  for run in
    select r.id, r.status, r.deadline_at <= pg_catalog.now() as late,
           (select q.status = 'pending' and q.expires_at <= pg_catalog.now()
              from private.run_steps s join public.action_requests q on q.id = s.waiting_for
             where s.run_id = r.id and s.finished_at is null) as approval_expired
      from public.agent_runs r
     where r.ended_at is null
       and (r.deadline_at <= pg_catalog.now()
            or exists (select 1 from private.run_steps s
                        where s.run_id = r.id and s.finished_at is null and s.lease_until <= pg_catalog.now()
                          and (s.waiting_for is null
                               or exists (select 1 from public.action_requests q
                                           where q.id = s.waiting_for and q.status = 'pending' and q.expires_at <= pg_catalog.now()))))
     for update of r skip locked
  loop
    if run.late then
      perform private.end_run(run.id, 'timed_out', 'run_deadline_passed');
      timed_out := timed_out + 1;
    elsif run.approval_expired then
      perform private.end_run(run.id, 'approval_expired', 'approval_expired');
      expired := expired + 1;
    else
      perform private.enqueue_run(run.id);
      resumed := resumed + 1;
    end if;
  end loop;
  return pg_catalog.jsonb_build_object('timed_out', timed_out, 'approval_expired', expired, 'resumed', resumed);
end
$$;
comment on function private.sweep_runs() is
  'Ends runs past their deadline or whose awaited approval expired, and enqueues again the steps whose worker stopped.';
revoke execute on function private.sweep_runs() from public, anon, authenticated;
grant execute on function private.sweep_runs() to service_role;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- The decision on the action a waiting run waits for enqueues its resume, in the decision's
-- transaction (approved, rejected, or withdrawn because its target changed).
create function private.resume_waiting_run() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if exists (select 1 from private.run_steps s join public.agent_runs r on r.id = s.run_id
              where s.run_id = new.run_id and s.waiting_for = new.id and s.finished_at is null
                and r.status = 'waiting_approval') then
    perform private.enqueue_run(new.run_id);
  end if;
  return null;
end
$$;
comment on function private.resume_waiting_run() is 'Enqueues the resume of a run whose awaited action was decided, in the same transaction.';
revoke execute on function private.resume_waiting_run() from public, anon, authenticated;

create trigger resume_waiting_run after update of status on public.action_requests
  for each row when (old.status = 'pending' and new.status <> 'pending')
  execute function private.resume_waiting_run();

-- A run's audit entries are its start, its moves and its end (insert, and updates of its status):
-- the step counter's progress is not an entry, and neither the run's input nor its result goes
-- into the chain (like its transcript, they are content).
drop trigger audit on public.agent_runs;
create trigger audit after insert or update of status or delete on public.agent_runs
  for each row execute function audit.record_change('agent_run', 'input', 'result', 'steps');
