-- What an invitation is, for the person it is addressed to (issue 25): the organization, the role
-- and who invited, by the token; one refusal for every other token or person.
begin;
\ir _helpers.psql
select plan(5);

insert into auth.users (id, email, email_confirmed_at) values ('e1000000-0000-4000-8000-0000000000e1', 'preview@example.test', now());
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select public.create_invitation('preview@example.test', 'project_contributor') as token \gset
reset role;

select pg_temp.act_as('e1000000-0000-4000-8000-0000000000e1');
select public.invitation_preview(:'token') as preview \gset
reset role;
select is(:'preview'::jsonb ->> 'organization', 'Acme Robotics', 'the invitee sees the organization');
select is(:'preview'::jsonb ->> 'role', 'project_contributor', 'the role');
select is(:'preview'::jsonb ->> 'invited_by', 'ada@acme.test', 'and who invited them');

select pg_temp.act_as(pg_temp.uid('casey'));
select throws_like(format('select public.invitation_preview(%L)', :'token'), '%invitation_not_found%', 'someone else gets nothing');
select throws_like($$ select public.invitation_preview(repeat('0', 64)) $$, '%invitation_not_found%', 'nor does an unknown token');
reset role;

select * from finish();
rollback;
