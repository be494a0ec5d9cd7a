-- Security posture every migration must keep, checked over the catalog so that new objects are
-- covered without editing this file:
--   * every table in an exposed schema has RLS enabled and forced;
--   * every security-definer function in our schemas pins search_path;
--   * anon holds no table privilege in an exposed schema;
--   * every tenant table has forced RLS and a policy for each operation (the migration guard's rule);
--   * every tenant table has org_id not null, leading an index, and the no-context write guard;
--   * every policy on an exposed table applies to authenticated only, one operation at a time;
--   * the `private` schema is not exposed.
begin;
select plan(13);

create temporary view exposed_schemas as
  select trim(s) as nspname from unnest(string_to_array(current_setting('pgrst.db_schemas'), ',')) s;

create temporary view exposed_tables as
  select format('%I.%I', n.nspname, c.relname) as name, c.relrowsecurity, c.relforcerowsecurity
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p') and n.nspname in (select nspname from exposed_schemas);

select is((select array_agg(name order by name) from exposed_tables where not relrowsecurity), null,
          'every table in an exposed schema has RLS enabled');
select is((select array_agg(name order by name) from exposed_tables where not relforcerowsecurity), null,
          'every table in an exposed schema forces RLS (even for its owner)');

select is(
  (select array_agg(p.oid::regprocedure::text order by 1)
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where p.prosecdef
      and n.nspname not in ('pg_catalog', 'information_schema', 'extensions')
      and not exists (select 1 from unnest(coalesce(p.proconfig, '{}')) cfg where cfg like 'search_path=%')),
  null,
  'every security-definer function pins its search_path'
);

select is(
  (select array_agg(format('%I.%I', n.nspname, c.relname) order by 1)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm') and n.nspname in (select nspname from exposed_schemas)
      and (has_table_privilege('anon', c.oid, 'select') or has_table_privilege('anon', c.oid, 'insert')
           or has_table_privilege('anon', c.oid, 'update') or has_table_privilege('anon', c.oid, 'delete'))),
  null,
  'anon holds no privilege on any table in an exposed schema'
);

select is(
  (select array_agg(format('%s: %s', t.oid::regclass, private.tenant_table_gap(t.oid)) order by 1)
     from pg_class t
    where private.is_tenant_table(t.oid) and private.tenant_table_gap(t.oid) is not null),
  null,
  'every tenant table (exposed, with org_id) has forced RLS and a policy for each operation'
);

create temporary view tenant_tables as
  select c.oid, c.oid::regclass::text as name from pg_class c where private.is_tenant_table(c.oid);

select is(
  (select array_agg(t.name order by 1) from tenant_tables t
     join pg_attribute a on a.attrelid = t.oid and a.attname = 'org_id'
    where not a.attnotnull),
  null,
  'every tenant table declares org_id not null'
);

select is(
  (select array_agg(t.name order by 1) from tenant_tables t
    where not exists (
      select 1 from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
       where i.indrelid = t.oid and a.attname = 'org_id')),
  null,
  'every tenant table has an index led by org_id'
);

select is(
  (select array_agg(t.name order by 1) from tenant_tables t
    where not exists (
      select 1 from pg_trigger g
       where g.tgrelid = t.oid and g.tgfoid = 'private.require_org_context()'::regprocedure
         and g.tgtype & 1 = 0          -- statement level
         and g.tgtype & 2 = 2          -- before
         and g.tgtype & 28 = 28)),     -- insert, delete and update
  null,
  'every tenant table refuses writes without an organization context'
);

select is(
  (select array_agg(t.name order by 1) from tenant_tables t
    where not exists (
      select 1 from pg_trigger g
       where g.tgrelid = t.oid and g.tgfoid = 'private.check_context_ids()'::regprocedure
         and g.tgtype & 1 = 1          -- row level
         and g.tgtype & 2 = 2          -- before
         and g.tgtype & 4 = 4)         -- insert
       or pg_get_expr((select d.adbin from pg_attrdef d join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
                        where d.adrelid = t.oid and a.attname = 'org_id'), t.oid) is distinct from 'private.context_org_id()'),
  null,
  'every tenant table takes org_id (and project_id) of an inserted row from the context, and refuses another'
);

select is(
  (select array_agg(c.oid::regclass::text order by 1)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind = 'v' and n.nspname in (select nspname from exposed_schemas)
      and not exists (
        select 1 from pg_trigger g
         where g.tgrelid = c.oid and g.tgfoid = 'private.refuse_view_write()'::regprocedure
           and g.tgtype & 64 = 64 and g.tgtype & 28 = 28)),   -- instead of insert, delete and update
  null,
  'every exposed view answers a write with a 4xx (read_only_view), never a 500'
);

select is(
  (select array_agg(format('%s: %s', p.polrelid::regclass, p.polname) order by 1)
     from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in (select nspname from exposed_schemas)
      and p.polroles <> array['authenticated'::regrole::oid]),
  null,
  'every policy on an exposed table is granted to authenticated only'
);

select is(
  (select array_agg(format('%s: %s', p.polrelid::regclass, p.polname) order by 1)
     from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in (select nspname from exposed_schemas) and p.polcmd = '*'),
  null,
  'no policy on an exposed table covers all operations at once'
);

select ok(
  'private' not in (select nspname from exposed_schemas),
  'the private schema is not exposed through PostgREST'
);

select * from finish();
rollback;
