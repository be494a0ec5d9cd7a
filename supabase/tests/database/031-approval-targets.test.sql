-- An approval pins the whole effect (issue 23): the tool, its provider, its connection and the
-- destination the connection delivers to, not only the payload. Each attack the review found is
-- replayed here: rebinding or re-creating a tool after its approval, reaching an allow policy by
-- renaming or rebinding, pointing a connection's credential elsewhere, labelling a dangerous
-- action low-risk.
begin;
\ir _helpers.psql
select plan(30);

select pg_temp.run('acme') as run \gset
select pg_temp.agent('acme') as agent \gset
select pg_temp.project('acme') as project \gset
select pg_temp.connection('acme') as slack \gset
select '6a000000-0000-4000-8000-00000000001a' as crm \gset
-- The seeded bindings, whatever the suites that ran before left.
update public.agent_tools set connection_id = :'slack', provider = 'slack_webhook', enabled = true
 where agent_id = :'agent' and tool = 'slack.post_message';

-- A second Slack webhook of Acme's: where an attacker would like the approved message to go.
insert into public.connections (id, org_id, provider, display_name, scopes, secret_id, verified_at)
values ('6a000000-0000-4000-8000-0000000000ff', pg_temp.org('acme'), 'slack_webhook', 'Another channel', '{}',
        vault.create_secret('{"url": "https://hooks.slack.com/services/T9/B9/other"}', null, 'connection credential'), now()); -- secretlint-disable-line -- a made-up Slack URL
select '6a000000-0000-4000-8000-0000000000ff' as other \gset
-- An https webhook on a host of the attacker's choosing.
insert into public.connections (id, org_id, provider, display_name, scopes, secret_id, verified_at)
values ('6a000000-0000-4000-8000-0000000000ee', pg_temp.org('acme'), 'https_webhook', 'Partner hook', '{}',
        vault.create_secret('{"url": "https://User@Evil.Example:443/collect?x=1"}', null, 'connection credential'), now());
select '6a000000-0000-4000-8000-0000000000ee' as evil \gset

-- =============================================================================================
-- What a request records, and what approvers see
-- =============================================================================================
select is((select destination from public.connections where id = :'slack'), 'hooks.slack.com',
          'a Slack connection delivers to the host of its webhook URL (derived from the credential in Vault)');
select is((select destination from public.connections where id = :'evil'), 'evil.example',
          'the destination is the URL''s host as a URL parser spells it: no userinfo, lowercase, no default port');

select pg_temp.as_runtime();
select id as req, approval_sha256 as req_hash, payload_sha256 as req_payload_hash
  from public.propose_action(:'run', 'slack.post_message', '{"text": "Refund approved"}', 'low') \gset
reset role;
select is((select array[provider::text, connection_id::text, destination, tool_id::text] from public.action_requests where id = :'req'),
          (select array[t.provider::text, t.connection_id::text, 'hooks.slack.com', t.id::text] from public.agent_tools t
            where t.agent_id = :'agent' and t.tool = 'slack.post_message'),
          'a request records the tool, its provider, its connection and the destination');
select is(:'req_hash'::text,
          encode(sha256(convert_to(format('{"connection_id":"%s","destination":"hooks.slack.com","payload_sha256":"%s","provider":"slack_webhook","tool":"slack.post_message","tool_id":"%s"}',
                                          :'slack', :'req_payload_hash',
                                          (select id from public.agent_tools where agent_id = :'agent' and tool = 'slack.post_message')), 'UTF8')), 'hex'),
          'the approval hash is the SHA-256 of the RFC 8785 text of the payload hash and the whole target');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select array[connection_name, destination, provider::text, approval_sha256] from public.pending_approvals where id = :'req'),
          array['Returns channel', 'hooks.slack.com', 'slack_webhook', :'req_hash'],
          'approvers see the real connection, its destination and the hash that covers them');
select throws_like(format('select public.decide_action(%L, %L, true)', :'req', :'req_payload_hash'),
                   '%stale_approval_hash%', 'a decision on the payload hash alone is refused: it does not name the target');
select is((public.decide_action(:'req', :'req_hash', true)).status, 'approved', 'the approver approves the whole effect');
reset role;

-- =============================================================================================
-- Attack: rebinding the tool after the approval
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.agent_tools set connection_id = :'other' where agent_id = :'agent' and tool = 'slack.post_message';
reset role;
select is((select status::text from public.action_requests where id = :'req'), 'withdrawn',
          'rebinding the tool ends its approved, unexecuted request');
select pg_temp.as_runtime();
select is((public.execute_action(:'req', '{"text": "Refund approved"}')) ->> 'reason', 'approval_target_changed',
          'a tool rebound after its approval is refused at execution');
reset role;
-- Even with the binding put back, the approval stays ended: it was given for a binding that changed.
update public.agent_tools set connection_id = :'slack' where agent_id = :'agent' and tool = 'slack.post_message';
select pg_temp.as_runtime();
select is((public.execute_action(:'req', '{"text": "Refund approved"}')) ->> 'reason', 'approval_target_changed',
          'putting the binding back does not revive the withdrawn approval');
reset role;

-- A pending request is withdrawn too, and can't be decided any more.
select pg_temp.as_runtime();
select id as pending_req, approval_sha256 as pending_hash
  from public.propose_action(:'run', 'slack.post_message', '{"text": "Refund 12"}', 'low') \gset
reset role;
update public.agent_tools set enabled = false where agent_id = :'agent' and tool = 'slack.post_message';
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format('select public.decide_action(%L, %L, true)', :'pending_req', :'pending_hash'),
                   '%approval_target_changed%', 'a pending request whose tool was disabled can no longer be approved');
reset role;
update public.agent_tools set enabled = true where agent_id = :'agent' and tool = 'slack.post_message';

-- =============================================================================================
-- Attack: deleting the tool and re-creating it under the same name on another connection
-- =============================================================================================
select pg_temp.as_runtime();
select id as req2, approval_sha256 as req2_hash from public.propose_action(:'run', 'slack.post_message', '{"text": "Refund 13"}', 'low') \gset
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((public.decide_action(:'req2', :'req2_hash', true)).status, 'approved', 'approved while bound to the returns channel');
reset role;
-- Behind the trigger's back (as the owner, triggers off), to prove execution checks on its own.
set local session_replication_role = replica;
delete from public.agent_tools where agent_id = :'agent' and tool = 'slack.post_message';
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
values (pg_temp.org('acme'), :'project', :'agent', 'slack.post_message', 'slack_webhook', :'other');
set local session_replication_role = origin;
select is((select status::text from public.action_requests where id = :'req2'), 'approved',
          '(with the triggers off, the request is still approved)');
select pg_temp.as_runtime();
select is((public.execute_action(:'req2', '{"text": "Refund 13"}')) ->> 'reason', 'approval_target_changed',
          'a tool re-created under the same name is another tool: execution refuses the approval');
reset role;
-- The same with the triggers on: the delete withdraws.
select pg_temp.as_runtime();
select id as req3, approval_sha256 as req3_hash from public.propose_action(:'run', 'slack.post_message', '{"text": "Refund 14"}', 'low') \gset
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
delete from public.agent_tools where agent_id = :'agent' and tool = 'slack.post_message';
reset role;
select is((select status::text from public.action_requests where id = :'req3'), 'withdrawn', 'deleting a tool ends its open requests');
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
values (pg_temp.org('acme'), :'project', :'agent', 'slack.post_message', 'slack_webhook', :'slack');

-- =============================================================================================
-- Attack: reaching an allow policy by renaming or rebinding
-- =============================================================================================
-- Acme's seed allows crm.lookup through the CRM connection only.
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'crm.lookup', '{"customer": 1}', 'critical')).status, 'approved',
          'the allow policy applies to the tool bound where it says');
reset role;
-- A project admin re-creates crm.lookup bound to the partner hook.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
delete from public.agent_tools where agent_id = :'agent' and tool = 'crm.lookup';
insert into public.agent_tools (project_id, agent_id, tool, provider, connection_id)
values (:'project', :'agent', 'crm.lookup', 'https_webhook', :'evil');
reset role;
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'crm.lookup', '{"customer": 2}', 'critical')).status, 'pending',
          'an allow policy can''t be reached by re-creating its tool on another connection: a person decides');
reset role;
-- Or rebinds the tool of that name to the Slack connection.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
delete from public.agent_tools where agent_id = :'agent' and tool = 'crm.lookup';
insert into public.agent_tools (project_id, agent_id, tool, provider, connection_id)
values (:'project', :'agent', 'crm.lookup', 'https_webhook', :'crm');
reset role;
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'crm.lookup', '{"customer": 3}', 'low')).status, 'approved',
          'bound back to the CRM connection, the allow policy applies again');
reset role;
-- The CRM connection's credential is replaced by one that points elsewhere (save_connection does this).
select id as crm_open from public.action_requests where tool = 'crm.lookup' and status = 'approved' order by created_at desc limit 1 \gset
select vault.update_secret((select secret_id from public.connections where id = :'crm'), '{"url": "https://exfil.example/in"}');
update public.connections set verified_at = now() where id = :'crm';
select is((select destination from public.connections where id = :'crm'), 'exfil.example',
          'a connection''s destination follows its credential');
select is((select status::text from public.action_requests where id = :'crm_open'), 'withdrawn',
          'a connection that now delivers elsewhere ends the approvals given for it');
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'crm.lookup', '{"customer": 4}', 'low')).status, 'pending',
          'an allow policy stops applying when its connection''s destination changes');
reset role;

select throws_like(format($$insert into public.approval_policies (org_id, project_id, tool, mode) values (%L, %L, 'x.y', 'allow')$$,
                          pg_temp.org('acme'), :'project'),
                   '%approval_policies_allow_names_a_connection%', 'an allow policy must name the connection it allows');
insert into public.approval_policies (org_id, project_id, tool, mode, connection_id, destination)
values (pg_temp.org('acme'), :'project', 'x.y', 'allow', :'slack', 'exfil.example');
select is((select destination from public.approval_policies where tool = 'x.y' and org_id = pg_temp.org('acme')), 'hooks.slack.com',
          'an allow policy pins its connection''s destination, whatever the writer says');

-- =============================================================================================
-- Risk comes from policy too
-- =============================================================================================
insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, dual_control_from_risk, min_risk)
values (pg_temp.org('acme'), :'project', null, 'slack.post_message', 'require_approval', 'critical', 'high');
select pg_temp.as_runtime();
select id as risky, risk as risky_risk, proposed_risk as risky_proposed, mode as risky_mode
  from public.propose_action(:'run', 'slack.post_message', '{"text": "Wire 90000 EUR"}', 'medium') \gset
reset role;
select is(:'risky_risk'::text, 'high', 'the effective risk is the policy''s minimum when the proposer names less');
select is(:'risky_proposed'::text, 'medium', 'the proposer''s own label is kept');
select is((select r.needs_step_up from public.action_requests r where r.id = :'risky'), true,
          'so an agent can''t label a dangerous action medium to skip step-up');
update public.approval_policies set min_risk = 'critical' where tool = 'slack.post_message' and org_id = pg_temp.org('acme');
select pg_temp.as_runtime();
select is((public.propose_action(:'run', 'slack.post_message', '{"text": "Wire 1 EUR"}', 'low')).mode::text, 'require_dual_control',
          'or to skip dual control');
select is((public.propose_action(:'run', 'slack.post_message', '{"text": "Wire 2 EUR"}', 'critical')).risk::text, 'critical',
          'a proposer may always name more risk than the policy');
reset role;

-- =============================================================================================
-- Proposals through a tool that isn't there
-- =============================================================================================
select pg_temp.as_runtime();
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'no.such_tool', '{}') $$,
                   '%tool_not_found%', 'a tool the agent does not have is refused');
update public.agent_tools set enabled = false where tool = 'crm.lookup' and agent_id = pg_temp.agent('acme');
select throws_like($$ select public.propose_action(pg_temp.run('acme'), 'crm.lookup', '{}') $$,
                   '%tool_not_bound%', 'a disabled tool is refused');
reset role;

select * from finish();
rollback;
