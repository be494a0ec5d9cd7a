-- The run worker's database side (issue 24): the job engine's schema closed to the API, runs
-- enqueued in the transaction that needs them, steps leased to one worker, writes refused to a
-- worker that lost its lease, a tool call proposed once per (run, step, call), a decision that
-- enqueues the resume with itself, the step limit and the sweep's time-based ends, and an audit
-- trail of the run's moves without its input or result.
begin;
\ir _helpers.psql
select plan(35);

select pg_temp.agent('acme') as agent \gset
create function pg_temp.jobs(p_run uuid) returns integer language sql security definer as $$
  select count(*)::int from graphile_worker._private_jobs j where j.key = 'run:' || p_run::text
$$;

-- =============================================================================================
-- The job engine's schema
-- =============================================================================================
select is(has_schema_privilege('anon', 'graphile_worker', 'usage'), false, 'anon can''t use the job engine''s schema');
select is(has_schema_privilege('authenticated', 'graphile_worker', 'usage'), false, 'nor can a signed-in member');
select is(has_schema_privilege('service_role', 'graphile_worker', 'usage'), false, 'nor the service role: only our definer functions enqueue');

-- =============================================================================================
-- Starting enqueues the run, in the start's own transaction
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select id as run from public.start_agent_run(:'agent', '{"prompt": "use slack_post_message with {\"text\": \"hi\"}"}') \gset
reset role;
select is(pg_temp.jobs(:'run'), 1, 'a started run has its job');
select is((select payload::jsonb from graphile_worker._private_jobs where key = 'run:' || :'run'), jsonb_build_object('run_id', :'run'),
          'and the job names the run, nothing else');
savepoint before_start;
select pg_temp.as_runtime();
select id as rolled_back from public.start_agent_run(:'agent') \gset
reset role;
rollback to savepoint before_start;
select is(pg_temp.jobs(:'rolled_back'), 0, 'a start that rolls back leaves no job');

-- An agent whose version runs on the customer's runtime: running at once, no job.
savepoint before_external;
insert into public.agent_versions (org_id, project_id, agent_id, version, config)
values (pg_temp.org('acme'), pg_temp.project('acme'), :'agent', 90, '{"model": "gpt-4o-mini", "runtime": "external"}')
returning id as external_version \gset
update public.agent_versions set published_at = now(), published_by = pg_temp.uid('ada') where id = :'external_version';
select pg_temp.as_runtime();
select id as external_run, status as external_status from public.start_agent_run(:'agent') \gset
reset role;
select is(:'external_status'::text, 'running', 'a run on an external runtime starts running');
select is(pg_temp.jobs(:'external_run'), 0, 'and no job of ours takes it');
rollback to savepoint before_external;

-- =============================================================================================
-- A step is leased to one worker
-- =============================================================================================
select pg_temp.as_runtime();
select private.claim_run_step(:'run', 'worker-a', 60) as claim \gset
select is(:'claim'::jsonb ->> 'action', 'step', 'the first worker gets the step');
select is((:'claim'::jsonb ->> 'step')::int, 1, 'step 1');
select is(:'claim'::jsonb -> 'run' ->> 'org_id', pg_temp.org('acme')::text, 'with the organization read from the run row');
select ok(:'claim'::jsonb ->> 'token' ~ '^ghr_', 'and a run token to act with');
select is(jsonb_array_length(:'claim'::jsonb -> 'messages'), 2, 'the transcript starts with the instructions and the input');
select is((select status::text from public.agent_runs where id = :'run'), 'running', 'the run is running');
select is(private.claim_run_step(:'run', 'worker-b', 60) ->> 'reason', 'step_in_progress', 'a second worker finds the step leased');
select :'claim'::jsonb ->> 'lease' as lease \gset

select throws_like(format($$select private.record_model_turn(%L, 1, gen_random_uuid(), '{"role": "assistant", "content": "x"}', null)$$, :'run'),
                   '%step_lease_lost%', 'a worker without the lease writes nothing');
select lives_ok(format($$select private.record_model_turn(%L, 1, %L,
                  '{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "slack_post_message", "arguments": "{\"text\": \"hi\"}"}}]}',
                  '{"tool_name": null, "ms": 12, "code": null, "iter": 1}')$$, :'run', :'lease'),
                'the lease holder keeps the model''s answer');
select throws_like(format($$select private.record_model_turn(%L, 1, %L, '{"role": "assistant", "content": "again"}', null)$$, :'run', :'lease'),
                   '%model_turn_kept%', 'once');

-- A tool call is proposed once per (run, step, call id).
select private.propose_run_action(:'run', 1, :'lease', 'call_1', 'slack.post_message', '{"text": "hi"}') as proposed \gset
select is(:'proposed'::jsonb ->> 'status', 'pending', 'the tool call is an action request that waits for approval');
select is(private.propose_run_action(:'run', 1, :'lease', 'call_1', 'slack.post_message', '{"text": "hi"}') ->> 'request_id',
          :'proposed'::jsonb ->> 'request_id', 'proposing the same call again finds the same request');
select is((select count(*)::int from public.action_requests where run_id = :'run'), 1, 'one request');

-- The run waits in the database; the decision enqueues its resume with itself.
select private.finish_run_step(:'run', 1, :'lease', 'wait', p_request_id => (:'proposed'::jsonb ->> 'request_id')::uuid);
select is((select status::text from public.agent_runs where id = :'run'), 'waiting_approval', 'the run waits for the decision');
reset role;
delete from graphile_worker._private_jobs where key = 'run:' || :'run';
select pg_temp.as_runtime();
select is(private.claim_run_step(:'run', 'worker-b', 60) ->> 'reason', 'waiting_approval', 'no worker takes a waiting run');
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
savepoint before_decision;
select public.decide_action((:'proposed'::jsonb ->> 'request_id')::uuid,
                            (select approval_sha256 from public.action_requests where id = (:'proposed'::jsonb ->> 'request_id')::uuid), true);
select is(pg_temp.jobs(:'run'), 1, 'the approval enqueues the resume in its own transaction');
rollback to savepoint before_decision;
select is(pg_temp.jobs(:'run'), 0, 'and a decision that rolls back enqueues nothing');
select public.decide_action((:'proposed'::jsonb ->> 'request_id')::uuid,
                            (select approval_sha256 from public.action_requests where id = (:'proposed'::jsonb ->> 'request_id')::uuid), false);
reset role;
select pg_temp.as_runtime();
select private.claim_run_step(:'run', 'worker-c', 60) as resumed \gset
select is((:'resumed'::jsonb ->> 'step')::int, 1, 'after the decision a worker takes the same step over');
select is(:'resumed'::jsonb -> 'answer' -> 'tool_calls' -> 0 ->> 'id', 'call_1', 'with the model''s kept answer, not a new model call');
select :'resumed'::jsonb ->> 'lease' as lease2 \gset
select throws_like(format($$select private.finish_run_step(%L, 1, %L, 'continue')$$, :'run', :'lease'),
                   '%step_lease_lost%', 'the earlier lease is void');
select private.record_tool_result(:'run', 1, :'lease2', 'call_1', '{"error": "rejected"}', '{"tool_name": "slack.post_message", "ms": 1, "code": "rejected", "iter": 1}');
select private.finish_run_step(:'run', 1, :'lease2', 'continue');
select is((select steps from public.agent_runs where id = :'run'), 1, 'the step is done');
select is(pg_temp.jobs(:'run'), 1, 'and the next one is enqueued with it');

-- The step limit: a run at its limit ends steps_exhausted instead of taking another step.
reset role;
update public.agent_runs set max_steps = 1 where id = :'run';
select pg_temp.as_runtime();
select is(private.claim_run_step(:'run', 'worker-c', 60) ->> 'reason', 'run_ended', 'a run at its step limit takes no more steps');
reset role;
select is((select status::text || '/' || end_code from public.agent_runs where id = :'run'), 'steps_exhausted/run_step_limit',
          'it ended steps_exhausted');

-- =============================================================================================
-- The sweep: deadlines
-- =============================================================================================
select pg_temp.as_runtime();
select id as late from public.start_agent_run(:'agent') \gset
reset role;
update public.agent_runs set deadline_at = now() where id = :'late';
select pg_temp.as_runtime();
select private.sweep_runs();
reset role;
select is((select status::text from public.agent_runs where id = :'late'), 'timed_out', 'a run past its deadline is ended timed_out');

-- =============================================================================================
-- The audit trail: the run's moves, never its input or result
-- =============================================================================================
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select is((select array_agg(r.action order by r.id) from audit.records r where r.target_id = :'run'),
          array['agent_run.insert', 'agent_run.update', 'agent_run.update', 'agent_run.update', 'agent_run.update'],
          'start, running, waiting, running again, ended: each an audit entry, the step counter none');
select is((select count(*)::int from audit.records r where r.target_id = :'run' and r.payload::text like '%slack_post_message%'), 0,
          'the input stays out of the chain');

select * from finish();
rollback;
