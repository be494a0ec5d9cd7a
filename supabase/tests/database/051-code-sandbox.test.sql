-- The code sandbox as a connector (issue 27, …_code_sandbox.sql): a sandbox connection's
-- destination is its backend, derived on every write, so that an approval pins where code runs
-- and a connection moved to another backend withdraws what was approved for the old one; an
-- allow policy counts only for the sandbox it names; and an execution that ran is charged like a
-- delivery, one refused before anything ran is not.
begin;
\ir _helpers.psql
select plan(13);

select pg_temp.run('acme') as run \gset
select pg_temp.agent('acme') as agent \gset
select pg_temp.project('acme') as project \gset

-- =============================================================================================
-- The destination
-- =============================================================================================
select is(private.connection_destination('sandbox', '{}', '{"backend": "bubblewrap"}'), 'sandbox:bubblewrap',
          'a sandbox connection''s destination is sandbox:<backend>');
select is(private.connection_destination('sandbox', '{}', '{"backend": "Bubble Wrap/../x"}'), null,
          'a backend name that is not a plain identifier names no destination');
select is(private.connection_destination('sandbox', '{}', '{}'), null, 'no backend, no destination');

-- Acme turns code execution on, as the connectors function does (save_connection, acting for Ada).
select pg_temp.as_runtime();
select set_config('request.jwt.claims', json_build_object('role', 'service_role', 'acting_for', pg_temp.uid('ada'))::text, true);
select id as sandbox from public.save_connection(pg_temp.org('acme'), 'sandbox', 'pgTAP sandbox', '{}', '{}', null, null,
                                                   '{"backend": "bubblewrap", "limits": {"seconds": 2}}') \gset
reset role;
select is((select destination from public.connections where id = :'sandbox'), 'sandbox:bubblewrap',
          'saved, its destination is derived from its settings');
select throws_like(format($$update public.connections set config = '{"backend": ""}' where id = %L$$, :'sandbox'),
                   '%invalid_destination%', 'a sandbox connection can''t be left without a backend to run on');

-- =============================================================================================
-- An approval pins the sandbox
-- =============================================================================================
insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
values (pg_temp.org('acme'), :'project', :'agent', 'code.exec', 'sandbox', :'sandbox');
select pg_temp.as_runtime();
select id as req, approval_sha256 as req_hash, payload_sha256 as payload_hash
  from public.propose_action(:'run', 'code.exec', '{"runtime": "python", "code": "print(1)"}', 'low') \gset
reset role;
select is((select array[provider::text, connection_id::text, destination, status::text] from public.action_requests where id = :'req'),
          array['sandbox', :'sandbox', 'sandbox:bubblewrap', 'pending'],
          'a code action pins the sandbox connection and its backend, and waits for a person by default');
select is((select canonical_payload from public.action_requests where id = :'req'), '{"code":"print(1)","runtime":"python"}',
          'what the approver reads is the code, as RFC 8785 text');
select is(:'req_hash'::text, private.approval_sha256(:'payload_hash', 'code.exec',
                                                     (select id from public.agent_tools where agent_id = :'agent' and tool = 'code.exec'),
                                                     'sandbox', :'sandbox', 'sandbox:bubblewrap'),
          'the approval hash covers the code''s hash, the tool, the sandbox connection and its backend');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((public.decide_action(:'req', :'req_hash', true)).status, 'approved', 'a tenant admin approves the code');
reset role;

-- Moved to another backend (by the superuser here: no client may write config): what was approved for the old one ends.
update public.connections set config = '{"backend": "e2b"}' where id = :'sandbox';
select is((select array[r.status::text, c.destination] from public.action_requests r join public.connections c on c.id = r.connection_id
            where r.id = :'req'),
          array['withdrawn', 'sandbox:e2b'], 'code approved for one backend is withdrawn when its connection moves to another');

-- An allow policy counts only for the sandbox connection it names, at the backend it had.
select set_config('request.jwt.claims', '', true);
insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
values (pg_temp.org('acme'), :'project', :'agent', 'code.exec', 'allow', :'sandbox');
select is((select destination from public.approval_policies where connection_id = :'sandbox'), 'sandbox:e2b',
          'an allow policy for code pins the sandbox''s backend');

-- =============================================================================================
-- What an execution costs
-- =============================================================================================
select is(array[private.charge_connector_call(pg_temp.org('acme'), 'exit_0', null), private.charge_connector_call(pg_temp.org('acme'), 'exit_137', null),
                private.charge_connector_call(pg_temp.org('acme'), 'killed_deadline', null)],
          array[(select micro from private.billing_prices where item = 'connector_call')]::bigint[]
            || (select micro from private.billing_prices where item = 'connector_call') || (select micro from private.billing_prices where item = 'connector_call'),
          'an execution that ran, whatever its exit, or that was killed at a limit is charged the connector price');
select is(array[private.charge_connector_call(pg_temp.org('acme'), 'sandbox_unavailable', null),
                private.charge_connector_call(pg_temp.org('acme'), 'invalid_payload', null),
                private.charge_connector_call(pg_temp.org('acme'), 'exit_x', null)],
          array[0, 0, 0]::bigint[], 'one refused before anything ran is not');

select * from finish();
rollback;
