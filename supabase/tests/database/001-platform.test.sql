-- The local platform layer matches Supabase: API roles and their attributes, auth.* helpers
-- reading request.jwt.claims, and Vault readable by service_role only.
begin;
select plan(20);

-- Roles
select ok(not rolcanlogin and not rolinherit, 'anon is nologin noinherit') from pg_roles where rolname = 'anon';
select ok(not rolcanlogin and not rolinherit, 'authenticated is nologin noinherit') from pg_roles where rolname = 'authenticated';
select ok(not rolcanlogin and rolbypassrls, 'service_role is nologin bypassrls') from pg_roles where rolname = 'service_role';
select ok(rolcanlogin and not rolinherit and not rolbypassrls, 'authenticator is login noinherit') from pg_roles where rolname = 'authenticator';
select ok(pg_has_role('authenticator', 'anon', 'member') and pg_has_role('authenticator', 'authenticated', 'member')
          and pg_has_role('authenticator', 'service_role', 'member'), 'authenticator is granted the API roles');

-- auth.* helpers
set local request.jwt.claims = '{"sub":"a0000000-0000-4000-8000-000000000001","role":"authenticated","email":"ada@acme.test"}';
select is(auth.uid(), 'a0000000-0000-4000-8000-000000000001'::uuid, 'auth.uid() reads sub from request.jwt.claims');
select is(auth.role(), 'authenticated', 'auth.role() reads role from request.jwt.claims');
select is(auth.jwt() ->> 'email', 'ada@acme.test', 'auth.jwt() returns the claims');
set local request.jwt.claims = '';
select is(auth.uid(), null, 'auth.uid() is null without claims');

-- Vault: a secret to look for
select lives_ok($$ select vault.create_secret('pgtap-secret', 'pgtap-secret-name') $$, 'the owner can create a secret');

set local role anon;
select throws_ok($$ select * from vault.secrets $$, '42501', null, 'anon cannot read vault.secrets');
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null, 'anon cannot read vault.decrypted_secrets');
reset role;

set local role authenticated;
select throws_ok($$ select * from vault.secrets $$, '42501', null, 'authenticated cannot read vault.secrets');
select throws_ok($$ select * from vault.decrypted_secrets $$, '42501', null, 'authenticated cannot read vault.decrypted_secrets');
select throws_ok($$ select vault.create_secret('x') $$, '42501', null, 'authenticated cannot create secrets');
reset role;

set local role service_role;
select is((select count(*)::int from vault.secrets where name = 'pgtap-secret-name'), 1, 'service_role can read vault.secrets');
select is((select decrypted_secret from vault.decrypted_secrets where name = 'pgtap-secret-name'), 'pgtap-secret',
          'service_role can read vault.decrypted_secrets');
select isnt((select secret from vault.secrets where name = 'pgtap-secret-name'), 'pgtap-secret', 'vault.secrets holds ciphertext');
select throws_ok($$ select vault._root_key() $$, '42501', null, 'service_role cannot read the root key');
reset role;

select is(has_table_privilege('authenticated', 'auth.users', 'select'), false, 'authenticated cannot read auth.users');

select * from finish();
rollback;
