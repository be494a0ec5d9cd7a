-- Personal access tokens, the database's half (20261206002300_personal_access_tokens.sql): the
-- format and its CRC-32, scopes a role allows, expiry bounds, revocation by the owner or a tenant
-- admin, and revocation in the same transaction as a member's removal or demotion. The isolation
-- matrix (900) probes the table across organizations.
begin;
\ir _helpers.psql
select plan(25);
create temporary table made (v jsonb) on commit drop;
grant all on made to authenticated;

-- The checksum is zlib's CRC-32 (the check value of the standard), in base 62.
select is(private.crc32('123456789'), x'cbf43926'::bigint, 'CRC-32 gives the standard check value');
select is(private.crc32(''), 0::bigint, 'and 0 for nothing');
select is(private.base62(61, 2), '0z', 'base 62 with 0-9A-Za-z, padded');
select is(private.base62(private.crc32('123456789'), 6), '3jZRME', 'as functions/_shared/pat/token.ts writes it (tests/unit/pat_token.test.ts)');
select matches(private.new_personal_access_token(), '^gtp_[0-9A-Za-z]{36}$', 'a token is gtp_ and 36 base62 characters');
select is((select private.base62(private.crc32(substr(t, 5, 30)), 6) = substr(t, 35, 6) from (select private.new_personal_access_token() t) x),
          true, 'whose last 6 are the CRC-32 of the 30 before them');

-- Casey, a contributor of Acme, makes one.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
insert into made select public.create_personal_access_token('Deploys', '{runs:write,runs:read}', 30);
select matches((select v ->> 'token' from made), '^gtp_[0-9A-Za-z]{36}$', 'the token is in the answer, once');
select is((select v ? 'token_sha256' from made), false, 'and never its hash');
select throws_ok($$ select token_sha256 from public.personal_access_tokens $$, '42501', null, 'nor can its owner read the hash');
reset role;
select is((select token_sha256 = private.sha256_hex((select v ->> 'token' from made)) from public.personal_access_tokens
            where id = (select (v ->> 'id')::uuid from made)), true, 'only its SHA-256 is stored');
select is((select expires_at::date - created_at::date from public.personal_access_tokens where id = (select (v ->> 'id')::uuid from made)),
          30, 'it expires when asked');
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like($$ select public.create_personal_access_token('All', '{*}') $$, '%invalid_scopes%', 'there is no scope for everything');
select throws_like($$ select public.create_personal_access_token('Twice', '{runs:read,runs:read}') $$, '%invalid_scopes%', 'a scope is named once');
select throws_like($$ select public.create_personal_access_token('Forever', '{runs:read}', 367) $$, '%invalid_expiry%', 'at most 366 days');
select throws_like($$ select public.create_personal_access_token('', '{runs:read}') $$, '%invalid_name%', 'a token has a name');
reset role;

-- A viewer may only have reading scopes.
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_like($$ select public.create_personal_access_token('Runs', '{runs:write}') $$, '%scope_not_allowed%',
                   'a viewer cannot have a token that starts runs');
select is((select jsonb_array_length(to_jsonb(v -> 'scopes')) from (select public.create_personal_access_token('Reads', '{runs:read,audit:read}') v) x),
          2, 'but may have one that reads');
select is((select count(*)::int from public.personal_access_tokens), 1, 'and sees their own tokens only');
reset role;

-- Nobody writes the table directly; another organization sees none of it.
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), $$update public.personal_access_tokens set scopes = '{tools:call}'$$), 'denied',
          'nobody widens a token''s scopes');
select is(pg_temp.probe(pg_temp.uid('grace'), pg_temp.org('globex'),
            format($$select 1 from public.personal_access_tokens where id = %L$$, (select v ->> 'id' from made))), 'denied',
          'another organization''s admin does not see it');

-- Revoking: the owner, or a tenant admin of the organization; nobody else.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'),
            format($$select public.revoke_personal_access_token(%L)$$, (select v ->> 'id' from made))), 'denied',
          'another member cannot revoke it');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select public.revoke_personal_access_token((select (v ->> 'id')::uuid from made)) ->> 'revoked_reason'), 'revoked',
          'a tenant admin can');
reset role;
select is((select count(*)::int from audit.records where action = 'personal_access_token.update'
            and payload::jsonb -> 'new' ->> 'revoked_reason' = 'revoked' and target_id = (select v ->> 'id' from made)), 1,
          'and revoking is an audit entry (without the hash)');

-- Demoted below a scope's role, or removed: the tokens go in the same transaction.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
delete from made;
insert into made select public.create_personal_access_token('Reader', '{runs:read}');
insert into made select public.create_personal_access_token('Runner', '{runs:write}');
reset role;
update public.organization_members set role = 'project_viewer' where org_id = pg_temp.org('acme') and user_id = pg_temp.uid('casey');
select is((select array_agg(name || ':' || coalesce(revoked_reason, 'live') order by name) from public.personal_access_tokens
            where id in (select (v ->> 'id')::uuid from made)), array['Reader:live', 'Runner:role_lowered'],
          'a demotion revokes the tokens whose scopes the new role no longer allows, and only those');
delete from public.organization_members where org_id = pg_temp.org('acme') and user_id = pg_temp.uid('casey');
select is((select count(*)::int from public.personal_access_tokens where id in (select (v ->> 'id')::uuid from made) and revoked_at is null), 0,
          'a removal revokes the rest, and keeps them as history');

select * from finish();
rollback;
