-- The member directory (issue 17): the console's members screen shows who belongs to the
-- organization by email, but auth.users is Supabase Auth's and no API role reads it. This one
-- function answers, for the organization in context only, each member's email and role, to any
-- member of it (they see each other already through organization_members, by id). It reads
-- nothing else of auth.users: no metadata, no sign-in history.

create function public.organization_directory()
returns table (user_id uuid, email text, role public.member_role, joined_at timestamptz, is_you boolean)
language sql stable security definer
set search_path = ''
as $$
  select m.user_id, u.email::text, m.role, m.created_at, m.user_id = (select auth.uid())
    from public.organization_members m
    join auth.users u on u.id = m.user_id
   where m.org_id = private.current_org_id()
     and private.is_org_member(m.org_id)
   order by u.email
$$;
comment on function public.organization_directory() is
  'The current organization''s members with their emails and roles (members only; send X-Org-Id).';
revoke execute on function public.organization_directory() from public, anon, authenticated;
grant execute on function public.organization_directory() to authenticated;
