-- Agent runs (issue 24, the database's part of section 2): the run's lifecycle, its input and
-- result, its limits, its telemetry and its transcript.
--
-- - agent_runs: queued → running ⇄ waiting_approval → succeeded | failed | cancelled |
--   budget_exhausted | timed_out | approval_expired, with its input, result and end code, its steps
--   against max_steps and its deadline. An ended run is final; a person may only cancel a run (the
--   runtime moves it otherwise), and ending sets ended_at. Every start, end and cancellation is an
--   audit entry (agent_runs is an audited tenant table).
-- - private.run_limits: the platform's limits per organization (concurrent runs, steps, seconds),
--   with defaults for an organization without a row; start_agent_run refuses a run past the
--   concurrency limit (429 run_limit_reached) and gives each run its step limit and deadline.
-- - agent_run_events: telemetry. The database holds `meta` to exactly {tool_name, ms, code, iter},
--   typed (tool_name and code short identifiers or null, ms and iter whole numbers), and refuses
--   anything else, nested content included: no prompt, output or argument can ride along.
-- - agent_run_messages: the run's transcript (messages, tool inputs and outputs), under RLS, kept
--   as long as the organization keeps transcripts (transcript_settings, like widget transcripts:
--   private.purge_run_transcripts).
-- Neither the telemetry nor the transcript goes into the audit chain: their tables carry no audit
-- trigger, and only the runtime writes them.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table public.agent_runs
  drop constraint agent_runs_check,
  add column input jsonb not null default '{}' check (jsonb_typeof(input) = 'object' and pg_column_size(input) <= 65536),
  add column result jsonb check (pg_column_size(result) <= 65536),
  add column end_code text check (end_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  add column steps integer not null default 0 check (steps >= 0),
  add column max_steps integer not null default 20 check (max_steps between 1 and 200),
  add column deadline_at timestamptz,
  add constraint agent_runs_ended check ((status in ('queued', 'running', 'waiting_approval')) = (ended_at is null)),
  add constraint agent_runs_steps_within_limit check (steps <= max_steps);
comment on column public.agent_runs.input is 'What the run was started with (a JSON object, at most 64 KiB).';
comment on column public.agent_runs.result is 'What the run ended with (at most 64 KiB).';
comment on column public.agent_runs.end_code is 'Why the run ended, as a stable code (a limit, a failure), when it did not succeed.';
comment on column public.agent_runs.deadline_at is 'When the run times out (timed_out) if it has not ended.';

create table private.run_limits (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  max_concurrent_runs integer not null check (max_concurrent_runs between 1 and 1000),
  max_steps integer not null check (max_steps between 1 and 200),
  max_seconds integer not null check (max_seconds between 10 and 86400)
);
comment on table private.run_limits is
  'The platform''s run limits of an organization (concurrent runs, steps, seconds); one without a row gets 100, 20 and 900.';

create table public.agent_run_events (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  run_id uuid not null,
  meta jsonb not null,
  created_at timestamptz not null default now(),
  unique (org_id, project_id, agent_id, run_id, id),
  foreign key (org_id, project_id, agent_id, run_id) references public.agent_runs (org_id, project_id, agent_id, id) on delete cascade
);
comment on table public.agent_run_events is
  'Run telemetry: meta is exactly {tool_name, ms, code, iter}, typed (a check constraint), never content. Written by the runtime.';

create table public.agent_run_messages (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  run_id uuid not null,
  seq integer not null check (seq >= 0),
  role text not null check (role in ('system', 'user', 'assistant', 'tool')),
  content jsonb not null check (pg_column_size(content) <= 262144),
  created_at timestamptz not null default now(),
  unique (org_id, project_id, agent_id, run_id, seq),
  foreign key (org_id, project_id, agent_id, run_id) references public.agent_runs (org_id, project_id, agent_id, id) on delete cascade
);
comment on table public.agent_run_messages is
  'A run''s transcript (messages, tool inputs and outputs), kept for the organization''s transcript retention. Written by the runtime; never audited.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Telemetry's one shape: exactly these four keys, each typed, nothing nested.
create function private.run_event_meta_valid(p_meta jsonb) returns boolean
language sql immutable
set search_path = ''
as $$
  select pg_catalog.jsonb_typeof(p_meta) = 'object'
     and (select pg_catalog.array_agg(k order by k) from pg_catalog.jsonb_object_keys(p_meta) k) = array['code', 'iter', 'ms', 'tool_name']
     and (pg_catalog.jsonb_typeof(p_meta -> 'tool_name') = 'null'
          or (pg_catalog.jsonb_typeof(p_meta -> 'tool_name') = 'string' and p_meta ->> 'tool_name' ~ '^[A-Za-z0-9_.-]{1,100}$'))
     and (pg_catalog.jsonb_typeof(p_meta -> 'code') = 'null'
          or (pg_catalog.jsonb_typeof(p_meta -> 'code') = 'string' and p_meta ->> 'code' ~ '^[a-z][a-z0-9_]{0,63}$'))
     and pg_catalog.jsonb_typeof(p_meta -> 'ms') = 'number' and (p_meta ->> 'ms') ~ '^[0-9]{1,9}$'
     and pg_catalog.jsonb_typeof(p_meta -> 'iter') = 'number' and (p_meta ->> 'iter') ~ '^[0-9]{1,5}$'
$$;
comment on function private.run_event_meta_valid(jsonb) is
  'True for exactly {tool_name: identifier|null, ms: whole number, code: identifier|null, iter: whole number}.';
revoke execute on function private.run_event_meta_valid(jsonb) from public, anon;
grant execute on function private.run_event_meta_valid(jsonb) to authenticated, service_role;

alter table public.agent_run_events add constraint agent_run_events_meta_shape check (private.run_event_meta_valid(meta));

-- An organization's run limits, the platform's defaults where it has no row.
create function private.run_limits_of(p_org_id uuid) returns private.run_limits
language sql stable
set search_path = ''
as $$
  select coalesce(l.org_id, p_org_id), coalesce(l.max_concurrent_runs, 100), coalesce(l.max_steps, 20), coalesce(l.max_seconds, 900)
    from (select 1) one left join private.run_limits l on l.org_id = p_org_id
$$;
comment on function private.run_limits_of(uuid) is 'An organization''s run limits (concurrent runs, steps, seconds), with the platform''s defaults.';
revoke execute on function private.run_limits_of(uuid) from public, anon, authenticated;

-- Deletes run transcripts past their organization's transcript retention (default 90 days), each
-- purge an audit entry; the runs themselves, their results and telemetry stay.
create function private.purge_run_transcripts() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  purged record;
  total integer := 0;
begin
  for purged in
    with expired as (
      delete from public.agent_run_messages m
       using (select o.id as org_id, pg_catalog.now() - pg_catalog.make_interval(days => coalesce(s.retention_days, 90)) as cutoff
                from public.organizations o left join public.transcript_settings s on s.org_id = o.id) r
       where m.org_id = r.org_id and m.created_at < r.cutoff
      returning m.org_id, r.cutoff
    )
    select e.org_id, pg_catalog.count(*)::integer as messages, pg_catalog.max(e.cutoff) as cutoff from expired e group by e.org_id
  loop
    perform audit.append(purged.org_id, 'run_transcript.purged', 'public.agent_run_messages', null,
                         pg_catalog.jsonb_build_object('messages', purged.messages, 'older_than', purged.cutoff));
    total := total + purged.messages;
  end loop;
  return total;
end
$$;
comment on function private.purge_run_transcripts() is
  'Deletes run transcript messages past their organization''s transcript retention; each purge is audited.';
revoke execute on function private.purge_run_transcripts() from public, anon, authenticated;
grant execute on function private.purge_run_transcripts() to service_role;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- A run's moves: an ended run is final; a client's own write (PostgREST, as authenticated) may
-- only cancel (the runtime and the database's own functions move it otherwise); ending sets
-- ended_at. Runs as the writer, so current_user tells a client's write from a definer function's.
create function private.guard_run_transition() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.ended_at is not null then
    perform private.refuse_request(409, 'run_ended', pg_catalog.format('The run ended (%s); an ended run is final.', old.status));
  end if;
  if new.status is distinct from old.status and new.status <> 'cancelled' and current_user = 'authenticated' then
    perform private.refuse_request(403, 'run_transition_forbidden', 'People cancel runs; the runtime moves them otherwise.');
  end if;
  if new.status not in ('queued', 'running', 'waiting_approval') then
    new.ended_at := coalesce(new.ended_at, pg_catalog.now());
  end if;
  return new;
end
$$;
comment on function private.guard_run_transition() is
  'Keeps ended runs final, lets people only cancel, and sets ended_at when a run ends.';
revoke execute on function private.guard_run_transition() from public, anon, authenticated;

create trigger guard_transition before update on public.agent_runs
  for each row execute function private.guard_run_transition();

-- The telemetry and the transcript are tenant tables (RLS, the context guard, ids from the
-- context) without the audit trigger: neither ever goes into the audit chain. Only the runtime
-- writes them, so a person's step-up never applies.
alter table public.agent_run_events enable row level security;
alter table public.agent_run_events force row level security;
alter table public.agent_run_messages enable row level security;
alter table public.agent_run_messages force row level security;
create trigger require_org_context before insert or update or delete on public.agent_run_events
  for each statement execute function private.require_org_context();
create trigger require_org_context before insert or update or delete on public.agent_run_messages
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.agent_run_events');
select private.take_ids_from_context('public.agent_run_messages');
insert into private.step_up_exemptions (table_name, reason) values
  ('public.agent_run_events', 'run telemetry, written by the runtime only'),
  ('public.agent_run_messages', 'run transcripts, written by the runtime only');

-- =============================================================================================
-- RPCs
-- =============================================================================================
drop function public.start_agent_run(uuid);
create function public.start_agent_run(p_agent_id uuid, p_input jsonb default '{}') returns public.agent_runs
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
  version_id uuid;
  limits private.run_limits;
  active integer;
  run public.agent_runs;
begin
  select a.* into agent from public.agents a where a.id = p_agent_id;
  if agent.id is null
     or (not private.is_runtime()
         and (agent.org_id is distinct from private.current_org_id()
              or not agent.project_id = any (private.project_ids_with_role('project_contributor')))) then
    perform private.refuse_request(404, 'agent_not_found', 'No agent with that id that you can run in this context.');
  end if;
  if agent.disabled_at is not null then
    perform private.refuse_request(409, 'agent_disabled', 'The agent is disabled.');
  end if;
  if p_input is null or pg_catalog.jsonb_typeof(p_input) <> 'object' or pg_catalog.pg_column_size(p_input) > 65536 then
    perform private.refuse_request(400, 'invalid_input', 'input must be a JSON object of at most 64 KiB.');
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

  -- Starts of one organization take turns here, so the concurrency limit holds under a race.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('agent-runs:' || agent.org_id::text, 0));
  limits := private.run_limits_of(agent.org_id);
  select pg_catalog.count(*) into active from public.agent_runs r where r.org_id = agent.org_id and r.ended_at is null;
  if active >= limits.max_concurrent_runs then
    perform private.refuse_request(429, 'run_limit_reached', pg_catalog.format(
      'The organization has %s runs going, its limit: wait for one to end.', active));
  end if;

  insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, started_by, input, max_steps, deadline_at)
  values (agent.org_id, agent.project_id, agent.id, version_id, (select auth.uid()), p_input, limits.max_steps,
          pg_catalog.now() + pg_catalog.make_interval(secs => limits.max_seconds))
  returning * into run;
  return run;
end
$$;
comment on function public.start_agent_run(uuid, jsonb) is
  'Starts a run of the agent''s latest published version with an input (project_contributor, or the runtime), within the organization''s run limits.';
revoke execute on function public.start_agent_run(uuid, jsonb) from public, anon, authenticated;
grant execute on function public.start_agent_run(uuid, jsonb) to authenticated, service_role;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their projects' run events" on public.agent_run_events
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "run events are written by the runtime" on public.agent_run_events
  for insert to authenticated
  with check (false);
create policy "run events are final" on public.agent_run_events
  for update to authenticated
  using (false);
create policy "run events are kept" on public.agent_run_events
  for delete to authenticated
  using (false);

create policy "members read their projects' run transcripts" on public.agent_run_messages
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "run transcripts are written by the runtime" on public.agent_run_messages
  for insert to authenticated
  with check (false);
create policy "run transcripts are final" on public.agent_run_messages
  for update to authenticated
  using (false);
create policy "run transcripts are kept until their retention" on public.agent_run_messages
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.agent_run_events, public.agent_run_messages from anon, authenticated;
grant select on public.agent_run_events, public.agent_run_messages to authenticated;
grant select, insert on public.agent_run_events, public.agent_run_messages to service_role;
