-- Inbound webhooks (issue 26, part 3; seed 003: "inbound webhooks: HMAC-signed body + automation
-- PAT; no session cookie on public ingress", rejected "with invalid signatures, expired skew, or
-- missing auth before starting a run"; "webhook signing secrets shown once at subscription create").
--
-- A subscription belongs to a project and one of its agents. A sender POSTs to
-- /functions/v1/inbound/{subscription} with a personal access token that holds webhooks:ingest and
-- is bound to that project, and the Standard Webhooks headers (webhook-id, webhook-timestamp,
-- webhook-signature). The inbound function checks, in order, before anything else: the token, the
-- subscription, the headers, the timestamp (±5 minutes), the signature (v1: HMAC-SHA256 with the
-- subscription's secret, kept in Vault and shown once; v1a: Ed25519 with the sender's public key),
-- and that the webhook-id is new for the subscription. Only then does
-- private.accept_webhook_delivery record the delivery and start a run of the agent with the body as
-- input, in one transaction: a retried delivery (the same webhook-id) finds the first and starts
-- nothing.
--
-- Rotation keeps the previous secret (or public key) verifying for a grace period chosen when
-- rotating. Refusals of a known subscription are recorded (webhook_deliveries, and the audit entry
-- webhook.refused) at most once a minute per subscription and reason, with how many refusals each
-- record stands for: a flood can't fill the chain. The body never enters the chain: the run's
-- input holds it, and the delivery row holds its size and SHA-256.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.webhook_subscriptions (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  name text not null check (char_length(name) between 1 and 100),
  -- v1: HMAC-SHA256 with a secret we made (in Vault); v1a: Ed25519 with the sender's public key.
  scheme text not null default 'v1' check (scheme in ('v1', 'v1a')),
  secret_id uuid,
  public_key text check (public_key ~ '^whpk_[A-Za-z0-9+/]{43}=$'),
  -- The secret (or key) a rotation replaced, verifying until previous_valid_until.
  previous_secret_id uuid,
  previous_public_key text check (previous_public_key ~ '^whpk_[A-Za-z0-9+/]{43}=$'),
  previous_valid_until timestamptz,
  -- The first characters of the signing secret or key, to tell them apart.
  key_hint text not null,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  rotated_at timestamptz,
  disabled_at timestamptz,
  check ((scheme = 'v1') = (secret_id is not null) and (scheme = 'v1a') = (public_key is not null)),
  unique (org_id, id),
  unique (org_id, project_id, id),
  -- Cover the agent key (and say nothing new: id is unique).
  unique (org_id, project_id, agent_id, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.webhook_subscriptions is
  'Inbound webhook subscriptions: a project''s agent started by signed deliveries (Standard Webhooks v1 HMAC or v1a Ed25519).';

create table public.webhook_deliveries (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  subscription_id uuid not null,
  -- The subscription's agent, whose run an accepted delivery started.
  agent_id uuid not null,
  -- The sender's webhook-id (accepted deliveries), or null for a refusal.
  webhook_id text check (char_length(webhook_id) between 1 and 256),
  -- accepted, or the refusal's code.
  outcome text not null check (outcome ~ '^[a-z][a-z0-9_]{0,63}$'),
  -- How many refusals of this reason this row stands for (throttled); 1 for a delivery.
  times integer not null default 1 check (times >= 1),
  run_id uuid,
  body_bytes integer check (body_bytes >= 0),
  body_sha256 text check (body_sha256 ~ '^[0-9a-f]{64}$'),
  sent_at timestamptz,
  received_at timestamptz not null default now(),
  last_at timestamptz not null default now(),
  check ((outcome = 'accepted') = (webhook_id is not null)),
  -- The replay guard: a webhook-id is accepted once per subscription.
  unique (subscription_id, webhook_id),
  unique (org_id, project_id, subscription_id, id),
  unique (org_id, project_id, agent_id, run_id),
  foreign key (org_id, project_id, subscription_id) references public.webhook_subscriptions (org_id, project_id, id) on delete cascade,
  foreign key (org_id, project_id, agent_id, run_id) references public.agent_runs (org_id, project_id, agent_id, id) on delete set null (run_id)
);
comment on table public.webhook_deliveries is
  'Deliveries to inbound webhooks: each accepted one with its run, and refusals (at most one row a minute per subscription and reason).';

-- =============================================================================================
-- Tenant tables
-- =============================================================================================
select private.make_tenant_table('public.webhook_subscriptions', 'webhook_subscription');
-- A delivery is telemetry of the run it started (audited there: run started) and of refusals
-- (audited as webhook.refused, throttled); recording each row again would let a flood into the chain.
alter table public.webhook_deliveries enable row level security;
alter table public.webhook_deliveries force row level security;
create trigger require_org_context before insert or update or delete on public.webhook_deliveries
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.webhook_deliveries');
select private.guard_from_tokens('public.webhook_deliveries');
insert into private.step_up_exemptions (table_name, reason) values
  ('public.webhook_deliveries', 'written by the inbound function for senders; nobody else writes it');

create trigger forget_secret after delete on public.webhook_subscriptions
  for each row execute function private.forget_vault_secret();
create function private.forget_previous_webhook_secret() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  delete from vault.secrets s where s.id = old.previous_secret_id;
  return null;
end
$$;
revoke execute on function private.forget_previous_webhook_secret() from public, anon, authenticated;
create trigger forget_previous_secret after delete on public.webhook_subscriptions
  for each row when (old.previous_secret_id is not null) execute function private.forget_previous_webhook_secret();

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- A Standard Webhooks v1 secret: whsec_ and the base64 of 32 random bytes.
create function private.new_webhook_secret() returns text
language sql volatile
set search_path = ''
as $$
  select 'whsec_' || pg_catalog.encode(extensions.gen_random_bytes(32), 'base64')
$$;
revoke execute on function private.new_webhook_secret() from public, anon, authenticated;

-- The subscription of the context a project admin may manage (404 otherwise).
create function private.managed_webhook_subscription(p_id uuid) returns public.webhook_subscriptions
language plpgsql stable security definer
set search_path = ''
as $$
declare
  sub public.webhook_subscriptions;
begin
  select s.* into sub from public.webhook_subscriptions s
   where s.id = p_id and s.org_id = private.current_org_id()
     and s.project_id = any (private.project_ids_with_role('project_admin'));
  if sub.id is null then
    perform private.refuse_request(404, 'inbound_subscription_not_found', 'No webhook subscription of a project you administer has that id.');
  end if;
  return sub;
end
$$;
revoke execute on function private.managed_webhook_subscription(uuid) from public, anon, authenticated;

-- What the inbound function needs to check a delivery, in one statement: the token (as
-- private.exchange_personal_access_token checks it), then the subscription, live and in the
-- token's project; then the secrets (or public keys) that verify now. Answers {refusal} or
-- {org_id, project_id, agent_id, user_id, scheme, secrets[], public_keys[]}.
create function private.webhook_ingest_context(p_token text, p_subscription_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  grant_ jsonb := private.exchange_personal_access_token(p_token);
  sub public.webhook_subscriptions;
begin
  if grant_ ? 'refusal' then
    return grant_;
  end if;
  if not (grant_ -> 'scopes') ? 'webhooks:ingest' then
    return '{"refusal": "token_scope"}';
  end if;
  select s.* into sub from public.webhook_subscriptions s
   where s.id = p_subscription_id and s.org_id = (grant_ ->> 'org_id')::uuid and s.disabled_at is null;
  if sub.id is null then
    return '{"refusal": "inbound_subscription_not_found"}';
  end if;
  if (grant_ ->> 'project_id') is null or (grant_ ->> 'project_id')::uuid <> sub.project_id then
    return '{"refusal": "inbound_token_project"}';
  end if;
  -- The owner must still be able to start the agent's runs (a contributor of its project).
  if not exists (
    select 1 from public.organization_members m
      left join public.project_members pm on pm.org_id = m.org_id and pm.project_id = sub.project_id and pm.user_id = m.user_id
     where m.org_id = sub.org_id and m.user_id = (grant_ ->> 'user_id')::uuid and least(m.role, pm.role) <= 'project_contributor'
  ) then
    return '{"refusal": "forbidden"}';
  end if;
  return pg_catalog.jsonb_build_object(
    'org_id', sub.org_id, 'project_id', sub.project_id, 'agent_id', sub.agent_id, 'user_id', grant_ ->> 'user_id',
    'scheme', sub.scheme,
    'secrets', coalesce((select pg_catalog.jsonb_agg(d.decrypted_secret order by d.id = sub.secret_id desc)
                           from vault.decrypted_secrets d
                          where d.id = sub.secret_id
                             or (d.id = sub.previous_secret_id and sub.previous_valid_until > pg_catalog.now())), '[]'),
    'public_keys', pg_catalog.to_jsonb(array_remove(array[sub.public_key,
                     case when sub.previous_valid_until > pg_catalog.now() then sub.previous_public_key end], null)));
end
$$;
comment on function private.webhook_ingest_context(text, uuid) is
  'The token and subscription checks of an inbound delivery, and the secrets or keys that verify it now (or {refusal}).';
revoke execute on function private.webhook_ingest_context(text, uuid) from public, anon, authenticated;
grant execute on function private.webhook_ingest_context(text, uuid) to service_role;

-- A verified delivery: recorded, and a run of the subscription's agent started with the body as
-- input, as the token's owner, in one transaction. A webhook-id seen before for the subscription
-- starts nothing: {refusal: inbound_replayed, run_id} of the first.
create function private.accept_webhook_delivery(
  p_subscription_id uuid, p_user_id uuid, p_webhook_id text, p_sent_at timestamptz, p_body jsonb, p_body_bytes integer, p_body_sha256 text
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  sub public.webhook_subscriptions;
  delivery uuid;
  earlier public.webhook_deliveries;
  run public.agent_runs;
begin
  select s.* into sub from public.webhook_subscriptions s where s.id = p_subscription_id and s.disabled_at is null;
  if sub.id is null then
    return '{"refusal": "inbound_subscription_not_found"}';
  end if;
  -- Deliveries of one subscription take turns here, so that two copies of one can't both start a run.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('webhook:' || sub.id::text, 0));
  select d.* into earlier from public.webhook_deliveries d where d.subscription_id = sub.id and d.webhook_id = p_webhook_id;
  if earlier.id is not null then
    return pg_catalog.jsonb_build_object('refusal', 'inbound_replayed', 'run_id', earlier.run_id, 'delivery_id', earlier.id);
  end if;
  -- The run is the owner's, started as the runtime would (the checks above stand for the member's).
  perform pg_catalog.set_config('request.jwt.claims', pg_catalog.jsonb_build_object('sub', p_user_id, 'role', 'service_role')::text, true);
  perform pg_catalog.set_config('gatehouse.org_id', sub.org_id::text, true);
  run := private.start_run(sub.agent_id,
    pg_catalog.jsonb_build_object('webhook', pg_catalog.jsonb_build_object('subscription_id', sub.id, 'webhook_id', p_webhook_id,
                                                                           'sent_at', p_sent_at),
                                  'body', p_body),
    true);
  insert into public.webhook_deliveries (org_id, project_id, subscription_id, agent_id, webhook_id, outcome, run_id, body_bytes, body_sha256, sent_at)
  values (sub.org_id, sub.project_id, sub.id, sub.agent_id, p_webhook_id, 'accepted', run.id, p_body_bytes, p_body_sha256, p_sent_at)
  returning id into delivery;
  return pg_catalog.jsonb_build_object('delivery_id', delivery, 'run_id', run.id, 'status', run.status);
end
$$;
comment on function private.accept_webhook_delivery(uuid, uuid, text, timestamptz, jsonb, integer, text) is
  'Records a verified inbound delivery and starts its run (once per webhook-id), or answers inbound_replayed.';
revoke execute on function private.accept_webhook_delivery(uuid, uuid, text, timestamptz, jsonb, integer, text) from public, anon, authenticated;
grant execute on function private.accept_webhook_delivery(uuid, uuid, text, timestamptz, jsonb, integer, text) to service_role;

-- A refused delivery to a known subscription: a row and an audit entry at most once a minute per
-- subscription and reason, counting the refusals since.
create function private.note_webhook_refusal(p_subscription_id uuid, p_reason text) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  sub public.webhook_subscriptions;
  latest public.webhook_deliveries;
begin
  if p_reason is null or p_reason !~ '^[a-z][a-z0-9_]{0,63}$' or p_reason = 'accepted' then
    return;
  end if;
  select s.* into sub from public.webhook_subscriptions s where s.id = p_subscription_id;
  if sub.id is null then
    return;
  end if;
  perform pg_catalog.set_config('gatehouse.org_id', sub.org_id::text, true);
  select d.* into latest from public.webhook_deliveries d
   where d.subscription_id = sub.id and d.outcome = p_reason and d.webhook_id is null
   order by d.last_at desc limit 1 for update;
  if latest.id is not null and latest.received_at > pg_catalog.now() - interval '1 minute' then
    update public.webhook_deliveries d set times = d.times + 1, last_at = pg_catalog.now() where d.id = latest.id;
    return;
  end if;
  insert into public.webhook_deliveries (org_id, project_id, subscription_id, agent_id, outcome)
  values (sub.org_id, sub.project_id, sub.id, sub.agent_id, p_reason);
  perform audit.append(sub.org_id, 'webhook.refused', 'public.webhook_subscriptions', sub.id::text,
    pg_catalog.jsonb_build_object('reason', p_reason,
      -- The refusals of the minute before this one that were counted but not recorded.
      'earlier_refusals', coalesce(latest.times - 1, 0)));
end
$$;
comment on function private.note_webhook_refusal(uuid, text) is
  'Records an inbound delivery''s refusal: a row and an audit entry at most once a minute per subscription and reason.';
revoke execute on function private.note_webhook_refusal(uuid, text) from public, anon, authenticated;
grant execute on function private.note_webhook_refusal(uuid, text) to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- A new subscription for an agent of a project the caller administers. v1: the signing secret is
-- in this answer only (whsec_…); v1a: the sender's Ed25519 public key (whpk_…) is given here.
create function public.create_webhook_subscription(
  p_agent_id uuid, p_name text, p_scheme text default 'v1', p_public_key text default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
  secret text;
  created public.webhook_subscriptions;
begin
  select a.* into agent from public.agents a
   where a.id = p_agent_id and a.org_id = private.current_org_id()
     and a.project_id = any (private.project_ids_with_role('project_admin'));
  if agent.id is null then
    perform private.refuse_request(404, 'agent_not_found', 'No agent of a project you administer has that id.');
  end if;
  if p_name is null or char_length(pg_catalog.btrim(p_name)) not between 1 and 100 then
    perform private.refuse_request(400, 'invalid_name', 'A subscription''s name is 1 to 100 characters.');
  end if;
  if p_scheme is null or p_scheme not in ('v1', 'v1a') then
    perform private.refuse_request(400, 'invalid_scheme', 'The scheme is v1 (HMAC-SHA256, we make the secret) or v1a (Ed25519, you give your public key).');
  end if;
  if (p_scheme = 'v1a') <> (p_public_key is not null)
     or (p_public_key is not null and p_public_key !~ '^whpk_[A-Za-z0-9+/]{43}=$') then
    perform private.refuse_request(400, 'invalid_public_key', 'v1a needs the sender''s Ed25519 public key as whpk_ and its base64 (32 bytes); v1 takes none.');
  end if;
  if p_scheme = 'v1' then
    secret := private.new_webhook_secret();
  end if;
  insert into public.webhook_subscriptions (org_id, project_id, agent_id, name, scheme, secret_id, public_key, key_hint)
  values (agent.org_id, agent.project_id, agent.id, pg_catalog.btrim(p_name), p_scheme,
          case when secret is not null then vault.create_secret(secret, null, 'inbound webhook signing secret') end,
          p_public_key, pg_catalog.left(coalesce(secret, p_public_key), 10))
  returning * into created;
  return pg_catalog.to_jsonb(created) - '{secret_id,previous_secret_id}'::text[]
      || case when secret is not null then pg_catalog.jsonb_build_object('secret', secret) else '{}' end;
end
$$;
comment on function public.create_webhook_subscription(uuid, text, text, text) is
  'Makes an inbound webhook subscription for an agent (project admin): v1''s signing secret is shown only here.';
revoke execute on function public.create_webhook_subscription(uuid, text, text, text) from public, anon;
grant execute on function public.create_webhook_subscription(uuid, text, text, text) to authenticated;

-- A new secret (v1, shown once) or public key (v1a); the old one verifies for p_grace_minutes more
-- (0 to 10080: a week), so that senders can switch without a lost delivery.
create function public.rotate_webhook_secret(p_subscription_id uuid, p_grace_minutes integer default 60, p_public_key text default null)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  sub public.webhook_subscriptions := private.managed_webhook_subscription(p_subscription_id);
  secret text;
  rotated public.webhook_subscriptions;
begin
  if p_grace_minutes is null or p_grace_minutes not between 0 and 10080 then
    perform private.refuse_request(400, 'invalid_grace', 'The old secret verifies for 0 to 10080 minutes (a week) after rotating.');
  end if;
  if (sub.scheme = 'v1a') <> (p_public_key is not null)
     or (p_public_key is not null and p_public_key !~ '^whpk_[A-Za-z0-9+/]{43}=$') then
    perform private.refuse_request(400, 'invalid_public_key', 'A v1a subscription rotates to a new whpk_ public key; a v1 one takes none.');
  end if;
  -- A secret replaced before (its grace over or not) goes now: two secrets verify at most.
  delete from vault.secrets s where s.id = sub.previous_secret_id;
  if sub.scheme = 'v1' then
    secret := private.new_webhook_secret();
  end if;
  update public.webhook_subscriptions s
     set previous_secret_id = s.secret_id, previous_public_key = s.public_key,
         previous_valid_until = pg_catalog.now() + pg_catalog.make_interval(mins => p_grace_minutes),
         secret_id = case when secret is not null then vault.create_secret(secret, null, 'inbound webhook signing secret') end,
         public_key = p_public_key, key_hint = pg_catalog.left(coalesce(secret, p_public_key), 10), rotated_at = pg_catalog.now()
   where s.id = sub.id
  returning * into rotated;
  return pg_catalog.to_jsonb(rotated) - '{secret_id,previous_secret_id}'::text[]
      || case when secret is not null then pg_catalog.jsonb_build_object('secret', secret) else '{}' end;
end
$$;
comment on function public.rotate_webhook_secret(uuid, integer, text) is
  'Rotates an inbound webhook''s signing secret (shown once) or public key; the old one verifies for the grace period.';
revoke execute on function public.rotate_webhook_secret(uuid, integer, text) from public, anon;
grant execute on function public.rotate_webhook_secret(uuid, integer, text) to authenticated;

-- Turns a subscription off: its deliveries are refused from now on (inbound_subscription_not_found).
create function public.disable_webhook_subscription(p_subscription_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  sub public.webhook_subscriptions := private.managed_webhook_subscription(p_subscription_id);
  disabled public.webhook_subscriptions;
begin
  update public.webhook_subscriptions s set disabled_at = coalesce(s.disabled_at, pg_catalog.now())
   where s.id = sub.id returning * into disabled;
  return pg_catalog.to_jsonb(disabled) - '{secret_id,previous_secret_id}'::text[];
end
$$;
comment on function public.disable_webhook_subscription(uuid) is 'Turns an inbound webhook subscription off (project admin).';
revoke execute on function public.disable_webhook_subscription(uuid) from public, anon;
grant execute on function public.disable_webhook_subscription(uuid) to authenticated;

-- =============================================================================================
-- RLS policies and grants
-- =============================================================================================
create policy "members read their projects' webhook subscriptions" on public.webhook_subscriptions
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = any ((select private.project_ids_with_role('project_viewer'))::uuid[]));
create policy "subscriptions are made by create_webhook_subscription" on public.webhook_subscriptions
  for insert to authenticated with check (false);
create policy "subscriptions change through their RPCs" on public.webhook_subscriptions
  for update to authenticated using (false);
create policy "subscriptions are kept (disable them)" on public.webhook_subscriptions
  for delete to authenticated using (false);
revoke all on public.webhook_subscriptions from anon, authenticated, service_role;
grant select (id, org_id, project_id, agent_id, name, scheme, public_key, previous_public_key, previous_valid_until, key_hint,
              created_by, created_at, rotated_at, disabled_at)
  on public.webhook_subscriptions to authenticated;
grant select, insert, update, delete on public.webhook_subscriptions to service_role;

create policy "members read their projects' webhook deliveries" on public.webhook_deliveries
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = any ((select private.project_ids_with_role('project_viewer'))::uuid[]));
create policy "deliveries are written by the inbound function" on public.webhook_deliveries
  for insert to authenticated with check (false);
create policy "deliveries are not changed" on public.webhook_deliveries
  for update to authenticated using (false);
create policy "deliveries are kept with their subscription" on public.webhook_deliveries
  for delete to authenticated using (false);
revoke all on public.webhook_deliveries from anon, authenticated, service_role;
grant select on public.webhook_deliveries to authenticated;
grant select, insert, update, delete on public.webhook_deliveries to service_role;
