-- Why a widget is unavailable, for its site owner (issue 25, section 2). Visitors are only ever
-- told "Chat is not available here."; the Widgets screen shows the key's recent refusals:
--
-- - widget_refusals: per key, one row per (reason, origin): when it was first and last seen and how
--   often. The reasons are the widget function's stable codes: widget_origin_not_allowed (with the
--   origin that tried), widget_key_rotated and widget_key_disabled (a page still using an old
--   key's session), and what the model admission refuses (model_budget_exhausted,
--   credits_exhausted, widget_model_unavailable, …) or widget_rate_limited.
-- - Anyone on the internet can make a refusal happen (the key is public, and so is the Origin
--   header of a script), so what is kept is bounded, and with it the audit entries it makes (it is
--   a tenant table, audited like the rest): a row is written at most once a minute, and a key has
--   at most 20 origins of its own; refusals from further origins share one row, origin '*'.
-- - Only the widget function writes it (private.note_widget_refusal, service role); members read
--   their projects' rows; nobody changes or removes them through the API. They go with their key.

-- The key a refusal belongs to, in its organization and project (the foreign key below).
alter table public.widget_keys add constraint widget_keys_org_project_id_key unique (org_id, project_id, id);

create table public.widget_refusals (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  widget_key_id uuid not null,
  reason text not null check (reason ~ '^[a-z][a-z0-9_]{0,63}$'),
  -- The origin that tried ('' when the refusal has none to tell, '*' for a key's further origins).
  origin text not null check (char_length(origin) <= 300),
  times bigint not null default 1 check (times >= 1),
  first_at timestamptz not null default now(),
  last_at timestamptz not null default now(),
  -- Led by the foreign key's columns, so that it covers it too.
  unique (org_id, project_id, widget_key_id, reason, origin),
  unique (org_id, id),
  foreign key (org_id, project_id, widget_key_id) references public.widget_keys (org_id, project_id, id) on delete cascade
);
comment on table public.widget_refusals is
  'Why a widget key was refused, per reason and origin (at most one write a minute each; 20 origins a key): for the site owner, never the visitor.';
comment on column public.widget_refusals.times is 'How many minutes saw this refusal (a row is written at most once a minute).';

select private.make_tenant_table('public.widget_refusals', 'widget_refusal');

-- =============================================================================================
-- Functions
-- =============================================================================================
-- A refusal of key p_key_id at origin p_origin. A session that a rotation or turning the key off
-- ended (widget_session_expired or widget_renewal_refused, at a version p_key_version) is noted as
-- widget_key_rotated or widget_key_disabled; a session that only aged out is not a refusal.
create function private.note_widget_refusal(p_key_id uuid, p_key_version integer, p_reason text, p_origin text)
returns void
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  key public.widget_keys;
  v_reason text := p_reason;
  v_origin text := pg_catalog.left(coalesce(p_origin, ''), 300);
begin
  select k.* into key from public.widget_keys k where k.id = p_key_id;
  if key.id is null then
    return;
  end if;
  if v_reason in ('widget_session_expired', 'widget_renewal_refused') then
    if key.disabled_at is not null then
      v_reason := 'widget_key_disabled';
    elsif p_key_version is not null and p_key_version <> key.version then
      v_reason := 'widget_key_rotated';
    else
      return;
    end if;
  end if;
  if v_reason !~ '^[a-z][a-z0-9_]{0,63}$' then
    return;
  end if;
  -- Beyond 20 origins of its own, a key's refusals share one row.
  if not exists (select 1 from public.widget_refusals r where r.widget_key_id = key.id and r.reason = v_reason and r.origin = v_origin)
     and (select pg_catalog.count(distinct r.origin) from public.widget_refusals r where r.widget_key_id = key.id) >= 20 then
    v_origin := '*';
  end if;
  insert into public.widget_refusals as r (org_id, project_id, widget_key_id, reason, origin)
  values (key.org_id, key.project_id, key.id, v_reason, v_origin)
  on conflict (org_id, project_id, widget_key_id, reason, origin) do update
     set times = r.times + 1, last_at = pg_catalog.now()
   where r.last_at < pg_catalog.now() - interval '1 minute';
end
$$;
comment on function private.note_widget_refusal(uuid, integer, text, text) is
  'Notes a widget refusal for the key''s site owner: per reason and origin, at most once a minute, 20 origins a key.';
revoke execute on function private.note_widget_refusal(uuid, integer, text, text) from public, anon, authenticated;
grant execute on function private.note_widget_refusal(uuid, integer, text, text) to service_role;

-- =============================================================================================
-- RLS policies and grants
-- =============================================================================================
create policy "members read their projects' widget refusals" on public.widget_refusals
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "widget refusals are noted by the widget function" on public.widget_refusals
  for insert to authenticated
  with check (false);
create policy "widget refusals are kept as noted" on public.widget_refusals
  for update to authenticated
  using (false);
create policy "widget refusals go with their key" on public.widget_refusals
  for delete to authenticated
  using (false);

revoke all on public.widget_refusals from anon, authenticated, service_role;
grant select on public.widget_refusals to authenticated, service_role;
