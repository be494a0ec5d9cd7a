-- Audit chain v2, part 6 (issue 28): no work per export or checkpoint that grows with the chain's
-- whole length. audit.frontier_at (…_audit_source_of_truth.sql) resumed only from stored
-- checkpoints; a chain that grew by 100,000 entries since its last one (or had none) made an
-- export of its last 1,000 entries read and hash all 100,000, twice (the header's frontier and
-- the checkpoint's), one function call per entry: seconds.
--
-- Now frontier_at keeps, as it goes, the frontier at every multiple of 4096 entries
-- (audit.frontiers), computed from the entries (never from audit.heads, which a checkpoint only
-- cross-checks), and resumes from the nearest one or checkpoint below the size asked for; and it
-- extends the tree inline, as audit.seal does, rather than through a call per entry. Each entry is
-- hashed into a kept frontier once; after that an export or checkpoint reads at most 4096 entries.
-- A frontier edited behind its back makes the next checkpoint refuse (it disagrees with the head)
-- and an export's root fail offline: loudly, never silently.

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
