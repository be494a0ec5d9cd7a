-- The audit chain (seed 000): what gets recorded, sealing, append-only for every role, and in-place
-- verification that finds each kind of tampering. Tampering is simulated the only way it can
-- happen: as a superuser who first disables the append-only triggers.
begin;
\ir _helpers.psql
select plan(48);

-- Seals what is pending, then verifies, as verify_audit_chain does.
create function pg_temp.verdict(p_org uuid) returns text language sql as $$
  select audit.seal(p_org);
  select case when v.ok then 'ok' else format('entry %s: %s', v.first_bad_seq, v.reason) end
    from audit.verify_chain(p_org) v;
$$;

-- A scratch organization with a chain of 6 entries.
insert into public.organizations (id, name, slug) values ('0c000000-0000-4000-8000-00000000000c', 'Chain Co', 'chain-co');
select results_eq($$ select seq, head_hash = decode(repeat('00', 32), 'hex') from audit.heads where org_id = '0c000000-0000-4000-8000-00000000000c' $$,
                  $$ values (0::bigint, true) $$, 'a new organization starts with an empty chain head');
do $$ begin
  perform audit.append('0c000000-0000-4000-8000-00000000000c', 'test.event', 'test', n::text,
                       jsonb_build_object('n', n, 'note', 'entry ' || n))
     from generate_series(1, 6) n;
  perform audit.seal('0c000000-0000-4000-8000-00000000000c');
end $$;

-- What gets recorded
select is(pg_temp.verdict(pg_temp.org('acme')), 'ok', 'the seeded chain of Acme verifies');
select is(pg_temp.verdict('0c000000-0000-4000-8000-00000000000c'), 'ok', 'a fresh chain verifies');
select results_eq($$ select seq from audit.entries where org_id = '0c000000-0000-4000-8000-00000000000c' order by seq $$,
                  array[1, 2, 3, 4, 5, 6]::bigint[], 'sequence numbers are gapless from 1');

select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
do $$ begin
  perform public.create_invitation('audited@acme.test', 'project_viewer');
  perform public.publish_agent_version('3a000000-0000-4000-8000-00000000002a');
end $$;
update public.organization_members set role = 'project_contributor' where user_id = pg_temp.uid('victor');
reset role;
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select results_eq(
  $$ select action, actor from audit.entries where org_id = pg_temp.org('acme') order by seq desc limit 3 $$,
  $$ values ('membership.update', pg_temp.uid('ada')::uuid),
            ('agent_version.update', pg_temp.uid('ada')::uuid),
            ('invitation.insert', pg_temp.uid('ada')::uuid) $$,
  'invitations, publishing and role changes are recorded with their actor');
select ok((select p.payload::jsonb -> 'new' ? 'email' and not (p.payload::jsonb -> 'new' ? 'token_hash')
             from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.action = 'invitation.insert' order by e.seq desc limit 1),
          'an invitation''s payload leaves out its token hash');
select ok((select canonical ~ '"at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"' from audit.entries
            where org_id = pg_temp.org('acme') order by seq desc limit 1),
          'timestamps are hashed as UTC with microseconds, in one fixed format');
set local timezone = 'America/New_York';
set local datestyle = 'SQL, DMY';
do $$ begin perform audit.append('0c000000-0000-4000-8000-00000000000c', 'test.event', null, null, '{"x": 1.50}'); end $$;
select is(pg_temp.verdict('0c000000-0000-4000-8000-00000000000c'), 'ok',
          'the chain verifies whatever the session''s TimeZone and DateStyle');
reset timezone;
reset datestyle;

-- Recording: the service role inserts what an action is; the database fills in who and when.
set local role service_role;
select lives_ok($$ insert into audit.records (org_id, action, target_type, target_id, payload)
                   values (pg_temp.org('acme'), 'test.recorded', 'test', 'r', '{"by": "service"}') $$,
                'the service role records an action with an insert');
select throws_ok($$ insert into audit.records (org_id, action, actor) values (pg_temp.org('acme'), 'test.forged', gen_random_uuid()) $$,
                 '42501', null, 'the service role cannot choose an action''s actor');
select throws_ok($$ insert into audit.records (org_id, action, occurred_at) values (pg_temp.org('acme'), 'test.forged', now() - interval '1 year') $$,
                 '42501', null, 'the service role cannot choose an action''s time');
select throws_ok($$ insert into audit.records (org_id, action, payload) values (pg_temp.org('acme'), 'test.forged', null) $$,
                 '23514', null, 'an action is not recorded as purged');
reset role;

-- Sealing: an action waits, and members read it through audit_log, until audit.seal chains it.
select audit.append(pg_temp.org('acme'), 'test.pending', 'test', 'p', '{"k": "v"}') as record_id \gset
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select results_eq($$ select seq, sealed, payload::jsonb from public.audit_log where action = 'test.pending' $$,
                  $$ values (null::bigint, false, '{"k": "v"}'::jsonb) $$,
                  'a member reads an action that waits to be sealed, without a number');
select throws_ok($$ insert into audit.records (org_id, action) values (pg_temp.org('acme'), 'forged.event') $$,
                 '42501', null, 'a member cannot record an action directly');
reset role;
select pg_temp.act_as(pg_temp.uid('grace'), pg_temp.org('globex'));
select is((select count(*)::int from public.audit_log where action = 'test.pending'), 0,
          'nobody else reads an organization''s pending actions');
reset role;
select throws_ok(format('update audit.records set action = %L where id = %s', 'x.y', :record_id), '42501', null,
                 'the owner cannot change a recorded action');
select throws_ok(format('update audit.records set payload = null, purged_at = now() where id = %s', :record_id), '42501', null,
                 'the owner cannot empty an action''s payload before it is sealed');
select throws_ok(format('delete from audit.records where id = %s', :record_id), '42501', null,
                 'the owner cannot delete a recorded action');
select throws_ok($$ truncate audit.records $$, '42501', null, 'the owner cannot truncate recorded actions');
set local session_replication_role = replica;
select throws_ok(format('delete from audit.records where id = %s', :record_id), '42501', null,
                 'replica mode does not open recorded actions');
set local session_replication_role = origin;
select cmp_ok(audit.seal(pg_temp.org('acme')), '>=', 1, 'audit.seal chains what is recorded');
select results_eq(format($$ select e.seq = h.seq, e.action, (select count(*)::int from audit.pending x where x.id = %s)
                              from audit.entries e join audit.heads h using (org_id) where e.record_id = %s $$, :record_id, :record_id),
                  $$ values (true, 'test.pending', 0) $$,
                  'a sealed action is the chain''s new head and no longer pending');
select is(audit.seal(pg_temp.org('acme')), 0, 'sealing again finds nothing: each action is sealed once');

-- Append-only for every role
select throws_ok($$ update audit.entries set action = 'x.y' where seq = 1 $$, '42501', null, 'the owner cannot update an entry');
select throws_ok($$ delete from audit.entries where seq = 1 $$, '42501', null, 'the owner cannot delete an entry');
select throws_ok($$ truncate audit.entries cascade $$, '42501', null, 'the owner cannot truncate the chain');
select throws_ok($$ update audit.records set payload = '{}' $$, '42501', null, 'the owner cannot rewrite a payload');
set local session_replication_role = replica;
select throws_ok($$ delete from audit.entries where seq = 1 $$, '42501', null, 'replica mode does not open the chain');
set local session_replication_role = origin;
set local role service_role;
select throws_ok($$ delete from audit.entries $$, '42501', null, 'the service role cannot delete entries');
select throws_ok($$ insert into audit.entries (org_id, seq, prev_hash, entry_hash, canonical, action, occurred_at, record_xid, record_id)
                    values ('0c000000-0000-4000-8000-00000000000c', 99, '\x00', '\x00', '{}', 'x.y', now(), '0', -1) $$,
                 '42501', null, 'the service role cannot write entries: only sealing does');
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_ok($$ select audit.append(pg_temp.org('acme'), 'forged.event', null, null) $$,
                 '42501', null, 'a member cannot append to the chain directly');
select is((select ok from public.verify_audit_chain()), true, 'a tenant admin verifies their chain in place');
reset role;
select pg_temp.act_as(pg_temp.uid('victor'), pg_temp.org('acme'));
select throws_ok($$ select * from public.verify_audit_chain() $$, '42501', null, 'a viewer cannot run the verification RPC');
select throws_ok($$ select public.purge_audit_payload(2, 'erasure request') $$, '42501', null, 'a viewer cannot purge a payload');
reset role;

-- Purging a payload keeps the chain verifiable, and is itself recorded.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select public.purge_audit_payload(2, 'erasure request') as purge_record \gset
reset role;
select is((select p.payload::text from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
            where e.org_id = pg_temp.org('acme') and e.seq = 2), null,
          'a tenant admin purges one entry''s payload');
do $$ begin perform audit.seal(pg_temp.org('acme')); end $$;
select is((select action || ' ' || target_id from audit.entries where record_id = :purge_record),
          'audit.payload_purged 2', 'the purge is recorded in the chain');
select throws_ok($$ select public.purge_audit_payload(2, 'again') $$, 'PGRST', null, 'a purged payload cannot be purged again');

select is(pg_temp.verdict(pg_temp.org('acme')), 'ok', 'the chain still verifies after a purge');

-- A stored checkpoint at the chain's current size (7). The database can't check Ed25519, so a
-- placeholder key (retired, so it never signs for real) and signature stand in for the ones
-- audit-checkpoint makes.
insert into audit.signing_keys (key_id, public_key, secret_id, retired_at)
values ('pgtap', extensions.digest('pgtap key', 'sha256'), gen_random_uuid(), now());
select (audit.store_checkpoint(audit.checkpoint_body('0c000000-0000-4000-8000-00000000000c', 'pgtap'), extensions.gen_random_bytes(64))).size is not null
  as stored \gset
select ok(:'stored', 'a checkpoint whose body states the chain is stored');
select throws_like($$ select audit.store_checkpoint(
                        regexp_replace(audit.checkpoint_body('0c000000-0000-4000-8000-00000000000c', 'pgtap'),
                                       '"root":"[0-9a-f]{64}"', '"root":"' || repeat('0', 64) || '"'),
                        extensions.gen_random_bytes(64)) $$,
                   'checkpoint body does not state%', 'a checkpoint body that misstates the chain is refused');

-- Tampering, each case undone before the next. Verdicts are kept in psql variables, because
-- rolling back to the savepoint would also roll back pgTAP's record of an assertion.
alter table audit.entries disable trigger user;
alter table audit.records disable trigger user;
set local session_replication_role = replica;  -- and foreign-key checks, as an attacker would
savepoint tamper;
update audit.records p set payload = '{"n": 3, "note": "nothing happened"}'
  from audit.entries e where e.org_id = '0c000000-0000-4000-8000-00000000000c' and e.seq = 3 and p.id = e.record_id;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as edited_payload \gset
rollback to savepoint tamper;

update audit.entries set entry_hash = extensions.digest('forged', 'sha256')
 where org_id = '0c000000-0000-4000-8000-00000000000c' and seq = 3;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as edited_hash \gset
rollback to savepoint tamper;

delete from audit.entries where org_id = '0c000000-0000-4000-8000-00000000000c' and seq = 3;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as deleted_middle \gset
rollback to savepoint tamper;

update audit.entries set seq = seq + 1000 where org_id = '0c000000-0000-4000-8000-00000000000c' and seq in (3, 4);
update audit.entries set seq = case seq when 1003 then 4 else 3 end
 where org_id = '0c000000-0000-4000-8000-00000000000c' and seq in (1003, 1004);
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as reordered \gset
rollback to savepoint tamper;

-- A forged entry with a well-formed hash, slipped in after entry 2.
update audit.entries set seq = seq + 1000 where org_id = '0c000000-0000-4000-8000-00000000000c' and seq > 2;
update audit.entries set seq = seq - 999 where org_id = '0c000000-0000-4000-8000-00000000000c' and seq > 1000;
insert into audit.entries (org_id, seq, prev_hash, entry_hash, canonical, action, occurred_at, record_xid, record_id)
select '0c000000-0000-4000-8000-00000000000c', 3, e.entry_hash,
       extensions.digest(convert_to('gatehouse.audit.v1', 'UTF8') || '\x00'::bytea || e.entry_hash
                         || convert_to('{"action":"forged.event","actor":null,"org":"0c000000-0000-4000-8000-00000000000c","seq":3}', 'UTF8'), 'sha256'),
       '{"action":"forged.event","actor":null,"org":"0c000000-0000-4000-8000-00000000000c","seq":3}', 'forged.event', now(), '0', -1
  from audit.entries e where e.org_id = '0c000000-0000-4000-8000-00000000000c' and e.seq = 2;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as forged \gset
rollback to savepoint tamper;

delete from audit.entries where org_id = '0c000000-0000-4000-8000-00000000000c' and seq > 5;
update audit.heads h set seq = 5, head_hash = e.entry_hash
  from audit.entries e where h.org_id = '0c000000-0000-4000-8000-00000000000c' and e.org_id = h.org_id and e.seq = 5;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as tail_cut \gset
rollback to savepoint tamper;

-- A wholesale rewrite: a fresh chain with recomputed hashes throughout, head included.
delete from audit.records where org_id = '0c000000-0000-4000-8000-00000000000c';
delete from audit.entries where org_id = '0c000000-0000-4000-8000-00000000000c';
delete from audit.heads where org_id = '0c000000-0000-4000-8000-00000000000c';
do $$ begin
  perform audit.append('0c000000-0000-4000-8000-00000000000c', 'test.event', 'test', n::text, jsonb_build_object('n', n, 'note', 'rewritten'))
     from generate_series(1, 7) n;
end $$;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as rewritten \gset
rollback to savepoint tamper;

truncate audit.entries, audit.records;
select pg_temp.verdict('0c000000-0000-4000-8000-00000000000c') as truncated \gset
rollback to savepoint tamper;

select is(:'edited_payload'::text, 'entry 3: the payload is not the one that was hashed', 'an edited payload is detected');
select is(:'edited_hash'::text, 'entry 3: entry_hash is not the hash of the entry', 'an edited hash is detected');
select is(:'deleted_middle'::text, 'entry 4: sequence gap: expected entry 3, found 4', 'a deleted middle entry is detected');
select is(:'reordered'::text, 'entry 3: prev_hash is not the hash of the entry before', 'reordered entries are detected');
select is(:'forged'::text, 'entry 3: the entry''s time (occurred_at) is not the one that was hashed',
          'a forged entry inserted in the middle is detected (it hashes no time)');
select is(:'tail_cut'::text, 'entry 6: the chain ends at entry 5, but a checkpoint signed 7 entries (the tail was cut)',
          'a tail cut is detected against the stored checkpoint');
select is(:'rewritten'::text, 'entry 7: the chain up to entry 7 is not the one its checkpoint signed',
          'a wholesale rewrite with recomputed hashes is detected against the stored checkpoint');
select is(:'truncated'::text, 'entry 1: the chain ends at entry 0, but a checkpoint signed 7 entries (the tail was cut)', 'a truncation is detected');

select * from finish();
rollback;
