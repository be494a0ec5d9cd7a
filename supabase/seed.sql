-- Local demo data: two organizations, each with an admin and a viewer, and one user in both.
-- Users are created without passwords; `npm start` gives each a random one and prints it
-- (nothing guessable is committed). Demo users are marked with app_metadata.demo = true.

insert into auth.users (id, email, email_confirmed_at, raw_app_meta_data)
values
  ('a0000000-0000-4000-8000-000000000001', 'ada@acme.test',      now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('a0000000-0000-4000-8000-000000000002', 'victor@acme.test',   now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('b0000000-0000-4000-8000-000000000001', 'grace@globex.test',  now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('b0000000-0000-4000-8000-000000000002', 'mallory@globex.test', now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('c0000000-0000-4000-8000-000000000001', 'casey@both.test',    now(), '{"provider":"email","providers":["email"],"demo":true}');

insert into public.organizations (id, name, slug)
values
  ('0a000000-0000-4000-8000-00000000000a', 'Acme Robotics', 'acme'),
  ('0b000000-0000-4000-8000-00000000000b', 'Globex Support', 'globex');

insert into public.organization_members (org_id, user_id, role)
values
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000001', 'tenant_admin'),
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000002', 'project_viewer'),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000001', 'tenant_admin'),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000002', 'project_viewer'),
  ('0a000000-0000-4000-8000-00000000000a', 'c0000000-0000-4000-8000-000000000001', 'project_contributor'),
  ('0b000000-0000-4000-8000-00000000000b', 'c0000000-0000-4000-8000-000000000001', 'project_contributor');

-- Every tenant table gets rows in both organizations: the generated isolation matrix
-- (supabase/tests/database/900-isolation-matrix.test.sql) needs something to fail to see.
insert into public.projects (id, org_id, name, slug)
values
  ('1a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', 'Support bot', 'support-bot'),
  ('1b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', 'Helpdesk', 'helpdesk');

-- Casey contributes to both organizations and administers one project in each.
insert into public.project_members (org_id, project_id, user_id, role)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', 'c0000000-0000-4000-8000-000000000001', 'project_admin'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', 'c0000000-0000-4000-8000-000000000001', 'project_admin');

insert into public.agents (id, org_id, project_id, name, description)
values
  ('2a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   'Returns assistant', 'Answers questions about returns.'),
  ('2b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   'Ticket triage', 'Sorts incoming tickets.');

-- Version 1 of each agent is published (immutable); version 2 is a draft.
insert into public.agent_versions (id, org_id, project_id, agent_id, config)
values
  ('3a000000-0000-4000-8000-00000000001a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', '{"model":"gpt-4o-mini","instructions":"Be brief."}'),
  ('3a000000-0000-4000-8000-00000000002a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', '{"model":"gpt-4o-mini","instructions":"Be brief and kind."}'),
  ('3b000000-0000-4000-8000-00000000001b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', '{"model":"gpt-4o-mini","instructions":"Label every ticket."}'),
  ('3b000000-0000-4000-8000-00000000002b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', '{"model":"gpt-4o-mini","instructions":"Label and route every ticket."}');
update public.agent_versions
   set published_at = now(), published_by = 'a0000000-0000-4000-8000-000000000001'
 where id = '3a000000-0000-4000-8000-00000000001a';
update public.agent_versions
   set published_at = now(), published_by = 'b0000000-0000-4000-8000-000000000001'
 where id = '3b000000-0000-4000-8000-00000000001b';

-- Pending invitations whose tokens nobody knows (only hashes are stored).
insert into public.invitations (org_id, email, role, token_hash, invited_by)
values
  ('0a000000-0000-4000-8000-00000000000a', 'newhire@acme.test', 'project_contributor',
   extensions.digest(extensions.gen_random_bytes(32), 'sha256'), 'a0000000-0000-4000-8000-000000000001'),
  ('0b000000-0000-4000-8000-00000000000b', 'newhire@globex.test', 'project_viewer',
   extensions.digest(extensions.gen_random_bytes(32), 'sha256'), 'b0000000-0000-4000-8000-000000000001');

-- Acme has verified acme.test; Globex has claimed globex.test but not verified it yet.
insert into public.organization_domains (org_id, domain, verified_at)
values
  ('0a000000-0000-4000-8000-00000000000a', 'acme.test', now()),
  ('0b000000-0000-4000-8000-00000000000b', 'globex.test', null);

-- Connections in each organization, their credentials in Vault as the connectors function stores
-- them (fake values, for the isolation matrix and the secret scan; nothing here reaches a
-- provider), and tools of each agent bound to them: Acme's returns agent posts to Slack, and looks
-- up CRM records and comments on tickets through a webhook; Globex's sets GitHub statuses.
insert into public.connections (id, org_id, provider, display_name, scopes, secret_id, verified_at)
values
  ('6a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', 'slack_webhook', 'Returns channel',
   '{incoming-webhook}',
   vault.create_secret(json_build_object('url', 'https://hooks.slack.com/services/T0/B0/seed' || encode(extensions.gen_random_bytes(12), 'hex'))::text, -- secretlint-disable-line -- a made-up Slack URL for the seed
                       null, 'connection credential'), now()),
  ('6a000000-0000-4000-8000-00000000001a', '0a000000-0000-4000-8000-00000000000a', 'https_webhook', 'CRM lookups',
   '{}',
   vault.create_secret(json_build_object('url', 'https://crm.acme.test/hooks/seed' || encode(extensions.gen_random_bytes(12), 'hex'))::text,
                       null, 'connection credential'), now()),
  ('6b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', 'github', 'Helpdesk repository',
   '{repo:status}',
   vault.create_secret(json_build_object('token', 'seed-globex-' || encode(extensions.gen_random_bytes(16), 'hex'))::text,
                       null, 'connection credential'), now());

insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id, scopes)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
   'slack.post_message', 'slack_webhook', '6a000000-0000-4000-8000-00000000000a', '{incoming-webhook}'),
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
   'crm.lookup', 'https_webhook', '6a000000-0000-4000-8000-00000000001a', '{}'),
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
   'ticket.comment', 'https_webhook', '6a000000-0000-4000-8000-00000000001a', '{}'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '2b000000-0000-4000-8000-00000000000b',
   'github.set_status', 'github', '6b000000-0000-4000-8000-00000000000b', '{repo:status}');

-- Approvals: Acme asks one approver (two from high risk up) and lets its returns agent look up CRM
-- records freely, through the CRM connection only; Globex asks two approvers for everything. One
-- scheduled run in each.
insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, dual_control_from_risk, connection_id)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', null, null, 'require_approval', 'high', null),
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
   'crm.lookup', 'allow', null, '6a000000-0000-4000-8000-00000000001a'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', null, null, 'require_dual_control', null, null);

-- A schedule of each agent, disabled: enabled, it would start a run every weekday at 07:00 UTC
-- through pg_cron (docs/runs.md).
insert into public.agent_schedules (id, org_id, project_id, agent_id, name, cron, input, enabled)
values
  ('5c000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', 'Morning refunds summary', '0 7 * * 1-5', '{"prompt": "Summarise yesterday''s refunds."}', false),
  ('5c000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', 'Morning triage', '0 7 * * 1-5', '{"prompt": "Triage the night''s tickets."}', false);

insert into public.agent_runs (id, org_id, project_id, agent_id, agent_version_id, started_by)
values
  ('4a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', '3a000000-0000-4000-8000-00000000001a', null),
  ('4b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', '3b000000-0000-4000-8000-00000000001b', null);

-- Each scheduled run's first turn: its telemetry (only {tool_name, ms, code, iter}) and transcript.
insert into public.agent_run_events (org_id, project_id, agent_id, run_id, meta)
select r.org_id, r.project_id, r.agent_id, r.id, m.meta::jsonb
  from public.agent_runs r
 cross join (values ('{"tool_name": null, "ms": 840, "code": null, "iter": 0}'),
                    ('{"tool_name": "slack.post_message", "ms": 12, "code": "approval_pending", "iter": 1}')) as m (meta)
 where r.id in ('4a000000-0000-4000-8000-00000000000a', '4b000000-0000-4000-8000-00000000000b');

insert into public.agent_run_messages (org_id, project_id, agent_id, run_id, seq, role, content)
select r.org_id, r.project_id, r.agent_id, r.id, m.seq, m.role, m.content::jsonb
  from public.agent_runs r
 cross join (values (0, 'user', '{"text": "Summarise today''s refunds."}'),
                    (1, 'assistant', '{"text": "Three refunds were approved today."}')) as m (seq, role, content)
 where r.id in ('4a000000-0000-4000-8000-00000000000a', '4b000000-0000-4000-8000-00000000000b');

-- In each organization, one request waiting for approval and one already decided, each pinned to
-- its tool's connection and destination.
insert into public.action_requests (id, org_id, project_id, agent_id, run_id, tool, tool_id, provider, connection_id,
                                    destination, canonical_payload, payload_sha256, approval_sha256, risk, proposed_risk,
                                    mode, approvals_required, approver_role, status, requested_via, expires_at, decided_at)
select v.id::uuid, v.org_id::uuid, v.project_id::uuid, v.agent_id::uuid, v.run_id::uuid, v.tool, t.id, t.provider,
       t.connection_id, c.destination, private.jcs(v.payload::jsonb), private.payload_sha256(v.payload::jsonb),
       private.approval_sha256(private.payload_sha256(v.payload::jsonb), v.tool, t.id, t.provider, t.connection_id, c.destination),
       v.risk::public.risk_level, v.risk::public.risk_level,
       v.mode::public.approval_mode, v.required, 'project_admin', v.status::public.action_status,
       'agent_runtime', now() + interval '30 days', case when v.status <> 'pending' then now() end
  from (values
    ('5a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
     '2a000000-0000-4000-8000-00000000000a', '4a000000-0000-4000-8000-00000000000a', 'ticket.comment',
     '{"ticket": 1042, "comment": "Refund for order 1042 approved."}', 'medium', 'require_approval', 1, 'pending'),
    ('5a000000-0000-4000-8000-00000000001a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
     '2a000000-0000-4000-8000-00000000000a', '4a000000-0000-4000-8000-00000000000a', 'ticket.comment',
     '{"ticket": 1042, "comment": "Refund issued."}', 'low', 'require_approval', 1, 'approved'),
    ('5b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
     '2b000000-0000-4000-8000-00000000000b', '4b000000-0000-4000-8000-00000000000b', 'github.set_status',
     '{"method": "POST", "path": "/repos/globex/helpdesk/statuses/77", "body": {"state": "success"}}', 'medium',
     'require_dual_control', 2, 'pending')
  ) as v (id, org_id, project_id, agent_id, run_id, tool, payload, risk, mode, required, status)
  join public.agent_tools t on t.org_id = v.org_id::uuid and t.agent_id = v.agent_id::uuid and t.tool = v.tool
  join public.connections c on c.org_id = t.org_id and c.id = t.connection_id;

insert into public.approval_decisions (org_id, project_id, request_id, decided_by, approve, approval_sha256)
select r.org_id, r.project_id, r.id, d.decided_by::uuid, true, r.approval_sha256
  from (values ('5a000000-0000-4000-8000-00000000001a', 'a0000000-0000-4000-8000-000000000001'),
               ('5b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000001')) as d (request_id, decided_by)
  join public.action_requests r on r.id = d.request_id::uuid;

-- Acme keeps the default connector limits; Globex allows fewer calls.
insert into public.connector_limits (org_id, calls_per_minute, monthly_budget_units)
values
  ('0a000000-0000-4000-8000-00000000000a', 60, 100000),
  ('0b000000-0000-4000-8000-00000000000b', 30, 20000);

-- Model gateway: Acme allows two models with a $5 monthly budget and a soft threshold at $4;
-- Globex keeps the defaults but caps its agent. Each has its own (fake) OpenAI key in Vault and
-- one metered call, with a soft-budget event, for the isolation matrix; nothing here reaches a vendor.
insert into public.model_limits (org_id, allowed_models, monthly_budget_micro, soft_budget_micro)
values
  ('0a000000-0000-4000-8000-00000000000a', '{gpt-4o-mini,claude-haiku-4-5}', 5000000, 4000000),
  ('0b000000-0000-4000-8000-00000000000b', null, 50000000, null);

insert into public.model_caps (org_id, project_id, agent_id, monthly_budget_micro, run_budget_micro)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', null, 4500000, null),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '2b000000-0000-4000-8000-00000000000b',
   10000000, 1000000);

insert into public.model_provider_keys (org_id, provider, key_hint, secret_id, verified_at)
values
  ('0a000000-0000-4000-8000-00000000000a', 'anthropic', '…seed',
   vault.create_secret('sk-ant-seed-' || encode(extensions.gen_random_bytes(16), 'hex'), null, 'model provider key'), now()),
  ('0b000000-0000-4000-8000-00000000000b', 'anthropic', '…seed',
   vault.create_secret('sk-ant-seed-' || encode(extensions.gen_random_bytes(16), 'hex'), null, 'model provider key'), now());

insert into public.model_calls (org_id, project_id, agent_id, run_id, provider, model, key_source, stream, input_tokens,
                                output_tokens, reserved_micro, cost_micro, latency_ms, outcome, started_at)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
   '4a000000-0000-4000-8000-00000000000a', 'openai', 'gpt-4o-mini', 'platform', false, 120, 40, 700, 42, 850, 'succeeded', now()),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '2b000000-0000-4000-8000-00000000000b',
   '4b000000-0000-4000-8000-00000000000b', 'openai', 'gpt-4o-mini', 'platform', true, 300, 90, 1500, 99, 1200, 'succeeded', now());

insert into public.model_budget_events (org_id, period, kind, threshold_micro, spent_micro)
values
  ('0a000000-0000-4000-8000-00000000000a', date_trunc('month', now() - interval '1 month')::date, 'soft_budget_crossed', 4000000, 4000010),
  ('0b000000-0000-4000-8000-00000000000b', date_trunc('month', now() - interval '1 month')::date, 'soft_budget_crossed', 40000000, 40000500);

-- Widgets: each organization's agent has a widget key (its hash only: the key is made up here and
-- reaches nothing), a conversation of two messages, and a review item that is in review; Acme
-- keeps transcripts 30 days.
insert into public.widget_keys (id, org_id, project_id, agent_id, key_prefix, key_sha256, allowed_origins)
values
  ('7a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', 'ghw_seedAcme', encode(sha256(extensions.gen_random_bytes(32)), 'hex'), '{https://shop.acme.test}'),
  ('7b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', 'ghw_seedGlbx', encode(sha256(extensions.gen_random_bytes(32)), 'hex'), '{https://help.globex.test}');

-- Ada and Grace each made a personal access token (its hash only: the token is made up here).
insert into public.personal_access_tokens (org_id, user_id, name, token_prefix, token_sha256, scopes, expires_at)
values
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000001', 'CI deploys', 'gtp_Seed',
   encode(sha256(extensions.gen_random_bytes(32)), 'hex'), '{runs:write,runs:read}', now() + interval '90 days'),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000001', 'Reporting', 'gtp_Seed',
   encode(sha256(extensions.gen_random_bytes(32)), 'hex'), '{audit:read}', now() + interval '30 days');

-- Each organization takes webhooks for its agent: Acme's signed with a secret we made (v1, in
-- Vault), Globex's with its sender's Ed25519 key (v1a, a made-up public key). Each has taken one
-- delivery, which started the organization's seeded run, and refused one with a stale timestamp.
insert into public.webhook_subscriptions (id, org_id, project_id, agent_id, name, scheme, secret_id, public_key, key_hint)
values
  ('9a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', 'Helpdesk tickets', 'v1',
   vault.create_secret('whsec_' || encode(extensions.gen_random_bytes(32), 'base64'), null, 'inbound webhook signing secret'), null, 'whsec_seed'),
  ('9b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', 'Status page', 'v1a', null, 'whpk_' || encode(extensions.gen_random_bytes(32), 'base64'), 'whpk_seed');

insert into public.webhook_deliveries (org_id, project_id, subscription_id, agent_id, webhook_id, outcome, run_id, body_bytes, body_sha256, sent_at)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '9a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', 'msg_seed_acme', 'accepted', '4a000000-0000-4000-8000-00000000000a', 2, encode(sha256('{}'), 'hex'), now()),
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '9a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', null, 'inbound_timestamp_too_old', null, null, null, null),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '9b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', 'msg_seed_globex', 'accepted', '4b000000-0000-4000-8000-00000000000b', 2, encode(sha256('{}'), 'hex'), now()),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '9b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', null, 'inbound_timestamp_too_old', null, null, null, null);

-- Victor (Acme's viewer) and Grace (Globex's admin) each pinned a key on the audit screen: a
-- made-up one, so that verifying against it fails until they pin their organization's real key
-- (made when the stack signs its first checkpoint).
insert into public.audit_pins (org_id, user_id, key_id, public_key)
values
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000002', 'made-up-by-the-seed', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000001', 'made-up-by-the-seed', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=');

-- Each key was once tried from a site it doesn't allow (the Widgets screen shows it to the owner).
insert into public.widget_refusals (org_id, project_id, widget_key_id, reason, origin)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '7a000000-0000-4000-8000-00000000000a',
   'widget_origin_not_allowed', 'https://copycat.example'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '7b000000-0000-4000-8000-00000000000b',
   'widget_origin_not_allowed', 'https://copycat.example');

insert into public.widget_conversations (id, org_id, project_id, agent_id, widget_key_id, visitor_id, origin)
values
  ('8a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', '7a000000-0000-4000-8000-00000000000a', gen_random_uuid(), 'https://shop.acme.test'),
  ('8b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', '7b000000-0000-4000-8000-00000000000b', gen_random_uuid(), 'https://help.globex.test');

insert into public.widget_messages (org_id, project_id, conversation_id, role, content)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '8a000000-0000-4000-8000-00000000000a',
   'visitor', 'Can I return shoes I wore once?'),
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '8a000000-0000-4000-8000-00000000000a',
   'assistant', 'Yes, within 30 days if they are clean.'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '8b000000-0000-4000-8000-00000000000b',
   'visitor', 'My ticket has had no answer for a week.'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '8b000000-0000-4000-8000-00000000000b',
   'notice', 'A person from the team will follow up.');

insert into public.review_items (id, org_id, project_id, agent_id, conversation_id, kind, summary, lead_email)
values
  ('9a000000-0000-4000-8000-00000000000a', '0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a',
   '2a000000-0000-4000-8000-00000000000a', '8a000000-0000-4000-8000-00000000000a', 'lead', 'Wants to hear about the spring sale.',
   'visitor@shopper.test'),
  ('9b000000-0000-4000-8000-00000000000b', '0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b',
   '2b000000-0000-4000-8000-00000000000b', '8b000000-0000-4000-8000-00000000000b', 'escalation', 'Asked for a person.', null);

insert into public.review_item_events (org_id, project_id, item_id, status, assignee, actor)
values
  ('0a000000-0000-4000-8000-00000000000a', '1a000000-0000-4000-8000-00000000000a', '9a000000-0000-4000-8000-00000000000a',
   'in_review', 'a0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001'),
  ('0b000000-0000-4000-8000-00000000000b', '1b000000-0000-4000-8000-00000000000b', '9b000000-0000-4000-8000-00000000000b',
   'in_review', 'b0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001');

insert into public.transcript_settings (org_id, retention_days)
values ('0a000000-0000-4000-8000-00000000000a', 30), ('0b000000-0000-4000-8000-00000000000b', 90);

-- Billing: Acme is prepaid with credits granted (its seeded model calls above were debited as
-- they were inserted); Globex is postpaid. Of each card, brand, last four and expiry only, as
-- Stripe's events leave them.
-- The plans are the platform's (private.billing_plans): here two local ones, with made-up
-- test-mode prices; a deployment lists its own Stripe prices (docs/billing.md).
insert into private.billing_plans (plan, stripe_price_id, mode, credits_micro, monthly_ceiling_micro)
values
  ('starter', 'price_SeedStarter01', 'prepaid', 20000000, 100000000),
  ('team', 'price_SeedTeam00001', 'postpaid', 50000000, 1000000000);
insert into public.billing_accounts (org_id, mode, stripe_customer_id, plan, stripe_price_id, subscription_id, subscription_status,
                                     current_period_end, card_brand, card_last4, card_exp_month, card_exp_year)
values
  ('0a000000-0000-4000-8000-00000000000a', 'prepaid', 'cus_SeedAcme0001', 'starter', 'price_SeedStarter01', 'sub_SeedAcme0001', 'active',
   now() + interval '20 days', 'visa', '4242', 12, 2030),
  ('0b000000-0000-4000-8000-00000000000b', 'postpaid', 'cus_SeedGlobex001', 'team', 'price_SeedTeam00001', 'sub_SeedGlobex001', 'active',
   now() + interval '10 days', 'mastercard', '4444', 6, 2031);
insert into public.credit_ledger (org_id, kind, amount_micro, reason, stripe_object_id)
values
  ('0a000000-0000-4000-8000-00000000000a', 'grant', 20000000, 'Credits of the paid period', 'in_SeedAcme0001'),
  ('0b000000-0000-4000-8000-00000000000b', 'grant', 50000000, 'Credits of the paid period', 'in_SeedGlobex001');
