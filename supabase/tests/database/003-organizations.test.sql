-- Organizations and memberships are visible to members only (the organization picker needs no context).
begin;
\ir _helpers.psql
select plan(6);

select pg_temp.act_as(pg_temp.uid('ada'));
select results_eq($$ select slug from public.organizations order by slug $$, array['acme'], 'a member sees only their organization');
select is((select count(*)::int from public.organization_members where org_id = pg_temp.org('globex')), 0,
          'a member sees no members of another organization');
select throws_ok($$ insert into public.organizations (name, slug) values ('Evil', 'evil') $$, '42501', null,
                 'a member cannot create organizations directly');
select throws_ok($$ update public.organizations set name = 'Pwned' $$, '42501', null, 'a member cannot rename an organization without a context');
reset role;

select pg_temp.act_as(pg_temp.uid('casey'));
select results_eq($$ select slug from public.organizations order by slug $$, array['acme', 'globex'],
                  'a member of two organizations sees both');
reset role;

set local role anon;
select throws_ok($$ select * from public.organizations $$, '42501', null, 'anon cannot read organizations');
reset role;

select * from finish();
rollback;
