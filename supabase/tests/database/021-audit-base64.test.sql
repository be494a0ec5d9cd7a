-- The published checkpoint and signing keys are one line of base64 each (issue 25): encode()
-- breaks its output every 76 characters, and an Ed25519 signature is 88.
begin;
\ir _helpers.psql
select plan(3);

-- A retired key (one key is active at a time, and the stack may have one already).
insert into audit.signing_keys (key_id, public_key, secret_id, retired_at)
values ('test-key-base64', extensions.gen_random_bytes(32), gen_random_uuid(), now());
insert into audit.checkpoints (org_id, size, body, signature, key_id)
values (pg_temp.org('acme'), 999999, '{}', extensions.gen_random_bytes(64), 'test-key-base64');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select signature as sig, public_key as pub from public.latest_audit_checkpoint() \gset
select is(length(:'sig'), 88, 'the signature is its 88 characters of base64');
select is(strpos(:'sig', chr(10)), 0, 'on one line');
select is((select count(*)::int from public.audit_signing_keys() k where strpos(k.public_key, chr(10)) > 0), 0, 'and so is every key');
reset role;

select * from finish();
rollback;
