-- Audit chain v2, part 6 (issue 28): sealing builds the hash chain only.
--
-- Since …_audit_source_of_truth.sql, every checkpoint builds the Merkle frontier it signs from the
-- entries (audit.frontier_at, resuming from a kept frontier or a checkpoint's), never from
-- audit.heads. The frontier audit.seal kept in the head as it sealed was then only a second copy,
-- which checkpoint_body and verify_chain cross-checked against the entries' so that an edit of it
-- could not go unnoticed. Sealing is on every write's path, and the copy cost it two hashes an
-- entry, so the copy goes: audit.heads holds the chain's head (its size and hash, cross-checked
-- as before) and the last record sealed, and no frontier is left in it to edit.
--
--   audit.seal            chains records as before, without a Merkle frontier
--   audit.checkpoint_body refuses when the head's hash is not the last entry's (as before)
--   audit.verify_chain    the same checks but the head frontier's
--   audit.heads.frontier  dropped

create or replace function audit.seal(p_org_id uuid, p_limit integer default null, p_wait boolean default true) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  head audit.heads%rowtype;
  r audit.records%rowtype;
  snapshot pg_catalog.pg_snapshot;
  horizon xid8;
  own xid8;
  last_xid xid8;
  last_id bigint;
  last_seq bigint;
  prev bytea;
  canonical text;
  entry_hash bytea;
  -- audit.entry_hash's prefix: "gatehouse.audit.v1" 0x00. The hashes below are that function and
  -- private.sha256_hex written out, since a call costs more than a hash.
  tag constant bytea := pg_catalog.convert_to('gatehouse.audit.v1', 'UTF8') || '\x00'::bytea;
  entries audit.entries[] := '{}';
begin
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'audit.seal runs at READ COMMITTED, not %', pg_catalog.current_setting('transaction_isolation')
      using errcode = 'invalid_transaction_state';
  end if;
  head := audit.lock_head(p_org_id, p_wait);
  if head.org_id is null then
    return 0;
  end if;
  -- The horizon is the oldest other transaction that may be in progress (the snapshot's list
  -- leaves this one out, and every transaction from xmax on may be): all before it have ended, so
  -- the query below sees all their records.
  own := pg_catalog.pg_current_xact_id_if_assigned();
  for attempt in 1 .. 500 loop
    snapshot := pg_catalog.pg_current_snapshot();
    horizon := coalesce((select pg_catalog.min(x) from pg_catalog.pg_snapshot_xip(snapshot) x), pg_catalog.pg_snapshot_xmax(snapshot));
    exit when not p_wait or own is null or own <= horizon
           or not exists (select 1 from audit.records x where x.org_id = p_org_id and x.xid = own);
    perform pg_catalog.pg_sleep(0.01);
  end loop;
  if own > horizon then
    own := null;  -- an older transaction is in progress: this one's records wait for the next seal
  end if;
  last_seq := head.seq;
  prev := head.head_hash;
  for r in
    select * from audit.records x
     where x.org_id = p_org_id and (x.xid, x.id) > (head.sealed_xid, head.sealed_id) and (x.xid < horizon or x.xid = own)
     order by x.xid, x.id limit p_limit
  loop
    last_seq := last_seq + 1;
    canonical := '{"action":' || pg_catalog.to_json(r.action)::text
              || ',"actor":' || coalesce(pg_catalog.to_json(r.actor::text)::text, 'null')
              || ',"at":"' || pg_catalog.to_char(r.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
              || ',"org":"' || p_org_id::text || '"'
              || ',"payload_sha256":"' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(r.payload::text, 'UTF8')), 'hex') || '"'
              || ',"seq":' || last_seq::text
              || ',"target":' || case when r.target_type is null then 'null'
                                      else '{"id":' || coalesce(pg_catalog.to_json(r.target_id)::text, 'null')
                                           || ',"type":' || pg_catalog.to_json(r.target_type)::text || '}' end
              || ',"v":1}';
    entry_hash := pg_catalog.sha256(tag || prev || pg_catalog.convert_to(canonical, 'UTF8'));
    entries := entries || row(p_org_id, last_seq, prev, entry_hash, canonical, r.action, r.actor, r.target_type, r.target_id,
                              r.occurred_at, r.xid, r.id)::audit.entries;
    prev := entry_hash;
    last_xid := r.xid;
    last_id := r.id;
  end loop;
  if last_seq = head.seq then
    return 0;
  end if;
  insert into audit.entries select * from pg_catalog.unnest(entries);
  update audit.heads h set seq = last_seq, head_hash = prev, sealed_xid = last_xid, sealed_id = last_id
   where h.org_id = p_org_id;
  return last_seq - head.seq;
end
$$;
comment on function audit.seal(uuid, integer, boolean) is
  'Chains an organization''s recorded actions (up to p_limit), under its head row lock; returns how many.';

create or replace function audit.checkpoint_body(p_org_id uuid, p_key_id text, p_size bigint default null) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  head audit.heads%rowtype;
  size bigint;
  head_hash bytea;
  frontier bytea[];
begin
  if p_size is null then
    perform audit.seal(p_org_id);
    select * into head from audit.heads h where h.org_id = p_org_id for update;
  else
    select * into head from audit.heads h where h.org_id = p_org_id;
  end if;
  if head.org_id is null then
    raise exception 'organization % has no audit chain', p_org_id using errcode = 'no_data_found';
  end if;
  size := coalesce(p_size, head.seq);
  if size < 1 or size > head.seq then
    raise exception 'a checkpoint of organization % covers 1 to % entries, not %', p_org_id, head.seq, size
      using errcode = 'invalid_parameter_value';
  end if;
  select e.entry_hash into head_hash from audit.entries e where e.org_id = p_org_id and e.seq = size;
  frontier := audit.frontier_at(p_org_id, size);
  if head_hash is null or (size = head.seq and head.head_hash <> head_hash) then
    raise exception 'the audit chain head of organization % disagrees with its entries at entry %: no checkpoint is signed', p_org_id, size
      using errcode = 'data_corrupted';
  end if;
  return '{"head":"' || pg_catalog.encode(head_hash, 'hex') || '"'
      || ',"key":' || pg_catalog.to_json(p_key_id)::text
      || ',"org":"' || p_org_id::text || '"'
      || ',"root":"' || pg_catalog.encode(private.merkle_root(frontier), 'hex') || '"'
      || ',"size":' || size::text
      || ',"time":"' || audit.hashed_time(pg_catalog.clock_timestamp()) || '"'
      || ',"v":1}';
end
$$;

create or replace function audit.verify_chain(p_org_id uuid)
returns table (ok boolean, checked bigint, first_bad_seq bigint, reason text, unchecked text)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  e record;
  expected_seq bigint := 1;
  prev bytea := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
  tree bytea[] := '{}';
  fields jsonb;
  target jsonb;
  head audit.heads%rowtype;
  pins jsonb[];
  pin jsonb;
  c record;
  next_pin integer := 1;
  purged bigint[];
begin
  unchecked := 'checkpoint signatures: Postgres has no Ed25519 here; npm run audit:verify checks them';
  checked := 0;
  -- Stored checkpoints pin the history: each must say in its columns what its signed body says,
  -- and the chain must still have, at its size, the head and Merkle root it signed.
  for c in select * from audit.checkpoints x where x.org_id = p_org_id order by x.size loop
    if (c.body::jsonb ->> 'size')::bigint is distinct from c.size or c.body::jsonb ->> 'org' is distinct from c.org_id::text
       or c.body::jsonb ->> 'key' is distinct from c.key_id
       or (c.frontier is not null and pg_catalog.encode(private.merkle_root(c.frontier), 'hex') is distinct from c.body::jsonb ->> 'root') then
      ok := false;
      first_bad_seq := c.size;
      reason := pg_catalog.format('the checkpoint of size %s says in its columns what its signed body does not', c.size);
      return next;
      return;
    end if;
  end loop;
  select coalesce(pg_catalog.array_agg(c2.body::jsonb order by c2.size), '{}') into pins
    from audit.checkpoints c2 where c2.org_id = p_org_id;
  -- The entries whose payload was purged, as the chain records each purge.
  select coalesce(pg_catalog.array_agg(r.target_id::bigint), '{}') into purged
    from audit.records r
   where r.org_id = p_org_id and r.action = 'audit.payload_purged' and r.target_id ~ '^[0-9]{1,18}$';

  for e in
    select x.*, p.id as r_id, p.action as r_action, p.actor as r_actor, p.target_type as r_target_type,
           p.target_id as r_target_id, p.occurred_at as r_occurred_at, p.payload, p.purged_at
      from audit.entries x
      left join audit.records p on p.org_id = x.org_id and p.xid = x.record_xid and p.id = x.record_id
     where x.org_id = p_org_id order by x.seq
  loop
    first_bad_seq := e.seq;
    fields := e.canonical::jsonb;
    target := fields -> 'target';
    if e.seq <> expected_seq then
      reason := pg_catalog.format('sequence gap: expected entry %s, found %s', expected_seq, e.seq);
    elsif e.prev_hash <> prev then
      reason := 'prev_hash is not the hash of the entry before';
    elsif e.entry_hash <> audit.entry_hash(e.prev_hash, e.canonical) then
      reason := 'entry_hash is not the hash of the entry';
    elsif (fields ->> 'seq')::bigint is distinct from e.seq or fields ->> 'org' is distinct from e.org_id::text
          or fields ->> 'action' is distinct from e.action or fields ->> 'actor' is distinct from e.actor::text then
      reason := 'the entry''s columns disagree with its hashed bytes';
    elsif fields ->> 'at' is distinct from audit.hashed_time(e.occurred_at) then
      reason := 'the entry''s time (occurred_at) is not the one that was hashed';
    elsif (pg_catalog.jsonb_typeof(target) = 'null') is distinct from (e.target_type is null)
          or (e.target_type is not null
              and (target ->> 'type' is distinct from e.target_type or target ->> 'id' is distinct from e.target_id)) then
      reason := 'the entry''s target is not the one that was hashed';
    elsif e.r_id is null then
      reason := 'the entry''s record is missing';
    elsif (e.r_action, e.r_actor, e.r_target_type, e.r_target_id, e.r_occurred_at)
          is distinct from (e.action, e.actor, e.target_type, e.target_id, e.occurred_at) then
      reason := 'the entry''s record says another action, actor, target or time than the entry';
    elsif e.payload is not null and fields ->> 'payload_sha256' is distinct from private.sha256_hex(e.payload::text) then
      reason := 'the payload is not the one that was hashed';
    elsif e.payload is null and (e.purged_at is null or not e.seq = any (purged)) then
      reason := 'the payload is gone, and the chain records no purge of it';
    end if;
    if reason is null then
      tree := private.merkle_frontier_push(tree, e.seq - 1, e.entry_hash);
      pin := pins[next_pin];
      if pin is not null and (pin ->> 'size')::bigint = e.seq then
        if pin ->> 'head' <> pg_catalog.encode(e.entry_hash, 'hex')
           or pin ->> 'root' <> pg_catalog.encode(private.merkle_root(tree), 'hex')
           or coalesce((select c2.frontier <> tree from audit.checkpoints c2 where c2.org_id = p_org_id and c2.size = e.seq), false) then
          reason := pg_catalog.format('the chain up to entry %s is not the one its checkpoint signed', e.seq);
        end if;
        next_pin := next_pin + 1;
      end if;
    end if;
    if reason is not null then
      ok := false;
      return next;
      return;
    end if;
    checked := checked + 1;
    prev := e.entry_hash;
    expected_seq := e.seq + 1;
  end loop;
  select * into head from audit.heads h where h.org_id = p_org_id;
  pin := pins[next_pin];
  if pin is not null then
    ok := false;
    first_bad_seq := checked + 1;
    reason := pg_catalog.format('the chain ends at entry %s, but a checkpoint signed %s entries (the tail was cut)', checked, pin ->> 'size');
    return next;
    return;
  end if;
  if coalesce(head.seq, 0) <> checked or (head.seq > 0 and head.head_hash <> prev) then
    ok := false;
    first_bad_seq := checked + 1;
    reason := pg_catalog.format('the chain ends at entry %s but its head is entry %s', checked, coalesce(head.seq, 0));
    return next;
    return;
  end if;
  ok := true;
  first_bad_seq := null;
  return next;
end
$$;

alter table audit.heads drop column frontier;
comment on table audit.heads is
  'The latest sequence number and hash of each organization''s chain, and the last record sealed; sealing locks it. Checkpoints build the Merkle tree from the entries.';
