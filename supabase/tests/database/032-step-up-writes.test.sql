-- Step-up guards every write that changes who can approve or what an approval means (issue 23).
-- The tables are read from the catalog, so a new tenant table can't slip through: each has the
-- guard or a stated exemption, and each guarded table refuses a write from an aal1 session of a
-- person who has a verified factor.
begin;
\ir _helpers.psql
select plan(16);

-- Ada (Acme's tenant admin) has enrolled and verified TOTP.
insert into auth.mfa_factors (user_id, friendly_name, factor_type, status)
values (pg_temp.uid('ada'), 'phone', 'totp', 'verified');

-- Every tenant table (the ones with the context guard).
create temporary table tenant_tables on commit drop as
  select distinct tg.tgrelid::regclass as t
    from pg_trigger tg join pg_class c on c.oid = tg.tgrelid join pg_namespace n on n.oid = c.relnamespace
   where tg.tgname = 'require_org_context' and n.nspname = 'public';

select cmp_ok((select count(*)::int from tenant_tables), '>=', 25, 'the catalog names the tenant tables');
select is((select coalesce(array_agg(t::text order by t::text), '{}') from tenant_tables
            where not exists (select 1 from pg_trigger tg where tg.tgrelid = t and tg.tgname = 'step_up_guard')
              and not exists (select 1 from private.step_up_exemptions e where e.table_name = t)),
          '{}', 'every tenant table has the step-up guard or a stated exemption');
select is((select coalesce(array_agg(e.table_name::text), '{}') from private.step_up_exemptions e
            where exists (select 1 from pg_trigger tg where tg.tgrelid = e.table_name and tg.tgname = 'step_up_guard')),
          '{}', 'an exempt table has no guard');

-- Each guarded table refuses any write statement (even one that touches no row) from Ada at aal1,
-- whatever path runs it: here the owner runs it with her claims, as a security-definer RPC or an
-- edge function acting for her would.
create function pg_temp.write_refusals(p_aal2 boolean) returns text[] language plpgsql as $$
declare
  t regclass;
  col text;
  failures text[] := '{}';
  session_id uuid;
begin
  if p_aal2 then
    insert into auth.sessions (user_id, aal) values (pg_temp.uid('ada'), 'aal2') returning id into session_id;
  end if;
  perform set_config('request.jwt.claims', json_build_object('sub', pg_temp.uid('ada'), 'role', 'authenticated',
    'aal', case when p_aal2 then 'aal2' else 'aal1' end, 'session_id', session_id)::text, true);
  perform set_config('gatehouse.org_id', pg_temp.org('acme')::text, true);
  for t in select tt.t from tenant_tables tt
            where exists (select 1 from pg_trigger tg where tg.tgrelid = tt.t and tg.tgname = 'step_up_guard')
  loop
    col := (select a.attname from pg_attribute a where a.attrelid = t and a.attnum > 0 and not a.attisdropped order by a.attnum limit 1);
    begin
      execute format('update %s set %I = %I where false', t, col, col);
      if not p_aal2 then failures := failures || (t::text || ': allowed'); end if;
    exception when others then
      if p_aal2 or sqlerrm not like '%step_up_required%' then failures := failures || (t::text || ': ' || sqlerrm); end if;
    end;
  end loop;
  perform set_config('request.jwt.claims', '', true);
  return failures;
end
$$;
select is(pg_temp.write_refusals(false), '{}', 'every guarded table refuses a write from an aal1 session of a person with a factor');
select is(pg_temp.write_refusals(true), '{}', 'and takes it at aal2');

-- Every RPC a person can call that writes: it writes a guarded table (and so meets the guard), or
-- is named here with why it needs no step-up. A new RPC that writes elsewhere fails this test.
select is((select coalesce(array_agg(p.proname::text order by p.proname), '{}')
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'public' and p.prokind = 'f' and p.provolatile = 'v'
              and has_function_privilege('authenticated', p.oid, 'execute')
              and not exists (select 1 from tenant_tables tt join pg_class c on c.oid = tt.t
                               where exists (select 1 from pg_trigger tg where tg.tgrelid = tt.t and tg.tgname = 'step_up_guard')
                                 and p.prosrc ~* ('(insert\s+into|update|delete\s+from)\s+public\.' || c.relname || '\M'))
              and p.proname <> all (array[
                'propose_action', 'decide_action', 'execute_action', 'start_agent_run',  -- approvals: their own rules
                'publish_agent_version',     -- authoring (agent_versions is exempt)
                'mint_run_token',            -- a token to act for a run its minter may already act for
                'change_review_status',      -- support work on the review queue
                'revoke_member_sessions',    -- ends sessions: takes access away, never grants it
                'verify_audit_chain',        -- reads (it seals pending entries first)
                'purge_audit_payload',       -- erases a payload, itself an audit entry; changes no right
                'terminate_workspace',       -- asks for step-up itself (step_up_refusal): its deletes run with triggers off
                'adjust_credits'])),         -- the ledger's adjustment guard (below)
          '{}', 'every RPC that writes meets the guard through a guarded table, or is exempt for a stated reason');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like($$ select public.adjust_credits(-1, 'correction') $$,
                   '%step_up_required%', 'a credit adjustment (billing) needs step-up too');
reset role;

-- =============================================================================================
-- The attack: an aal1 admin with a factor adds approvers
-- =============================================================================================
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like($$ update public.organizations set restrict_to_verified_domains = false where id = pg_temp.org('acme') $$,
                   '%step_up_required%', 'an aal1 admin with a factor can''t turn off the verified-domain restriction');
select throws_like($$ select public.create_invitation('mole@acme.test', 'project_admin') $$,
                   '%step_up_required%', 'an aal1 admin with a factor can''t invite an approver');
select throws_like($$ update public.organization_members set role = 'tenant_admin' where user_id = pg_temp.uid('victor') $$,
                   '%step_up_required%', 'nor promote a member');
select throws_like($$ update public.agent_tools set connection_id = null where org_id = pg_temp.org('acme') $$,
                   '%step_up_required%', 'nor rebind a tool');
select is((select role::text from public.organization_members where user_id = pg_temp.uid('victor') and org_id = pg_temp.org('acme')),
          'project_viewer', 'nothing changed');
reset role;

-- A person without a factor keeps working at aal1 (their organization doesn't require one).
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select lives_ok($$ update public.organizations set name = 'Globex Support' where id = pg_temp.org('globex') $$,
                'without a factor, an aal1 admin still changes settings');
select lives_ok($$ update public.organizations set require_two_factor = true where id = pg_temp.org('globex') $$,
                'a tenant admin requires two-factor authentication of the organization');
select throws_like($$ select public.create_invitation('new@globex.test', 'project_viewer') $$,
                   '%mfa_required%', 'then a person with no factor can''t make privileged changes');
reset role;
-- Nor decide, whatever the risk: Globex's seeded request is medium-risk (Casey administers its project).
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('globex'));
select throws_like(format('select public.decide_action(%L, %L, true)', '5b000000-0000-4000-8000-00000000000b',
                          (select approval_sha256 from public.action_requests where id = '5b000000-0000-4000-8000-00000000000b')),
                   '%mfa_required%', 'nor decide an action of any risk');
reset role;

select * from finish();
rollback;
