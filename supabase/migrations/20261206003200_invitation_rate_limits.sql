-- Invitations are rate-limited (issue 29): every invitation mails someone, so without a limit a
-- tenant admin's session (or a script holding one) could make Gatehouse send mail to anyone, as
-- fast as it liked. Two GCRA limits, taken in the statement that creates the invitation:
--   per organization: 100 a day, in bursts of up to 50 (a team onboarded at once);
--   per inviter:      50 a day, in bursts of up to 25, across every organization they invite to
--                     (one person can't multiply their quota by making organizations).
-- A refusal is 429 invitations_rate_limited with Retry-After, and counts against nothing: the
-- refused statement rolls back, its limit's state with it. Re-mailing an open invitation's link
-- (POST /functions/v1/invitations/links) keeps its own limit, once a minute per invitation.
--
--   private.invitation_rates          the limits' state: the theoretical arrival time of the next
--   private.take_invitation_rate      GCRA: admits and counts one invitation, or the seconds to wait
--   public.create_invitation          takes both limits before it writes

create table private.invitation_rates (
  scope text not null check (scope in ('organization', 'inviter')),
  scope_id uuid not null,
  tat timestamptz not null,
  primary key (scope, scope_id)
);
comment on table private.invitation_rates is
  'The invitation limits'' GCRA state (per organization, per inviter): when the next invitation is due.';
revoke all on private.invitation_rates from public, anon, authenticated, service_role;

-- GCRA: `p_count` invitations per `p_period`, `p_burst` at once. Admits and counts one (null), or
-- returns the seconds until one would be admitted.
create function private.take_invitation_rate(p_scope text, p_scope_id uuid, p_count integer, p_period interval, p_burst integer)
returns numeric
language plpgsql volatile
set search_path = ''
as $$
declare
  now_at timestamptz := pg_catalog.clock_timestamp();
  step interval := p_period / p_count;
  tolerance interval := p_period / p_count * (p_burst - 1);
  admitted timestamptz;
  due timestamptz;
begin
  insert into private.invitation_rates as r (scope, scope_id, tat)
  values (p_scope, p_scope_id, now_at + step)
  on conflict (scope, scope_id) do update
     set tat = greatest(r.tat, now_at) + step
   where greatest(r.tat, now_at) - now_at <= tolerance
  returning r.tat into admitted;
  if admitted is not null then
    return null;
  end if;
  select r.tat into due from private.invitation_rates r where r.scope = p_scope and r.scope_id = p_scope_id;
  return greatest(extract(epoch from due - tolerance - now_at), 0.001);
end
$$;
comment on function private.take_invitation_rate(text, uuid, integer, interval, integer) is
  'GCRA for invitations: admits and counts one (null), or returns the seconds to wait.';
revoke execute on function private.take_invitation_rate(text, uuid, integer, interval, integer) from public, anon, authenticated;

create or replace function public.create_invitation(p_email text, p_role public.member_role) returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := private.current_org_id();
  inviter uuid := (select auth.uid());
  token text := pg_catalog.encode(extensions.gen_random_bytes(32), 'hex');
  wait numeric;
  which text;
begin
  if org is null then
    raise exception 'no organization context: send X-Org-Id' using errcode = 'insufficient_privilege';
  end if;
  if not private.has_org_role('tenant_admin') then
    raise exception 'only a tenant_admin can invite members' using errcode = 'insufficient_privilege';
  end if;
  -- The organization's limit, then the inviter's; a refusal rolls both back.
  wait := private.take_invitation_rate('organization', org, 100, interval '1 day', 50);
  which := 'this organization''s';
  if wait is null and inviter is not null then
    wait := private.take_invitation_rate('inviter', inviter, 50, interval '1 day', 25);
    which := 'your';
  end if;
  if wait is not null then
    raise sqlstate 'PGRST' using
      message = pg_catalog.json_build_object('code', 'invitations_rate_limited',
        'message', pg_catalog.format('%s invitations are used up for now: try again in %s seconds', which, pg_catalog.ceil(wait)))::text,
      detail = pg_catalog.json_build_object('status', 429,
        'headers', pg_catalog.json_build_object('Retry-After', pg_catalog.ceil(wait)::text))::text;
  end if;
  -- Re-inviting an address replaces its pending invitation (and so revokes the old token).
  delete from public.invitations i where i.org_id = org and i.email = pg_catalog.lower(p_email) and i.accepted_at is null;
  insert into public.invitations (org_id, email, role, token_hash, invited_by)
  values (org, pg_catalog.lower(p_email), p_role, extensions.digest(token, 'sha256'), inviter);
  return token;
end
$$;
comment on function public.create_invitation(text, public.member_role) is
  'Invites an email address to the current organization (tenant_admin only; at most 100 a day per organization, 50 per inviter); returns the token once.';
