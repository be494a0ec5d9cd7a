-- Invitations, verified-domain restrictions (seed 003) and the last tenant admin.
begin;
\ir _helpers.psql
select plan(23);

insert into auth.users (id, email, email_confirmed_at) values
  ('e0000000-0000-4000-8000-000000000001', 'newbie@acme.test', now()),
  ('e0000000-0000-4000-8000-000000000002', 'outsider@elsewhere.test', now()),
  ('e0000000-0000-4000-8000-000000000003', 'unconfirmed@acme.test', null);

create temporary table tokens (name text primary key, token text) on commit drop;
grant select, insert on tokens to authenticated;

-- Invitations
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
insert into tokens values ('newbie', public.create_invitation('Newbie@Acme.test', 'project_contributor'));
insert into tokens values ('outsider', public.create_invitation('outsider@elsewhere.test', 'project_viewer'));
insert into tokens values ('unconfirmed', public.create_invitation('unconfirmed@acme.test', 'project_viewer'));
reset role;

select ok((select token ~ '^[0-9a-f]{64}$' from tokens where name = 'newbie'), 'an invitation returns a 256-bit token once');
select is((select count(*)::int from public.invitations i join tokens t on i.token_hash = extensions.digest(t.token, 'sha256')), 3,
          'only the SHA-256 of each token is stored');
select is((select count(*)::int from public.invitations i, tokens t where position(t.token in i::text) > 0), 0,
          'no invitation row contains a token');

select pg_temp.act_as(pg_temp.uid('mallory'));
select throws_ok($$ select public.accept_invitation((select token from tokens where name = 'newbie')) $$, 'PGRST',
                 '{"code" : "invitation_not_found", "message" : "No invitation with that token is addressed to you."}', 'an invitation addressed to someone else cannot be accepted');
reset role;

select pg_temp.act_as('e0000000-0000-4000-8000-000000000003');
select throws_ok($$ select public.accept_invitation((select token from tokens where name = 'unconfirmed')) $$, '42501', null,
                 'an unconfirmed email address cannot accept an invitation');
reset role;

select pg_temp.act_as('e0000000-0000-4000-8000-000000000001');
select is(public.accept_invitation((select token from tokens where name = 'newbie')), pg_temp.org('acme'),
          'the invitee accepts with the token and joins the organization');
select throws_ok($$ select public.accept_invitation((select token from tokens where name = 'newbie')) $$, 'PGRST', null,
                 'an accepted invitation cannot be used again');
select throws_ok($$ select public.accept_invitation('not-a-token') $$, 'PGRST', null, 'an unknown token is refused');
reset role;
select is((select role::text from public.organization_members where user_id = 'e0000000-0000-4000-8000-000000000001'),
          'project_contributor', 'the new member has the invited role');

-- Re-inviting replaces the pending invitation, and its token stops working.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
insert into tokens values ('outsider-again', public.create_invitation('outsider@elsewhere.test', 'project_viewer'));
reset role;
select pg_temp.act_as('e0000000-0000-4000-8000-000000000002');
select throws_ok($$ select public.accept_invitation((select token from tokens where name = 'outsider')) $$, 'PGRST', null,
                 're-inviting an address revokes its earlier token');
reset role;

update public.invitations set expires_at = now() - interval '1 second' where email = 'outsider@elsewhere.test';
select pg_temp.act_as('e0000000-0000-4000-8000-000000000002');
select throws_like($$ select public.accept_invitation((select token from tokens where name = 'outsider-again')) $$,
                   'invitation expired at %', 'an expired invitation is refused');
reset role;
update public.invitations set expires_at = now() + interval '1 day' where email = 'outsider@elsewhere.test';

-- Verified domains
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select throws_like($$ update public.organizations set restrict_to_verified_domains = true $$,
                   'verify a domain before restricting%', 'an organization cannot restrict itself before verifying a domain');
reset role;

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
update public.organizations set restrict_to_verified_domains = true where id = pg_temp.org('acme');
select throws_like($$ select public.create_invitation('someone@elsewhere.test', 'project_viewer') $$,
                   '%only admits verified email domains; elsewhere.test is not one',
                   'a restricted organization refuses invitations to other domains');
select lives_ok($$ select public.create_invitation('colleague@acme.test', 'project_viewer') $$,
                'a restricted organization still invites its verified domain');
reset role;

select pg_temp.act_as('e0000000-0000-4000-8000-000000000002');
select throws_like($$ select public.accept_invitation((select token from tokens where name = 'outsider-again')) $$,
                   '%only admits verified email domains%',
                   'an invitation sent before the restriction cannot be used to join from another domain');
reset role;

select throws_like($$ insert into public.organization_members (org_id, user_id, role)
                      values (pg_temp.org('acme'), pg_temp.uid('mallory'), 'project_viewer') $$,
                   '%only admits verified email domains%',
                   'the database refuses a join from another domain even for the service role');

update public.organization_domains set verified_at = now() where domain = 'globex.test';
insert into public.organization_domains (org_id, domain) values (pg_temp.org('globex'), 'acme.test');
select throws_ok($$ update public.organization_domains set verified_at = now()
                     where org_id = pg_temp.org('globex') and domain = 'acme.test' $$, '23505', null,
                 'a domain verified by one organization cannot be verified by another');

-- An organization always keeps a tenant admin.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like($$ update public.organization_members set role = 'project_viewer' where user_id = auth.uid() $$,
                   '%must keep at least one tenant_admin', 'the last tenant admin cannot demote themselves');
select throws_like($$ select public.leave_organization() $$,
                   '%must keep at least one tenant_admin', 'the last tenant admin cannot leave');
reset role;

-- The member directory: emails and roles of the organization in context, to its members only.
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select ok((select count(*) > 0 and bool_and(email like '%@%') from public.organization_directory()),
          'a member reads the directory of their organization, with emails');
select is((select count(*)::int from public.organization_directory() where is_you), 1, 'the directory marks the caller');
select is((select count(*)::int from public.organization_directory() where email like '%@globex.test'), 0,
          'the directory lists no one from another organization');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'));
select is((select count(*)::int from public.organization_directory()), 0, 'without an organization in context it lists no one');
reset role;

select * from finish();
rollback;
