-- Scheduled runs (issue 24, section 2): an agent runs on a schedule through pg_cron, which hosted
-- Supabase has and Debian packages as postgresql-15-cron (npm run setup installs it; npm start
-- preloads it where it is installed).
--
-- - agent_schedules: a project's schedules of its agents: a five-field cron expression (UTC), the
--   run's input, enabled or not. A tenant table (RLS, the context guard, audited, the step-up
--   guard); project admins write it, members read it.
-- - Each enabled schedule is one pg_cron job, `gatehouse-schedule-<id>`, kept in step with its row
--   by a trigger: made when it is enabled, remade when its expression changes, removed when it is
--   disabled or deleted. An expression pg_cron does not take is refused (400 invalid_schedule).
--   Without pg_cron, enabling a schedule is refused (409 schedules_unavailable); disabled ones may
--   still be kept.
-- - A schedule's run counts as started by whoever last wrote the schedule (written_by, stamped by a
--   trigger): they chose its input, so they may not approve what its runs propose (the
--   self-approval rule reads agent_runs.started_by), as for a run they start by hand.
-- - The job starts the run as the runtime (private.start_scheduled_run), through the same checks
--   and limits as any start; the run names its schedule (agent_runs.schedule_id). A start the
--   limits refuse is an audit entry (agent_schedule.start_refused) with the refusal's code.
-- - The start itself moves to private.start_run, which start_agent_run and the schedule share.

do $$
begin
  if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron')
     and pg_catalog.current_setting('shared_preload_libraries') ~ 'pg_cron' then
    create extension if not exists pg_cron with schema extensions;
  end if;
end
$$;

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.agent_schedules (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  name text not null check (char_length(name) between 1 and 100),
  cron text not null check (char_length(cron) <= 100 and cron ~ '^\S+( \S+){4}$'),
  input jsonb not null default '{}' check (jsonb_typeof(input) = 'object' and pg_column_size(input) <= 65536),
  enabled boolean not null default true,
  created_by uuid default auth.uid(),
  written_by uuid,
  created_at timestamptz not null default now(),
  unique (org_id, project_id, agent_id, name),
  unique (org_id, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.agent_schedules is
  'When an agent runs on its own: a cron expression (five fields, UTC) and the run''s input; each enabled one is a pg_cron job.';
comment on column public.agent_schedules.cron is 'minute hour day-of-month month day-of-week, as pg_cron reads it (UTC).';
comment on column public.agent_schedules.written_by is
  'Who last wrote the schedule (its input): its runs count as started by them, so they don''t approve what those runs propose.';
select private.make_tenant_table('public.agent_schedules', 'agent_schedule');

-- No foreign key: a run's history names its schedule after the schedule is gone (and an ended run
-- is final, so it could not be updated to forget it). Only private.start_run sets it.
alter table public.agent_runs add column schedule_id uuid;
comment on column public.agent_runs.started_by is
  'The person who started the run, or who last wrote the schedule that did; null when the runtime started it otherwise.';
comment on column public.agent_runs.schedule_id is 'The schedule that started the run, if one did (kept after the schedule is deleted).';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- A run's start, for whoever it is: `p_runtime` callers (the service role, a schedule) may start
-- any agent's run; anyone else a run of an agent of a project they contribute to, in their context.
-- The version's config picks the runtime: ours (queued, its first step enqueued here) or the
-- customer's ("runtime": "external": running, no job).
create function private.start_run(p_agent_id uuid, p_input jsonb, p_runtime boolean, p_schedule_id uuid default null)
returns public.agent_runs
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
  version_id uuid;
  external boolean;
  limits private.run_limits;
  active integer;
  run public.agent_runs;
begin
  select a.* into agent from public.agents a where a.id = p_agent_id;
  if agent.id is null
     or (not p_runtime
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
  select v.id, v.config ->> 'runtime' = 'external' into version_id, external
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

  insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, status, started_by, input, max_steps, deadline_at, schedule_id)
  values (agent.org_id, agent.project_id, agent.id, version_id, case when external then 'running' else 'queued' end::public.run_status,
          -- A schedule's run is started by whoever last wrote the schedule.
          case when p_schedule_id is null then (select auth.uid())
               else (select s.written_by from public.agent_schedules s where s.id = p_schedule_id) end, p_input, limits.max_steps,
          pg_catalog.now() + pg_catalog.make_interval(secs => limits.max_seconds), p_schedule_id)
  returning * into run;
  if not coalesce(external, false) then
    perform private.enqueue_run(run.id);
  end if;
  return run;
end
$$;
comment on function private.start_run(uuid, jsonb, boolean, uuid) is
  'Starts a run of an agent''s latest published version within the organization''s run limits (the runtime''s, a schedule''s, or a contributor''s in context).';
revoke execute on function private.start_run(uuid, jsonb, boolean, uuid) from public, anon, authenticated;

-- What a schedule's pg_cron job runs: the schedule's run, started as the runtime. A schedule that
-- is gone or disabled starts nothing; a start the checks refuse is an audit entry with its code.
create function private.start_scheduled_run(p_schedule_id uuid) returns uuid
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  schedule public.agent_schedules;
  run public.agent_runs;
  refusal text;
begin
  select s.* into schedule from public.agent_schedules s where s.id = p_schedule_id;
  if schedule.id is null or not schedule.enabled then
    return null;
  end if;
  begin
    run := private.start_run(schedule.agent_id, schedule.input, true, schedule.id);
  exception when sqlstate 'PGRST' then
    get stacked diagnostics refusal = message_text;
    perform audit.append(schedule.org_id, 'agent_schedule.start_refused', 'public.agent_schedules', schedule.id::text,
                         pg_catalog.jsonb_build_object('reason', refusal::jsonb ->> 'code'));
    return null;
  end;
  return run.id;
end
$$;
comment on function private.start_scheduled_run(uuid) is
  'A schedule''s job: starts its run as the runtime, or records why the start was refused.';
revoke execute on function private.start_scheduled_run(uuid) from public, anon, authenticated;

-- The pg_cron job's name for a schedule.
create function private.schedule_job_name(p_schedule_id uuid) returns text
language sql immutable
set search_path = ''
as $$
  select 'gatehouse-schedule-' || p_schedule_id::text
$$;
comment on function private.schedule_job_name(uuid) is 'The pg_cron job name of a run schedule.';
revoke execute on function private.schedule_job_name(uuid) from public, anon, authenticated;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- Keeps each schedule's pg_cron job in step with its row.
create function private.sync_schedule_job() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  job text := private.schedule_job_name(coalesce(new.id, old.id));
begin
  if pg_catalog.to_regnamespace('cron') is null then
    if tg_op <> 'DELETE' and new.enabled then
      perform private.refuse_request(409, 'schedules_unavailable',
        'This database has no pg_cron, so schedules can''t run; keep the schedule disabled or install pg_cron.');
    end if;
    return null;
  end if;
  if tg_op <> 'INSERT' and exists (select 1 from cron.job j where j.jobname = job) then
    perform cron.unschedule(job);
  end if;
  if tg_op <> 'DELETE' and new.enabled then
    begin
      perform cron.schedule(job, new.cron, pg_catalog.format('select private.start_scheduled_run(%L)', new.id));
    exception when invalid_parameter_value or invalid_text_representation or data_exception then
      perform private.refuse_request(400, 'invalid_schedule',
        'cron must be five fields (minute hour day-of-month month day-of-week, UTC) that pg_cron reads, like "0 9 * * 1-5".');
    end;
  end if;
  return null;
end
$$;
comment on function private.sync_schedule_job() is 'Makes, remakes or removes a run schedule''s pg_cron job as its row changes.';
revoke execute on function private.sync_schedule_job() from public, anon, authenticated;

-- Stamps who last wrote a schedule (a person; the service role's writes keep the last one).
create function private.stamp_schedule_writer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.written_by := coalesce((select auth.uid()), case when tg_op = 'UPDATE' then old.written_by end);
  return new;
end
$$;
comment on function private.stamp_schedule_writer() is 'Sets agent_schedules.written_by to the person who writes the row.';
revoke execute on function private.stamp_schedule_writer() from public, anon, authenticated;

create trigger stamp_writer before insert or update on public.agent_schedules
  for each row execute function private.stamp_schedule_writer();

create trigger sync_job after insert or update or delete on public.agent_schedules
  for each row execute function private.sync_schedule_job();

-- =============================================================================================
-- RPCs
-- =============================================================================================
create or replace function public.start_agent_run(p_agent_id uuid, p_input jsonb default '{}') returns public.agent_runs
language sql volatile security definer
set search_path = ''
as $$
  select private.start_run(p_agent_id, p_input, private.is_runtime())
$$;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their projects' schedules" on public.agent_schedules
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "project admins add schedules" on public.agent_schedules
  for insert to authenticated
  with check (org_id = (select private.current_org_id())
              and project_id = any ((select private.project_ids_with_role('project_admin'))::uuid[]));
create policy "project admins change schedules" on public.agent_schedules
  for update to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = any ((select private.project_ids_with_role('project_admin'))::uuid[]))
  with check (org_id = (select private.current_org_id())
              and project_id = any ((select private.project_ids_with_role('project_admin'))::uuid[]));
create policy "project admins remove schedules" on public.agent_schedules
  for delete to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = any ((select private.project_ids_with_role('project_admin'))::uuid[]));

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.agent_schedules from anon, authenticated;
grant select, delete on public.agent_schedules to authenticated;
grant insert (project_id, agent_id, name, cron, input, enabled) on public.agent_schedules to authenticated;
grant update (name, cron, input, enabled) on public.agent_schedules to authenticated;
grant select, insert, update, delete on public.agent_schedules to service_role;
