-- An invitation's link lasts as long as the invitation (issue 25, section 3). The mailed link is
-- Supabase Auth's, which lasts otp_expiry (an hour here, at most a day on hosted Supabase), while
-- the invitation lasts seven days. Whoever holds the invitation's token (it is in the mail) may
-- have a new link mailed, to the invited address only, while the invitation is open: the
-- invitations function's POST /links, through private.invitation_link.
--
-- - invitations.link_sent_at: when the last link was mailed; a new one at most once a minute.
--   Setting it is an audited change of the invitation, like every other.

alter table public.invitations add column link_sent_at timestamptz;
comment on column public.invitations.link_sent_at is 'When a link to accept it was last mailed (at most once a minute).';

-- What to mail for token p_token, and whether to: 'send' (link_sent_at is set now), or the reason
-- not to: 'not_found' (no such token, or accepted), 'expired', 'too_soon' (a link went out in the
-- last minute).
create function private.invitation_link(p_token text)
returns table (outcome text, email text, organization text, role public.member_role, invited_by text, expires_at timestamptz)
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  invite public.invitations%rowtype;
begin
  select i.* into invite from public.invitations i
   where i.token_hash = extensions.digest(coalesce(p_token, ''), 'sha256')
   for update;
  if invite.id is null or invite.accepted_at is not null then
    return query select 'not_found'::text, null::text, null::text, null::public.member_role, null::text, null::timestamptz;
    return;
  end if;
  if invite.expires_at <= pg_catalog.now() then
    return query select 'expired'::text, null::text, null::text, null::public.member_role, null::text, invite.expires_at;
    return;
  end if;
  if invite.link_sent_at > pg_catalog.now() - interval '1 minute' then
    return query select 'too_soon'::text, null::text, null::text, null::public.member_role, null::text, invite.expires_at;
    return;
  end if;
  update public.invitations i set link_sent_at = pg_catalog.now() where i.id = invite.id;
  return query
    select 'send'::text, invite.email, o.name, invite.role, (select u.email::text from auth.users u where u.id = invite.invited_by), invite.expires_at
      from public.organizations o where o.id = invite.org_id;
end
$$;
comment on function private.invitation_link(text) is
  'Whether to mail a new link for an open invitation (by its token), and what: at most once a minute, until it expires.';
revoke execute on function private.invitation_link(text) from public, anon, authenticated;
grant execute on function private.invitation_link(text) to service_role;
