-- Audit pins kept per person (issue 25): the key (and checkpoint) a member pins on the audit screen
-- to verify exports against survives a reload and another browser, because it lives here, not in
-- the page.
--
-- - audit_pins: one pin per person and organization: the key id, its Ed25519 public key (base64,
--   32 bytes) and optionally the signed checkpoint it was pinned with. A tenant table (RLS, the
--   context guard, audited, the step-up guard): a pin is what a person trusts to tell a true export
--   from a forged one, so changing it is recorded, and a person with a second factor changes it at
--   aal2 only (an aal1 session that could swap the pin could make a forged export verify for them).
-- - Each person reads only their own pin; nobody else sees it, an admin included. It is written
--   through pin_audit_key and unpin_audit_key only, which pin for the caller in the context's
--   organization: no one pins for someone else.

create table public.audit_pins (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  user_id uuid not null default auth.uid(),
  key_id text not null check (char_length(key_id) between 1 and 100),
  public_key text not null check (public_key ~ '^[A-Za-z0-9+/]{43}=$'),
  checkpoint jsonb check (checkpoint is null or (jsonb_typeof(checkpoint) = 'object' and pg_column_size(checkpoint) <= 8192)),
  pinned_at timestamptz not null default now(),
  unique (org_id, user_id),
  unique (org_id, id),
  foreign key (org_id, user_id) references public.organization_members (org_id, user_id) on delete cascade
);
comment on table public.audit_pins is
  'The signing key (and checkpoint) each member pinned to verify audit exports against: their own, kept across reloads.';
select private.make_tenant_table('public.audit_pins', 'audit_pin');

-- =============================================================================================
-- Functions
-- =============================================================================================
create function public.pin_audit_key(p_key_id text, p_public_key text, p_checkpoint jsonb default null)
returns public.audit_pins
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  pin public.audit_pins;
begin
  if (select auth.uid()) is null then
    perform private.refuse_request(401, 'sign_in_required', 'Sign in to pin a key.');
  end if;
  if org is null then
    perform private.refuse_request(400, 'context_missing_org_id', 'Send X-Org-Id: the organization whose chain the pin is for.');
  end if;
  if p_key_id is null or char_length(p_key_id) not between 1 and 100
     or p_public_key is null or p_public_key !~ '^[A-Za-z0-9+/]{43}=$' then
    perform private.refuse_request(400, 'invalid_pin', 'A pin is a key id (1 to 100 characters) and an Ed25519 public key in base64 (32 bytes).');
  end if;
  if p_checkpoint is not null and (pg_catalog.jsonb_typeof(p_checkpoint) <> 'object' or pg_catalog.pg_column_size(p_checkpoint) > 8192) then
    perform private.refuse_request(400, 'invalid_pin', 'A pinned checkpoint is a JSON object of at most 8 KB.');
  end if;
  insert into public.audit_pins as p (org_id, user_id, key_id, public_key, checkpoint)
  values (org, (select auth.uid()), p_key_id, p_public_key, p_checkpoint)
  on conflict (org_id, user_id) do update
     set key_id = excluded.key_id, public_key = excluded.public_key, checkpoint = excluded.checkpoint, pinned_at = pg_catalog.now()
  returning p.* into pin;
  return pin;
end
$$;
comment on function public.pin_audit_key(text, text, jsonb) is
  'Pins, for the caller in the context''s organization, the audit signing key (and checkpoint) exports are verified against.';

create function public.unpin_audit_key()
returns void
language sql volatile security definer
set search_path = ''
as $$
  delete from public.audit_pins p where p.org_id = private.current_org_id() and p.user_id = (select auth.uid())
$$;
comment on function public.unpin_audit_key() is 'Removes the caller''s audit pin in the context''s organization.';

revoke execute on function public.pin_audit_key(text, text, jsonb), public.unpin_audit_key() from public, anon;
grant execute on function public.pin_audit_key(text, text, jsonb), public.unpin_audit_key() to authenticated;

-- =============================================================================================
-- RLS policies and grants
-- =============================================================================================
create policy "members read their own pin" on public.audit_pins
  for select to authenticated
  using (org_id = (select private.current_org_id()) and user_id = (select auth.uid()));
create policy "pins are written by pin_audit_key" on public.audit_pins
  for insert to authenticated
  with check (false);
create policy "pins are changed by pin_audit_key" on public.audit_pins
  for update to authenticated
  using (false);
create policy "pins are removed by unpin_audit_key" on public.audit_pins
  for delete to authenticated
  using (false);

revoke all on public.audit_pins from anon, authenticated;
grant select on public.audit_pins to authenticated;
grant select, insert, update, delete on public.audit_pins to service_role;
