-- Audit chain v2, part 2 (issue 28): checkpoints also as C2SP signed notes (c2sp.org/tlog-checkpoint),
-- the format transparency logs share (Sigstore's Rekor v2, Go's checksum database), so that a
-- witness can cosign ours (c2sp.org/tlog-witness) and any checkpoint tool can read them. Each
-- checkpoint keeps, beside its RFC 8785 body and that body's signature (format 1, which exports
-- must go on verifying), the signed note of the same tree:
--
--   <origin>\n<size>\n<base64 root>\n\n— <origin> <base64(key ID || Ed25519 signature)>\n
--
-- The origin names the organization's log (GATEHOUSE_AUDIT_ORIGIN/<organization id>) and is the
-- key name; the signature is made outside (functions/_shared/audit/checkpoint.ts and note.ts), as
-- Postgres has no Ed25519. The database checks that the note states the size and root of the body
-- it is stored with, so a note can't say another tree than the checkpoint beside it.

alter table audit.checkpoints add column note text;
comment on column audit.checkpoints.note is
  'The same checkpoint as a C2SP tlog-checkpoint signed note (origin, size, base64 root, Ed25519 note signature); null before notes were kept.';

drop function audit.store_checkpoint(text, bytea);

-- Stores a signed checkpoint, as before (…_audit.sql), with the Merkle frontier it states
-- (…_audit_source_of_truth.sql) and its signed note.
create function audit.store_checkpoint(p_body text, p_signature bytea, p_note text default null) returns audit.checkpoints
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  fields jsonb := p_body::jsonb;
  v_org uuid := (fields ->> 'org')::uuid;
  v_size bigint := (fields ->> 'size')::bigint;
  expected text;
  origin text;
  stored audit.checkpoints;
begin
  expected := audit.checkpoint_body(v_org, fields ->> 'key', v_size);
  if (expected::jsonb - 'time') <> (fields - 'time') then
    raise exception 'checkpoint body does not state organization %''s chain at size %', fields ->> 'org', fields ->> 'size'
      using errcode = 'invalid_parameter_value';
  end if;
  if p_note is not null then
    origin := pg_catalog.split_part(p_note, E'\n', 1);
    if origin !~ ('^[^[:space:]+]+/' || v_org::text || '$')
       or not pg_catalog.starts_with(p_note, origin || E'\n' || v_size::text || E'\n'
                 || pg_catalog.translate(pg_catalog.encode(pg_catalog.decode(fields ->> 'root', 'hex'), 'base64'), E'\n', '')
                 || E'\n\n\u2014 ' || origin || ' ') then
      raise exception 'the checkpoint note does not state organization %''s chain at size %', fields ->> 'org', fields ->> 'size'
        using errcode = 'invalid_parameter_value';
    end if;
  end if;
  insert into audit.checkpoints (org_id, size, body, signature, key_id, frontier, note)
  values (v_org, v_size, p_body, p_signature, fields ->> 'key', audit.frontier_at(v_org, v_size), p_note)
  on conflict (org_id, size) do nothing
  returning * into stored;
  if stored.org_id is null then
    select * into stored from audit.checkpoints c where c.org_id = v_org and c.size = v_size;
  end if;
  return stored;
end
$$;
comment on function audit.store_checkpoint(text, bytea, text) is
  'Records a signed checkpoint whose body (and C2SP note, if given) states the chain, with its Merkle frontier; returns the stored one (the first for that size).';
revoke execute on function audit.store_checkpoint(text, bytea, text) from public, anon, authenticated;
grant execute on function audit.store_checkpoint(text, bytea, text) to service_role;

drop function public.latest_audit_checkpoint();
create function public.latest_audit_checkpoint()
returns table (checkpoint text, signature text, key_id text, public_key text, note text)
language sql stable security definer
set search_path = ''
as $$
  select c.body, pg_catalog.translate(pg_catalog.encode(c.signature, 'base64'), E'\n', ''), c.key_id,
         pg_catalog.translate(pg_catalog.encode(k.public_key, 'base64'), E'\n', ''), c.note
    from audit.checkpoints c join audit.signing_keys k on k.key_id = c.key_id
   where c.org_id = private.current_org_id()
   order by c.size desc, c.created_at desc
   limit 1
$$;
comment on function public.latest_audit_checkpoint() is
  'The newest signed checkpoint of the current organization''s chain (format 1 body and signature, and its C2SP signed note): what a customer pins.';
revoke execute on function public.latest_audit_checkpoint() from public, anon, authenticated;
grant execute on function public.latest_audit_checkpoint() to authenticated;
