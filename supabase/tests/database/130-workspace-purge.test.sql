-- Workspace termination and purge (…_workspace_purge.sql), on Globex as seeded: a row in every
-- exposed table (the isolation matrix's fixtures) and in the private tables the seed fills.
--   * who may start it: a tenant admin, not with a token, at aal2 when they have a factor, with
--     the slug typed; the platform for a breach or an ended subscription's grace period;
--   * access is cut in the starting transaction;
--   * a step that fails (a database error) leaves the purge where it was, and it resumes;
--   * after it, every table with an org_id (read from the catalog, every schema) holds no row of
--     Globex but the chain's hashes and the purge's record; its Vault secrets are gone; the chain
--     verifies, its last entry org.purged with the counts; Acme is untouched.
-- The outside steps (revocation, Stripe) and a killed worker are tests/runs/purge.test.ts's.
begin;
\ir _helpers.psql
select plan(28);

-- Every table of every schema with an org_id, and its rows of an organization.
create function pg_temp.rows_of(p_org uuid) returns table (rel text, n bigint) language plpgsql as $$
declare
  t record;
begin
  for t in
    select format('%I.%I', ns.nspname, c.relname) as name
      from pg_class c join pg_namespace ns on ns.oid = c.relnamespace
     where c.relkind in ('r', 'p') and ns.nspname !~ '^pg_' and ns.nspname <> 'information_schema'
       and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'org_id' and not a.attisdropped)
     order by 1
  loop
    rel := t.name;
    execute format('select count(*) from %s where org_id = $1', t.name) into n using p_org;
    if n > 0 then
      return next;
    end if;
  end loop;
end
$$;

-- The code of a refusal (private.refuse_request), or 'allowed'.
create function pg_temp.refusal(p_sql text) returns text language plpgsql as $$
declare
  m text;
begin
  execute p_sql;
  return 'allowed';
exception when sqlstate 'PGRST' then
  get stacked diagnostics m = message_text;
  return m::jsonb ->> 'code';
end
$$;

create temporary table acme_before on commit drop as select * from pg_temp.rows_of(pg_temp.org('acme'));
create temporary table globex_before on commit drop as select * from pg_temp.rows_of(pg_temp.org('globex'));
create temporary table globex_secrets on commit drop as
  select secret_id as id from public.connections where org_id = pg_temp.org('globex') and secret_id is not null
  union all select secret_id from public.model_provider_keys where org_id = pg_temp.org('globex')
  union all select secret_id from public.webhook_subscriptions where org_id = pg_temp.org('globex') and secret_id is not null;
create temporary table globex_records on commit drop as
  select count(*) as n, max(id) as last_id from audit.records where org_id = pg_temp.org('globex');
select ok((select count(*) from globex_before where rel like 'public.%') >= 30 and (select count(*) from globex_secrets) >= 2,
          'Globex has rows in every exposed table, and Vault secrets, before');

-- Who may start it.
select pg_temp.act_as(pg_temp.uid('mallory'), pg_temp.org('globex'));
select is(pg_temp.refusal($$ select public.terminate_workspace('globex') $$), 'not_tenant_admin', 'a project viewer can''t terminate the workspace');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select set_config('request.jwt.claims', json_build_object('sub', pg_temp.uid('grace'), 'role', 'authenticated',
  'pat', json_build_object('id', gen_random_uuid(), 'org_id', pg_temp.org('globex'), 'project_id', null, 'scopes', array['admin']))::text, true);
select is(pg_temp.refusal($$ select public.terminate_workspace('globex') $$), 'token_not_accepted', 'nor can a tenant admin''s personal access token');
reset role;
insert into auth.mfa_factors (user_id, friendly_name, factor_type, status) values (pg_temp.uid('grace'), 'phone', 'totp', 'verified');
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select is(pg_temp.refusal($$ select public.terminate_workspace('globex') $$), 'step_up_required', 'a tenant admin with a factor steps up first (aal1 is refused)');
reset role;
select pg_temp.act_as_aal2(pg_temp.uid('grace'), pg_temp.org('globex'));
select is(pg_temp.refusal($$ select public.terminate_workspace('Globex') $$), 'confirmation_mismatch', 'the slug must be typed exactly');
select is(public.terminate_workspace('globex') ->> 'status', 'terminating', 'at aal2, with the slug: the workspace is terminating');
reset role;

-- Cut off in that transaction.
select is((select count(*)::int from public.organization_members where org_id = pg_temp.org('globex')), 0, 'nobody is a member any more');
select is((select count(*)::int from public.personal_access_tokens where org_id = pg_temp.org('globex'))
          + (select count(*)::int from public.widget_keys where org_id = pg_temp.org('globex'))
          + (select count(*)::int from public.webhook_subscriptions where org_id = pg_temp.org('globex'))
          + (select count(*)::int from public.invitations where org_id = pg_temp.org('globex'))
          + (select count(*)::int from public.organization_domains where org_id = pg_temp.org('globex')), 0,
          'its tokens, widget keys, inbound webhooks, invitations and domains are gone');
select throws_ok(format($$ select pg_temp.act_as(%L, %L) $$, pg_temp.uid('grace'), pg_temp.org('globex')), null, null,
                 'its admin can''t enter its context');
reset role;
select is((select reason || ' ' || step from private.workspace_terminations where org_id = pg_temp.org('globex')), 'customer external',
          'the termination is recorded: a customer''s, waiting for its outside steps');
select ok(exists (select 1 from audit.records where org_id = pg_temp.org('globex') and action = 'org.termination_started'
                  and payload::jsonb ->> 'reason' = 'customer' and actor = pg_temp.uid('grace')), 'and in the chain, by its admin');
select is(private.purge_step(pg_temp.org('globex')), 'external', 'nothing is deleted before the outside steps are done');

-- The outside steps, as the worker does them (tests/runs/purge.test.ts does them for real).
select pg_temp.as_runtime();
select private.purge_connection_done(pg_temp.org('globex'), connection_id, 'revoked') from private.purge_connections(pg_temp.org('globex'));
select private.purge_external_done(pg_temp.org('globex'), 'cancelled');
reset role;
select is((select status || ' ' || (secret_id is null) from public.connections where id = pg_temp.connection('globex')), 'disabled true',
          'the revoked connection is disabled, its secret gone, before any delete');
select is((select external from private.workspace_terminations where org_id = pg_temp.org('globex')),
          '{"revocations": {"revoked": 1}, "stripe_subscription": "cancelled"}'::jsonb, 'revoked and cancelled, recorded');

-- A database error half-way: a fault that fires even with triggers off for the purge.
create function pg_temp.fault() returns trigger language plpgsql as $$ begin raise exception 'disk full (test fault)'; end $$;
create trigger purge_fault before delete on public.agents for each row execute function pg_temp.fault();
alter table public.agents enable always trigger purge_fault;
create temporary table failures (message text) on commit drop;
create function pg_temp.drive(p_org uuid) returns text language plpgsql as $$
declare
  s text;
begin
  for i in 1 .. 1000 loop
    begin
      s := private.purge_step(p_org);
    exception when others then
      insert into failures values (sqlerrm);
      return 'failed';
    end;
    exit when s = 'done';
  end loop;
  return s;
end
$$;
select is(pg_temp.drive(pg_temp.org('globex')), 'failed', 'the purge stops at the fault');
select is((select step from private.workspace_terminations where org_id = pg_temp.org('globex')), 'deleting', 'where it was: deleting');
select ok((select counts ? 'public.agent_versions' and counts ? 'private.credit_totals' and not counts ? 'public.agents'
             from private.workspace_terminations where org_id = pg_temp.org('globex')),
          'the tables before the failing one are done, and the failing one is not');
drop trigger purge_fault on public.agents;
select is(pg_temp.drive(pg_temp.org('globex')), 'done', 'run again, it finishes');

-- What is left: the chain's hashes and the purge's record, nothing else, in any schema.
select is(array(select rel from pg_temp.rows_of(pg_temp.org('globex'))
                  where rel not in ('audit.entries', 'audit.heads', 'audit.records', 'audit.checkpoints', 'audit.cosignatures',
                                    'audit.frontiers', 'private.workspace_terminations')), '{}'::text[],
          'no table with an org_id holds a row of Globex but the audit chain''s (hashes, checkpoints) and the purge record');
select is((select count(*)::int from vault.secrets where id in (select id from globex_secrets)), 0, 'its Vault secrets are gone');
select is((select count(*)::int from public.organizations where id = pg_temp.org('globex')), 0, 'and the organization itself');
select ok((select bool_and(r.payload is null) from audit.entries e join audit.records r on r.id = e.record_id
            where e.org_id = pg_temp.org('globex') and e.seq < (select final_seq from private.workspace_terminations where org_id = pg_temp.org('globex'))),
          'every payload before the last entry is gone');
select is((select e.action || ' ' || (r.payload::jsonb -> 'deleted' ->> 'public.agents') || ' ' || (r.payload::jsonb ->> 'reason')
             from audit.entries e join audit.records r on r.id = e.record_id
            where e.org_id = pg_temp.org('globex') order by e.seq desc limit 1),
          'org.purged 1 customer', 'the last entry is org.purged, with the rows deleted per table');
select is((select array_agg(action order by id) from audit.records
            where org_id = pg_temp.org('globex') and id > (select last_id from globex_records)),
          array['org.termination_started', 'connection.update', 'action_request.update', 'org.purged'],
          'the chain grew by the start, the connection''s disabling (which withdraws its pending request) and org.purged only: no deleted row was copied into it');
select is((select ok from audit.verify_chain(pg_temp.org('globex'))), true, 'the chain still verifies end to end');
select bag_eq($$ select * from pg_temp.rows_of(pg_temp.org('acme')) $$, $$ select * from acme_before $$,
              'Acme is untouched: the same rows in every table');

-- The platform: an ended subscription past its grace period starts a termination.
create temporary table acme_members on commit drop as select count(*)::text as n from public.organization_members where org_id = pg_temp.org('acme');
update public.billing_accounts set subscription_status = 'canceled', grace_until = now() - interval '1 minute' where org_id = pg_temp.org('acme');
select is(private.start_due_terminations(), 1, 'an ended subscription past its grace starts its workspace''s termination');
select is((select reason || ' ' || (counts ->> 'public.organization_members') from private.workspace_terminations where org_id = pg_temp.org('acme')),
          'grace_expired ' || (select n from acme_members), 'recorded as grace_expired, and its members cut off');

select * from finish();
rollback;
