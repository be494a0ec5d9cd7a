-- What the database shows is what was hashed (issue 28, …_audit_source_of_truth.sql). The outside
-- review's method, replayed: a superuser with the append-only triggers off edits each column that
-- public.audit_log shows or the export filters on, the entry's record, the stored checkpoints and
-- the chain head, and audit.verify_chain must name each edit. A head edited to another hash is never
-- signed: audit.checkpoint_body refuses; and the head holds no Merkle frontier to edit.
begin;
\ir _helpers.psql
select plan(23);

create function pg_temp.verdict(p_org uuid) returns text language sql as $$
  select audit.seal(p_org);
  select case when v.ok then 'ok' else format('entry %s: %s', v.first_bad_seq, v.reason) end
    from audit.verify_chain(p_org) v;
$$;

-- The Merkle frontier after p_size entries, from scratch (no checkpoint to resume from).
create function pg_temp.frontier_from_scratch(p_org uuid, p_size bigint) returns bytea[] language plpgsql as $$
declare
  f bytea[] := '{}';
  e record;
begin
  for e in select seq, entry_hash from audit.entries where org_id = p_org and seq <= p_size order by seq loop
    f := private.merkle_frontier_push(f, e.seq - 1, e.entry_hash);
  end loop;
  return f;
end
$$;

-- A scratch organization: six entries with targets, the payload of entry 2 purged (the purge is
-- entry 7), and a stored checkpoint at size 7.
insert into public.organizations (id, name, slug) values ('0d000000-0000-4000-8000-00000000000d', 'Truth Co', 'truth-co');
select '0d000000-0000-4000-8000-00000000000d' as org \gset
do $$ begin
  perform audit.append('0d000000-0000-4000-8000-00000000000d', 'test.event', 'test', n::text, jsonb_build_object('n', n))
     from generate_series(1, 6) n;
  perform audit.seal('0d000000-0000-4000-8000-00000000000d');
end $$;
insert into public.organization_members (org_id, user_id, role) values (:'org', pg_temp.uid('ada'), 'tenant_admin');
select pg_temp.act_as(pg_temp.uid('ada'), :'org');
select public.purge_audit_payload(2, 'erasure request') is not null as purged \gset
reset role;
do $$ begin perform audit.seal('0d000000-0000-4000-8000-00000000000d'); end $$;
-- Sealing the membership insert too; the chain now has 8 entries.
insert into audit.signing_keys (key_id, public_key, secret_id, retired_at)
values ('pgtap-truth', extensions.digest('pgtap truth key', 'sha256'), gen_random_uuid(), now());
select (audit.store_checkpoint(audit.checkpoint_body(:'org', 'pgtap-truth'), extensions.gen_random_bytes(64))).size is not null as stored \gset
select (select seq from audit.heads where org_id = :'org') as size \gset

select is(pg_temp.verdict(:'org'), 'ok', 'a chain with a recorded purge and a stored checkpoint verifies');

select is((select unchecked from audit.verify_chain(:'org')),
          'checkpoint signatures: Postgres has no Ed25519 here; npm run audit:verify checks them',
          'the verifier says plainly what it does not check');
select is((select frontier from audit.checkpoints where org_id = :'org' and size = :size), pg_temp.frontier_from_scratch(:'org', :size),
          'a stored checkpoint keeps the Merkle frontier it states');
do $$ begin perform audit.append('0d000000-0000-4000-8000-00000000000d', 'test.later', 'test', 'later', '{}');
            perform audit.seal('0d000000-0000-4000-8000-00000000000d'); end $$;
select is(audit.frontier_at(:'org', :size + 1), pg_temp.frontier_from_scratch(:'org', :size + 1),
          'the frontier resumed from the checkpoint is the frontier from scratch');

-- Tampering, each case undone before the next (verdicts kept in psql variables: a rollback to the
-- savepoint would also roll back pgTAP's record of an assertion).
alter table audit.entries disable trigger user;
alter table audit.records disable trigger user;
alter table audit.checkpoints disable trigger user;
set local session_replication_role = replica;
savepoint tamper;

update audit.entries set occurred_at = occurred_at - interval '1 day' where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as edited_time \gset
rollback to savepoint tamper;

update audit.entries set occurred_at = occurred_at + interval '1 microsecond' where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as edited_time_us \gset
rollback to savepoint tamper;

update audit.entries set target_id = '42' where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as edited_target_id \gset
rollback to savepoint tamper;

update audit.entries set target_type = 'billing' where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as edited_target_type \gset
rollback to savepoint tamper;

update audit.entries set target_type = null, target_id = null where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as removed_target \gset
rollback to savepoint tamper;

update audit.entries set actor = pg_temp.uid('victor') where org_id = :'org' and seq = 3;
select pg_temp.verdict(:'org') as edited_actor \gset
rollback to savepoint tamper;

update audit.records r set occurred_at = r.occurred_at - interval '1 hour'
  from audit.entries e where e.org_id = :'org' and e.seq = 3 and r.id = e.record_id;
select pg_temp.verdict(:'org') as edited_record \gset
rollback to savepoint tamper;

update audit.records r set payload = null, purged_at = now()
  from audit.entries e where e.org_id = :'org' and e.seq = 4 and r.id = e.record_id;
select pg_temp.verdict(:'org') as unrecorded_purge \gset
rollback to savepoint tamper;

delete from audit.records r using audit.entries e where e.org_id = :'org' and e.seq = 4 and r.id = e.record_id;
select pg_temp.verdict(:'org') as deleted_record \gset
rollback to savepoint tamper;

drop index audit.entries_record_id;  -- a superuser can drop what keeps one record to one entry
update audit.entries e set record_id = f.record_id, record_xid = f.record_xid
  from audit.entries f where e.org_id = :'org' and e.seq = 4 and f.org_id = e.org_id and f.seq = 5;
select pg_temp.verdict(:'org') as repointed \gset
rollback to savepoint tamper;

update audit.checkpoints set size = 3 where org_id = :'org';
select pg_temp.verdict(:'org') as checkpoint_size \gset
rollback to savepoint tamper;

update audit.checkpoints set frontier = pg_temp.frontier_from_scratch(:'org', 3) where org_id = :'org';
select pg_temp.verdict(:'org') as checkpoint_frontier \gset
select audit.frontier_at(:'org', :size + 1) = pg_temp.frontier_from_scratch(:'org', :size + 1) as frontier_ignores_bad_checkpoint \gset
rollback to savepoint tamper;

-- The head: its hash. It holds no Merkle frontier (…_audit_seal_chain_only.sql): checkpoints build
-- the tree they sign from the entries, so there is no copy of it to edit.
select hasnt_column('audit', 'heads', 'frontier', 'the chain head holds no Merkle frontier to edit: checkpoints build it from the entries');
update audit.heads set head_hash = extensions.digest('forged head', 'sha256') where org_id = :'org';
select pg_temp.verdict(:'org') as head_hash \gset
rollback to savepoint tamper;
update audit.heads set head_hash = extensions.digest('forged head', 'sha256') where org_id = :'org';
select throws_like(format($$ select audit.checkpoint_body(%L, 'pgtap-truth') $$, :'org'), '%disagrees with its entries%',
                   'a head edited to another hash is never signed');
rollback to savepoint tamper;

set local session_replication_role = origin;
alter table audit.entries enable trigger user;
alter table audit.records enable trigger user;
alter table audit.checkpoints enable trigger user;

select is(:'edited_time'::text, 'entry 3: the entry''s time (occurred_at) is not the one that was hashed', 'an edited time is detected');
select is(:'edited_time_us'::text, 'entry 3: the entry''s time (occurred_at) is not the one that was hashed', 'a time moved by a microsecond is detected');
select is(:'edited_target_id'::text, 'entry 3: the entry''s target is not the one that was hashed', 'an edited target id is detected');
select is(:'edited_target_type'::text, 'entry 3: the entry''s target is not the one that was hashed', 'an edited target type is detected');
select is(:'removed_target'::text, 'entry 3: the entry''s target is not the one that was hashed', 'a removed target is detected');
select is(:'edited_actor'::text, 'entry 3: the entry''s columns disagree with its hashed bytes', 'an edited actor is detected');
select is(:'edited_record'::text, 'entry 3: the entry''s record says another action, actor, target or time than the entry',
          'an entry''s record edited apart from its entry is detected');
select is(:'unrecorded_purge'::text, 'entry 4: the payload is gone, and the chain records no purge of it',
          'a payload emptied without a recorded purge is detected');
select is(:'deleted_record'::text, 'entry 4: the entry''s record is missing', 'a deleted record is detected');
select is(:'repointed'::text, 'entry 4: the entry''s record says another action, actor, target or time than the entry',
          'an entry pointed at another record is detected');
select is(:'checkpoint_size'::text, 'entry 3: the checkpoint of size 3 says in its columns what its signed body does not',
          'a checkpoint whose size column was edited is detected');
select is(:'checkpoint_frontier'::text, format('entry %s: the checkpoint of size %s says in its columns what its signed body does not', :size, :size),
          'a checkpoint whose frontier was edited is detected');
select ok(:'frontier_ignores_bad_checkpoint', 'a checkpoint whose frontier does not give its signed root is not resumed from');
select is(:'head_hash'::text, format('entry %s: the chain ends at entry %s but its head is entry %s', :size + 2, :size + 1, :size + 1),
          'a head edited to another hash is detected');

-- A checkpoint's C2SP note must state the tree of the body it is stored with (its signature is checked outside).
select audit.seal(:'org') as sealed \gset
select audit.append(:'org', 'test.noted', 'test', 'noted', '{}') is not null as appended \gset
select audit.seal(:'org') as sealed \gset
select audit.checkpoint_body(:'org', 'pgtap-truth') as noted_body \gset
select format(E'gatehouse.test/audit/%s\n%s\n%s\n\n\u2014 gatehouse.test/audit/%s AAAA\n', :'org', (:'noted_body'::jsonb ->> 'size'),
              translate(encode(decode(:'noted_body'::jsonb ->> 'root', 'hex'), 'base64'), E'\n', ''), :'org') as noted_note \gset
select throws_like(format('select audit.store_checkpoint(%L, extensions.gen_random_bytes(64), %L)', :'noted_body',
                          replace(:'noted_note', E'\n' || (:'noted_body'::jsonb ->> 'size') || E'\n', E'\n1\n')),
                   '%note does not state%', 'a checkpoint note that states another size than its body is refused');
select is((audit.store_checkpoint(:'noted_body', extensions.gen_random_bytes(64), :'noted_note')).note, :'noted_note',
          'a checkpoint note that states its body''s tree is kept beside it');

-- And through the API: audit_log is read-only for everyone.
select pg_temp.act_as(pg_temp.uid('ada'), :'org');
select throws_ok($$ update public.audit_log set occurred_at = now() - interval '1 year' where seq = 3 $$, null, null,
                 'a member can''t write through audit_log');
reset role;

select * from finish();
rollback;
