-- Health (issue 29, seed 002: "health monitoring endpoints and structured failure handling"): what
-- the health function reports beyond whether the database answers, read in one call by the
-- service role. The function turns these figures into ok / degraded (functions/health).
--
--   private.health_canary   a Vault secret made for the purpose, and the SHA-256 of its value:
--                           reading it back proves Vault decrypts with the root key it holds
--   private.health_report() the Vault round trip, the sealer's lag, the checkpoints' lag, the run
--                           queue; numbers and booleans only, never a secret or an address

create table private.health_canary (
  singleton boolean primary key default true check (singleton),
  secret_id uuid not null,
  sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$')
);
comment on table private.health_canary is
  'A Vault secret that holds nothing but itself, and its SHA-256: the health check decrypts it to prove Vault works.';
revoke all on private.health_canary from public, anon, authenticated, service_role;

do $$
declare
  canary text := pg_catalog.encode(extensions.gen_random_bytes(32), 'hex');
begin
  insert into private.health_canary (secret_id, sha256)
  values (vault.create_secret(canary, 'gatehouse_health_canary', 'health check: a value that protects nothing, read back to prove Vault decrypts'),
          pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(canary, 'UTF8')), 'hex'));
end
$$;

create function private.health_report() returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  vault_ok boolean;
  pending_count bigint;
  oldest_unsealed timestamptz;
  oldest_uncovered timestamptz;
  queue_depth bigint;
  oldest_ready timestamptz;
  now_at timestamptz := pg_catalog.clock_timestamp();
begin
  begin
    select pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(d.decrypted_secret, 'UTF8')), 'hex') = c.sha256
      into vault_ok
      from private.health_canary c join vault.decrypted_secrets d on d.id = c.secret_id;
  exception when others then
    vault_ok := false;  -- the root key is missing or wrong: decrypting fails
  end;
  select pg_catalog.count(*), pg_catalog.min(p.occurred_at) into pending_count, oldest_unsealed from audit.pending p;
  -- Per chain, the first entry no signed checkpoint covers yet; the oldest of those.
  select pg_catalog.min(e.occurred_at) into oldest_uncovered
    from audit.heads h
    join audit.entries e on e.org_id = h.org_id
     and e.seq = coalesce((select pg_catalog.max(c.size) from audit.checkpoints c where c.org_id = h.org_id), 0) + 1;
  select pg_catalog.count(*), pg_catalog.min(j.run_at) into queue_depth, oldest_ready
    from graphile_worker._private_jobs j where j.is_available and j.run_at <= now_at;
  return pg_catalog.jsonb_build_object(
    'vault_round_trip', coalesce(vault_ok, false),
    'unsealed', pending_count,
    'oldest_unsealed_seconds', pg_catalog.round(extract(epoch from now_at - oldest_unsealed)::numeric, 1),
    'oldest_uncheckpointed_seconds', pg_catalog.round(extract(epoch from now_at - oldest_uncovered)::numeric, 1),
    'run_queue_depth', queue_depth,
    'oldest_queued_seconds', pg_catalog.round(extract(epoch from now_at - oldest_ready)::numeric, 1));
end
$$;
comment on function private.health_report() is
  'The health function''s figures: the Vault round trip, the sealer''s and the checkpoints'' lag, the run queue. No secret, no address.';
revoke execute on function private.health_report() from public, anon, authenticated;
grant execute on function private.health_report() to service_role;
