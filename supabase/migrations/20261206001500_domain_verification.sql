-- Domain verification (issue 25): a claimed email domain is verified by the server, never by the
-- client. The tenant publishes its claim's token as a DNS TXT record at `_gatehouse.<domain>`; the
-- domains function (functions/domains) looks the record up with node:dns's Resolver, on demand
-- from the console and on a schedule, and hands what it found to private.verify_domain_claim, which
-- sets verified_at only when the claim's own token is among the TXT values (audited, as every
-- change of organization_domains). A domain another organization verified first is refused
-- (409 domain_verified_elsewhere): a domain vouches for one organization.

create function private.verify_domain_claim(p_org_id uuid, p_domain text, p_txt_values text[])
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  claim public.organization_domains;
begin
  select d.* into claim from public.organization_domains d
   where d.org_id = p_org_id and d.domain = pg_catalog.lower(p_domain)
     for update;
  if claim.domain is null then
    perform private.refuse_request(404, 'domain_not_claimed', 'The organization has not claimed that domain.');
  end if;
  if claim.verified_at is not null then
    return pg_catalog.jsonb_build_object('domain', claim.domain, 'verified', true, 'verified_at', claim.verified_at);
  end if;
  if not (claim.verification_token = any (coalesce(p_txt_values, '{}'))) then
    return pg_catalog.jsonb_build_object('domain', claim.domain, 'verified', false);
  end if;
  begin
    update public.organization_domains d set verified_at = pg_catalog.now()
     where d.org_id = claim.org_id and d.domain = claim.domain
    returning * into claim;
  exception when unique_violation then
    perform private.refuse_request(409, 'domain_verified_elsewhere', 'Another organization has verified this domain.');
  end;
  return pg_catalog.jsonb_build_object('domain', claim.domain, 'verified', true, 'verified_at', claim.verified_at);
end
$$;
comment on function private.verify_domain_claim(uuid, text, text[]) is
  'Sets a domain claim verified when its token is among the TXT values the server found at _gatehouse.<domain>.';
revoke execute on function private.verify_domain_claim(uuid, text, text[]) from public, anon, authenticated;
grant execute on function private.verify_domain_claim(uuid, text, text[]) to service_role;

-- The claims waiting for verification, oldest first, for the scheduled check.
create function private.pending_domain_claims(p_limit integer default 100)
returns table (org_id uuid, domain text)
language sql stable security definer
set search_path = ''
as $$
  select d.org_id, d.domain from public.organization_domains d
   where d.verified_at is null
   order by d.created_at
   limit least(greatest(coalesce(p_limit, 100), 1), 1000)
$$;
comment on function private.pending_domain_claims(integer) is 'Unverified domain claims, oldest first (the scheduled verifier''s list).';
revoke execute on function private.pending_domain_claims(integer) from public, anon, authenticated;
grant execute on function private.pending_domain_claims(integer) to service_role;
