-- Scheduled runs (issue 24): each enabled schedule is a pg_cron job kept in step with its row,
-- only project admins write schedules, and a schedule's job starts its run as the runtime through
-- the same limits as any start (a refused start is an audit entry).
begin;
\ir _helpers.psql
select plan(20);

select pg_temp.agent('acme') as agent \gset
select pg_temp.project('acme') as project \gset
create function pg_temp.job(p_schedule uuid) returns text language sql security definer as $$
  select j.schedule || ' | ' || j.command from cron.job j where j.jobname = 'gatehouse-schedule-' || p_schedule::text
$$;

select is(has_schema_privilege('anon', 'cron', 'usage'), false, 'anon can''t use pg_cron''s schema');
select is(has_schema_privilege('authenticated', 'cron', 'usage'), false, 'nor can a signed-in member');

-- Who writes schedules: project admins (ada), not viewers (victor).
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_ok(format($$insert into public.agent_schedules (project_id, agent_id, name, cron) values (%L, %L, 'Hourly', '0 * * * *')$$,
                        :'project', :'agent'),
                 '42501', null, 'a viewer can''t schedule an agent');
select is((select count(*)::int from public.agent_schedules), 1, 'but reads the organization''s schedules');
reset role;

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
insert into public.agent_schedules (project_id, agent_id, name, cron, input)
values (:'project', :'agent', 'Hourly check', '0 * * * *', '{"prompt": "check"}')
returning id as schedule \gset
reset role;
select is(pg_temp.job(:'schedule'), format('0 * * * * | select private.start_scheduled_run(%L)', :'schedule'),
          'an enabled schedule is a pg_cron job that starts its run');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format($$update public.agent_schedules set cron = '61 * * * *' where id = %L$$, :'schedule'),
                   '%invalid_schedule%', 'an expression pg_cron does not read is refused');
select throws_like(format($$insert into public.agent_schedules (project_id, agent_id, name, cron) values (%L, %L, 'Odd', 'every day')$$,
                          :'project', :'agent'),
                   '%agent_schedules_cron_check%', 'and so is anything but five fields');
update public.agent_schedules set cron = '30 6 * * 1-5' where id = :'schedule';
reset role;
select is(split_part(pg_temp.job(:'schedule'), ' | ', 1), '30 6 * * 1-5', 'a changed expression remakes the job');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.agent_schedules set enabled = false where id = :'schedule';
reset role;
select is(pg_temp.job(:'schedule'), null, 'a disabled schedule has no job');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.agent_schedules set enabled = true where id = :'schedule';
reset role;
select isnt(pg_temp.job(:'schedule'), null, 'enabled again, it has one');

-- The job's command starts the run as the runtime.
select private.start_scheduled_run(:'schedule') as scheduled_run \gset
select is((select status::text || '/' || coalesce(started_by::text, 'nobody') || '/' || schedule_id::text
             from public.agent_runs where id = :'scheduled_run'),
          'queued/' || pg_temp.uid('ada') || '/' || :'schedule',
          'the schedule''s run is queued, names its schedule, and counts as started by who last wrote it');

-- Who wrote the schedule's input doesn't approve what its run proposes.
update public.agent_runs set status = 'running' where id = :'scheduled_run';
select pg_temp.as_runtime();
select id as scheduled_req, approval_sha256 as scheduled_hash
  from public.propose_action(:'scheduled_run', 'ticket.comment', '{"ticket": 7}') \gset
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, true)', :'scheduled_req', :'scheduled_hash'),
                   '%self_approval%', 'the schedule''s writer can''t approve what its run proposes');
reset role;
select is((select written_by from public.agent_schedules where id = :'schedule'), pg_temp.uid('ada'), 'the writer is stamped by the database');
update public.agent_runs set status = 'queued' where id = :'scheduled_run';
select is((select input from public.agent_runs where id = :'scheduled_run'), '{"prompt": "check"}'::jsonb, 'with the schedule''s input');
select is((select count(*)::int from graphile_worker._private_jobs where key = 'run:' || :'scheduled_run'), 1, 'and enqueued for the worker');

-- A start the limits refuse is recorded, and starts nothing.
insert into private.run_limits (org_id, max_concurrent_runs, max_steps, max_seconds)
values (pg_temp.org('acme'), 1, 20, 900);
select is(private.start_scheduled_run(:'schedule'), null, 'past the concurrency limit the schedule starts nothing');
select is((select payload::jsonb ->> 'reason' from audit.records
            where action = 'agent_schedule.start_refused' and target_id = :'schedule'::text), 'run_limit_reached',
          'and the refusal is an audit entry with its code');
delete from private.run_limits where org_id = pg_temp.org('acme');

-- A disabled schedule's job (if any were left) starts nothing.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.agent_schedules set enabled = false where id = :'schedule';
reset role;
select is(private.start_scheduled_run(:'schedule'), null, 'a disabled schedule starts nothing');

-- Removing a schedule removes its job; its runs stay (ended ones too), and their history still names it.
update public.agent_runs set status = 'cancelled' where id = :'scheduled_run';
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.agent_schedules set enabled = true where id = :'schedule';
delete from public.agent_schedules where id = :'schedule';
reset role;
select is(pg_temp.job(:'schedule'), null, 'a deleted schedule has no job');
select is((select schedule_id from public.agent_runs where id = :'scheduled_run'), :'schedule'::uuid, 'and its ended run stays, naming it');

select * from finish();
rollback;
