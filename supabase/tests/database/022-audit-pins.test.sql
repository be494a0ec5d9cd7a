-- Audit pins per person (20261206002000_audit_pins.sql): each member pins, for themselves only,
-- the key (and checkpoint) they verify exports against; it is kept across reloads, read by nobody
-- else, written only through pin_audit_key / unpin_audit_key, audited, and behind step-up for a
-- person with a second factor. The isolation matrix (900) probes the table across organizations.
begin;
\ir _helpers.psql
select plan(14);

\set key '''AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA='''
\set other '''ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ='''

-- Ada starts with no pin (the e2e suites, which run first on the same stack, may have pinned one).
delete from public.audit_pins where user_id = pg_temp.uid('ada');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select is((select count(*)::int from public.audit_pins), 0, 'a member sees no pin but their own (Victor''s is seeded)');
select is((select user_id from public.pin_audit_key('k1', :key)), pg_temp.uid('ada'), 'a member pins for themselves');
select is((select key_id from public.pin_audit_key('k2', :other, '{"tree_size": 3}')), 'k2', 'pinning again replaces the pin');
select is((select count(*)::int from public.audit_pins), 1, 'one pin a person');
select is((select checkpoint ->> 'tree_size' from public.audit_pins), '3', 'with the checkpoint it was pinned with');
select throws_like($$ select public.pin_audit_key('k3', 'not base64') $$, '%invalid_pin%', 'a key that is not 32 bytes of base64 is refused');
select throws_like(format($$ select public.pin_audit_key('k3', %L, '[1]') $$, :key), '%invalid_pin%', 'so is a checkpoint that is not an object');
reset role;

select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            format($$update public.audit_pins set key_id = 'mine' where user_id = %L$$, pg_temp.uid('ada'))), 'denied',
          'nobody writes the table directly, their own row included');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            format($$select 1 from public.audit_pins where user_id = %L$$, pg_temp.uid('victor'))), 'denied',
          'an admin does not read another member''s pin');
select is(pg_temp.probe(pg_temp.uid('grace'), pg_temp.org('globex'), $$select 1 from public.audit_pins where key_id = 'k2'$$), 'denied',
          'nor another organization''s admin');
select is((select count(*)::int from audit.records where action = 'audit_pin.update' and payload::jsonb -> 'new' ->> 'key_id' = 'k2'), 1,
          'changing a pin is an audit entry');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select public.unpin_audit_key();
select is((select count(*)::int from public.audit_pins), 0, 'unpinning removes the caller''s pin');
reset role;
select is((select count(*)::int from public.audit_pins where user_id = pg_temp.uid('victor')), 1, 'and only theirs');

-- A person with a verified factor changes their pin at aal2 only: an aal1 session that could swap
-- it could make a forged export verify for them.
insert into auth.mfa_factors (user_id, friendly_name, factor_type, status)
values (pg_temp.uid('ada'), 'phone', 'totp', 'verified');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like(format($$ select public.pin_audit_key('k4', %L) $$, :key), '%step_up_required%',
                   'an aal1 session of a person with a factor can''t change their pin');
reset role;

select * from finish();
rollback;
