-- RPCs that take an argument naming an organization (p_org_id and the like) act on the
-- organization they name, when the caller may, or refuse a mismatch with the caller's context:
-- never silently on another one. The list comes from the catalog, so a new public RPC with such an
-- argument fails the first assertion until it is covered here.
begin;
\ir _helpers.psql
select plan(22);

-- Fixtures: a member who is tenant admin of both organizations; each organization's own OpenAI key.
insert into auth.users (id, email, email_confirmed_at) values ('d1000000-0000-4000-8000-000000000001', 'dual-admin@example.test', now());
insert into public.organization_members (org_id, user_id, role) values
  (pg_temp.org('acme'), 'd1000000-0000-4000-8000-000000000001', 'tenant_admin'),
  (pg_temp.org('globex'), 'd1000000-0000-4000-8000-000000000001', 'tenant_admin');
delete from public.model_provider_keys where provider = 'openai' and org_id in (pg_temp.org('acme'), pg_temp.org('globex'));
insert into public.model_provider_keys (org_id, provider, key_hint, secret_id, verified_at)
select o, 'openai', '…test', vault.create_secret('sk-org-arguments-' || o), now() from unnest(array[pg_temp.org('acme'), pg_temp.org('globex')]) o;

create function pg_temp.keys() returns text language sql as $$
  select coalesce(string_agg(case org_id when pg_temp.org('acme') then 'acme' else 'globex' end, ',' order by org_id), '')
    from public.model_provider_keys where provider = 'openai' and org_id in (pg_temp.org('acme'), pg_temp.org('globex'))
$$;
-- The service role acting for a user (as the functions call save_connection and save_model_provider_key).
create function pg_temp.service_for(p_user uuid) returns void language plpgsql as $$
begin
  perform set_config('request.jwt.claims', case when p_user is null then json_build_object('role', 'service_role')
                                                else json_build_object('sub', p_user, 'role', 'service_role') end::text, true);
  perform set_config('gatehouse.org_id', '', true);
  perform set_config('role', 'service_role', true);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Every public RPC with an organization argument is one of these.
-- ---------------------------------------------------------------------------------------------
select set_eq(
  $$ select distinct p.proname::text
       from pg_proc p
       join pg_namespace n on n.oid = p.pronamespace
      cross join lateral unnest(p.proargnames, coalesce(p.proargmodes, array_fill('i'::"char", array[coalesce(cardinality(p.proargnames), 0)]))) a (name, mode)
      where n.nspname = 'public' and a.mode in ('i', 'b', 'v') and a.name ~* '(^|_)(org|organization)(_|$)' $$,
  array['remove_model_provider_key', 'save_connection', 'save_model_provider_key'],
  'every public RPC with an argument naming an organization is checked here');

-- ---------------------------------------------------------------------------------------------
-- remove_model_provider_key (tenant admins, through PostgREST)
-- ---------------------------------------------------------------------------------------------
select pg_temp.act_as('d1000000-0000-4000-8000-000000000001', pg_temp.org('acme'));
select throws_like(format('select public.remove_model_provider_key(%L, %L)', 'openai', pg_temp.org('globex')), '%context_org_mismatch%',
                   'remove_model_provider_key refuses an organization that is not the context''s');
reset role;
select is(pg_temp.keys(), 'acme,globex', 'and neither organization''s key is removed');

select pg_temp.act_as(pg_temp.uid('grace'));
select is(public.remove_model_provider_key('openai', pg_temp.org('globex')), true,
          'without a context, it acts on the organization it names, for that organization''s tenant admin');
reset role;
select is(pg_temp.keys(), 'acme', 'which removed that organization''s key only');

select pg_temp.act_as(pg_temp.uid('grace'));
select throws_like(format('select public.remove_model_provider_key(%L, %L)', 'openai', pg_temp.org('acme')), '%context_not_a_member%',
                   'it refuses an organization the caller is not a member of');
select pg_temp.act_as(pg_temp.uid('victor'));
select throws_like(format('select public.remove_model_provider_key(%L, %L)', 'openai', pg_temp.org('acme')), '%forbidden%',
                   'it refuses a member below tenant admin of the organization it names');
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.remove_model_provider_key('openai') $$, '%forbidden%',
                   'and one below tenant admin in the context');
select pg_temp.act_as(pg_temp.uid('ada'));
select throws_like($$ select public.remove_model_provider_key('openai') $$, '%forbidden%',
                   'with neither a context nor an organization, there is nothing to act on');
reset role;
select is(pg_temp.keys(), 'acme', 'none of the refusals removed a key');

select pg_temp.act_as('d1000000-0000-4000-8000-000000000001', pg_temp.org('acme'));
select is(public.remove_model_provider_key('openai', pg_temp.org('acme')), true, 'naming the context''s own organization acts on it');
reset role;
select is(pg_temp.keys(), '', 'which removed its key');

select pg_temp.service_for(null);
select throws_like($$ select public.remove_model_provider_key('openai') $$, '%missing_org_id%',
                   'the service role must name the organization');
select is(public.remove_model_provider_key('openai', pg_temp.org('globex')), false, 'and acts on the one it names');
reset role;

-- ---------------------------------------------------------------------------------------------
-- save_connection and save_model_provider_key (the service role, acting for the function's caller)
-- ---------------------------------------------------------------------------------------------
select is((select array_agg(f order by f) from unnest(array[
             'public.save_connection(uuid, public.connector_provider, text, text[], text, timestamptz, uuid, jsonb)',
             'public.save_model_provider_key(uuid, public.model_provider, text, text)']) f
            where has_function_privilege('authenticated', f, 'execute') or has_function_privilege('anon', f, 'execute')), null,
          'no client role calls save_connection or save_model_provider_key: only the service role, which names the organization');

select pg_temp.service_for(pg_temp.uid('ada'));
select lives_ok($$ select public.save_connection(pg_temp.org('acme'), 'https_webhook', 'Org arguments', '{}', '{"url":"https://hooks.example.test/a"}') $$,
                'save_connection acts on the organization it names for a tenant admin of it');
select throws_like($$ select public.save_connection(pg_temp.org('globex'), 'https_webhook', 'Org arguments', '{}', '{"url":"https://hooks.example.test/a"}') $$,
                   '%forbidden%', 'and refuses, acting for a user, an organization they do not administer');
select throws_like($$ select public.save_model_provider_key(pg_temp.org('globex'), 'openai', 'sk-not-globex-admin-0000') $$,
                   '%forbidden%', 'as does save_model_provider_key');
select lives_ok($$ select public.save_model_provider_key(pg_temp.org('acme'), 'openai', 'sk-acme-admin-key-0000') $$,
                'which saves for a tenant admin of the organization it names');
select pg_temp.service_for(pg_temp.uid('victor'));
select throws_like($$ select public.save_connection(pg_temp.org('acme'), 'https_webhook', 'Org arguments 2', '{}', '{"url":"https://hooks.example.test/b"}') $$,
                   '%forbidden%', 'a member no longer tenant admin (demoted during a slow live check) saves no connection');
select throws_like($$ select public.save_model_provider_key(pg_temp.org('acme'), 'openai', 'sk-victor-key-00000') $$,
                   '%forbidden%', 'nor a model key');
select pg_temp.service_for(null);
select lives_ok($$ select public.save_connection(pg_temp.org('globex'), 'https_webhook', 'Org arguments 3', '{}', '{"url":"https://hooks.example.test/c"}') $$,
                'the service role on its own (a token refresh) acts on the organization it names');
reset role;

select * from finish();
rollback;
