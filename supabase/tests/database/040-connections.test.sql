-- Connection credentials (seeds 000, 002, 003, 004): kept in Vault, written only through
-- save_connection, deleted from Vault when the connection is disabled, and never returned by any
-- relation or RPC a client can reach. Organizations' own model vendor keys (save_model_provider_key)
-- are planted beside them and hunted by the same scan. The scan is generated from the catalog, so a new view or
-- RPC is scanned without editing this file.
begin;
\ir _helpers.psql
select plan(20);

create temporary table leaks (actor text, source text, leaked boolean) on commit drop;
grant all on leaks to public;

-- A credential to hunt for, saved as the connectors function saves it (service role).
set local role service_role;
select id as conn, (secret_id is null)::text as ref_hidden
  from public.save_connection(pg_temp.org('acme'), 'github', 'Planted', '{repo,read:org}', 'ghp_PLANTED_9f8e7d6c5b4a') \gset
-- And an organization's own model vendor key, saved as the model gateway saves it.
select (secret_id is null)::text as model_ref_hidden
  from public.save_model_provider_key(pg_temp.org('acme'), 'openai', 'sk-PLANTED-model-key-7a6b5c4d') \gset
reset role;
select is(:'model_ref_hidden'::text, 'true', 'save_model_provider_key answers without the Vault reference');

select is(:'ref_hidden'::text, 'true', 'save_connection answers without the Vault reference');
select is((select count(*)::int from vault.decrypted_secrets s join public.connections c on c.secret_id = s.id
            where c.id = :'conn' and s.decrypted_secret = 'ghp_PLANTED_9f8e7d6c5b4a'), 1,
          'the credential is in Vault, referenced by the connection');
select is((select count(*)::int from information_schema.columns
            where table_schema = 'public' and table_name = 'connections'
              and column_name ~ '(secret|token|password|key)$' and column_name <> 'secret_id'), 0,
          'no column of connections is meant to hold a secret');
select is((select count(*)::int from public.connections c where c.id = :'conn'
            and to_jsonb(c)::text like '%PLANTED%'), 0, 'the connection row itself holds no secret');

-- Clients can't reach Vault or the writer.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null, 'authenticated cannot read vault.decrypted_secrets');
select throws_ok($$ select * from vault.secrets $$, '42501', null, 'authenticated cannot read vault.secrets');
select throws_ok($$ select vault.create_secret('x') $$, '42501', null, 'authenticated cannot create Vault secrets');
select throws_ok($$ select public.save_connection(pg_temp.org('acme'), 'github', 'Mine', '{}', 'tok') $$,
                 '42501', null, 'authenticated cannot write a credential, even in its own organization');
select throws_ok($$ select secret_id from public.connections $$, '42501', null, 'authenticated cannot read the Vault reference');
reset role;
set local role anon;
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null, 'anon cannot read Vault');
reset role;

-- Runs a query as an actor (anon when p_user is null) and returns its one text value, or the error
-- it raised (an error message could leak too), leaving no trace.
create function pg_temp.as_actor(p_user uuid, p_org uuid, p_sql text) returns text
language plpgsql as $$
declare
  output text;
begin
  begin
    perform set_config('request.jwt.claims',
      case when p_user is null then json_build_object('role', 'anon')
           else json_build_object('sub', p_user, 'role', 'authenticated') end::text, true);
    perform set_config('gatehouse.org_id', coalesce(p_org::text, ''), true);
    perform set_config('role', case when p_user is null then 'anon' else 'authenticated' end, true);
    execute p_sql into output;
    raise exception using errcode = 'GHPRB';
  exception
    when sqlstate 'GHPRB' then null;
    when others then output := format('error %s: %s %s', sqlstate, sqlerrm, coalesce(pg_catalog.current_setting('role'), ''));
  end;
  return coalesce(output, '');
end
$$;

-- The scan: every relation and every function a client can reach, as anon and as members of
-- both organizations, with the planted connection's id for every uuid argument.
do $$
declare
  actor record;
  rel record;
  fn record;
  role_name text;
  cols text;
  args text;
  output text;
  conn uuid := (select id from public.connections where display_name = 'Planted');
begin
  for actor in select * from (values ('anon', null::uuid, null::uuid),
                                     ('ada', pg_temp.uid('ada'), pg_temp.org('acme')),
                                     ('grace', pg_temp.uid('grace'), pg_temp.org('globex'))) a (who, usr, org) loop
    role_name := case when actor.usr is null then 'anon' else 'authenticated' end;
    for rel in
      select c.oid, format('%I.%I', n.nspname, c.relname) as name
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'v', 'm', 'f', 'p') and n.nspname = any (private.exposed_schemas())
    loop
      select string_agg(format('%I', a.attname), ', ') into cols
        from pg_attribute a
       where a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
         and has_column_privilege(role_name, rel.oid, a.attnum, 'select');
      continue when cols is null;
      output := pg_temp.as_actor(actor.usr, actor.org,
        format('select coalesce(string_agg(to_jsonb(t)::text, %L), %L) from (select %s from %s) t', '', '', cols, rel.name));
      insert into leaks values (actor.who, rel.name, output like '%PLANTED%');
    end loop;
    for fn in
      select p.oid, p.oid::regprocedure::text as sig, format('%I.%I', n.nspname, p.proname) as name, p.proargtypes
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = any (private.exposed_schemas()) and p.prokind = 'f'
         and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype, 'void'::regtype)
         and has_function_privilege(role_name, p.oid, 'execute')
    loop
      select coalesce(string_agg(case when u.t = 'uuid'::regtype then format('%L::uuid', conn)
                                      else format('null::%s', u.t::regtype) end, ', ' order by u.i), '')
        into args
        from unnest(fn.proargtypes::oid[]) with ordinality u (t, i);
      output := pg_temp.as_actor(actor.usr, actor.org,
        format('select coalesce(string_agg(to_jsonb(r)::text, %L), %L) from %s(%s) r', '', '', fn.name, args));
      insert into leaks values (actor.who, fn.sig, output like '%PLANTED%');
    end loop;
  end loop;
end
$$;

select cmp_ok((select count(distinct source)::int from leaks where source not like '%(%'), '>=', 12,
              'the scan covers every exposed relation a client can read');
select cmp_ok((select count(distinct source)::int from leaks where source like '%(%'), '>=', 10,
              'the scan covers every exposed function a client can call');
select is((select array_agg(actor || ': ' || source order by 1) from leaks where leaked), null,
          'no relation or RPC a client can reach returns a stored credential');
select ok(pg_temp.as_actor(pg_temp.uid('ada'), pg_temp.org('acme'),
            format('select %L', (select decrypted_secret from vault.decrypted_secrets s join public.connections c on c.secret_id = s.id
                                  where c.id = :'conn'))) like '%PLANTED%',
          'control: the scan sees what a query returns, so a source that did return the credential would be caught');

-- Disabling deletes the credential from Vault; only a tenant admin (or the service role) can.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like(format('select public.disable_connection(%L)', :'conn'), '%connection_not_found%',
                   'a contributor cannot disable a connection');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select throws_like(format('select public.disable_connection(%L)', :'conn'), '%connection_not_found%',
                   'another organization cannot disable the connection');
reset role;
select secret_id as planted_ref from public.connections where id = :'conn' \gset
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((public.disable_connection(:'conn')).status::text, 'disabled', 'a tenant admin disables the connection');
reset role;
select is((select count(*)::int from vault.secrets where id = :'planted_ref'), 0, 'disabling deletes the credential from Vault');
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select is((select count(*)::int from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.target_id = :'conn'
              and e.action in ('connection.insert', 'connection.update') and not p.payload::text like '%secret_id%'), 2,
          'saving and disabling are audited, without the Vault reference');

select * from finish();
rollback;
