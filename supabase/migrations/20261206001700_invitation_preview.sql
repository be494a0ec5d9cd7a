-- What an invitation is, for the person it is addressed to (issue 25): the accept page names the
-- organization, who invited them and the role before they accept. One answer for an unknown, used,
-- expired or foreign token (404 invitation_not_found), as accept_invitation gives, so that tokens
-- can't be probed.

create function public.invitation_preview(p_token text) returns jsonb
language plpgsql stable security definer
set search_path = ''
as $$
declare
  invite public.invitations%rowtype;
  caller_email text;
  answer jsonb;
begin
  select u.email into caller_email from auth.users u where u.id = (select auth.uid());
  if caller_email is null then
    perform private.refuse_request(401, 'sign_in_required', 'Sign in with the address the invitation was sent to.');
  end if;
  select * into invite from public.invitations i
   where i.token_hash = extensions.digest(coalesce(p_token, ''), 'sha256');
  if invite.id is null or invite.accepted_at is not null or invite.expires_at <= pg_catalog.now()
     or invite.email <> pg_catalog.lower(caller_email) then
    perform private.refuse_request(404, 'invitation_not_found', 'No open invitation with that token is addressed to you.');
  end if;
  select pg_catalog.jsonb_build_object(
           'organization', o.name,
           'role', invite.role,
           'invited_by', (select u.email from auth.users u where u.id = invite.invited_by),
           'expires_at', invite.expires_at)
    into answer
    from public.organizations o where o.id = invite.org_id;
  return answer;
end
$$;
comment on function public.invitation_preview(text) is
  'The organization, role and inviter of an open invitation addressed to the signed-in person (by its token).';
revoke execute on function public.invitation_preview(text) from public, anon, authenticated;
grant execute on function public.invitation_preview(text) to authenticated;
