-- Step-up for approvals (issue 17; seeds 000, 003): deciding a high- or critical-risk action, to
-- approve it or to reject it, needs a second factor. The database holds the rule, not the console:
-- a decision on such a request is refused (403 step_up_required) unless the decider's token says
-- aal2 and its session is still at aal2 in Supabase Auth's own table (a session whose factor was
-- removed drops back to aal1 there, before its token expires).
--
-- Changing an approval policy (which decides whether such an action waits for anyone at all) needs
-- the same second factor from a person; the agent runtime and the platform (no user) are not asked.
--
-- The rule has one home, public.needs_step_up: the trigger below applies it, and the console reads
-- it as a computed field of action_requests (select=*,needs_step_up) to offer the step-up before
-- the approver tries.

create function public.needs_step_up(request public.action_requests) returns boolean
language sql stable
set search_path = ''
as $$
  select request.risk >= 'high'::public.risk_level
$$;
comment on function public.needs_step_up(public.action_requests) is
  'Whether deciding this request needs a second factor (aal2): high and critical risk do.';
revoke execute on function public.needs_step_up(public.action_requests) from public, anon;
grant execute on function public.needs_step_up(public.action_requests) to authenticated, service_role;

-- Whether the request's token is at aal2, with its session still at aal2.
create function private.has_second_factor() returns boolean
language sql stable security definer
set search_path = ''
as $$
  select coalesce(auth.jwt() ->> 'aal', 'aal1') = 'aal2'
     and exists (select 1 from auth.sessions s
                  where s.id = nullif(auth.jwt() ->> 'session_id', '')::uuid
                    and s.user_id = (select auth.uid())
                    and s.aal::text = 'aal2')
$$;
comment on function private.has_second_factor() is
  'True when the caller''s token is aal2 and its session in auth.sessions still is.';
revoke execute on function private.has_second_factor() from public, anon, authenticated;

create function private.require_step_up() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select 1 from public.action_requests r
              where r.org_id = new.org_id and r.project_id = new.project_id and r.id = new.request_id
                and public.needs_step_up(r))
     and not private.has_second_factor() then
    perform private.refuse_request(403, 'step_up_required',
      'Deciding a high- or critical-risk action needs your second factor: verify it, then decide again.');
  end if;
  return new;
end
$$;
comment on function private.require_step_up() is
  'Refuses a decision on a high- or critical-risk action unless the decider is at aal2.';
revoke execute on function private.require_step_up() from public, anon, authenticated;

create trigger require_step_up before insert on public.approval_decisions
  for each row execute function private.require_step_up();

-- Security definer: a person changes policies through PostgREST, as themselves, and may not call
-- private.has_second_factor directly.
create function private.require_step_up_for_policy() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if (select auth.uid()) is not null and not private.has_second_factor() then
    perform private.refuse_request(403, 'step_up_required',
      'Changing an approval policy needs your second factor: verify it, then try again.');
  end if;
  return coalesce(new, old);
end
$$;
comment on function private.require_step_up_for_policy() is
  'Refuses a person''s change to an approval policy unless they are at aal2.';
revoke execute on function private.require_step_up_for_policy() from public, anon, authenticated;

create trigger require_step_up before insert or update or delete on public.approval_policies
  for each row execute function private.require_step_up_for_policy();
