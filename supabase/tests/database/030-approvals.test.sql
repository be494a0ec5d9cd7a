-- Hash-pinned approvals (seed 000): policies per agent and tool, decisions bound to the payload hash
-- the approver saw, dual control, and an execution gate that lets the approved payload through once.
-- (Two executors racing are covered against the running stack: tests/integration/approvals.test.ts.)
begin;
\ir _helpers.psql
select plan(57);

-- Acme's seeded run was started on a schedule, so its proposals are nobody's own request.
select pg_temp.run('acme') as run \gset
select pg_temp.agent('acme') as agent \gset
select pg_temp.project('acme') as project \gset

-- A tool of Acme's agent that the tests propose through (with the seeded ticket.comment), bound to
-- its CRM webhook connection.
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
values (pg_temp.org('acme'), :'project', :'agent', 'payments.refund', 'https_webhook', '6a000000-0000-4000-8000-00000000001a');

-- =============================================================================================
-- Proposing: canonical payload, hash and policy
-- =============================================================================================
select pg_temp.as_runtime();
select id as req, payload_sha256 as req_payload_hash, approval_sha256 as req_hash, status as req_status, mode as req_mode, approvals_required as req_required
  from public.propose_action(:'run', 'slack.post_message',
         '{"text": "Refund approved", "channel": "#returns", "meta": {"b": 1.0, "a": [1, 2e0]}}', 'medium') \gset
select id as dual_req, approval_sha256 as dual_hash, mode as dual_mode, approvals_required as dual_required
  from public.propose_action(:'run', 'slack.post_message', '{"text": "Refund 5000 EUR"}', 'high') \gset
select id as lookup_req, status as lookup_status, approvals_required as lookup_required
  from public.propose_action(:'run', 'crm.lookup', '{"customer": 7}', 'low') \gset
reset role;

select is(:'req_status'::text, 'pending', 'without a specific policy, the project default applies: the action waits');
select is(:'req_required'::int, 1, 'the project default asks one approver');
select is((select canonical_payload from public.action_requests where id = :'req'),
          '{"channel":"#returns","meta":{"a":[1,2],"b":1},"text":"Refund approved"}',
          'the payload is stored as its RFC 8785 canonical text');
select is(:'req_payload_hash'::text, encode(sha256(convert_to('{"channel":"#returns","meta":{"a":[1,2],"b":1},"text":"Refund approved"}', 'UTF8')), 'hex'),
          'the request is pinned to the SHA-256 of the canonical text');
select is(:'dual_mode'::text, 'require_dual_control', 'from the policy''s risk threshold up, two approvers are needed');
select is(:'dual_required'::int, 2, 'dual control asks two approvals');
select is(:'lookup_status'::text, 'approved', 'an allow policy for the agent''s tool approves at once');
select is(:'lookup_required'::int, 0, 'an allowed action needs no approver');

-- The most specific policy wins: agent+tool over tool, tool over the project default.
insert into public.approval_policies (org_id, project_id, agent_id, tool, mode)
values (pg_temp.org('acme'), :'project', null, 'crm.lookup', 'deny'),
       (pg_temp.org('acme'), :'project', null, 'payments.refund', 'deny');
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'crm.lookup', '{"customer": 8}', 'low')).status, 'approved',
          'an agent-and-tool policy beats a tool policy');
select is((public.propose_action(:'run', 'payments.refund', '{"amount": 10}', 'low')).status, 'denied',
          'a tool policy beats the project default, and deny refuses at once');
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'x', '[1]') $$,
                   '%invalid_payload%', 'a payload that is not a JSON object is refused');
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'Bad Tool', '{}') $$,
                   '%invalid_tool%', 'a malformed tool name is refused');
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'x', '{}', 'low', 10) $$,
                   '%invalid_expiry%', 'an expiry under a minute is refused');
reset role;

select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'x', '{}') $$,
                   '%run_not_found%', 'a viewer cannot propose actions');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'x', '{}') $$,
                   '%run_not_found%', 'another organization cannot propose for the run');
reset role;
set local role anon;
select throws_ok($$ select public.propose_action(pg_temp.run('acme'), 'x', '{}') $$,
                 '42501', null, 'anon cannot call the approval RPCs');
reset role;

-- =============================================================================================
-- Deciding
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select is((select count(*)::int from public.pending_approvals where id = :'req'), 1, 'a viewer sees the pending request');
select throws_like(format('select public.decide_action(%L, %L, true)', :'req', :'req_hash'),
                   '%approver_role_required%', 'a viewer cannot decide');
reset role;

select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select is((select count(*)::int from public.action_requests where id = :'req'), 0, 'another organization cannot see the request');
select throws_like(format('select public.decide_action(%L, %L, true)', :'req', :'req_hash'),
                   '%action_request_not_found%', 'another organization cannot decide the request');
reset role;

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, true)', :'req', :'req_payload_hash'),
                   '%stale_approval_hash%', 'a decision on the payload''s hash alone (not the approval hash, which names the target) is refused');
select is((select status::text from public.action_requests where id = :'req'), 'pending', 'a refused decision changes nothing');
select is((public.execute_action(:'req', '{"channel": "#returns", "text": "Refund approved", "meta": {"a": [1, 2], "b": 1}}')) ->> 'reason',
          'not_approved', 'a pending action cannot be executed');
select is((public.decide_action(:'req', :'req_hash', true, 'checked the refund')).status, 'approved',
          'an approver with the shown hash approves');
reset role;

-- Self-approval: casey starts a run and proposes from it, by hand and through the runtime.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select id as casey_run from public.start_agent_run(:'agent') \gset
-- (The worker would take the queued run; here the test moves it on as the runtime would.)
reset role;
update public.agent_runs set status = 'running' where id = :'casey_run';
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select id as own_req, approval_sha256 as own_hash from public.propose_action(:'casey_run', 'ticket.comment', '{"ticket": 9}') \gset
reset role;
select pg_temp.as_runtime();
select id as run_req, approval_sha256 as run_hash from public.propose_action(:'casey_run', 'ticket.comment', '{"ticket": 10}') \gset
reset role;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, true)', :'own_req', :'own_hash'),
                   '%self_approval%', 'the requester cannot approve its own request');
select throws_like(format('select public.decide_action(%L, %L, true)', :'run_req', :'run_hash'),
                   '%self_approval%', 'whoever started the run cannot approve what its agent proposes');
select is((select awaiting_you from public.pending_approvals where id = :'own_req'), false,
          'the pending list does not offer the requester its own request');
reset role;

-- Changing a policy needs a second factor too: it decides whether such an action waits at all.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like(format($$update public.approval_policies set mode = 'allow' where project_id = %L$$, :'project'),
                   '%step_up_required%', 'a project admin at aal1 cannot loosen an approval policy');
reset role;
select pg_temp.act_as_aal2(pg_temp.uid('casey'), pg_temp.org('acme'));
select lives_ok(format($$insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
                          values (%L, %L, null, 'calendar.read', 'allow', %L)$$, pg_temp.org('acme'), :'project', pg_temp.connection('acme')),
                'at aal2 the project admin changes policies');
reset role;

-- Dual control, on a high-risk request: deciding it needs a second factor (step-up).
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select payload_sha256 from public.pending_approvals where id = :'dual_req'),
          encode(sha256(convert_to('{"text":"Refund 5000 EUR"}', 'UTF8')), 'hex'),
          'the pending list shows the exact hash to approve');
select is((select r.needs_step_up from public.action_requests r where r.id = :'dual_req'), true,
          'a high-risk request says it needs a second factor');
select is((select r.needs_step_up from public.action_requests r where r.id = :'req'), false,
          'a medium-risk request does not');
select throws_like(format('select public.decide_action(%L, %L, true)', :'dual_req', :'dual_hash'),
                   '%step_up_required%', 'a high-risk approval at aal1 is refused');
select throws_like(format('select public.decide_action(%L, %L, false)', :'dual_req', :'dual_hash'),
                   '%step_up_required%', 'so is a high-risk rejection');
reset role;
select pg_temp.act_as_aal2(pg_temp.uid('ada'), pg_temp.org('acme'), 'aal1');
select throws_like(format('select public.decide_action(%L, %L, true)', :'dual_req', :'dual_hash'),
                   '%step_up_required%', 'an aal2 token whose session fell back to aal1 is refused');
reset role;
select pg_temp.act_as_aal2(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((public.decide_action(:'dual_req', :'dual_hash', true)).status,
          'pending', 'under dual control, one approval is not enough');
select throws_like(format('select public.decide_action(%L, %L, true)', :'dual_req', :'dual_hash'),
                   '%already_decided%', 'one person cannot count twice');
reset role;
select pg_temp.act_as_aal2(pg_temp.uid('casey'), pg_temp.org('acme'));
select is((public.decide_action(:'dual_req', :'dual_hash', true)).status,
          'approved', 'a second, different approver completes dual control');
reset role;

-- =============================================================================================
-- Executing
-- =============================================================================================
select pg_temp.as_runtime();
select is((public.execute_action(:'req', '{"channel": "#returns", "text": "Refund approved!", "meta": {"a": [1, 2], "b": 1}}')) ->> 'reason',
          'payload_mismatch', 'a payload changed by one value after approval is refused');
select is((public.execute_action(:'req', '{"meta":{"b":1.00,"a":[1.0,2]},"text":"Refund approved","channel":"#returns"}')) ->> 'ok',
          'true', 'the approved payload with keys reordered and numbers respelled is the same payload');
select is((public.execute_action(:'req', '{"channel": "#returns", "text": "Refund approved", "meta": {"a": [1, 2], "b": 1}}')) ->> 'reason',
          'already_executed', 'an approval cannot be reused');
select is((public.record_action_outcome(:'req', true, 'posted')).outcome, 'delivered', 'the executor records the delivery');
select throws_like(format('select public.record_action_outcome(%L, false)', :'req'),
                   '%action_not_awaiting_outcome%', 'an outcome is recorded once');
reset role;

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_ok(format('select public.record_action_outcome(%L, true)', :'dual_req'), '42501', null,
                 'only the runtime records outcomes, not even a tenant admin');
reset role;
select throws_ok(format('update public.action_requests set canonical_payload = %L where id = %L', '{"text":"Refund 50000 EUR"}', :'dual_req'),
                 '23514', null, 'a stored payload cannot be changed away from its pinned hash, even by the owner');

select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like(format('select public.execute_action(%L, %L)', :'dual_req', '{"text":"Refund 5000 EUR"}'),
                   '%action_request_not_found%', 'a viewer cannot execute');
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, false)', :'req', :'req_hash'),
                   '%action_request_not_pending%', 'an executed request takes no more decisions');
-- A rejection ends the request.
select is((public.decide_action(:'run_req', :'run_hash', false, 'not this ticket')).status, 'rejected', 'an approver rejects');
select is((public.execute_action(:'run_req', '{"ticket": 10}')) ->> 'reason', 'not_approved', 'a rejected action cannot be executed');
reset role;

-- Expiry: the approved dual-control request and a pending one run out of time.
update public.action_requests set created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour'
 where id in (:'dual_req', :'own_req');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, true)', :'own_req', :'own_hash'),
                   '%action_request_expired%', 'an expired request cannot be decided');
select is((select count(*)::int from public.pending_approvals where id = :'own_req'), 0, 'an expired request leaves the pending list');
reset role;
select pg_temp.as_runtime();
select is((public.execute_action(:'dual_req', '{"text":"Refund 5000 EUR"}')) ->> 'reason', 'expired',
          'an approved request that has expired cannot be executed');
reset role;

-- =============================================================================================
-- Audit
-- =============================================================================================
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select is((select count(*)::int from audit.entries e
             join public.approval_decisions d on d.id::text = e.target_id
            where e.org_id = pg_temp.org('acme') and e.action = 'approval_decision.insert'
              and d.request_id in (:'req', :'dual_req', :'run_req')), 4,
          'each decision is an audit entry');
select is((select array_agg(p.payload ->> 'reason' order by e.seq) from audit.entries e
             join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.action = 'action_request.execution_refused' and e.target_id = :'req'),
          array['not_approved', 'payload_mismatch', 'already_executed'],
          'every refused execution is an audit entry, with its reason');
select is((select count(*)::int from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.action = 'action_request.update' and e.target_id = :'req'
              and p.payload -> 'new' ->> 'status' = 'executed' and p.payload -> 'old' ->> 'status' = 'approved'), 1,
          'the execution is an audit entry');
select is((select count(*)::int from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.target_id = :'req' and p.payload::text like '%Refund approved%'), 0,
          'the chain holds the payload''s hash, never the payload');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select ok from public.verify_audit_chain()), true, 'the chain verifies after all of it');
reset role;

select * from finish();
rollback;
