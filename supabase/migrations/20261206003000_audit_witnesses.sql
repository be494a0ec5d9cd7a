-- Audit chain v2, part 2 (issue 28): witnesses' cosignatures of our checkpoints.
--
-- A witness (c2sp.org/tlog-witness) cosigns a checkpoint only after checking that it extends the
-- last one it cosigned for the same log (a consistency proof), so a log can't show two histories
-- to two audiences without some witness refusing. The audit-checkpoint function submits each new
-- checkpoint's C2SP note to the witnesses configured (GATEHOUSE_AUDIT_WITNESSES) through the
-- add-checkpoint flow, checks each cosignature (cosignature/v1) with the witness's key, and keeps
-- it here. The note published with a checkpoint (exports, proofs, latest_audit_checkpoint) is the
-- log's note followed by the cosignature lines, as witnessed notes are read.

create table audit.cosignatures (
  org_id uuid not null,
  size bigint not null,
  witness text not null check (witness ~ '^[^[:space:]+]{1,200}$'),
  line text not null check (pg_catalog.octet_length(line) <= 512 and line ~ ('^' || E'\u2014' || ' [^ ]+ [A-Za-z0-9+/]+={0,2}' || E'\n' || '$')),
  created_at timestamptz not null default now(),
  primary key (org_id, size, witness),
  foreign key (org_id, size) references audit.checkpoints (org_id, size)
);
comment on table audit.cosignatures is
  'Witnesses'' cosignatures (C2SP cosignature/v1 lines) of an organization''s checkpoints, checked with each witness''s key before they are kept. Append-only.';

create trigger refuse_update_delete before update or delete on audit.cosignatures
  for each row execute function audit.refuse_change();
create trigger refuse_truncate before truncate on audit.cosignatures
  for each statement execute function audit.refuse_change();
alter table audit.cosignatures enable always trigger refuse_update_delete;
alter table audit.cosignatures enable always trigger refuse_truncate;

alter table audit.cosignatures enable row level security;
alter table audit.cosignatures force row level security;
create policy "members read their organization's cosignatures" on audit.cosignatures
  for select to authenticated
  using (org_id = (select private.current_org_id()));
revoke all on audit.cosignatures from public, anon, authenticated, service_role;
grant select on audit.cosignatures to authenticated;
grant select, insert on audit.cosignatures to service_role;

-- A checkpoint's note as published: the log's signed note, then the witnesses' cosignatures. It
-- takes the note itself, so that the statement that stores a checkpoint can publish it (a function
-- would not see a row its own statement inserted); the cosignatures are all committed before.
create function audit.note_of(p_note text, p_org_id uuid, p_size bigint) returns text
language sql stable security definer
set search_path = ''
as $$
  select p_note || coalesce((select pg_catalog.string_agg(w.line, '' order by w.witness)
                               from audit.cosignatures w where w.org_id = p_org_id and w.size = p_size), '')
$$;
comment on function audit.note_of(text, uuid, bigint) is
  'A checkpoint''s C2SP note as published: the log''s signature, then every witness''s cosignature line.';
revoke execute on function audit.note_of(text, uuid, bigint) from public, anon, authenticated;
grant execute on function audit.note_of(text, uuid, bigint) to service_role;

create or replace function public.latest_audit_checkpoint()
returns table (checkpoint text, signature text, key_id text, public_key text, note text)
language sql stable security definer
set search_path = ''
as $$
  select c.body, pg_catalog.translate(pg_catalog.encode(c.signature, 'base64'), E'\n', ''), c.key_id,
         pg_catalog.translate(pg_catalog.encode(k.public_key, 'base64'), E'\n', ''), audit.note_of(c.note, c.org_id, c.size)
    from audit.checkpoints c join audit.signing_keys k on k.key_id = c.key_id
   where c.org_id = private.current_org_id()
   order by c.size desc, c.created_at desc
   limit 1
$$;
