-- Audit chain (seed 000): every consequential action is appended to a per-organization hash chain,
-- sealed inside the database.
--
-- Each entry has a gapless per-organization sequence number, the previous entry's hash and its own:
--   entry_hash = SHA-256( 'gatehouse.audit.v1' || 0x00 || prev_hash || canonical )
-- where `canonical` is the RFC 8785 (JCS) JSON of the chained fields, stored as it was hashed, so a
-- verifier hashes exactly those bytes. Timestamps in it are UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`,
-- whatever the session's TimeZone or DateStyle. The payload is not chained: the action's record
-- (audit.records) keeps it as the JSON text that was hashed, and the chain covers only that hash,
-- so a purge can redact a payload while the chain still verifies.
--
-- Recording and sealing are two steps, the way a transparency log's sequencer works:
--   - recording inserts the action into audit.records inside the acting transaction: one row, no
--     lock, so it commits or rolls back with the action and never waits for another writer. The
--     service role inserts it directly; SQL code calls audit.append, which does the same insert;
--   - audit.seal chains an organization's committed records in one batch, under the
--     organization's head row lock: numbers, links, hashes and the Merkle frontier. Records are
--     chained in the order of (recording transaction id, record id), up to the oldest transaction
--     still in progress, so a record can never commit behind the chain's sealed mark. The stack
--     runs audit.seal_pending every GATEHOUSE_SEAL_INTERVAL_MS (pg_cron does on hosted Supabase),
--     and everything that reads the chain as a whole (verification, checkpoints, export) seals
--     first.
-- One sealer per organization at a time is what keeps the chain from forking or leaving gaps; a
-- batch commits once, so the chain's throughput is not bound by one commit per entry. Nobody, the
-- owner included, can update, delete or truncate entries or records (a purge may only empty a
-- sealed record's payload); the triggers that refuse it fire in replica mode too.

-- =============================================================================================
-- Schemas
-- =============================================================================================
create schema audit;
comment on schema audit is 'Append-only audit chains, one per organization. Not exposed through PostgREST.';
revoke all on schema audit from public, anon, authenticated, service_role;

-- =============================================================================================
-- Tables
-- =============================================================================================
create table audit.heads (
  org_id uuid primary key,
  -- The defaults are an empty chain: no entries, and the first entry's prev_hash (32 zero bytes).
  seq bigint not null default 0 check (seq >= 0),
  head_hash bytea not null default pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex') check (octet_length(head_hash) = 32),
  -- The RFC 6962 Merkle tree over the chain's entry hashes, kept as its frontier: the roots of the
  -- perfect subtrees that make up the tree, left to right (one per set bit of seq).
  frontier bytea[] not null default '{}',
  -- The last record sealed, in sealing order: every record up to (sealed_xid, sealed_id) is an entry.
  sealed_xid xid8 not null default '0',
  sealed_id bigint not null default 0
);
comment on table audit.heads is
  'The latest sequence number, hash and Merkle frontier of each organization''s chain, and the last record sealed; sealing locks it.';

create table audit.signing_keys (
  key_id text primary key,
  public_key bytea not null unique check (octet_length(public_key) = 32),
  secret_id uuid not null,
  created_at timestamptz not null default now(),
  retired_at timestamptz
);
comment on table audit.signing_keys is
  'Ed25519 keys that sign checkpoints. The private key is in Vault (secret_id); the public key is published.';

create table audit.checkpoints (
  org_id uuid not null,
  size bigint not null check (size >= 0),
  body text not null,
  signature bytea not null check (octet_length(signature) = 64),
  key_id text not null references audit.signing_keys (key_id),
  created_at timestamptz not null default now(),
  primary key (org_id, size)
);
comment on table audit.checkpoints is
  'Signed statements of a chain''s size, head hash and Merkle root. body is the RFC 8785 JSON that was signed.';

create table audit.entries (
  org_id uuid not null,
  seq bigint not null check (seq > 0),
  prev_hash bytea not null check (octet_length(prev_hash) = 32),
  entry_hash bytea not null check (octet_length(entry_hash) = 32),
  canonical text not null,
  action text not null check (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
  actor uuid,
  target_type text,
  target_id text,
  occurred_at timestamptz not null,
  record_xid xid8 not null,
  record_id bigint not null,
  primary key (org_id, seq)
);
comment on table audit.entries is
  'The chain: one row per action, hashed over the previous hash and its canonical (RFC 8785) bytes. Append-only.';
comment on column audit.entries.canonical is
  'The exact JSON text that was hashed: {"action","actor","at","org","payload_sha256","seq","target","v"}.';
comment on column audit.entries.record_id is 'The audit.records row this entry seals (each is sealed once); record_xid is its xid.';

-- What recording writes. The database fills in the id, the recording transaction, the actor and
-- the time: the service role may insert only the other columns.
create table audit.records (
  id bigint generated always as identity,
  xid xid8 not null default pg_catalog.pg_current_xact_id(),
  org_id uuid not null,
  action text not null check (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
  actor uuid default auth.uid(),
  target_type text,
  target_id text,
  occurred_at timestamptz not null default pg_catalog.clock_timestamp(),
  -- The JSON text the chain hashes, kept as it was recorded; null once purged (and only then).
  payload json default '{}',
  purged_at timestamptz,
  check ((payload is null) = (purged_at is not null)),
  -- Sealing reads an organization's records in this order.
  primary key (org_id, xid, id)
);
comment on table audit.records is
  'Every recorded action, with its payload; audit.seal chains them into audit.entries. Append-only but for purges.';

-- =============================================================================================
-- Indexes
-- =============================================================================================
-- One active signing key at a time.
create unique index signing_keys_one_active on audit.signing_keys ((true)) where retired_at is null;
create unique index signing_keys_secret on audit.signing_keys (secret_id);
create unique index checkpoints_by_key on audit.checkpoints (key_id, org_id, size);
create unique index entries_record_id on audit.entries (record_id);

-- =============================================================================================
-- Helper functions: entry hashes (canonical JSON and the Merkle tree are in …_canonical_json.sql)
-- =============================================================================================
create function audit.entry_hash(p_prev_hash bytea, p_canonical text) returns bytea
language plpgsql immutable strict
set search_path = ''
as $$
begin
  return extensions.digest(
    pg_catalog.convert_to('gatehouse.audit.v1', 'UTF8') || '\x00'::bytea || p_prev_hash || pg_catalog.convert_to(p_canonical, 'UTF8'),
    'sha256');
end
$$;
comment on function audit.entry_hash(bytea, text) is 'SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical): an entry''s hash.';

-- The frontier of an organization's tree at an earlier size (an export starting after entry 1
-- carries it, so that a verifier can rebuild the root from the entries it holds).
create function audit.frontier_at(p_org_id uuid, p_size bigint) returns bytea[]
language plpgsql stable
set search_path = ''
as $$
declare
  frontier bytea[] := '{}';
  e record;
begin
  for e in select x.seq, x.entry_hash from audit.entries x where x.org_id = p_org_id and x.seq <= p_size order by x.seq loop
    frontier := private.merkle_frontier_push(frontier, e.seq - 1, e.entry_hash);
  end loop;
  return frontier;
end
$$;
comment on function audit.frontier_at(uuid, bigint) is 'The Merkle frontier of an organization''s chain after its first p_size entries.';

-- =============================================================================================
-- Helper functions: recording and sealing
-- =============================================================================================
-- Recording for SQL code (triggers, RPCs): the insert the service role makes directly, with the
-- payload as jsonb, so that the recorded text has no duplicate keys and one spelling.
create function audit.append(
  p_org_id uuid,
  p_action text,
  p_target_type text,
  p_target_id text,
  p_payload jsonb default '{}'
) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  record_id bigint;
begin
  insert into audit.records (org_id, action, target_type, target_id, payload)
  values (p_org_id, p_action, p_target_type, p_target_id, coalesce(p_payload, '{}')::json)
  returning id into record_id;
  return record_id;
end
$$;
comment on function audit.append(uuid, text, text, text, jsonb) is
  'Records an action for an organization''s chain (audit.seal chains it) and returns its audit.records id.';
revoke execute on function audit.append(uuid, text, text, text, jsonb) from public, anon, authenticated;
grant usage on schema audit to service_role;
grant execute on function audit.append(uuid, text, text, text, jsonb) to service_role;

-- Locks an organization's head row until the transaction ends, creating it (an empty chain) the
-- first time. With p_wait false it never waits, not even for another transaction creating the same
-- row, and returns null instead of a row someone else holds.
create function audit.lock_head(p_org_id uuid, p_wait boolean) returns audit.heads
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  head audit.heads;
begin
  if p_wait then
    select * into head from audit.heads h where h.org_id = p_org_id for update;
  else
    select * into head from audit.heads h where h.org_id = p_org_id for update skip locked;
    if head.org_id is null and exists (select 1 from audit.heads h where h.org_id = p_org_id) then
      return null;
    end if;
  end if;
  if head.org_id is null then
    -- One creator at a time, so that nobody waits on an uncommitted insert of the same key.
    if p_wait then
      perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('audit.heads ' || p_org_id::text, 0));
    elsif not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('audit.heads ' || p_org_id::text, 0)) then
      return null;
    end if;
    insert into audit.heads (org_id) values (p_org_id)
    on conflict (org_id) do nothing;
    if p_wait then
      select * into head from audit.heads h where h.org_id = p_org_id for update;
    else
      select * into head from audit.heads h where h.org_id = p_org_id for update skip locked;
    end if;
  end if;
  return head;
end
$$;
comment on function audit.lock_head(uuid, boolean) is
  'Locks (creating if need be) an organization''s chain head; with p_wait false, null rather than waiting.';
revoke execute on function audit.lock_head(uuid, boolean) from public, anon, authenticated, service_role;

-- Seals up to p_limit (all, if null) of an organization's recorded actions into its chain and
-- returns how many. Records are taken in (xid, id) order, and only those of transactions older than
-- every other transaction still in progress, so that no record can later commit behind the sealed
-- mark. This transaction's own records are sealed too once no older transaction is in progress
-- (with p_wait, it waits up to 5 seconds for that). The head row lock makes this the only sealer of
-- the organization until the transaction ends; with p_wait false, an organization someone else is
-- sealing is skipped (0) rather than waited for. A transaction that waits should seal one
-- organization only, so that it never waits while holding another's head. Needs READ COMMITTED, so
-- that the statements after the lock see what the previous sealer committed.
create function audit.seal(p_org_id uuid, p_limit integer default null, p_wait boolean default true) returns integer
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
  tree bytea[];
  canonical text;
  entry_hash bytea;
  node bytea;
  remaining bigint;
  -- audit.entry_hash's prefix: "gatehouse.audit.v1" 0x00. The hashes below are that function,
  -- private.sha256_hex and private.merkle_frontier_push written out, since a call costs more than a hash.
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
  tree := head.frontier;
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
    -- private.merkle_frontier_push, inline: the new leaf merges with one subtree per trailing 1 bit of the old size.
    node := pg_catalog.sha256('\x00'::bytea || entry_hash);
    remaining := last_seq - 1;
    while remaining & 1 = 1 loop
      node := pg_catalog.sha256('\x01'::bytea || tree[pg_catalog.array_length(tree, 1)] || node);
      tree := tree[1:pg_catalog.array_length(tree, 1) - 1];
      remaining := remaining >> 1;
    end loop;
    tree := tree || node;
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
  update audit.heads h set seq = last_seq, head_hash = prev, frontier = tree, sealed_xid = last_xid, sealed_id = last_id
   where h.org_id = p_org_id;
  return last_seq - head.seq;
end
$$;
comment on function audit.seal(uuid, integer, boolean) is
  'Chains an organization''s recorded actions (up to p_limit), under its head row lock; returns how many.';
revoke execute on function audit.seal(uuid, integer, boolean) from public, anon, authenticated;
grant execute on function audit.seal(uuid, integer, boolean) to service_role;

-- What the periodic sealer runs: every organization with records, up to p_limit each, skipping one
-- that another transaction is sealing (so that it never waits, or deadlocks). The organizations
-- are found by skipping through the records' primary key, one probe each, and one is locked only
-- if it has records to seal, so that an idle call writes nothing (and takes no transaction id).
create function audit.seal_pending(p_limit integer default 10000) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid;
  total bigint := 0;
begin
  for org in
    with recursive orgs (org_id) as (
      (select x.org_id from audit.records x order by x.org_id limit 1)
      union all
      select (select x.org_id from audit.records x where x.org_id > o.org_id order by x.org_id limit 1)
        from orgs o where o.org_id is not null
    )
    select o.org_id from orgs o left join audit.heads h on h.org_id = o.org_id
     where o.org_id is not null
       and exists (select 1 from audit.records x
                    where x.org_id = o.org_id and (x.xid, x.id) > (coalesce(h.sealed_xid, '0'), coalesce(h.sealed_id, 0)))
  loop
    total := total + audit.seal(org, p_limit, false);
  end loop;
  return total;
end
$$;
comment on function audit.seal_pending(integer) is
  'Seals the recorded actions of every organization (up to p_limit each); returns how many. Run it every second or so.';
revoke execute on function audit.seal_pending(integer) from public, anon, authenticated;
grant execute on function audit.seal_pending(integer) to service_role;

-- Row changes of a tenant table, recorded with one line per table:
--   create trigger audit after insert or update or delete on public.t
--     for each row execute function audit.record_change('subject'[, 'column to leave out', ...]);
-- The action is '<subject>.<insert|update|delete>'; the payload holds the old and new rows.
create function audit.record_change() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  old_row jsonb := case when tg_op <> 'INSERT' then pg_catalog.to_jsonb(old) end;
  new_row jsonb := case when tg_op <> 'DELETE' then pg_catalog.to_jsonb(new) end;
  row_data jsonb := coalesce(new_row, old_row);
  hidden text[] := tg_argv[1:];
begin
  if tg_op = 'UPDATE' and old_row = new_row then
    return null;
  end if;
  perform audit.append(
    coalesce((row_data ->> 'org_id')::uuid, (row_data ->> 'id')::uuid),
    tg_argv[0] || '.' || pg_catalog.lower(tg_op),
    tg_table_schema || '.' || tg_table_name,
    coalesce(row_data ->> 'id', row_data ->> 'user_id', row_data ->> 'domain'),
    pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'old', old_row - hidden,
      'new', new_row - hidden))
  );
  return null;
end
$$;
comment on function audit.record_change() is
  'AFTER ROW trigger: records a tenant table''s insert, update or delete in its organization''s chain.';
revoke execute on function audit.record_change() from public, anon, authenticated;

-- Makes a new table a tenant table in one line, beside its policies:
--   select private.make_tenant_table('public.t', 'subject'[, array['column to leave out', ...]]);
-- RLS enabled and forced, the no-context write guard (private.require_org_context), org_id and
-- project_id from the context (private.take_ids_from_context), and its changes recorded in the
-- audit chain as '<subject>.<op>'. The table's policies stay the migration's own, one per operation;
-- the migration guard checks them when the migration commits. (The tenancy tables, created before
-- the audit chain exists, are set up the same way in two steps.)
create function private.make_tenant_table(p_table regclass, p_subject text, p_unrecorded text[] default '{}')
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute pg_catalog.format('alter table %s enable row level security', p_table);
  execute pg_catalog.format('alter table %s force row level security', p_table);
  execute pg_catalog.format('create trigger require_org_context before insert or update or delete on %s '
                            'for each statement execute function private.require_org_context()', p_table);
  perform private.take_ids_from_context(p_table);
  execute pg_catalog.format('create trigger audit after insert or update or delete on %s '
                            'for each row execute function audit.record_change(%s)', p_table,
                            (select pg_catalog.string_agg(pg_catalog.quote_literal(a), ', ' order by o)
                               from pg_catalog.unnest(array[p_subject] || p_unrecorded) with ordinality as x (a, o)));
end
$$;
comment on function private.make_tenant_table(regclass, text, text[]) is
  'Makes a table a tenant table: RLS enabled and forced, the context guard, ids from the context, audited changes.';
revoke execute on function private.make_tenant_table(regclass, text, text[]) from public, anon, authenticated;

-- =============================================================================================
-- Helper functions: verification
-- =============================================================================================
-- Walks an organization's chain and reports the first entry that does not verify: a sequence gap,
-- a broken link, a hash that is not the hash of its bytes, canonical bytes that disagree with the
-- entry's columns, a payload that is not the one hashed, or a chain that stops short of its head.
create function audit.verify_chain(p_org_id uuid)
returns table (ok boolean, checked bigint, first_bad_seq bigint, reason text)
language plpgsql stable security definer
set search_path = ''
as $$
declare
  e record;
  expected_seq bigint := 1;
  prev bytea := pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex');
  frontier bytea[] := '{}';
  fields jsonb;
  head audit.heads%rowtype;
  pins jsonb[];
  pin jsonb;
  next_pin integer := 1;
begin
  -- Stored checkpoints pin the history: the chain must still have, at each checkpoint's size, the
  -- head and Merkle root it signed.
  select coalesce(pg_catalog.array_agg(c.body::jsonb order by c.size), '{}') into pins
    from audit.checkpoints c where c.org_id = p_org_id;
  checked := 0;
  for e in
    select x.*, p.payload from audit.entries x
      left join audit.records p on p.org_id = x.org_id and p.xid = x.record_xid and p.id = x.record_id
     where x.org_id = p_org_id order by x.seq
  loop
    first_bad_seq := e.seq;
    fields := e.canonical::jsonb;
    if e.seq <> expected_seq then
      reason := pg_catalog.format('sequence gap: expected entry %s, found %s', expected_seq, e.seq);
    elsif e.prev_hash <> prev then
      reason := 'prev_hash is not the hash of the entry before';
    elsif e.entry_hash <> audit.entry_hash(e.prev_hash, e.canonical) then
      reason := 'entry_hash is not the hash of the entry';
    elsif (fields ->> 'seq')::bigint is distinct from e.seq or fields ->> 'org' is distinct from e.org_id::text
          or fields ->> 'action' is distinct from e.action or fields ->> 'actor' is distinct from e.actor::text then
      reason := 'the entry''s columns disagree with its hashed bytes';
    elsif e.payload is not null and fields ->> 'payload_sha256' is distinct from private.sha256_hex(e.payload::text) then
      reason := 'the payload is not the one that was hashed';
    end if;
    if reason is null then
      frontier := private.merkle_frontier_push(frontier, e.seq - 1, e.entry_hash);
      pin := pins[next_pin];
      if pin is not null and (pin ->> 'size')::bigint = e.seq then
        if pin ->> 'head' <> pg_catalog.encode(e.entry_hash, 'hex')
           or pin ->> 'root' <> pg_catalog.encode(private.merkle_root(frontier), 'hex') then
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
comment on function audit.verify_chain(uuid) is
  'Verifies an organization''s whole chain in place, against its stored checkpoints too; reports the first bad entry and why.';
revoke execute on function audit.verify_chain(uuid) from public, anon, authenticated;
grant execute on function audit.verify_chain(uuid) to service_role;

create function public.verify_audit_chain()
returns table (ok boolean, checked bigint, first_bad_seq bigint, reason text)
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
comment on function public.verify_audit_chain() is 'Seals, then verifies the current organization''s audit chain (tenant_admin).';
revoke execute on function public.verify_audit_chain() from public, anon, authenticated;
grant execute on function public.verify_audit_chain() to authenticated;

-- =============================================================================================
-- Helper functions: checkpoints
-- =============================================================================================
-- The RFC 8785 body a checkpoint signs: {"head","key","org","root","size","time","v"}. Without a
-- size it seals what is pending and states the chain as it then is, keeping the head locked, so
-- that no seal slips in before the checkpoint is stored in the same transaction (storing then
-- takes the frontier's fast path). A given size needs no lock: entries never change, so an earlier
-- size is rebuilt from them, and sealing goes on meanwhile.
create function audit.checkpoint_body(p_org_id uuid, p_key_id text, p_size bigint default null) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  head audit.heads%rowtype;
  size bigint;
  head_hash bytea;
  root bytea;
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
  if size = head.seq then
    head_hash := head.head_hash;
    root := private.merkle_root(head.frontier);
  else
    select e.entry_hash into head_hash from audit.entries e where e.org_id = p_org_id and e.seq = size;
    root := private.merkle_root(audit.frontier_at(p_org_id, size));
  end if;
  return '{"head":"' || pg_catalog.encode(head_hash, 'hex') || '"'
      || ',"key":' || pg_catalog.to_json(p_key_id)::text
      || ',"org":"' || p_org_id::text || '"'
      || ',"root":"' || pg_catalog.encode(root, 'hex') || '"'
      || ',"size":' || size::text
      || ',"time":"' || pg_catalog.to_char(pg_catalog.clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
      || ',"v":1}';
end
$$;
comment on function audit.checkpoint_body(uuid, text, bigint) is
  'The canonical body of a checkpoint of an organization''s chain (its current size unless given).';
revoke execute on function audit.checkpoint_body(uuid, text, bigint) from public, anon, authenticated;
grant execute on function audit.checkpoint_body(uuid, text, bigint) to service_role;

-- Stores a signed checkpoint after checking that its body states the chain as it is. (The Ed25519
-- signature itself is made and checked outside: Postgres has no Ed25519 here.)
create function audit.store_checkpoint(p_body text, p_signature bytea) returns audit.checkpoints
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  fields jsonb := p_body::jsonb;
  expected text;
  stored audit.checkpoints;
begin
  expected := audit.checkpoint_body((fields ->> 'org')::uuid, fields ->> 'key', (fields ->> 'size')::bigint);
  if (expected::jsonb - 'time') <> (fields - 'time') then
    raise exception 'checkpoint body does not state organization %''s chain at size %', fields ->> 'org', fields ->> 'size'
      using errcode = 'invalid_parameter_value';
  end if;
  insert into audit.checkpoints (org_id, size, body, signature, key_id)
  values ((fields ->> 'org')::uuid, (fields ->> 'size')::bigint, p_body, p_signature, fields ->> 'key')
  on conflict (org_id, size) do nothing
  returning * into stored;
  if stored.org_id is null then
    select * into stored from audit.checkpoints c
     where c.org_id = (fields ->> 'org')::uuid and c.size = (fields ->> 'size')::bigint;
  end if;
  return stored;
end
$$;
comment on function audit.store_checkpoint(text, bytea) is
  'Records a signed checkpoint whose body matches the chain; returns the stored one (the first for that size).';
revoke execute on function audit.store_checkpoint(text, bytea) from public, anon, authenticated;
grant execute on function audit.store_checkpoint(text, bytea) to service_role;

-- Redaction (for example an erasure request): the payload goes, the entry and its hash of the
-- payload stay, so the chain still verifies. The purge itself is recorded.
create function public.purge_audit_payload(p_seq bigint, p_reason text) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
begin
  if not private.has_org_role('tenant_admin') then
    raise exception 'only a tenant_admin can purge audit payloads, in the organization''s context'
      using errcode = 'insufficient_privilege';
  end if;
  if coalesce(pg_catalog.length(pg_catalog.btrim(p_reason)), 0) = 0 or pg_catalog.length(p_reason) > 500 then
    raise exception 'a purge needs a reason of 1 to 500 characters' using errcode = 'invalid_parameter_value';
  end if;
  update audit.records x set payload = null, purged_at = pg_catalog.clock_timestamp()
    from audit.entries e
   where e.org_id = org and e.seq = p_seq
     and x.org_id = e.org_id and x.xid = e.record_xid and x.id = e.record_id and x.payload is not null;
  if not found then
    perform private.refuse_request(404, 'audit_payload_not_found', pg_catalog.format('Entry %s of this organization has no payload to purge.', p_seq));
  end if;
  return audit.append(org, 'audit.payload_purged', 'audit.entries', p_seq::text,
                      pg_catalog.jsonb_build_object('seq', p_seq, 'reason', p_reason));
end
$$;
comment on function public.purge_audit_payload(bigint, text) is
  'Deletes one audit entry''s payload (tenant_admin) and records the purge; returns the purge''s audit.records id.';
revoke execute on function public.purge_audit_payload(bigint, text) from public, anon, authenticated;
grant execute on function public.purge_audit_payload(bigint, text) to authenticated;

create function public.latest_audit_checkpoint()
returns table (checkpoint text, signature text, key_id text, public_key text)
language sql stable security definer
set search_path = ''
as $$
  select c.body, pg_catalog.encode(c.signature, 'base64'), c.key_id, pg_catalog.encode(k.public_key, 'base64')
    from audit.checkpoints c join audit.signing_keys k on k.key_id = c.key_id
   where c.org_id = private.current_org_id()
   order by c.size desc, c.created_at desc
   limit 1
$$;
comment on function public.latest_audit_checkpoint() is
  'The newest signed checkpoint of the current organization''s chain: what a customer pins.';
revoke execute on function public.latest_audit_checkpoint() from public, anon, authenticated;
grant execute on function public.latest_audit_checkpoint() to authenticated;

create function public.audit_signing_keys()
returns table (key_id text, public_key text, created_at timestamptz, retired_at timestamptz)
language sql stable security definer
set search_path = ''
as $$
  select k.key_id, pg_catalog.encode(k.public_key, 'base64'), k.created_at, k.retired_at
    from audit.signing_keys k order by k.created_at
$$;
comment on function public.audit_signing_keys() is 'The Ed25519 public keys (raw, base64) that sign audit checkpoints.';
revoke execute on function public.audit_signing_keys() from public, anon, authenticated;
grant execute on function public.audit_signing_keys() to authenticated;

-- =============================================================================================
-- Triggers: append-only for real
-- =============================================================================================
create function audit.refuse_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'audit entries are append-only: % on %.% is refused', pg_catalog.lower(tg_op), tg_table_schema, tg_table_name
    using errcode = 'insufficient_privilege';
end
$$;
comment on function audit.refuse_change() is 'Refuses UPDATE, DELETE and TRUNCATE on the audit chain.';
revoke execute on function audit.refuse_change() from public, anon, authenticated;

-- A record changes once at most: a purge empties the payload of one that is sealed.
create function audit.refuse_change_but_purge() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.payload is not null and new.payload is null and new.purged_at is not null
     and (new.id, new.xid, new.org_id, new.action, new.actor, new.target_type, new.target_id, new.occurred_at)
         is not distinct from (old.id, old.xid, old.org_id, old.action, old.actor, old.target_type, old.target_id, old.occurred_at)
     and exists (select 1 from audit.entries e where e.record_id = old.id) then
    return new;
  end if;
  raise exception 'audit records are append-only: only a purge of a sealed record''s payload is allowed'
    using errcode = 'insufficient_privilege';
end
$$;
comment on function audit.refuse_change_but_purge() is 'Refuses any change to an audit record but purging a sealed one''s payload.';
revoke execute on function audit.refuse_change_but_purge() from public, anon, authenticated;

create trigger refuse_update_delete before update or delete on audit.entries
  for each row execute function audit.refuse_change();
create trigger refuse_truncate before truncate on audit.entries
  for each statement execute function audit.refuse_change();
create trigger refuse_update_delete before update or delete on audit.checkpoints
  for each row execute function audit.refuse_change();
create trigger refuse_truncate before truncate on audit.checkpoints
  for each statement execute function audit.refuse_change();
create trigger refuse_delete before delete on audit.records
  for each row execute function audit.refuse_change();
create trigger refuse_truncate before truncate on audit.records
  for each statement execute function audit.refuse_change();
create trigger refuse_update before update on audit.records
  for each row execute function audit.refuse_change_but_purge();
-- Replica mode (session_replication_role = replica) skips ordinary triggers, not these.
alter table audit.entries enable always trigger refuse_update_delete;
alter table audit.entries enable always trigger refuse_truncate;
alter table audit.checkpoints enable always trigger refuse_update_delete;
alter table audit.checkpoints enable always trigger refuse_truncate;
alter table audit.records enable always trigger refuse_delete;
alter table audit.records enable always trigger refuse_truncate;
alter table audit.records enable always trigger refuse_update;

-- Every organization's chain starts empty when the organization is created.
create function audit.create_head() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into audit.heads (org_id) values (new.id)
  on conflict (org_id) do nothing;
  return null;
end
$$;
comment on function audit.create_head() is 'AFTER INSERT trigger on organizations: creates the organization''s empty chain head.';
revoke execute on function audit.create_head() from public, anon, authenticated;
create trigger audit_head after insert on public.organizations
  for each row execute function audit.create_head();
insert into audit.heads (org_id) select o.id from public.organizations o;

-- What gets recorded (tenancy). Later tables add their own line.
create trigger audit after update on public.organizations
  for each row execute function audit.record_change('organization');
create trigger audit after insert or update or delete on public.organization_members
  for each row execute function audit.record_change('membership');
create trigger audit after insert or update or delete on public.projects
  for each row execute function audit.record_change('project');
create trigger audit after insert or update or delete on public.project_members
  for each row execute function audit.record_change('project_membership');
create trigger audit after insert or update or delete on public.invitations
  for each row execute function audit.record_change('invitation', 'token_hash');
create trigger audit after insert or update or delete on public.organization_domains
  for each row execute function audit.record_change('domain', 'verification_token');
create trigger audit after insert or update or delete on public.agents
  for each row execute function audit.record_change('agent');
create trigger audit after insert or update or delete on public.agent_versions
  for each row execute function audit.record_change('agent_version');

-- =============================================================================================
-- RLS policies
-- =============================================================================================
alter table audit.entries enable row level security;
alter table audit.entries force row level security;
create policy "members read their organization's audit entries" on audit.entries
  for select to authenticated
  using (org_id = (select private.current_org_id()));

alter table audit.records enable row level security;
alter table audit.records force row level security;
create policy "members read their organization's audit records" on audit.records
  for select to authenticated
  using (org_id = (select private.current_org_id()));

alter table audit.heads enable row level security;
alter table audit.heads force row level security;
create policy "members read their organization's chain head" on audit.heads
  for select to authenticated
  using (org_id = (select private.current_org_id()));

alter table audit.signing_keys enable row level security;
alter table audit.signing_keys force row level security;
alter table audit.checkpoints enable row level security;
alter table audit.checkpoints force row level security;
create policy "members read their organization's checkpoints" on audit.checkpoints
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "signing keys are read through audit_signing_keys()" on audit.signing_keys
  for select to authenticated
  using (false);

-- The records not sealed yet: those past their organization's sealed mark (every organization has
-- a head from its creation on, so this reads only the records past it).
create view audit.pending with (security_invoker = true) as
  select x.* from audit.heads h
   cross join lateral (select * from audit.records r
                        where r.org_id = h.org_id and (r.xid, r.id) > (h.sealed_xid, h.sealed_id)) x;
comment on view audit.pending is 'Recorded actions that audit.seal has not chained yet.';

-- Members read the chain through the API as public.audit_log (RLS of audit.* applies: the view
-- runs with the caller's rights), actions not sealed yet included, without a number or hashes.
create view public.audit_log with (security_invoker = true) as
  select e.org_id, e.seq, e.action, e.actor, e.target_type, e.target_id, e.occurred_at,
         pg_catalog.encode(e.prev_hash, 'hex') as prev_hash,
         pg_catalog.encode(e.entry_hash, 'hex') as entry_hash,
         e.canonical, x.payload, true as sealed
    from audit.entries e
    left join audit.records x on x.org_id = e.org_id and x.xid = e.record_xid and x.id = e.record_id
  union all
  select x.org_id, null, x.action, x.actor, x.target_type, x.target_id, x.occurred_at, null, null, null, x.payload, false
    from audit.pending x;
comment on view public.audit_log is
  'The organization''s audit chain, as its members may read it (in context); sealed is false for an action not chained yet.';
create trigger refuse_write instead of insert or update or delete on public.audit_log
  for each row execute function private.refuse_view_write();

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on audit.heads, audit.entries, audit.records, audit.pending from public, anon, authenticated, service_role;
grant usage on schema audit to authenticated;
grant select on audit.entries, audit.records, audit.pending, audit.heads, audit.checkpoints to authenticated;
grant select on audit.entries, audit.records, audit.pending, audit.heads, audit.checkpoints to service_role;
-- Recording: the service role writes what an action is; the database, who, when and in which transaction.
grant insert (org_id, action, target_type, target_id, payload) on audit.records to service_role;
grant select, insert, update (retired_at) on audit.signing_keys to service_role;
revoke all on public.audit_log from public, anon, authenticated, service_role;
grant select on public.audit_log to authenticated, service_role;
