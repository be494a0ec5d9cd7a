-- Step-up guards everything that changes who can approve or what an approval means (issue 23;
-- ARCHITECTURE invariant 7).
--
-- Deciding a high-risk action and changing an approval policy already needed aal2. With only the
-- password of a tenant admin who had enrolled TOTP, an aal1 session could still turn off the
-- verified-domain restriction, invite two addresses it controls as project admins, and let those
-- accounts enrol their own factors and approve a dual-control request. Now:
--
--   * every write by a person who has a verified factor to a privileged tenant table needs their
--     session at aal2 (403 step_up_required): membership and roles, invitations, domain rules,
--     projects, tool bindings and connections, approval policies, widget keys, provider keys,
--     limits and budgets, transcript retention, the billing account. The guard is a statement trigger, so it
--     holds for every path that writes: PostgREST, security-definer RPCs (create_invitation,
--     rotate_widget_key, remove_model_provider_key, adjust_credits, …) and edge functions acting
--     as the service role for a person (their claims, and so their aal, go with them). The
--     platform and the agent runtime (no person) are not asked.
--   * the list is derived from the catalog, not kept by hand: every tenant table (one with the
--     context guard, require_org_context) gets the guard unless private.step_up_exemptions names
--     it with a reason, and private.make_tenant_table gives it to tables made from now on. pgTAP
--     032 enumerates the catalog and fails on a tenant table that has neither.
--   * an organization can require two-factor authentication of its members
--     (organizations.require_two_factor): then deciding any action, and every privileged write,
--     needs aal2 from everyone, enrolled or not (403 mfa_required for those with no factor yet).
--     Turning it off is itself a privileged write.

-- =============================================================================================
-- Tables
-- =============================================================================================
alter table public.organizations add column require_two_factor boolean not null default false;
comment on column public.organizations.require_two_factor is
  'Members must use two-factor authentication: deciding actions and every privileged change need aal2 from everyone.';

create table private.step_up_exemptions (
  table_name regclass primary key,
  reason text not null check (char_length(reason) between 10 and 300)
);
comment on table private.step_up_exemptions is
  'Tenant tables whose writes don''t change who may approve or what an approval means, so they need no step-up; each with why.';

insert into private.step_up_exemptions (table_name, reason) values
  ('public.agents', 'authoring an agent changes what it is asked to do, not who approves what it does'),
  ('public.agent_versions', 'authoring and publishing versions; what a version may do externally is set by tools and policies'),
  ('public.agent_runs', 'starting and ending runs; every action a run proposes still waits on policy and approvers'),
  ('public.action_requests', 'written by propose, decide and execute, each with its own rules (decisions: step-up by risk)'),
  ('public.approval_decisions', 'decisions have their own rule: step-up from high risk, and always when the organization requires two-factor'),
  ('public.model_calls', 'metering written by the gateway'),
  ('public.model_budget_events', 'metering written by the gateway'),
  ('public.credit_ledger', 'debited by metering on every call a person makes; a person''s own entries (adjustments) have a row guard'),
  ('public.widget_conversations', 'written by the public widget for visitors'),
  ('public.widget_messages', 'written by the public widget for visitors'),
  ('public.review_items', 'support work on the review queue'),
  ('public.review_item_events', 'support work on the review queue');

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Why the acting person may not make a privileged change now, or null when they may: no person
-- (the platform, the runtime), or a session at aal2, or no factor in an organization that does
-- not require one.
create function private.step_up_refusal() returns text
language sql stable security definer
set search_path = ''
as $$
  select case
    when (select auth.uid()) is null or private.has_second_factor() then null
    when exists (select 1 from auth.mfa_factors f where f.user_id = (select auth.uid()) and f.status::text = 'verified')
      then 'step_up_required'
    when exists (select 1 from public.organizations o where o.id = private.context_org_id() and o.require_two_factor)
      then 'mfa_required'
  end
$$;
comment on function private.step_up_refusal() is
  'step_up_required (a person with a verified factor at aal1), mfa_required (the organization requires two-factor), or null.';
revoke execute on function private.step_up_refusal() from public, anon, authenticated;

create function private.require_step_up_for_privilege() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  case private.step_up_refusal()
    when 'step_up_required' then
      perform private.refuse_request(403, 'step_up_required', pg_catalog.format(
        'Changing %s needs your second factor: verify it, then try again.', tg_table_name));
    when 'mfa_required' then
      perform private.refuse_request(403, 'mfa_required', pg_catalog.format(
        'Your organization requires two-factor authentication: add a factor and verify it before changing %s.', tg_table_name));
    else
      null;
  end case;
  return new;  -- null for the statement guard; the row itself for the ledger's adjustments
end
$$;
comment on function private.require_step_up_for_privilege() is
  'Guard of privileged writes: a person with a verified factor (or in an organization that requires one) writes at aal2.';
revoke execute on function private.require_step_up_for_privilege() from public, anon, authenticated;

-- Puts the guard on a tenant table, unless the table is exempt.
create function private.guard_with_step_up(p_table regclass) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from private.step_up_exemptions e where e.table_name = p_table) then
    execute pg_catalog.format('create trigger step_up_guard before insert or update or delete on %s '
                              'for each statement execute function private.require_step_up_for_privilege()', p_table);
  end if;
end
$$;
comment on function private.guard_with_step_up(regclass) is 'Gives a tenant table the step-up guard unless it is in private.step_up_exemptions.';
revoke execute on function private.guard_with_step_up(regclass) from public, anon, authenticated;

-- Tables made from now on get the guard with the rest of what makes a tenant table.
create or replace function private.make_tenant_table(p_table regclass, p_subject text, p_unrecorded text[] default '{}')
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute pg_catalog.format('alter table %s enable row level security', p_table);
  execute pg_catalog.format('alter table %s force row level security', p_table);
  execute pg_catalog.format('create trigger require_org_context before insert or update or delete on %s '
                            'for each statement execute function private.require_org_context()', p_table);
  perform private.take_ids_from_context(p_table);
  execute pg_catalog.format('create trigger audit after insert or update or delete on %s '
                            'for each row execute function audit.record_change(%s)', p_table,
                            (select pg_catalog.string_agg(pg_catalog.quote_literal(a), ', ' order by o)
                               from pg_catalog.unnest(array[p_subject] || p_unrecorded) with ordinality as x (a, o)));
  perform private.guard_with_step_up(p_table);
end
$$;
comment on function private.make_tenant_table(regclass, text, text[]) is
  'Makes a table a tenant table: RLS enabled and forced, the context guard, ids from the context, audited changes, the step-up guard (unless exempt).';

-- Decisions: an organization that requires two-factor asks it of every decision, whatever the risk.
create function private.require_two_factor_to_decide() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if exists (select 1 from public.organizations o where o.id = new.org_id and o.require_two_factor)
     and not private.has_second_factor() then
    perform private.refuse_request(403, 'mfa_required',
      'Your organization requires two-factor authentication to decide actions: add a factor and verify it, then decide again.');
  end if;
  return new;
end
$$;
comment on function private.require_two_factor_to_decide() is
  'Refuses a decision at aal1 in an organization that requires two-factor authentication.';
revoke execute on function private.require_two_factor_to_decide() from public, anon, authenticated;

-- =============================================================================================
-- Triggers
-- =============================================================================================
-- Every tenant table there is now: the ones with the context guard.
do $$
declare
  t regclass;
begin
  for t in
    select distinct tg.tgrelid::regclass
      from pg_catalog.pg_trigger tg
      join pg_catalog.pg_class c on c.oid = tg.tgrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where tg.tgname = 'require_org_context' and n.nspname = 'public'
  loop
    perform private.guard_with_step_up(t);
  end loop;
end
$$;

create trigger require_two_factor before insert on public.approval_decisions
  for each row execute function private.require_two_factor_to_decide();

-- The ledger is written by metering on every call; a person's own entry (adjust_credits) is billing.
create trigger step_up_guard_adjustments before insert on public.credit_ledger
  for each row when (new.kind = 'adjustment') execute function private.require_step_up_for_privilege();

-- =============================================================================================
-- Grants
-- =============================================================================================
grant update (require_two_factor) on public.organizations to authenticated;
