-- The migration guard refuses DDL that leaves a tenant table (exposed schema, org_id column)
-- without forced RLS and a policy for each operation. Its check runs at commit; each case here
-- forces it with SET CONSTRAINTS ... IMMEDIATE, inside throws_ok's savepoint.
begin;
select plan(12);

select throws_like(
  $$ set constraints all deferred;
     create table public.guard_t1 (id int primary key, org_id uuid not null);
     set constraints all immediate $$,
  '%tenant table public.guard_t1 unprotected: row-level security is disabled%',
  'creating a tenant table without RLS is refused, naming the table'
);

select throws_like(
  $$ set constraints all deferred;
     create table public.guard_t2 (id int primary key, org_id uuid not null);
     alter table public.guard_t2 enable row level security;
     set constraints all immediate $$,
  '%guard_t2 unprotected: row-level security is not forced%',
  'creating a tenant table with RLS enabled but not forced is refused'
);

select throws_like(
  $$ set constraints all deferred;
     create table public.guard_t3 (id int primary key, org_id uuid not null);
     alter table public.guard_t3 enable row level security;
     alter table public.guard_t3 force row level security;
     create policy "r" on public.guard_t3 for select to authenticated using (true);
     create policy "w" on public.guard_t3 for update to authenticated using (true);
     set constraints all immediate $$,
  '%guard_t3 unprotected: it has no policy for INSERT, DELETE%',
  'creating a tenant table without a policy for every operation is refused, naming the missing ones'
);

select throws_like(
  $$ set constraints all deferred;
     create table public.guard_t4 (id int primary key, org_id uuid not null);
     alter table public.guard_t4 enable row level security;
     alter table public.guard_t4 force row level security;
     create policy "r" on public.guard_t4 for select to authenticated using (true);
     create policy "i" on public.guard_t4 for insert to authenticated with check (true);
     create policy "u" on public.guard_t4 for update to authenticated using (true);
     create policy "d" on public.guard_t4 for delete to authenticated using (true);
     set constraints all immediate $$,
  '%guard_t4 unprotected: personal access tokens are not held to their scopes for SELECT, INSERT, UPDATE, DELETE%',
  'creating a tenant table without the personal access token rules is refused'
);

select lives_ok(
  $$ set constraints all deferred;
     create table public.guard_ok (id int primary key, org_id uuid not null);
     alter table public.guard_ok enable row level security;
     alter table public.guard_ok force row level security;
     create policy "r" on public.guard_ok for select to authenticated using (true);
     create policy "i" on public.guard_ok for insert to authenticated with check (true);
     create policy "u" on public.guard_ok for update to authenticated using (true);
     create policy "d" on public.guard_ok for delete to authenticated using (true);
     select private.guard_from_tokens('public.guard_ok');
     set constraints all immediate $$,
  'a tenant table with forced RLS, a policy per operation and the token rules is accepted'
);

select throws_like(
  $$ set constraints all deferred;
     alter table public.organization_members disable row level security;
     set constraints all immediate $$,
  '%organization_members unprotected: row-level security is disabled%',
  'disabling RLS on a tenant table is refused'
);

select throws_like(
  $$ set constraints all deferred;
     alter table public.organization_members no force row level security;
     set constraints all immediate $$,
  '%organization_members unprotected: row-level security is not forced%',
  'un-forcing RLS on a tenant table is refused'
);

select throws_like(
  $$ set constraints all deferred;
     drop policy "project admins delete agents" on public.agents;
     set constraints all immediate $$,
  '%agents unprotected: it has no policy for DELETE%',
  'dropping the last policy of an operation is refused'
);

select lives_ok(
  $$ set constraints all deferred;
     drop policy "project admins delete agents" on public.agents;
     create policy "project admins delete agents" on public.agents
       for delete to authenticated using (false);
     set constraints all immediate $$,
  'replacing a policy within one migration is accepted'
);

select throws_like(
  $$ set constraints all deferred;
     alter table public.organizations add column org_id uuid;
     alter table public.organization_members disable row level security;
     set constraints all immediate $$,
  '%unprotected%',
  'adding org_id to a table makes it a tenant table that must be protected'
);

select lives_ok(
  $$ set constraints all deferred;
     create table private.guard_internal (id int primary key, org_id uuid not null);
     set constraints all immediate $$,
  'tables outside the exposed schemas are not tenant tables for the guard'
);

select throws_like(
  $$ set constraints all deferred;
     set local session_replication_role = replica;
     alter table public.organization_members disable row level security;
     set constraints all immediate $$,
  '%organization_members unprotected%',
  'the guard also fires under session_replication_role = replica'
);

select * from finish();
rollback;
