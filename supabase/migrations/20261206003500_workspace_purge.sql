-- Workspace termination and purge (issue 29, part 1; seed 000: "a purge removes customer content
-- from every store and is recorded as a final audit event").
--
-- A termination starts three ways:
--   - a tenant admin: public.terminate_workspace, with the workspace's slug typed as the
--     confirmation, and step-up where the person has a second factor (or the workspace requires one);
--   - the platform for a breach: private.start_termination(org, 'breach') (npm run purge);
--   - the end of a lapsed subscription's grace period (billing_accounts.grace_until):
--     private.start_due_terminations, which the run worker's sweep calls.
--
-- Starting cuts every way in, in the same transaction that records the termination: members,
-- project members, invitations, verified domains (they admit people), personal access tokens,
-- widget keys, run tokens, OAuth authorizations in flight, inbound webhook subscriptions (with
-- their Vault secrets), run schedules (with their pg_cron jobs) and the runs' queued jobs. From
-- that commit on nobody sees anything of the organization.
--
-- Then the run worker (functions/_shared/lifecycle/purge.ts) drives the purge, one step per
-- transaction, so a purge killed or failed part-way resumes where it stopped:
--   external   connector tokens revoked at their providers (as disabling does) and the Stripe
--              subscription cancelled, outside the database; purge_external_done records it
--   deleting   one table per call: every row of the organization in every table with an org_id
--              column (read from the catalog, so a table added later is purged too), the Vault
--              secrets its rows name first; then the organization itself
--   sealing    the chain sealed, and its last entry appended: org.purged, with the rows deleted
--              per table and what the billing records keep (below)
--   redacting  every earlier payload of the chain emptied, in batches; the hashes stay, and both
--              verifiers accept a null payload below an org.purged entry
--   done
--
-- /functions/v1/health reports the purges not done and the oldest one's age (degraded past 15
-- minutes: a purge takes seconds unless a step keeps failing).
--
-- The deletes run with session_replication_role = replica: the tenant tables' triggers (the audit
-- copy of each deleted row, the append-only and last-admin guards, cascades) would otherwise copy
-- the content the purge removes into the chain, or refuse. So the purge deletes from every table
-- itself, and a final pass over the catalog finds nothing left before the organization goes. It is
-- a SET statement, not set_config(): on hosted Supabase, supautils lets the postgres role (these
-- functions' owner) set session_replication_role through SET, which is where it intercepts.
--
-- What is kept: the chain's hashes (audit.entries, checkpoints, cosignatures, frontiers, heads, and
-- audit.records without payloads); this table's row (why, when and the counts; no content); and in
-- the org.purged payload the billing references tax law asks for (docs/lifecycle.md): the Stripe
-- customer and subscription, and each payment and reversal (Stripe's object, amount, date).
-- Invoices themselves are Stripe's, which keeps them.

create table private.workspace_terminations (
  org_id uuid primary key,
  reason text not null check (reason in ('customer', 'breach', 'grace_expired')),
  -- The tenant admin who asked; null when the platform started it.
  requested_by uuid,
  requested_at timestamptz not null default pg_catalog.now(),
  step text not null default 'external' check (step in ('external', 'deleting', 'sealing', 'redacting', 'done')),
  -- What the purge did outside the database (revocations, the Stripe subscription).
  external jsonb,
  -- Rows deleted per table ("schema.table": n), Vault secrets included.
  counts jsonb not null default '{}',
  -- What the billing records keep, read before the ledger goes.
  billing jsonb,
  final_record_id bigint,
  final_seq bigint,
  leased_by text,
  leased_until timestamptz,
  attempts integer not null default 0,
  last_error text check (char_length(last_error) <= 500),
  finished_at timestamptz,
  check ((step = 'done') = (finished_at is not null))
);
comment on table private.workspace_terminations is
  'Each terminated workspace: why, who, and how far its purge got; the only row of it kept outside the audit chain (no customer content).';
revoke all on private.workspace_terminations from public, anon, authenticated, service_role;

-- =============================================================================================
-- Starting: the record, the audit entry, and the cut-off, in one transaction
-- =============================================================================================
create function private.start_termination(p_org_id uuid, p_reason text, p_requested_by uuid default null)
returns private.workspace_terminations
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  t private.workspace_terminations;
  org public.organizations;
  cut jsonb := '{}';
  n bigint;
  rel text;
  r record;
begin
  if p_reason is null or p_reason not in ('customer', 'breach', 'grace_expired') then
    perform private.refuse_request(400, 'invalid_termination_reason', 'A termination''s reason is customer, breach or grace_expired.');
  end if;
  select * into t from private.workspace_terminations x where x.org_id = p_org_id for update;
  if t.org_id is not null then
    return t;  -- started before: the purge goes on from where it is
  end if;
  select * into org from public.organizations o where o.id = p_org_id for update;
  if org.id is null then
    perform private.refuse_request(404, 'organization_not_found', 'No such organization.');
  end if;
  insert into private.workspace_terminations (org_id, reason, requested_by)
  values (p_org_id, p_reason, p_requested_by)
  on conflict (org_id) do nothing
  returning * into t;
  if t.org_id is null then
    -- Another start committed while this one waited for the organization's row: that one stands.
    select * into t from private.workspace_terminations x where x.org_id = p_org_id;
    return t;
  end if;
  perform audit.append(p_org_id, 'org.termination_started', 'public.organizations', p_org_id::text,
                       pg_catalog.jsonb_build_object('reason', p_reason));

  -- The cut-off. Triggers are off for it: they would refuse removing the last admin, or copy what
  -- goes into the chain.
  set local session_replication_role = replica;
  -- The runs' queued jobs (a locked one finds its run gone, or its org, and stops).
  for r in select a.id from public.agent_runs a where a.org_id = p_org_id loop
    perform graphile_worker.remove_job('run:' || r.id::text);
  end loop;
  -- The schedules' pg_cron jobs.
  if pg_catalog.to_regnamespace('cron') is not null then
    for r in select j.jobname from cron.job j
              where j.jobname in (select private.schedule_job_name(s.id) from public.agent_schedules s where s.org_id = p_org_id) loop
      perform cron.unschedule(r.jobname);
    end loop;
  end if;
  delete from vault.secrets s
   where s.id in (select w.secret_id from public.webhook_subscriptions w where w.org_id = p_org_id
                  union all select w.previous_secret_id from public.webhook_subscriptions w where w.org_id = p_org_id
                  union all select a.secret_id from private.oauth_authorizations a where a.org_id = p_org_id);
  get diagnostics n = row_count;
  cut := cut || pg_catalog.jsonb_build_object('vault.secrets', n);
  foreach rel in array array[
    'public.organization_members', 'public.project_members', 'public.invitations', 'public.organization_domains',
    'public.personal_access_tokens', 'public.widget_keys', 'private.run_tokens', 'private.oauth_authorizations',
    'public.webhook_subscriptions', 'public.agent_schedules'] loop
    execute pg_catalog.format('delete from %s where org_id = $1', rel) using p_org_id;
    get diagnostics n = row_count;
    cut := cut || pg_catalog.jsonb_build_object(rel, n);
  end loop;
  set local session_replication_role = origin;
  update private.workspace_terminations x set counts = cut where x.org_id = p_org_id returning * into t;
  return t;
end
$$;
comment on function private.start_termination(uuid, text, uuid) is
  'Starts a workspace''s termination (customer, breach, grace_expired): recorded, audited, and every way in cut off in this transaction; idempotent.';
revoke execute on function private.start_termination(uuid, text, uuid) from public, anon, authenticated;
grant execute on function private.start_termination(uuid, text, uuid) to service_role;

-- A tenant admin terminates the organization in context: the slug typed as the confirmation, at
-- aal2 where the person has a second factor, and never with a personal access token.
create function public.terminate_workspace(p_confirm_slug text)
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org public.organizations;
  t private.workspace_terminations;
  refusal text;
begin
  if not private.token_allows(null) then
    perform private.refuse_request(403, 'token_not_accepted', 'A personal access token can''t terminate a workspace; a tenant admin does, in the console.');
  end if;
  select * into org from public.organizations o where o.id = private.current_org_id();
  if org.id is null or not private.has_org_role('tenant_admin') then
    perform private.refuse_request(403, 'not_tenant_admin', 'Only a tenant admin can terminate the workspace, in its context.');
  end if;
  refusal := private.step_up_refusal();
  if refusal = 'step_up_required' then
    perform private.refuse_request(403, 'step_up_required', 'Terminating the workspace needs your second factor: verify it, then try again.');
  elsif refusal = 'mfa_required' then
    perform private.refuse_request(403, 'mfa_required', 'Your organization requires two-factor authentication: add a factor and verify it first.');
  end if;
  if p_confirm_slug is distinct from org.slug then
    perform private.refuse_request(400, 'confirmation_mismatch', 'Type the workspace''s slug exactly to confirm its termination.');
  end if;
  t := private.start_termination(org.id, 'customer', (select auth.uid()));
  return pg_catalog.jsonb_build_object('org_id', t.org_id, 'status', 'terminating', 'requested_at', t.requested_at);
end
$$;
comment on function public.terminate_workspace(text) is
  'Terminates the workspace in context (tenant admin, step-up, the slug typed to confirm): access ends now, and its content is purged.';
revoke execute on function public.terminate_workspace(text) from public, anon, authenticated;
grant execute on function public.terminate_workspace(text) to authenticated;

-- Subscriptions that ended and whose grace period is over (billing_accounts.grace_until) start
-- their termination; past_due is Stripe still trying, not an end.
create function private.start_due_terminations() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  a record;
  started integer := 0;
begin
  for a in
    select b.org_id from public.billing_accounts b
     where b.grace_until <= pg_catalog.now()
       and b.subscription_status in ('canceled', 'unpaid', 'incomplete_expired')
       and not exists (select 1 from private.workspace_terminations t where t.org_id = b.org_id)
  loop
    perform private.start_termination(a.org_id, 'grace_expired', null);
    started := started + 1;
  end loop;
  return started;
end
$$;
comment on function private.start_due_terminations() is
  'Starts the termination of each organization whose ended subscription''s grace period is over; returns how many.';
revoke execute on function private.start_due_terminations() from public, anon, authenticated;
grant execute on function private.start_due_terminations() to service_role;

-- =============================================================================================
-- Driving: a lease, the outside steps' record, and one step per call
-- =============================================================================================
create function private.claim_termination(p_worker text, p_lease_seconds integer)
returns private.workspace_terminations
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  t private.workspace_terminations;
begin
  select * into t from private.workspace_terminations x
   where x.step <> 'done' and (x.leased_until is null or x.leased_until < pg_catalog.now() or x.leased_by = p_worker)
   order by x.requested_at
   limit 1
   for update skip locked;
  if t.org_id is null then
    return null;
  end if;
  update private.workspace_terminations x
     set leased_by = p_worker, leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_lease_seconds),
         attempts = x.attempts + 1
   where x.org_id = t.org_id
  returning * into t;
  return t;
end
$$;
comment on function private.claim_termination(text, integer) is
  'Leases the oldest unfinished purge to a worker (or renews its own lease); null when none is due.';
revoke execute on function private.claim_termination(text, integer) from public, anon, authenticated;
grant execute on function private.claim_termination(text, integer) to service_role;

-- The connections whose tokens the purge revokes at their providers before Vault forgets them.
create function private.purge_connections(p_org_id uuid) returns table (connection_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select c.id from public.connections c
    join private.workspace_terminations t on t.org_id = c.org_id and t.step = 'external'
   where c.org_id = p_org_id and c.status = 'active' and c.secret_id is not null
   order by c.id
$$;
comment on function private.purge_connections(uuid) is 'The connections of a purge at its outside step that still hold tokens (to revoke at their providers).';
revoke execute on function private.purge_connections(uuid) from public, anon, authenticated;
grant execute on function private.purge_connections(uuid) to service_role;

-- After revoking one connection: it is disabled now (disable_connection: its Vault secret goes),
-- so a resumed purge doesn't revoke it twice; the outcome is counted in the same transaction.
-- The runtime (the service role) calls it, as disable_connection requires.
create function private.purge_connection_done(p_org_id uuid, p_connection_id uuid, p_outcome text) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from private.purge_connections(p_org_id) c where c.connection_id = p_connection_id) then
    return;
  end if;
  perform public.disable_connection(p_connection_id);
  update private.workspace_terminations t
     set external = coalesce(t.external, '{}') || pg_catalog.jsonb_build_object('revocations',
                      coalesce(t.external -> 'revocations', '{}')
                      || pg_catalog.jsonb_build_object(p_outcome, coalesce((t.external -> 'revocations' ->> p_outcome)::integer, 0) + 1))
   where t.org_id = p_org_id;
end
$$;
comment on function private.purge_connection_done(uuid, uuid, text) is 'After a connection''s revocation: its Vault secret deleted, the connection disabled, the outcome counted.';
revoke execute on function private.purge_connection_done(uuid, uuid, text) from public, anon, authenticated;
grant execute on function private.purge_connection_done(uuid, uuid, text) to service_role;

-- The Stripe subscription to cancel, if the organization has one that is live.
create function private.purge_subscription(p_org_id uuid) returns text
language sql stable security definer
set search_path = ''
as $$
  select b.subscription_id from public.billing_accounts b
   where b.org_id = p_org_id and b.subscription_id is not null
     and coalesce(b.subscription_status, '') not in ('canceled', 'incomplete_expired')
$$;
comment on function private.purge_subscription(uuid) is 'The Stripe subscription a purge cancels: the organization''s, if it is live.';
revoke execute on function private.purge_subscription(uuid) from public, anon, authenticated;
grant execute on function private.purge_subscription(uuid) to service_role;

-- The outside steps are done: what they did is kept, and the deletes may start.
create function private.purge_external_done(p_org_id uuid, p_stripe text) returns void
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if p_stripe is null or p_stripe not in ('cancelled', 'none', 'not_configured') then
    raise exception 'purge_external_done: the subscription is cancelled, none, or not_configured' using errcode = 'invalid_parameter_value';
  end if;
  if exists (select 1 from private.purge_connections(p_org_id)) then
    raise exception 'purge_external_done: connections of % still hold tokens', p_org_id using errcode = 'object_not_in_prerequisite_state';
  end if;
  update private.workspace_terminations t
     set external = coalesce(t.external, '{}') || pg_catalog.jsonb_build_object('stripe_subscription', p_stripe),
         step = 'deleting'
   where t.org_id = p_org_id and t.step = 'external';
end
$$;
comment on function private.purge_external_done(uuid, text) is 'Ends a purge''s outside step (every token revoked; the subscription cancelled, none, or Stripe not configured).';
revoke execute on function private.purge_external_done(uuid, text) from public, anon, authenticated;
grant execute on function private.purge_external_done(uuid, text) to service_role;

-- Whether the organization's rows are being deleted by its purge (the one exemption that
-- session_replication_role can't give: guards that fire always, like a published version's).
create function private.is_being_purged(p_org_id uuid) returns boolean
language sql stable security definer
set search_path = ''
as $$
  select exists (select 1 from private.workspace_terminations t where t.org_id = p_org_id and t.step = 'deleting')
$$;
comment on function private.is_being_purged(uuid) is 'Whether the organization''s purge is deleting its rows now.';
revoke execute on function private.is_being_purged(uuid) from public, anon, authenticated;
grant execute on function private.is_being_purged(uuid) to authenticated, service_role;

-- A published agent version stays as it is, but for its workspace's purge.
create or replace function private.freeze_published_versions() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.published_at is not null and not (tg_op = 'DELETE' and private.is_being_purged(old.org_id)) then
    raise exception 'agent version % (v%) is published and immutable', old.id, old.version
      using errcode = 'check_violation', hint = 'Create a new version instead.';
  end if;
  return coalesce(new, old);
end
$$;

-- Every table the purge empties of an organization: each with an org_id column, in any schema but
-- the audit chain's, and not the purge's own record. From the catalog, so a new table is included.
create function private.purged_tables() returns setof regclass
language sql stable
set search_path = ''
as $$
  select c.oid::regclass
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p') and not c.relispartition
     and n.nspname not in ('audit', 'pg_catalog', 'information_schema') and n.nspname !~ '^pg_'
     and c.oid <> 'private.workspace_terminations'::regclass
     and exists (select 1 from pg_catalog.pg_attribute a
                  where a.attrelid = c.oid and a.attname = 'org_id' and a.atttypid = 'uuid'::regtype and not a.attisdropped)
   order by n.nspname, c.relname
$$;
comment on function private.purged_tables() is 'The tables a purge empties of an organization: every one with an org_id, but the audit chain''s and the purge record.';
revoke execute on function private.purged_tables() from public, anon, authenticated;

-- One step of the purge; returns the step it is at after it.
create function private.purge_step(p_org_id uuid) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  t private.workspace_terminations;
  rel regclass;
  col text;
  n bigint;
  found_rows boolean;
  entry_seq bigint;
  kept jsonb;
begin
  select * into t from private.workspace_terminations x where x.org_id = p_org_id for update;
  if t.org_id is null then
    raise exception 'purge_step: no termination of %', p_org_id using errcode = 'no_data_found';
  end if;

  if t.step = 'deleting' then
    -- What tax law keeps of the billing records, read once before the ledger goes.
    if t.billing is null then
      select pg_catalog.jsonb_build_object(
               'stripe_customer', (select b.stripe_customer_id from public.billing_accounts b where b.org_id = p_org_id),
               'stripe_subscription', (select b.subscription_id from public.billing_accounts b where b.org_id = p_org_id),
               'payments', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                              'kind', l.kind, 'amount_micro', l.amount_micro, 'at', l.created_at,
                                              'stripe_object', l.stripe_object_id, 'payment_intent', l.payment_intent)
                                            order by l.created_at, l.id)
                                       from public.credit_ledger l
                                      where l.org_id = p_org_id and (l.stripe_object_id is not null or l.payment_intent is not null)), '[]'))
        into kept;
      update private.workspace_terminations x set billing = kept where x.org_id = p_org_id returning * into t;
    end if;
    set local session_replication_role = replica;
    found_rows := false;
    for rel in select * from private.purged_tables() loop
      execute pg_catalog.format('select exists (select 1 from %s where org_id = $1)', rel) into found_rows using p_org_id;
      exit when found_rows;
    end loop;
    if found_rows then
      -- The Vault secrets its rows name go first (a column secret_id or *_secret_id).
      for col in select a.attname from pg_catalog.pg_attribute a
                  where a.attrelid = rel and (a.attname = 'secret_id' or a.attname like '%\_secret\_id') and not a.attisdropped loop
        execute pg_catalog.format('delete from vault.secrets s where s.id in (select %I from %s where org_id = $1)', col, rel) using p_org_id;
        get diagnostics n = row_count;
        t.counts := t.counts || pg_catalog.jsonb_build_object('vault.secrets', coalesce((t.counts ->> 'vault.secrets')::bigint, 0) + n);
      end loop;
      execute pg_catalog.format('delete from %s where org_id = $1', rel) using p_org_id;
      get diagnostics n = row_count;
      t.counts := t.counts || pg_catalog.jsonb_build_object(rel::text, coalesce((t.counts ->> rel::text)::bigint, 0) + n);
    else
      -- Nothing of it is left in any table: the rows keyed by it elsewhere, then the organization.
      delete from private.invitation_rates r where r.scope = 'organization' and r.scope_id = p_org_id;
      delete from public.organizations o where o.id = p_org_id;
      get diagnostics n = row_count;
      t.counts := t.counts || pg_catalog.jsonb_build_object('public.organizations', n);
      t.step := 'sealing';
    end if;
    set local session_replication_role = origin;
    update private.workspace_terminations x set counts = t.counts, step = t.step where x.org_id = p_org_id;
    return t.step;
  end if;

  if t.step = 'sealing' then
    if t.final_record_id is null then
      t.final_record_id := audit.append(p_org_id, 'org.purged', 'public.organizations', p_org_id::text,
        pg_catalog.jsonb_build_object(
          'reason', t.reason, 'requested_at', t.requested_at, 'requested_by', t.requested_by,
          'deleted', t.counts, 'external', coalesce(t.external, '{}'), 'billing_retained', coalesce(t.billing, '{}'),
          'audit_payloads_purged', (select pg_catalog.count(*) from audit.records r where r.org_id = p_org_id and r.payload is not null)));
      update private.workspace_terminations x set final_record_id = t.final_record_id where x.org_id = p_org_id;
    end if;
    perform audit.seal(p_org_id);
    select e.seq into entry_seq from audit.entries e where e.org_id = p_org_id and e.record_id = t.final_record_id;
    if entry_seq is not null then
      update private.workspace_terminations x set final_seq = entry_seq, step = 'redacting' where x.org_id = p_org_id;
      return 'redacting';
    end if;
    return 'sealing';  -- an older transaction's records were still open: the next call seals it
  end if;

  if t.step = 'redacting' then
    update audit.records r set payload = null, purged_at = pg_catalog.clock_timestamp()
     where (r.org_id, r.xid, r.id) in (
       select r2.org_id, r2.xid, r2.id from audit.records r2
         join audit.entries e on e.record_id = r2.id and e.org_id = r2.org_id
        where r2.org_id = p_org_id and r2.payload is not null and e.seq < t.final_seq
        limit 5000);
    get diagnostics n = row_count;
    if n = 0 then
      update private.workspace_terminations x
         set step = 'done', finished_at = pg_catalog.now(), leased_by = null, leased_until = null, last_error = null
       where x.org_id = p_org_id;
      return 'done';
    end if;
    return 'redacting';
  end if;

  return t.step;  -- external is the driver's (purge_external_done); done is done
end
$$;
comment on function private.purge_step(uuid) is
  'One step of a workspace purge, in its own transaction (one table, the final entry, or a batch of payloads); returns the step it is at.';
revoke execute on function private.purge_step(uuid) from public, anon, authenticated;
grant execute on function private.purge_step(uuid) to service_role;

-- A worker that stops hands its purge back between two steps: another takes it at once.
create function private.release_termination(p_org_id uuid, p_worker text) returns void
language sql volatile security definer
set search_path = ''
as $$
  update private.workspace_terminations t set leased_by = null, leased_until = null
   where t.org_id = p_org_id and t.leased_by = p_worker
$$;
comment on function private.release_termination(uuid, text) is 'Hands a purge''s lease back (a worker stopping between two steps).';
revoke execute on function private.release_termination(uuid, text) from public, anon, authenticated;
grant execute on function private.release_termination(uuid, text) to service_role;

-- A step failed: why (the driver's words, no content), for the operator. The purge is tried again
-- after p_retry_seconds, by any worker: meanwhile the others are claimed, so that one purge which
-- keeps failing doesn't hold them all up.
create function private.purge_failed(p_org_id uuid, p_error text, p_retry_seconds integer) returns void
language sql volatile security definer
set search_path = ''
as $$
  update private.workspace_terminations t
     set last_error = pg_catalog.left(p_error, 500), leased_by = null,
         leased_until = pg_catalog.now() + pg_catalog.make_interval(secs => p_retry_seconds)
   where t.org_id = p_org_id and t.step <> 'done'
$$;
comment on function private.purge_failed(uuid, text, integer) is 'Records why a purge step failed; any worker tries it again after p_retry_seconds.';
revoke execute on function private.purge_failed(uuid, text, integer) from public, anon, authenticated;
grant execute on function private.purge_failed(uuid, text, integer) to service_role;

-- =============================================================================================
-- Verifying: a null payload below an org.purged entry is a purged one
-- =============================================================================================
create or replace function audit.verify_chain(p_org_id uuid)
returns table (ok boolean, checked bigint, first_bad_seq bigint, reason text, unchecked text)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  e record;
  expected_seq bigint := 1;
  prev bytea := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
  tree bytea[] := '{}';
  fields jsonb;
  target jsonb;
  head audit.heads%rowtype;
  pins jsonb[];
  pin jsonb;
  c record;
  next_pin integer := 1;
  purged bigint[];
  purged_through bigint;
begin
  unchecked := 'checkpoint signatures: Postgres has no Ed25519 here; npm run audit:verify checks them';
  checked := 0;
  -- Stored checkpoints pin the history: each must say in its columns what its signed body says,
  -- and the chain must still have, at its size, the head and Merkle root it signed.
  for c in select * from audit.checkpoints x where x.org_id = p_org_id order by x.size loop
    if (c.body::jsonb ->> 'size')::bigint is distinct from c.size or c.body::jsonb ->> 'org' is distinct from c.org_id::text
       or c.body::jsonb ->> 'key' is distinct from c.key_id
       or (c.frontier is not null and pg_catalog.encode(private.merkle_root(c.frontier), 'hex') is distinct from c.body::jsonb ->> 'root') then
      ok := false;
      first_bad_seq := c.size;
      reason := pg_catalog.format('the checkpoint of size %s says in its columns what its signed body does not', c.size);
      return next;
      return;
    end if;
  end loop;
  select coalesce(pg_catalog.array_agg(c2.body::jsonb order by c2.size), '{}') into pins
    from audit.checkpoints c2 where c2.org_id = p_org_id;
  -- The entries whose payload was purged, as the chain records each purge.
  select coalesce(pg_catalog.array_agg(r.target_id::bigint), '{}') into purged
    from audit.records r
   where r.org_id = p_org_id and r.action = 'audit.payload_purged' and r.target_id ~ '^[0-9]{1,18}$';
  -- A workspace purge's last entry (org.purged) stands for the purge of every payload before it.
  select pg_catalog.max(x.seq) into purged_through from audit.entries x where x.org_id = p_org_id and x.action = 'org.purged';

  for e in
    select x.*, p.id as r_id, p.action as r_action, p.actor as r_actor, p.target_type as r_target_type,
           p.target_id as r_target_id, p.occurred_at as r_occurred_at, p.payload, p.purged_at
      from audit.entries x
      left join audit.records p on p.org_id = x.org_id and p.xid = x.record_xid and p.id = x.record_id
     where x.org_id = p_org_id order by x.seq
  loop
    first_bad_seq := e.seq;
    fields := e.canonical::jsonb;
    target := fields -> 'target';
    if e.seq <> expected_seq then
      reason := pg_catalog.format('sequence gap: expected entry %s, found %s', expected_seq, e.seq);
    elsif e.prev_hash <> prev then
      reason := 'prev_hash is not the hash of the entry before';
    elsif e.entry_hash <> audit.entry_hash(e.prev_hash, e.canonical) then
      reason := 'entry_hash is not the hash of the entry';
    elsif (fields ->> 'seq')::bigint is distinct from e.seq or fields ->> 'org' is distinct from e.org_id::text
          or fields ->> 'action' is distinct from e.action or fields ->> 'actor' is distinct from e.actor::text then
      reason := 'the entry''s columns disagree with its hashed bytes';
    elsif fields ->> 'at' is distinct from audit.hashed_time(e.occurred_at) then
      reason := 'the entry''s time (occurred_at) is not the one that was hashed';
    elsif (pg_catalog.jsonb_typeof(target) = 'null') is distinct from (e.target_type is null)
          or (e.target_type is not null
              and (target ->> 'type' is distinct from e.target_type or target ->> 'id' is distinct from e.target_id)) then
      reason := 'the entry''s target is not the one that was hashed';
    elsif e.r_id is null then
      reason := 'the entry''s record is missing';
    elsif (e.r_action, e.r_actor, e.r_target_type, e.r_target_id, e.r_occurred_at)
          is distinct from (e.action, e.actor, e.target_type, e.target_id, e.occurred_at) then
      reason := 'the entry''s record says another action, actor, target or time than the entry';
    elsif e.payload is not null and fields ->> 'payload_sha256' is distinct from private.sha256_hex(e.payload::text) then
      reason := 'the payload is not the one that was hashed';
    elsif e.payload is null and (e.purged_at is null or not (e.seq = any (purged) or e.seq < coalesce(purged_through, 0))) then
      reason := 'the payload is gone, and the chain records no purge of it';
    end if;
    if reason is null then
      tree := private.merkle_frontier_push(tree, e.seq - 1, e.entry_hash);
      pin := pins[next_pin];
      if pin is not null and (pin ->> 'size')::bigint = e.seq then
        if pin ->> 'head' <> pg_catalog.encode(e.entry_hash, 'hex')
           or pin ->> 'root' <> pg_catalog.encode(private.merkle_root(tree), 'hex')
           or coalesce((select c2.frontier <> tree from audit.checkpoints c2 where c2.org_id = p_org_id and c2.size = e.seq), false) then
          reason := pg_catalog.format('the chain up to entry %s is not the one its checkpoint signed', e.seq);
        end if;
        next_pin := next_pin + 1;
      end if;
    end if;
    if reason is not null then
      ok := false;
      return next;
      return;
    end if;
    checked := checked + 1;
    prev := e.entry_hash;
    expected_seq := e.seq + 1;
  end loop;
  select * into head from audit.heads h where h.org_id = p_org_id;
  pin := pins[next_pin];
  if pin is not null then
    ok := false;
    first_bad_seq := checked + 1;
    reason := pg_catalog.format('the chain ends at entry %s, but a checkpoint signed %s entries (the tail was cut)', checked, pin ->> 'size');
    return next;
    return;
  end if;
  if coalesce(head.seq, 0) <> checked or (head.seq > 0 and head.head_hash <> prev) then
    ok := false;
    first_bad_seq := checked + 1;
    reason := pg_catalog.format('the chain ends at entry %s but its head is entry %s', checked, coalesce(head.seq, 0));
    return next;
    return;
  end if;
  ok := true;
  first_bad_seq := null;
  return next;
end
$$;

-- =============================================================================================
-- Health: a purge that doesn't finish is a workspace whose content outlives its termination
-- =============================================================================================
create or replace function private.health_report() returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  vault_ok boolean;
  pending_count bigint;
  oldest_unsealed timestamptz;
  oldest_uncovered timestamptz;
  queue_depth bigint;
  oldest_ready timestamptz;
  purges_pending bigint;
  oldest_purge timestamptz;
  now_at timestamptz := pg_catalog.clock_timestamp();
begin
  begin
    select pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(d.decrypted_secret, 'UTF8')), 'hex') = c.sha256
      into vault_ok
      from private.health_canary c join vault.decrypted_secrets d on d.id = c.secret_id;
  exception when others then
    vault_ok := false;  -- the root key is missing or wrong: decrypting fails
  end;
  select pg_catalog.count(*), pg_catalog.min(p.occurred_at) into pending_count, oldest_unsealed from audit.pending p;
  -- Per chain, the first entry no signed checkpoint covers yet; the oldest of those.
  select pg_catalog.min(e.occurred_at) into oldest_uncovered
    from audit.heads h
    join audit.entries e on e.org_id = h.org_id
     and e.seq = coalesce((select pg_catalog.max(c.size) from audit.checkpoints c where c.org_id = h.org_id), 0) + 1;
  select pg_catalog.count(*), pg_catalog.min(j.run_at) into queue_depth, oldest_ready
    from graphile_worker._private_jobs j where j.is_available and j.run_at <= now_at;
  select pg_catalog.count(*), pg_catalog.min(t.requested_at) into purges_pending, oldest_purge
    from private.workspace_terminations t where t.step <> 'done';
  return pg_catalog.jsonb_build_object(
    'vault_round_trip', coalesce(vault_ok, false),
    'unsealed', pending_count,
    'oldest_unsealed_seconds', pg_catalog.round(extract(epoch from now_at - oldest_unsealed)::numeric, 1),
    'oldest_uncheckpointed_seconds', pg_catalog.round(extract(epoch from now_at - oldest_uncovered)::numeric, 1),
    'run_queue_depth', queue_depth,
    'oldest_queued_seconds', pg_catalog.round(extract(epoch from now_at - oldest_ready)::numeric, 1),
    'purges_pending', purges_pending,
    'oldest_purge_seconds', pg_catalog.round(extract(epoch from now_at - oldest_purge)::numeric, 1));
end
$$;
comment on function private.health_report() is
  'The health function''s figures: the Vault round trip, the sealer''s and the checkpoints'' lag, the run queue, unfinished workspace purges. No secret, no address.';
revoke execute on function private.health_report() from public, anon, authenticated;
grant execute on function private.health_report() to service_role;
