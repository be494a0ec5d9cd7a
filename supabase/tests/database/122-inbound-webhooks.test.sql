-- Inbound webhooks, the database's half (20261206002500_inbound_webhooks.sql): subscriptions made
-- by project admins with the secret shown once and kept in Vault, the token and subscription checks
-- of a delivery, rotation's grace, one run per webhook-id, throttled refusals, disabling. The
-- isolation matrix (900) probes both tables across organizations; the function's checks are
-- tests/integration/inbound.test.ts.
begin;
\ir _helpers.psql
select plan(31);
create temporary table made (name text primary key, v jsonb) on commit drop;
grant all on made to authenticated;

-- Ada (Acme's tenant admin) makes a v1 subscription for Acme's agent, and tokens.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
insert into made values ('sub', public.create_webhook_subscription(pg_temp.agent('acme'), 'Tickets'));
insert into made values ('ingest', public.create_personal_access_token('Ingest', '{webhooks:ingest}', 30, pg_temp.project('acme')));
insert into made values ('everywhere', public.create_personal_access_token('Everywhere', '{webhooks:ingest}', 30));
insert into made values ('runs', public.create_personal_access_token('Runs', '{runs:write}', 30, pg_temp.project('acme')));
select matches((select v ->> 'secret' from made where name = 'sub'), '^whsec_[A-Za-z0-9+/]{43}=$', 'a v1 subscription''s secret is in the answer, once');
select is((select v ?| array['secret_id', 'previous_secret_id'] from made where name = 'sub'), false, 'and no Vault id');
select throws_ok($$ select secret_id from public.webhook_subscriptions $$, '42501', null, 'nor can a member read where it is kept');
select is((select count(*)::int from public.webhook_subscriptions where id = (select (v ->> 'id')::uuid from made where name = 'sub')),
          1, 'the subscription is listed to its members');
select throws_like($$ select public.create_webhook_subscription(pg_temp.agent('acme'), 'Signed', 'v1a') $$, '%invalid_public_key%',
                   'v1a needs the sender''s public key');
select throws_like($$ select public.create_webhook_subscription(pg_temp.agent('acme'), 'Signed', 'v2') $$, '%invalid_scheme%', 'v1 or v1a');
select is((public.create_webhook_subscription(pg_temp.agent('acme'), 'Status', 'v1a', 'whpk_' || encode(extensions.gen_random_bytes(32), 'base64')) ->> 'scheme'),
          'v1a', 'v1a takes a whpk_ key');
reset role;
select is((select decrypted_secret from vault.decrypted_secrets d join public.webhook_subscriptions s on s.secret_id = d.id
            where s.id = (select (v ->> 'id')::uuid from made where name = 'sub')),
          (select v ->> 'secret' from made where name = 'sub'), 'the secret is kept in Vault');
select is((select count(*)::int from audit.records where action = 'webhook_subscription.insert'
             and target_id = (select v ->> 'id' from made where name = 'sub')
             and strpos(payload::text, substr((select v ->> 'secret' from made where name = 'sub'), 11)) = 0), 1,
          'making one is an audit entry, without the secret');

-- Only a project admin makes, rotates or disables one.
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.create_webhook_subscription(pg_temp.agent('acme'), 'Mine') $$, '%agent_not_found%', 'not a viewer');
select throws_like(format($$ select public.rotate_webhook_secret(%L) $$, (select v ->> 'id' from made where name = 'sub')),
                   '%inbound_subscription_not_found%', 'who can''t rotate it either');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select throws_like($$ select public.create_webhook_subscription(pg_temp.agent('acme'), 'Theirs') $$, '%agent_not_found%', 'nor another organization''s admin');
reset role;

-- =============================================================================================
-- A delivery's checks
-- =============================================================================================
create function pg_temp.ctx(p_token text) returns jsonb language sql as $$
  select private.webhook_ingest_context((select v ->> 'token' from made where name = p_token), (select (v ->> 'id')::uuid from made where name = 'sub'))
$$;
select is(pg_temp.ctx('runs') ->> 'refusal', 'token_scope', 'a token without webhooks:ingest is refused');
select is(pg_temp.ctx('everywhere') ->> 'refusal', 'inbound_token_project', 'as is one not bound to the subscription''s project');
select is(private.webhook_ingest_context('gtp_' || repeat('c', 36), (select (v ->> 'id')::uuid from made where name = 'sub')) ->> 'refusal',
          'token_invalid', 'and one that is not ours');
select is(private.webhook_ingest_context((select v ->> 'token' from made where name = 'ingest'), pg_temp.run('acme')) ->> 'refusal',
          'inbound_subscription_not_found', 'a subscription that does not exist is not found');
select is(jsonb_array_length(pg_temp.ctx('ingest') -> 'secrets'), 1, 'a bound token with the scope gets the secret to verify with');
select is(pg_temp.ctx('ingest') ->> 'user_id', pg_temp.uid('ada')::text, 'and its owner, who starts the run');

-- Rotation: both secrets verify while the grace lasts; then the new one only.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format($$ select public.rotate_webhook_secret(%L, 100000) $$, (select v ->> 'id' from made where name = 'sub')),
                   '%invalid_grace%', 'a grace period is at most a week');
insert into made values ('rotated', public.rotate_webhook_secret((select (v ->> 'id')::uuid from made where name = 'sub'), 30));
reset role;
select isnt((select v ->> 'secret' from made where name = 'rotated'), (select v ->> 'secret' from made where name = 'sub'), 'rotating makes a new secret');
select is((select array(select jsonb_array_elements_text(pg_temp.ctx('ingest') -> 'secrets'))),
          array[(select v ->> 'secret' from made where name = 'rotated'), (select v ->> 'secret' from made where name = 'sub')],
          'the new one and the old one verify during the grace period');
update public.webhook_subscriptions set previous_valid_until = now() - interval '1 second'
 where id = (select (v ->> 'id')::uuid from made where name = 'sub');
select is((select array(select jsonb_array_elements_text(pg_temp.ctx('ingest') -> 'secrets'))),
          array[(select v ->> 'secret' from made where name = 'rotated')], 'and only the new one after it');

-- One run per webhook-id.
select set_config('request.jwt.claims', '', true);
insert into made values ('first', private.accept_webhook_delivery((select (v ->> 'id')::uuid from made where name = 'sub'), pg_temp.uid('ada'),
  'msg_122', now(), '{"ticket": 122}', 14, encode(sha256('{"ticket": 122}'), 'hex')));
select is((select input -> 'body' from public.agent_runs where id = (select (v ->> 'run_id')::uuid from made where name = 'first')),
          '{"ticket": 122}', 'an accepted delivery starts a run with the body as input');
select is((select started_by from public.agent_runs where id = (select (v ->> 'run_id')::uuid from made where name = 'first')),
          pg_temp.uid('ada'), 'as the token''s owner');
select is(private.accept_webhook_delivery((select (v ->> 'id')::uuid from made where name = 'sub'), pg_temp.uid('ada'),
            'msg_122', now(), '{"ticket": 122}', 14, null) - 'delivery_id',
          jsonb_build_object('refusal', 'inbound_replayed', 'run_id', (select v ->> 'run_id' from made where name = 'first')),
          'the same webhook-id again starts nothing, and names the first run');
select is((select count(*)::int from public.agent_runs where input -> 'webhook' ->> 'webhook_id' = 'msg_122'), 1, 'one run');

-- Refusals: a row and an audit entry at most once a minute per reason.
select private.note_webhook_refusal((select (v ->> 'id')::uuid from made where name = 'sub'), 'inbound_signature_invalid') from generate_series(1, 3);
select is((select array_agg(times) from public.webhook_deliveries where subscription_id = (select (v ->> 'id')::uuid from made where name = 'sub')
             and outcome = 'inbound_signature_invalid'), array[3], 'three refusals in a minute are one row');
select is((select count(*)::int from audit.records where action = 'webhook.refused'
             and target_id = (select v ->> 'id' from made where name = 'sub')), 1, 'and one audit entry');

-- Tokens read neither table.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select set_config('request.jwt.claims', json_build_object('sub', pg_temp.uid('ada'), 'role', 'authenticated',
  'pat', (select json_build_object('id', id, 'org_id', org_id, 'project_id', project_id, 'scopes', scopes) from public.personal_access_tokens
           where id = (select (v ->> 'id')::uuid from made where name = 'runs')))::text, true);
select is((select count(*)::int from public.webhook_deliveries) + (select count(*)::int from public.webhook_subscriptions), 0,
          'a token reads no subscription or delivery');
reset role;

-- Disabled: deliveries are refused.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select isnt((public.disable_webhook_subscription((select (v ->> 'id')::uuid from made where name = 'sub')) ->> 'disabled_at'), null,
            'a project admin disables a subscription');
reset role;
select set_config('request.jwt.claims', '', true);
select is(pg_temp.ctx('ingest') ->> 'refusal', 'inbound_subscription_not_found', 'whose deliveries are then refused');

select * from finish();
rollback;
