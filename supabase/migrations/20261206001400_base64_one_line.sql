-- Signatures and keys as one line of base64 (issue 25): Postgres's encode(…, 'base64') breaks its
-- output every 76 characters, so an Ed25519 signature (88 characters) came with a line break that
-- verifiers and copy-paste had to strip. The published checkpoint and keys are now one line.

create or replace function public.latest_audit_checkpoint()
returns table (checkpoint text, signature text, key_id text, public_key text)
language sql stable security definer
set search_path = ''
as $$
  select c.body, pg_catalog.translate(pg_catalog.encode(c.signature, 'base64'), E'\n', ''), c.key_id,
         pg_catalog.translate(pg_catalog.encode(k.public_key, 'base64'), E'\n', '')
    from audit.checkpoints c join audit.signing_keys k on k.key_id = c.key_id
   where c.org_id = private.current_org_id()
   order by c.size desc, c.created_at desc
   limit 1
$$;

create or replace function public.audit_signing_keys()
returns table (key_id text, public_key text, created_at timestamptz, retired_at timestamptz)
language sql stable security definer
set search_path = ''
as $$
  select k.key_id, pg_catalog.translate(pg_catalog.encode(k.public_key, 'base64'), E'\n', ''), k.created_at, k.retired_at
    from audit.signing_keys k order by k.created_at
$$;
