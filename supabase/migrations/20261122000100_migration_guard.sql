-- Migration guard (seed 000: "Migrations cannot disable row-level security on tenant-scoped tables
-- without a compensating policy").
--
-- A tenant table is a table in a schema PostgREST exposes that has an `org_id` column. After any
-- DDL that could weaken one (CREATE TABLE, ALTER TABLE, CREATE/ALTER/DROP POLICY), the table is
-- queued and re-checked when the transaction commits: it must have RLS enabled and forced, and at
-- least one policy for each of SELECT, INSERT, UPDATE and DELETE. Checking at commit lets one
-- migration create a table, enable RLS and add its policies, or replace a policy, while a migration
-- that leaves a tenant table open fails with a message naming the table.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.pending_tenant_table_checks (
  relid oid primary key,
  queued_at timestamptz not null default now()
);
comment on table private.pending_tenant_table_checks is
  'Tenant tables touched by DDL in the current transaction, checked by the migration guard at commit.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
create function private.exposed_schemas() returns text[]
language sql stable
set search_path = ''
as $$
  select array(
    select pg_catalog.btrim(s)
      from pg_catalog.unnest(pg_catalog.string_to_array(
             coalesce(nullif(pg_catalog.current_setting('pgrst.db_schemas', true), ''), 'public'), ',')) s
  )
$$;
comment on function private.exposed_schemas() is 'The schemas PostgREST exposes (pgrst.db_schemas, default public).';
revoke execute on function private.exposed_schemas() from public, anon, authenticated;

create function private.is_tenant_table(p_relid oid) returns boolean
language sql stable
set search_path = ''
as $$
  select exists (
    select 1
      from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      join pg_catalog.pg_attribute a on a.attrelid = c.oid
     where c.oid = p_relid
       and c.relkind in ('r', 'p')
       and n.nspname = any (private.exposed_schemas())
       and a.attname = 'org_id' and a.attnum > 0 and not a.attisdropped
  )
$$;
comment on function private.is_tenant_table(oid) is 'True for a table in an exposed schema with an org_id column.';
revoke execute on function private.is_tenant_table(oid) from public, anon, authenticated;

-- What is wrong with a tenant table's protection, or null when nothing is.
create function private.tenant_table_gap(p_relid oid) returns text
language plpgsql stable
set search_path = ''
as $$
declare
  rel pg_catalog.pg_class%rowtype;
  missing text[];
begin
  select * into rel from pg_catalog.pg_class where oid = p_relid;
  if not found or not private.is_tenant_table(p_relid) then
    return null;
  end if;
  if not rel.relrowsecurity then
    return 'row-level security is disabled';
  end if;
  if not rel.relforcerowsecurity then
    return 'row-level security is not forced';
  end if;
  select array_agg(cmd.name order by cmd.ord) into missing
    from (values (1, 'SELECT', 'r'), (2, 'INSERT', 'a'), (3, 'UPDATE', 'w'), (4, 'DELETE', 'd')) as cmd (ord, name, code)
   where not exists (
     select 1 from pg_catalog.pg_policy p where p.polrelid = p_relid and p.polcmd in (cmd.code, '*')
   );
  if missing is not null then
    return 'it has no policy for ' || pg_catalog.array_to_string(missing, ', ');
  end if;
  return null;
end
$$;
comment on function private.tenant_table_gap(oid) is
  'Why a tenant table is unprotected (RLS off or not forced, an operation without a policy), or null.';
revoke execute on function private.tenant_table_gap(oid) from public, anon, authenticated;

-- =============================================================================================
-- Triggers
-- =============================================================================================
create function private.check_pending_tenant_table() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  gap text := private.tenant_table_gap(new.relid);
begin
  delete from private.pending_tenant_table_checks where relid = new.relid;
  if gap is not null then
    raise exception 'migration guard: refusing to leave tenant table % unprotected: %', new.relid::regclass, gap
      using errcode = 'insufficient_privilege',
            hint = 'Tenant tables need RLS enabled and forced, and a policy for each of SELECT, INSERT, UPDATE and DELETE.';
  end if;
  return null;
end
$$;
revoke execute on function private.check_pending_tenant_table() from public, anon, authenticated;

create constraint trigger check_at_commit
  after insert on private.pending_tenant_table_checks
  deferrable initially deferred
  for each row execute function private.check_pending_tenant_table();
-- Fire even under session_replication_role = replica.
alter table private.pending_tenant_table_checks enable always trigger check_at_commit;

create function private.queue_tenant_table_check(p_relid oid) returns void
language sql
set search_path = ''
as $$
  insert into private.pending_tenant_table_checks (relid)
  select p_relid where p_relid is not null and private.is_tenant_table(p_relid)
  on conflict do nothing
$$;
revoke execute on function private.queue_tenant_table_check(oid) from public, anon, authenticated;

create function private.queue_tenant_table_checks() returns event_trigger
language plpgsql
set search_path = ''
as $$
declare
  cmd record;
  relid oid;
begin
  for cmd in select * from pg_catalog.pg_event_trigger_ddl_commands() loop
    relid := case
      when cmd.classid = 'pg_catalog.pg_class'::regclass then cmd.objid
      when cmd.classid = 'pg_catalog.pg_policy'::regclass then (select p.polrelid from pg_catalog.pg_policy p where p.oid = cmd.objid)
    end;
    perform private.queue_tenant_table_check(relid);
  end loop;
end
$$;
revoke execute on function private.queue_tenant_table_checks() from public, anon, authenticated;

-- A dropped policy no longer appears in the catalog; its table is found from the object's address.
create function private.queue_checks_for_dropped_policies() returns event_trigger
language plpgsql
set search_path = ''
as $$
declare
  obj record;
  relid oid;
begin
  for obj in select * from pg_catalog.pg_event_trigger_dropped_objects() where object_type = 'policy' loop
    relid := pg_catalog.to_regclass(pg_catalog.format('%I.%I', obj.address_names[1], obj.address_names[2]));
    perform private.queue_tenant_table_check(relid);
  end loop;
end
$$;
revoke execute on function private.queue_checks_for_dropped_policies() from public, anon, authenticated;

create event trigger migration_guard_ddl on ddl_command_end
  when tag in ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'ALTER TABLE', 'CREATE POLICY', 'ALTER POLICY')
  execute function private.queue_tenant_table_checks();

create event trigger migration_guard_drop on sql_drop
  when tag in ('DROP POLICY')
  execute function private.queue_checks_for_dropped_policies();

-- Fire even under session_replication_role = replica.
alter event trigger migration_guard_ddl enable always;
alter event trigger migration_guard_drop enable always;

-- =============================================================================================
-- RLS policies: the foundation's tenant table, made explicit for every operation
-- =============================================================================================
create policy "memberships are not added directly" on public.organization_members
  for insert to authenticated
  with check (false);
create policy "memberships are not changed directly" on public.organization_members
  for update to authenticated
  using (false);
create policy "memberships are not removed directly" on public.organization_members
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on private.pending_tenant_table_checks from public, anon, authenticated;
