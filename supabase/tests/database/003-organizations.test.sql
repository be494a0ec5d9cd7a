-- Organizations and memberships are visible to members only.
begin;
select plan(6);

create function pg_temp.act_as(p_user uuid) returns void language sql as $$
  select set_config('request.jwt.claims', json_build_object('sub', p_user, 'role', 'authenticated')::text, true);
  set local role authenticated;
$$;

select pg_temp.act_as('a0000000-0000-4000-8000-000000000001'); -- ada, admin of Acme
select results_eq($$ select slug from public.organizations order by slug $$, array['acme'], 'a member sees only their organization');
select is((select count(*)::int from public.organization_members where org_id = '0b000000-0000-4000-8000-00000000000b'), 0,
          'a member sees no members of another organization');
select throws_ok($$ insert into public.organizations (name, slug) values ('Evil', 'evil') $$, '42501', null,
                 'a member cannot create organizations directly');
select throws_ok($$ update public.organizations set name = 'Pwned' $$, '42501', null, 'a member cannot rename an organization without a context');
reset role;

select pg_temp.act_as('c0000000-0000-4000-8000-000000000001'); -- casey, in both
select results_eq($$ select slug from public.organizations order by slug $$, array['acme', 'globex'],
                  'a member of two organizations sees both');
reset role;

set local role anon;
select throws_ok($$ select * from public.organizations $$, '42501', null, 'anon cannot read organizations');
reset role;

select * from finish();
rollback;
