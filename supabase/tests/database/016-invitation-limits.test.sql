-- Invitations are rate-limited per organization and per inviter (…_invitation_rate_limits.sql):
-- every invitation mails someone. Bursts of 50 an organization and 25 an inviter; past them,
-- 429 invitations_rate_limited with Retry-After, and the refusal writes nothing.
begin;
\ir _helpers.psql
select plan(11);

-- From a clean slate: the suites before this one (vitest, on the same database) invite too.
delete from private.invitation_rates;

-- Two more tenant admins of Acme, and an organization of Ada's own.
insert into auth.users (id, email, email_confirmed_at) values
  ('e1000000-0000-4000-8000-000000000001', 'second-admin@acme.test', now()),
  ('e1000000-0000-4000-8000-000000000002', 'third-admin@acme.test', now());
insert into public.organization_members (org_id, user_id, role) values
  (pg_temp.org('acme'), 'e1000000-0000-4000-8000-000000000001', 'tenant_admin'),
  (pg_temp.org('acme'), 'e1000000-0000-4000-8000-000000000002', 'tenant_admin');
insert into public.organizations (id, name, slug) values ('e1000000-0000-4000-8000-0000000000aa', 'Ada''s side project', 'ada-side');
insert into public.organization_members (org_id, user_id, role) values ('e1000000-0000-4000-8000-0000000000aa', pg_temp.uid('ada'), 'tenant_admin');

create function pg_temp.invite_many(p_n integer, p_prefix text) returns integer language plpgsql as $$
begin
  for i in 1 .. p_n loop
    perform public.create_invitation(p_prefix || i || '@acme.test', 'project_viewer');
  end loop;
  return p_n;
end
$$;

-- An inviter's burst: 25, then refused.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is(pg_temp.invite_many(25, 'ada-'), 25, 'a tenant admin invites 25 people at once');
select throws_ok($$ select public.create_invitation('ada-26@acme.test', 'project_viewer') $$, 'PGRST', null,
                 'the 26th invitation in a burst is refused');
reset role;

-- What the refusal says: its code, 429 and Retry-After (the detail PostgREST and the functions answer with).
create temporary table refusal (message text, detail text) on commit drop;
grant insert on refusal to authenticated;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
do $$
begin
  perform public.create_invitation('ada-26@acme.test', 'project_viewer');
exception when sqlstate 'PGRST' then
  declare m text; d text;
  begin
    get stacked diagnostics m = message_text, d = pg_exception_detail;
    insert into refusal values (m, d);
  end;
end
$$;
reset role;
select is((select message::jsonb ->> 'code' from refusal), 'invitations_rate_limited', 'the refusal''s code is invitations_rate_limited');
select ok((select (detail::jsonb ->> 'status')::int = 429 and (detail::jsonb -> 'headers' ->> 'Retry-After')::int between 1 and 3456
             from refusal), 'it is a 429 with a Retry-After of at most one invitation''s interval');
select is((select count(*)::int from public.invitations where email like 'ada-%'), 25, 'the refused invitation wrote nothing');

-- The inviter's limit holds across organizations: Ada's own organization is fresh, Ada is not.
select pg_temp.act_as(pg_temp.uid('ada'), 'e1000000-0000-4000-8000-0000000000aa');
select throws_ok($$ select public.create_invitation('someone@acme.test', 'project_viewer') $$, 'PGRST', null,
                 'an inviter past their limit is refused in another organization too');
reset role;

-- The organization's burst: 50 in all, whoever invites.
select pg_temp.act_as('e1000000-0000-4000-8000-000000000001', pg_temp.org('acme'));
select is(pg_temp.invite_many(25, 'second-'), 25, 'a second tenant admin invites 25 more');
reset role;
select pg_temp.act_as('e1000000-0000-4000-8000-000000000002', pg_temp.org('acme'));
select throws_ok($$ select public.create_invitation('third-1@acme.test', 'project_viewer') $$, 'PGRST', null,
                 'the organization''s 51st invitation in a burst is refused, though this admin has invited no one');
reset role;

-- Globex has its own limit.
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select lives_ok($$ select public.create_invitation('new@globex.test', 'project_viewer') $$, 'another organization still invites');
reset role;

-- The limits refill with time: a day's worth of interval later, they admit again.
update private.invitation_rates set tat = tat - interval '1 day';
select pg_temp.act_as('e1000000-0000-4000-8000-000000000002', pg_temp.org('acme'));
select lives_ok($$ select public.create_invitation('third-1@acme.test', 'project_viewer') $$, 'after the interval, the organization invites again');
reset role;

-- No API role reads or writes the limits' state.
select is((select count(*)::int from information_schema.role_table_grants
            where table_schema = 'private' and table_name = 'invitation_rates' and grantee in ('anon', 'authenticated', 'service_role')), 0,
          'no API role has a grant on the limits'' state');

select * from finish();
rollback;
