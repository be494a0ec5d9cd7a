-- Agent runs (issue 24): the lifecycle's rules, the run limits, telemetry that can only be
-- {tool_name, ms, code, iter}, and a transcript outside the audit chain.
begin;
\ir _helpers.psql
select plan(24);

select pg_temp.run('acme') as run \gset
select pg_temp.agent('acme') as agent \gset
select pg_temp.project('acme') as project \gset

-- =============================================================================================
-- Telemetry: exactly {tool_name, ms, code, iter}, typed, nothing nested
-- =============================================================================================
create function pg_temp.event(p_meta text) returns text language plpgsql as $$
begin
  insert into public.agent_run_events (org_id, project_id, agent_id, run_id, meta)
  values (pg_temp.org('acme'), pg_temp.project('acme'), pg_temp.agent('acme'), pg_temp.run('acme'), p_meta::jsonb);
  return 'stored';
exception when check_violation then
  return 'refused';
end
$$;
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": 31, "code": null, "iter": 2}'), 'stored', 'a tool step''s telemetry is stored');
select is(pg_temp.event('{"tool_name": null, "ms": 900, "code": "model_upstream_timeout", "iter": 3}'), 'stored', 'a model step''s, with its code');
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": 31, "code": null, "iter": 2, "prompt": "hi"}'), 'refused', 'any other key is refused');
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": 31, "code": null}'), 'refused', 'a missing key is refused');
select is(pg_temp.event('{"tool_name": {"name": "crm.lookup", "args": {"q": "x"}}, "ms": 31, "code": null, "iter": 2}'), 'refused', 'a nested value is refused');
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": [31], "code": null, "iter": 2}'), 'refused', 'an array is refused');
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": 3.5, "code": null, "iter": 2}'), 'refused', 'ms is a whole number');
select is(pg_temp.event('{"tool_name": "crm.lookup", "ms": 31, "code": "Refund 42 EUR to ada", "iter": 2}'), 'refused', 'code is an identifier, not text');
select is(pg_temp.event('{"tool_name": "crm lookup: the customer''s address", "ms": 31, "code": null, "iter": 2}'), 'refused', 'tool_name is an identifier, not text');
select is(pg_temp.event('[]'), 'refused', 'meta is an object');

-- =============================================================================================
-- Who writes, who reads
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_ok(format($$insert into public.agent_run_events (project_id, agent_id, run_id, meta)
                          values (%L, %L, %L, '{"tool_name": null, "ms": 1, "code": null, "iter": 0}')$$, :'project', :'agent', :'run'),
                 '42501', null, 'a member writes no telemetry: only the runtime does');
select throws_ok(format($$insert into public.agent_run_messages (project_id, agent_id, run_id, seq, role, content)
                          values (%L, %L, %L, 99, 'assistant', '{}')$$, :'project', :'agent', :'run'),
                 '42501', null, 'nor a transcript');
select cmp_ok((select count(*)::int from public.agent_run_messages where run_id = :'run'), '>=', 2, 'a member reads the run''s transcript');
reset role;
select is((select count(*)::int from pg_trigger t where t.tgname = 'audit'
            and t.tgrelid in ('public.agent_run_events'::regclass, 'public.agent_run_messages'::regclass)), 0,
          'neither telemetry nor transcript goes into the audit chain');

-- =============================================================================================
-- The lifecycle
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select id as started, status as started_status, max_steps as started_steps, (deadline_at > now()) as has_deadline
  from public.start_agent_run(:'agent', '{"order": 1042}') \gset
select is(:'started_status'::text, 'queued', 'a run starts queued, for the worker');
select is(:'has_deadline'::boolean, true, 'with a deadline from the platform''s limits');
select throws_like(format($$update public.agent_runs set status = 'succeeded' where id = %L$$, :'started'),
                   '%run_transition_forbidden%', 'a person can''t declare a run succeeded');
select is((select status::text from public.agent_runs where id = :'started'), 'queued', 'nothing changed');
update public.agent_runs set status = 'cancelled' where id = :'started';
select is((select ended_at is not null from public.agent_runs where id = :'started'), true, 'a person cancels a run, which ends it');
select throws_like(format($$update public.agent_runs set status = 'running' where id = %L$$, :'started'),
                   '%run_ended%', 'an ended run is final');
select throws_like($$ select public.start_agent_run(pg_temp.agent('acme'), '[1]') $$, '%invalid_input%', 'input is a JSON object');
reset role;
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select is((select array_agg(e.action order by e.seq) from audit.entries e where e.org_id = pg_temp.org('acme') and e.target_id = :'started'),
          array['agent_run.insert', 'agent_run.update'], 'the start and the cancellation are audit entries');

-- The organization's concurrency limit, under the platform's control.
insert into private.run_limits (org_id, max_concurrent_runs, max_steps, max_seconds)
values (pg_temp.org('acme'), (select count(*)::int + 1 from public.agent_runs where org_id = pg_temp.org('acme') and ended_at is null), 5, 60);
select pg_temp.as_runtime();
select is((public.start_agent_run(pg_temp.agent('acme'))).max_steps, 5, 'a run takes the organization''s step limit');
select throws_like($$ select public.start_agent_run(pg_temp.agent('acme')) $$, '%run_limit_reached%',
                   'past the organization''s concurrent runs, a start is refused');
reset role;

select * from finish();
rollback;
