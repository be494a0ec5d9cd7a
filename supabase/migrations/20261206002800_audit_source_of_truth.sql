-- Audit chain v2, part 1 (issue 28): what the database shows is what was hashed.
--
-- An outside review edited the chain's tables as a superuser with the append-only triggers off. It
-- found columns that members read through public.audit_log, and that the export filters on, which
-- the in-database verifier never compared with the hashed bytes: the time an entry happened and its
-- target. This migration closes each one, column by column:
--
--   public.audit_log column   source                       checked by audit.verify_chain against
--   org_id, seq               audit.entries                the hashed "org" and "seq" (as before)
--   action, actor             audit.entries                the hashed "action" and "actor" (as before)
--   target_type, target_id    audit.entries                the hashed "target" {id, type}, or null (new)
--   occurred_at               audit.entries                the hashed "at", to the microsecond, UTC (new)
--   prev_hash, entry_hash     audit.entries                the link and the hash of the bytes (as before)
--   canonical                 audit.entries                what is hashed
--   payload                   audit.records (joined)       the hashed "payload_sha256"; a null payload
--                                                          only with its purge (new)
-- and besides what audit_log shows:
--   - the entry's record (audit.records) must exist and say what the entry says (its action, actor,
--     target and time), so that repointing an entry at another record, or deleting its record to
--     make its payload look purged, is caught;
--   - each stored checkpoint's size, organization and key columns must be its signed body's, and its
--     Merkle frontier (new below) must give the root the body states;
--   - the chain head (audit.heads) must be the last entry, with the Merkle frontier of the entries.
--
-- audit.heads is what sealing extends, and what a checkpoint of the current size used to read its
-- root from. A head edited into another frontier would have been signed as it was. Now:
--   - a checkpoint keeps the Merkle frontier it was made from (audit.checkpoints.frontier; stored by
--     audit.store_checkpoint, which …_audit_checkpoint_notes.sql makes again with the C2SP note);
--   - audit.frontier_at builds the frontier at any size from the entries, never from audit.heads.
--     It resumes from the nearest frontier below the size asked for: a stored checkpoint's (one
--     whose frontier gives its signed root), or one it keeps at every multiple of 4096 entries
--     (audit.frontiers), and extends it inline, as audit.seal does. Each entry is hashed into a kept
--     frontier once; after that an export or a checkpoint reads at most 4096 entries, however long
--     the chain (a chain of 100,000 entries with no checkpoint took seconds to export from the end);
--   - audit.checkpoint_body builds every checkpoint from the entries that way, and refuses to sign
--     at all (data_corrupted) when the head disagrees with them: its hash is not the last entry's,
--     or its frontier is not the entries'. A kept frontier edited behind its back makes the same
--     refusal, and an export's root fail offline: loudly, never silently.
--
-- Checkpoint signatures are Ed25519, which this Postgres lacks; the verifier says so in its result
-- (`unchecked`), and the offline verifier checks them.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table audit.checkpoints add column frontier bytea[];
comment on column audit.checkpoints.frontier is
  'The Merkle frontier of the chain at this size (null for checkpoints made before it was kept): where audit.frontier_at resumes.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- The time an entry states, as its hashed bytes spell it (audit.seal writes "at" so).
create function audit.hashed_time(p_at timestamptz) returns text
language sql immutable strict
set search_path = ''
as $$
  select pg_catalog.to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
comment on function audit.hashed_time(timestamptz) is 'A timestamp as the chain''s hashed bytes spell it: UTC, microseconds, one fixed format.';
revoke execute on function audit.hashed_time(timestamptz) from public, anon, authenticated;

-- Kept frontiers, every 4096 entries, written only by audit.frontier_at.
create table audit.frontiers (
  org_id uuid not null,
  size bigint not null check (size > 0 and size % 4096 = 0),
  frontier bytea[] not null,
  primary key (org_id, size)
);
comment on table audit.frontiers is
  'The Merkle frontier of each organization''s chain at every multiple of 4096 entries, computed from the entries: where audit.frontier_at resumes.';

create trigger refuse_update_delete before update or delete on audit.frontiers
  for each row execute function audit.refuse_change();
create trigger refuse_truncate before truncate on audit.frontiers
  for each statement execute function audit.refuse_change();
alter table audit.frontiers enable always trigger refuse_update_delete;
alter table audit.frontiers enable always trigger refuse_truncate;
alter table audit.frontiers enable row level security;
alter table audit.frontiers force row level security;
create policy "members read their organization's frontiers" on audit.frontiers
  for select to authenticated
  using (org_id = (select private.current_org_id()));
revoke all on audit.frontiers from public, anon, authenticated, service_role;
grant select on audit.frontiers to authenticated, service_role;

create or replace function audit.frontier_at(p_org_id uuid, p_size bigint) returns bytea[]
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  tree bytea[] := '{}';
  start bigint := 0;
  cp record;
  e record;
  node bytea;
  remaining bigint;
  kept bigint[] := '{}';
  keep bytea[][];
begin
  -- The nearest resume point at or below p_size: a kept frontier, or a checkpoint's whose root is
  -- the one its signed body states.
  select f.size, f.frontier into cp from audit.frontiers f
   where f.org_id = p_org_id and f.size <= p_size order by f.size desc limit 1;
  if cp.size is not null then
    tree := cp.frontier;
    start := cp.size;
  end if;
  for cp in
    select c.size, c.frontier, c.body from audit.checkpoints c
     where c.org_id = p_org_id and c.size <= p_size and c.size > start and c.frontier is not null
     order by c.size desc limit 3
  loop
    if pg_catalog.encode(private.merkle_root(cp.frontier), 'hex') = (cp.body::jsonb ->> 'root') then
      tree := cp.frontier;
      start := cp.size;
      exit;
    end if;
  end loop;
  for e in
    select x.seq, x.entry_hash from audit.entries x
     where x.org_id = p_org_id and x.seq > start and x.seq <= p_size order by x.seq
  loop
    -- private.merkle_frontier_push, inline (as audit.seal has it).
    node := pg_catalog.sha256('\x00'::bytea || e.entry_hash);
    remaining := e.seq - 1;
    while remaining & 1 = 1 loop
      node := pg_catalog.sha256('\x01'::bytea || tree[pg_catalog.array_length(tree, 1)] || node);
      tree := tree[1:pg_catalog.array_length(tree, 1) - 1];
      remaining := remaining >> 1;
    end loop;
    tree := tree || node;
    if e.seq % 4096 = 0 then
      insert into audit.frontiers (org_id, size, frontier) values (p_org_id, e.seq, tree) on conflict do nothing;
    end if;
  end loop;
  return tree;
end
$$;
comment on function audit.frontier_at(uuid, bigint) is
  'The Merkle frontier of an organization''s chain after its first p_size entries, from the nearest kept frontier or checkpoint below it; keeps the frontier at each multiple of 4096 it passes.';
revoke execute on function audit.frontier_at(uuid, bigint) from public, anon, authenticated;
grant execute on function audit.frontier_at(uuid, bigint) to service_role;

-- The body a checkpoint signs, as before (…_audit.sql), built from the entries: the head row is
-- locked and sealed up to, but its hash and frontier are only cross-checked, never signed as they are.
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
  if head_hash is null
     or (size = head.seq and (head.head_hash <> head_hash or head.frontier is distinct from frontier)) then
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
comment on function audit.checkpoint_body(uuid, text, bigint) is
  'The canonical body of a checkpoint of an organization''s chain (its current size unless given), built from the entries; refuses when the head disagrees with them.';
revoke execute on function audit.checkpoint_body(uuid, text, bigint) from public, anon, authenticated;
grant execute on function audit.checkpoint_body(uuid, text, bigint) to service_role;

-- =============================================================================================
-- Verification
-- =============================================================================================
drop function public.verify_audit_chain();
drop function audit.verify_chain(uuid);

-- Walks an organization's chain and reports the first thing that does not verify (…_audit.sql had
-- the links, hashes, seq, org, action, actor and payload); every column audit_log shows is now
-- compared with the hashed bytes, the entry's record with the entry, the stored checkpoints with
-- their bodies, and the head with the entries. `unchecked` says what this verifier can't check.
create function audit.verify_chain(p_org_id uuid)
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
  if head.frontier is distinct from tree then
    ok := false;
    first_bad_seq := checked;
    reason := 'the chain head''s Merkle frontier is not the entries''';
    return next;
    return;
  end if;
  ok := true;
  first_bad_seq := null;
  return next;
end
$$;
comment on function audit.verify_chain(uuid) is
  'Verifies an organization''s whole chain in place: every shown column against the hashed bytes, records, stored checkpoints and the head; reports the first bad entry and why, and what it can''t check.';
revoke execute on function audit.verify_chain(uuid) from public, anon, authenticated;
grant execute on function audit.verify_chain(uuid) to service_role;

create function public.verify_audit_chain()
returns table (ok boolean, checked bigint, first_bad_seq bigint, reason text, unchecked text)
language plpgsql volatile security definer
set search_path = ''
as $$
begin
  if not private.has_org_role('tenant_admin') then
    raise exception 'only a tenant_admin can verify the audit chain, in the organization''s context'
      using errcode = 'insufficient_privilege';
  end if;
  perform audit.seal(private.current_org_id());
  return query select * from audit.verify_chain(private.current_org_id());
end
$$;
comment on function public.verify_audit_chain() is
  'Seals, then verifies the current organization''s audit chain in place (tenant_admin); `unchecked` names what it can''t check (checkpoint signatures).';
revoke execute on function public.verify_audit_chain() from public, anon, authenticated;
grant execute on function public.verify_audit_chain() to authenticated;
