-- The cross-tenant isolation matrix, generated from the catalog: every table and view in every
-- schema PostgREST exposes is probed with SELECT, INSERT, UPDATE and DELETE as
--   * anon;
--   * ada, tenant admin of Acme, in Acme's context, acting on Globex's rows;
--   * ada with a forged Globex context (set directly, skipping the membership check);
--   * ada with no context at all;
--   * casey, a member of both, in Acme's context, acting on Globex's rows;
--   * victor, Acme's viewer, in Acme's context, writing Acme's rows.
-- Every case must be denied: no row returned or changed, or insufficient_privilege (42501). A
-- probe that fails any other way (a unique or foreign-key violation, say) is a failure too: it
-- means only a constraint stood between the actor and the row.
--
-- Only reads are probed on a view that nobody can write through (pg_relation_is_updatable = 0).
--
-- Controls keep the matrix honest: Globex's admin sees Globex's fixture row in every relation
-- (so the WHERE clauses match real rows), and every relation must have a tenant key. A new
-- exposed relation without org_id (other than the tenant root, organizations) or without seeded
-- rows for both organizations fails the suite until it is covered.
begin;
\ir _helpers.psql

create temporary table matrix (
  ord serial,
  relation text not null,
  label text not null,
  actor uuid,
  context uuid,
  statement text,
  expected text not null,
  outcome text
) on commit drop;

do $$
declare
  rel record;
  acme constant uuid := pg_temp.org('acme');
  globex constant uuid := pg_temp.org('globex');
  key text;
  b_fixture jsonb;
  a_fixture jsonb;
  insertable text;
  updatable text;
  actor record;
begin
  for rel in
    select c.oid, format('%I.%I', n.nspname, c.relname) as name, c.relkind
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'v', 'm', 'f')
       and n.nspname = any (private.exposed_schemas())
     order by 2
  loop
    key := case
      when rel.oid = 'public.organizations'::regclass then 'id'
      when exists (select 1 from pg_attribute a where a.attrelid = rel.oid and a.attname = 'org_id' and not a.attisdropped) then 'org_id'
    end;
    if key is null then
      insert into matrix (relation, label, expected, outcome)
      values (rel.name, format('%s has a tenant key (org_id) the matrix can probe', rel.name), 'covered', 'no org_id column');
      continue;
    end if;

    execute format('select to_jsonb(t) from %s t where %I = $1 limit 1', rel.name, key) into b_fixture using globex;
    execute format('select to_jsonb(t) from %s t where %I = $1 limit 1', rel.name, key) into a_fixture using acme;
    if a_fixture is null or b_fixture is null then
      insert into matrix (relation, label, expected, outcome)
      values (rel.name, format('%s has seeded rows in both organizations', rel.name), 'seeded', 'missing from supabase/seed.sql');
      continue;
    end if;

    -- Write probes use only the columns authenticated may write, so a refusal proves RLS (or
    -- the grants) stopped it, not a column privilege the statement never needed.
    select string_agg(quote_ident(a.attname), ', ' order by a.attnum) into insertable
      from pg_attribute a
     where a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
       and has_column_privilege('authenticated', rel.oid, a.attname, 'INSERT');
    select quote_ident(a.attname) into updatable
      from pg_attribute a
     where a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
       and has_column_privilege('authenticated', rel.oid, a.attname, 'UPDATE')
     order by a.attnum limit 1;
    insertable := coalesce(insertable, quote_ident(key));
    updatable := coalesce(updatable, quote_ident(key));

    -- Control: the owner of the rows sees them, through the same WHERE clause the probes use.
    insert into matrix (relation, label, actor, context, statement, expected)
    values (rel.name, format('control: Globex''s admin sees Globex''s rows in %s', rel.name), pg_temp.uid('grace'), globex,
            format('select 1 from %s where %I = %L', rel.name, key, globex), 'allowed');

    for actor in
      select * from (values
        ('anon', null::uuid, null::uuid, globex, b_fixture),
        ('Acme''s admin in Acme''s context, on Globex''s rows,', pg_temp.uid('ada'), acme, globex, b_fixture),
        ('Acme''s admin with a forged Globex context', pg_temp.uid('ada'), globex, globex, b_fixture),
        ('Acme''s admin without a context, on Acme''s rows,', pg_temp.uid('ada'), null, acme, a_fixture),
        ('a member of both in Acme''s context, on Globex''s rows,', pg_temp.uid('casey'), acme, globex, b_fixture),
        ('Acme''s viewer, on Acme''s rows,', pg_temp.uid('victor'), acme, acme, a_fixture)
      ) as v (who, usr, ctx, target, fixture)
    loop
      -- The viewer may read its own organization's rows; only its writes are probed. Nor is the
      -- tenant root context-bound for reading: it is how a member finds their organizations.
      if actor.usr is distinct from pg_temp.uid('victor') and (actor.ctx is not null or key <> 'id') then
        insert into matrix (relation, label, actor, context, statement, expected)
        values (rel.name, format('%s cannot select from %s', actor.who, rel.name), actor.usr, actor.ctx,
                format('select 1 from %s where %I = %L', rel.name, key, actor.target), 'denied');
      end if;
      -- Writes through a view nobody can write through (not auto-updatable, no INSTEAD triggers)
      -- fail before any privilege check, so only its reads are probed.
      continue when rel.relkind = 'v' and pg_relation_is_updatable(rel.oid, true) = 0;
      insert into matrix (relation, label, actor, context, statement, expected)
      values
        (rel.name, format('%s cannot insert into %s', actor.who, rel.name), actor.usr, actor.ctx,
         format('insert into %s (%s) select %s from jsonb_populate_record(null::%s, %L)',
                rel.name, insertable, insertable, rel.name, actor.fixture), 'denied'),
        (rel.name, format('%s cannot update %s', actor.who, rel.name), actor.usr, actor.ctx,
         format('update %s set %s = %s where %I = %L', rel.name, updatable, updatable, key, actor.target), 'denied'),
        (rel.name, format('%s cannot delete from %s', actor.who, rel.name), actor.usr, actor.ctx,
         format('delete from %s where %I = %L', rel.name, key, actor.target), 'denied');
    end loop;
  end loop;
end
$$;

update matrix set outcome = pg_temp.probe(actor, context, statement) where statement is not null;

select plan((select count(*)::int + 1 from matrix));

-- Counted independently of private.exposed_schemas(), so a generator that enumerates nothing fails.
select is(
  (select count(distinct relation)::int from matrix),
  (select count(*)::int from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f')
      and n.nspname in (select trim(s) from unnest(string_to_array(current_setting('pgrst.db_schemas'), ',')) s)),
  'the matrix covers every relation PostgREST exposes'
);
select is(outcome, expected, label) from matrix order by ord;

select * from finish();
rollback;
