-- Public widgets (seed 002), database side, part one: the keys, the transcripts, the review queue
-- and transcript retention. The widget edge function (sessions, messages, rate limits, answers
-- through the model gateway) builds on these.
--
-- - widget_keys: a publishable key per agent, off until a project admin creates one. The key is
--   shown once (create_widget_key, rotate_widget_key) and stored as its SHA-256 only; it has a
--   recognisable prefix and a checksum (`ghw_<32 random base64url>_<6 hex of SHA-256>`), so that a
--   mistyped or made-up key is refused before any lookup. Each key holds the exact origins it may
--   be embedded on, its own monthly budget (taken from the organization's), its rates and an
--   optional proof-of-work difficulty. Disabling is instant; rotating replaces the hash and bumps
--   the version, so sessions of the old key stop working.
-- - widget_conversations and widget_messages: every visitor message and every answer, in the
--   agent's organization, read by its members under RLS, written only by the widget function.
-- - review_items and review_item_events: escalations, drafts and captured leads, each with an
--   append-only status history (open → in_review → resolved or dismissed) that no role can
--   change or delete; every status change is an audit entry.
-- - transcript_settings: how long each organization keeps transcripts; private.purge_transcripts
--   deletes the expired ones and records what it deleted in the audit chain.

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.widget_message_role as enum ('visitor', 'assistant', 'notice');
create type public.review_kind as enum ('escalation', 'draft', 'lead');
create type public.review_status as enum ('open', 'in_review', 'resolved', 'dismissed');

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- An exact web origin as browsers send it: scheme, lower-case host, optional port; no path.
create function private.origin_valid(p_origin text) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_origin ~ '^https?://([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$'
     and pg_catalog.char_length(p_origin) <= 300
$$;
comment on function private.origin_valid(text) is 'True for an exact origin (https://host[:port], lower case, no path), as browsers send Origin.';
revoke execute on function private.origin_valid(text) from public, anon;
grant execute on function private.origin_valid(text) to authenticated, service_role;

create function private.origins_valid(p_origins text[]) returns boolean
language sql immutable
set search_path = ''
as $$
  select coalesce(pg_catalog.cardinality(p_origins), 0) <= 50
     and not exists (select 1 from pg_catalog.unnest(p_origins) o where o is null or not private.origin_valid(o))
$$;
comment on function private.origins_valid(text[]) is 'True for a list of up to 50 exact origins.';
revoke execute on function private.origins_valid(text[]) from public, anon;
grant execute on function private.origins_valid(text[]) to authenticated, service_role;

-- =============================================================================================
-- Tables
-- =============================================================================================
create table public.widget_keys (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  -- The key's first 12 characters, to tell keys apart in the console; the rest is never stored.
  key_prefix text not null check (key_prefix ~ '^ghw_[A-Za-z0-9_-]{8}$'),
  key_sha256 text not null unique check (key_sha256 ~ '^[0-9a-f]{64}$'),
  allowed_origins text[] not null default '{}' check (private.origins_valid(allowed_origins)),
  monthly_budget_micro bigint not null default 1000000 check (monthly_budget_micro between 0 and 1000000000000000),
  requests_per_minute integer not null default 60 check (requests_per_minute between 1 and 100000),
  visitor_requests_per_minute integer not null default 10 check (visitor_requests_per_minute between 1 and 10000),
  -- Leading zero bits a session request's proof of work must have; 0 turns it off.
  proof_of_work_bits integer not null default 0 check (proof_of_work_bits between 0 and 24),
  -- Hold every answer for review: the visitor is told someone will reply, the answer is a draft.
  hold_answers boolean not null default false,
  -- Bumped by each rotation: a session names the version it was issued for.
  version integer not null default 1 check (version >= 1),
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  rotated_at timestamptz,
  disabled_at timestamptz,
  unique (org_id, id),
  unique (org_id, project_id, agent_id, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.widget_keys is
  'Publishable widget keys, per agent: stored as SHA-256 only, with allowed origins, a monthly budget, rates and proof of work.';
comment on column public.widget_keys.key_sha256 is 'The SHA-256 of the key (hex); the key itself is shown once and never stored.';
-- One live key per agent (a rotation replaces it in place).
create unique index widget_keys_one_live on public.widget_keys (org_id, agent_id) where disabled_at is null;

create table public.widget_conversations (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  widget_key_id uuid not null,
  -- An anonymous id the embed keeps for its visitor: never a person's identity.
  visitor_id uuid not null,
  origin text not null check (private.origin_valid(origin)),
  started_at timestamptz not null default now(),
  last_message_at timestamptz not null default now(),
  unique (org_id, id),
  unique (org_id, project_id, id),
  -- Cover the agent and key references (and say nothing new: id is unique).
  unique (org_id, project_id, agent_id, id),
  unique (org_id, widget_key_id, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade,
  foreign key (org_id, widget_key_id) references public.widget_keys (org_id, id) on delete cascade
);
comment on table public.widget_conversations is 'A widget visitor''s conversation with an agent, on one origin.';

create table public.widget_messages (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  conversation_id uuid not null,
  role public.widget_message_role not null,
  content text not null check (char_length(content) between 1 and 20000),
  -- The metered model call that produced an answer.
  model_call_id uuid,
  created_at timestamptz not null default pg_catalog.clock_timestamp(),
  -- Cover the conversation and model call references.
  unique (org_id, project_id, conversation_id, id),
  unique (org_id, model_call_id, id),
  foreign key (org_id, project_id, conversation_id) references public.widget_conversations (org_id, project_id, id) on delete cascade,
  foreign key (org_id, model_call_id) references public.model_calls (org_id, id)
);
comment on table public.widget_messages is
  'Every visitor message, answer and notice of a widget conversation; written only by the widget function.';

create table public.review_items (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  agent_id uuid not null,
  conversation_id uuid,
  kind public.review_kind not null,
  summary text not null check (char_length(summary) between 1 and 2000),
  -- A captured lead's address (kind lead).
  lead_email text check (lead_email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$'),
  -- Kept by the status history (review_item_events), never written directly.
  status public.review_status not null default 'open',
  assignee uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- When its transcript was purged: the summary and a lead's address went with it.
  purged_at timestamptz,
  check (lead_email is null or kind = 'lead'),
  check (kind <> 'lead' or lead_email is not null or purged_at is not null),
  unique (org_id, id),
  unique (org_id, project_id, id),
  -- Cover the agent and conversation references.
  unique (org_id, project_id, agent_id, id),
  unique (org_id, conversation_id, id),
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade,
  foreign key (org_id, conversation_id) references public.widget_conversations (org_id, id) on delete set null (conversation_id)
);
comment on table public.review_items is
  'The review queue: escalations, drafts and captured leads. Status and assignee follow the append-only history.';

create table public.review_item_events (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  item_id uuid not null,
  status public.review_status not null,
  assignee uuid,
  note text check (char_length(note) <= 2000),
  actor uuid default auth.uid(),
  created_at timestamptz not null default pg_catalog.clock_timestamp(),
  unique (org_id, project_id, item_id, id),
  foreign key (org_id, project_id, item_id) references public.review_items (org_id, project_id, id) on delete cascade
);
comment on table public.review_item_events is
  'The status history of review items: append-only for every role; each row is an audit entry.';

-- Proof-of-work challenges already answered: each opens one session.
create table private.widget_pow_spent (
  jti uuid primary key,
  expires_at timestamptz not null
);
comment on table private.widget_pow_spent is 'Answered proof-of-work challenges, until they expire: a challenge is single use.';

create table public.transcript_settings (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  retention_days integer not null default 90 check (retention_days between 1 and 3650),
  updated_at timestamptz not null default now()
);
comment on table public.transcript_settings is
  'How long an organization keeps widget transcripts (an organization without a row keeps them 90 days).';

-- =============================================================================================
-- Triggers
-- =============================================================================================
select private.make_tenant_table('public.widget_keys', 'widget_key', array['key_sha256']);
select private.make_tenant_table('public.widget_conversations', 'widget_conversation');
-- Message content stays out of the chain (a transcript is purged; the chain keeps its shape).
select private.make_tenant_table('public.widget_messages', 'widget_message', array['content']);
-- A draft's text and a lead's address stay out of the chain: they go with their transcript.
select private.make_tenant_table('public.review_items', 'review_item', array['summary', 'lead_email']);
select private.make_tenant_table('public.review_item_events', 'review_item_event');
select private.make_tenant_table('public.transcript_settings', 'transcript_settings');

-- The history is append-only, for every role and the owner too.
create trigger append_only before update or delete on public.review_item_events
  for each row execute function private.refuse_final_change('history_is_append_only',
                                                            'A review item''s status history is never changed or deleted.');

-- Each history row moves its item, if the move is allowed: open → in_review → resolved or
-- dismissed (a review item may be reassigned while in review). The first row, `open`, is the
-- item's creation (private.open_review_item).
create function private.apply_review_event() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  item public.review_items;
begin
  select i.* into item from public.review_items i where i.org_id = new.org_id and i.id = new.item_id for update;
  if new.status = 'open' and item.status = 'open'
     and not exists (select 1 from public.review_item_events e where e.org_id = new.org_id and e.item_id = new.item_id and e.id <> new.id) then
    return null;
  end if;
  if not ((item.status = 'open' and new.status = 'in_review')
          or (item.status = 'in_review' and new.status in ('in_review', 'resolved', 'dismissed'))) then
    perform private.refuse_request(409, 'review_transition_not_allowed',
      pg_catalog.format('A review item goes open → in_review → resolved or dismissed; it is %s.', item.status));
  end if;
  update public.review_items i set status = new.status, assignee = new.assignee, updated_at = new.created_at
   where i.org_id = new.org_id and i.id = new.item_id;
  return null;
end
$$;
comment on function private.apply_review_event() is 'AFTER INSERT trigger of review_item_events: moves the item, refusing a move the workflow does not allow.';
revoke execute on function private.apply_review_event() from public, anon, authenticated;
create trigger apply after insert on public.review_item_events
  for each row execute function private.apply_review_event();

-- A new item's history starts with its creation: `open`, by whoever raised it (the widget: no one).
create function private.open_review_item() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  insert into public.review_item_events (org_id, project_id, item_id, status, actor, created_at)
  values (new.org_id, new.project_id, new.id, 'open', (select auth.uid()), new.created_at);
  return null;
end
$$;
comment on function private.open_review_item() is 'AFTER INSERT trigger of review_items: the first row of the item''s history, open.';
revoke execute on function private.open_review_item() from public, anon, authenticated;
create trigger open_history after insert on public.review_items
  for each row execute function private.open_review_item();

-- =============================================================================================
-- Helper functions: keys
-- =============================================================================================
-- A new key: `ghw_` and 32 random base64url characters, then `_` and a checksum (the first six hex
-- digits of the SHA-256 of what precedes it).
create function private.new_widget_key() returns text
language sql volatile
set search_path = ''
as $$
  select body || '_' || pg_catalog.left(private.sha256_hex(body), 6)
    from (select 'ghw_' || pg_catalog.translate(pg_catalog.encode(extensions.gen_random_bytes(24), 'base64'), '+/', '-_') as body) b
$$;
comment on function private.new_widget_key() is 'A new publishable widget key, with its checksum.';
revoke execute on function private.new_widget_key() from public, anon, authenticated;

-- Whether a string has a widget key's shape and checksum (so that a made-up key costs no lookup).
create function private.widget_key_well_formed(p_key text) returns boolean
language sql immutable
set search_path = ''
as $$
  select coalesce(p_key ~ '^ghw_[A-Za-z0-9_-]{32}_[0-9a-f]{6}$'
                  and pg_catalog.right(p_key, 6) = pg_catalog.left(private.sha256_hex(pg_catalog.left(p_key, 36)), 6), false)
$$;
comment on function private.widget_key_well_formed(text) is 'True when a string has a widget key''s prefix, length and checksum.';
revoke execute on function private.widget_key_well_formed(text) from public, anon, authenticated;
grant execute on function private.widget_key_well_formed(text) to service_role;

-- The live key a publishable key names, with what the widget function needs to open a session;
-- no row for a malformed, unknown or disabled key, or an agent without a published version.
create function private.widget_key_for(p_key text)
returns table (key_id uuid, version integer, org_id uuid, project_id uuid, agent_id uuid, allowed_origins text[],
               proof_of_work_bits integer, requests_per_minute integer, visitor_requests_per_minute integer)
language sql stable security definer
set search_path = ''
as $$
  select k.id, k.version, k.org_id, k.project_id, k.agent_id, k.allowed_origins, k.proof_of_work_bits,
         k.requests_per_minute, k.visitor_requests_per_minute
    from public.widget_keys k
    join public.agents a on a.org_id = k.org_id and a.id = k.agent_id
   where private.widget_key_well_formed(p_key)
     and k.key_sha256 = private.sha256_hex(p_key)
     and k.disabled_at is null and a.disabled_at is null
     and exists (select 1 from public.agent_versions v
                  where v.org_id = k.org_id and v.agent_id = k.agent_id and v.published_at is not null)
$$;
comment on function private.widget_key_for(text) is
  'The live widget key (and its agent''s settings) a publishable key names; none for a bad, disabled or unpublished one.';
revoke execute on function private.widget_key_for(text) from public, anon, authenticated;
grant execute on function private.widget_key_for(text) to service_role;

-- The key row an admin of its project may manage, in context; refuses 404 otherwise.
create function private.managed_widget_key(p_key_id uuid) returns public.widget_keys
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  found public.widget_keys;
begin
  select k.* into found from public.widget_keys k
   where k.id = p_key_id and k.org_id = private.current_org_id() and k.project_id = any (private.admin_project_ids())
     for update;
  if found.id is null then
    perform private.refuse_request(404, 'widget_key_not_found', 'No widget key with that id that you can manage in this context.');
  end if;
  return found;
end
$$;
comment on function private.managed_widget_key(uuid) is 'A widget key the caller administers (project admin in context), locked; 404 otherwise.';
revoke execute on function private.managed_widget_key(uuid) from public, anon, authenticated;

-- Purges the transcripts past each organization's retention, and records in each organization's
-- audit chain how many conversations went and up to when. Returns how many went in all.
create function private.purge_transcripts() returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  purged record;
  total integer := 0;
begin
  -- What the review queue keeps of a purged transcript: the item and its history, not the draft's
  -- text or the lead's address.
  update public.review_items i
     set summary = 'Purged with its transcript.', lead_email = null, purged_at = pg_catalog.now()
    from public.widget_conversations c
    join (select o.id as org_id, pg_catalog.now() - pg_catalog.make_interval(days => coalesce(s.retention_days, 90)) as cutoff
            from public.organizations o left join public.transcript_settings s on s.org_id = o.id) r on r.org_id = c.org_id
   where i.org_id = c.org_id and i.conversation_id = c.id and c.last_message_at < r.cutoff and i.purged_at is null;
  for purged in
    with expired as (
      delete from public.widget_conversations c
       using (select o.id as org_id, pg_catalog.now() - pg_catalog.make_interval(days => coalesce(s.retention_days, 90)) as cutoff
                from public.organizations o left join public.transcript_settings s on s.org_id = o.id) r
       where c.org_id = r.org_id and c.last_message_at < r.cutoff
      returning c.org_id, r.cutoff
    )
    select e.org_id, pg_catalog.count(*)::integer as conversations, pg_catalog.max(e.cutoff) as cutoff from expired e group by e.org_id
  loop
    perform audit.append(purged.org_id, 'transcript.purged', 'public.widget_conversations', null,
                         pg_catalog.jsonb_build_object('conversations', purged.conversations, 'older_than', purged.cutoff));
    total := total + purged.conversations;
  end loop;
  -- Visitors' burst state long past (a visitor id is anonymous and short-lived), and spent
  -- challenges that have expired.
  delete from private.model_rates r where r.scope = 'visitor' and r.tat < pg_catalog.now() - interval '1 hour';
  delete from private.widget_pow_spent p where p.expires_at < pg_catalog.now();
  return total;
end
$$;
comment on function private.purge_transcripts() is
  'Deletes widget transcripts past their organization''s retention (one audit entry per organization that lost any), and stale visitor rate state.';
revoke execute on function private.purge_transcripts() from public, anon, authenticated;
grant execute on function private.purge_transcripts() to service_role;

-- =============================================================================================
-- Helper functions: the widget function's message path (one statement before the answer, one
-- after)
-- =============================================================================================
-- The key that signs widget sessions, in Vault: made on first use, the same for every worker.
create function private.widget_signing_secret() returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  secret text;
begin
  select s.decrypted_secret into secret from vault.decrypted_secrets s where s.name = 'widget session signing key';
  if secret is null then
    begin
      perform vault.create_secret(pg_catalog.encode(extensions.gen_random_bytes(32), 'hex'), 'widget session signing key',
                                  'Signs widget session tokens (HS256)');
    exception when unique_violation then
      null;  -- another worker made it first
    end;
    select s.decrypted_secret into secret from vault.decrypted_secrets s where s.name = 'widget session signing key';
  end if;
  return secret;
end
$$;
comment on function private.widget_signing_secret() is 'The widget session signing key (Vault), made on first use: for the widget function only.';
revoke execute on function private.widget_signing_secret() from public, anon, authenticated;
grant execute on function private.widget_signing_secret() to service_role;

-- Raises an escalation, unless one like it is open: a visitor's request for a person once per
-- conversation; the widget failing to answer (an outage, a spent budget) once per agent, however
-- many visitors met it, so that a flood of messages is one item, not thousands.
create function private.escalate(p_conversation public.widget_conversations, p_summary text, p_per_agent boolean)
returns void
language sql volatile
set search_path = ''
as $$
  insert into public.review_items (org_id, project_id, agent_id, conversation_id, kind, summary)
  select p_conversation.org_id, p_conversation.project_id, p_conversation.agent_id, p_conversation.id, 'escalation', p_summary
   where not exists (select 1 from public.review_items i
                      where i.org_id = p_conversation.org_id and i.kind = 'escalation' and i.status in ('open', 'in_review')
                        and (case when p_per_agent then i.agent_id = p_conversation.agent_id and i.summary = p_summary
                                  else i.conversation_id = p_conversation.id end))
$$;
comment on function private.escalate(public.widget_conversations, text, boolean) is
  'Raises an escalation unless one like it is open (per conversation, or per agent for failures).';
revoke execute on function private.escalate(public.widget_conversations, text, boolean) from public, anon, authenticated;

-- Spends a proof-of-work challenge (by its id, until it expires); false when it was spent before.
create function private.spend_proof_of_work(p_jti uuid, p_expires_at timestamptz) returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  spent uuid;
begin
  insert into private.widget_pow_spent (jti, expires_at) values (p_jti, p_expires_at)
  on conflict (jti) do nothing
  returning jti into spent;
  return spent is not null;
end
$$;
comment on function private.spend_proof_of_work(uuid, timestamptz) is 'Spends a proof-of-work challenge once; false if it was spent before.';
revoke execute on function private.spend_proof_of_work(uuid, timestamptz) from public, anon, authenticated;
grant execute on function private.spend_proof_of_work(uuid, timestamptz) to service_role;

-- Everything before a visitor's message is answered, in one statement: the session's key must be
-- live at the version it was issued for, and the origin one of its own; the key's and the
-- visitor's rate limits count the message; the conversation is the visitor's own (or a new one);
-- the message is stored, with a lead or an escalation when it asks for one; and the answer's
-- model call is admitted and reserved against the key's budget too (private.admit_model_call).
-- Answers {ok: true, conversation_id, reservation, messages} (messages: the agent's instructions
-- and the conversation so far, to send upstream), or {ok: false, reason, conversation_id?}: a
-- reason the function answers politely, after this statement stored p_notice (when there is a
-- conversation to store it in) and raised an escalation for the team.
create function private.widget_message_begin(
  p_key_id uuid, p_key_version integer, p_visitor_id uuid, p_origin text, p_conversation_id uuid, p_content text,
  p_wants_human boolean, p_lead_email text, p_notice text
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  key public.widget_keys;
  agent public.agents;
  config jsonb;
  conversation public.widget_conversations;
  wait numeric;
  history jsonb;
  bound integer;
  admitted jsonb;
begin
  select k.* into key from public.widget_keys k where k.id = p_key_id;
  if key.id is null or key.disabled_at is not null or key.version <> p_key_version then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_session_expired');
  end if;
  if not (p_origin = any (key.allowed_origins)) then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_origin_not_allowed');
  end if;
  if p_conversation_id is not null then
    select c.* into conversation from public.widget_conversations c
     where c.org_id = key.org_id and c.id = p_conversation_id and c.widget_key_id = key.id and c.visitor_id = p_visitor_id;
    if conversation.id is null then
      return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_conversation_not_found');
    end if;
  end if;

  -- The visitor's limit, then the key's: a minute's worth may come at once, then they are paced.
  -- (The visitor's first, so that one visitor over their own limit spends nothing of the key's.)
  wait := private.take_model_rate(key.org_id, 'visitor', p_visitor_id, key.visitor_requests_per_minute, key.visitor_requests_per_minute);
  if wait is null then
    wait := private.take_model_rate(key.org_id, 'widget_key', key.id, key.requests_per_minute, key.requests_per_minute);
  end if;
  if wait is not null then
    -- Not stored: a flood of messages must not become a flood of rows. An existing conversation
    -- hears why, once the limit lets it.
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_rate_limited', 'retry_after', pg_catalog.ceil(wait)::integer,
                                         'conversation_id', conversation.id);
  end if;

  select a.* into agent from public.agents a where a.org_id = key.org_id and a.id = key.agent_id;
  select v.config into config from public.agent_versions v
   where v.org_id = key.org_id and v.agent_id = key.agent_id and v.published_at is not null
   order by v.version desc limit 1;
  if conversation.id is null then
    insert into public.widget_conversations (org_id, project_id, agent_id, widget_key_id, visitor_id, origin)
    values (key.org_id, key.project_id, key.agent_id, key.id, p_visitor_id, p_origin)
    returning * into conversation;
  else
    update public.widget_conversations c set last_message_at = pg_catalog.now() where c.id = conversation.id;
  end if;
  insert into public.widget_messages (org_id, project_id, conversation_id, role, content)
  values (key.org_id, key.project_id, conversation.id, 'visitor', p_content);
  if p_lead_email is not null and p_lead_email ~ '^[^@\s]{1,64}@[^@\s]{1,255}$' then
    insert into public.review_items (org_id, project_id, agent_id, conversation_id, kind, summary, lead_email)
    select key.org_id, key.project_id, key.agent_id, conversation.id, 'lead', 'A visitor left an email address.', p_lead_email
     where not exists (select 1 from public.review_items i where i.org_id = key.org_id and i.conversation_id = conversation.id
                                                              and i.kind = 'lead' and i.lead_email = p_lead_email);
  end if;
  if p_wants_human then
    perform private.escalate(conversation, 'The visitor asked for a person.', false);
  end if;

  -- What goes upstream: the instructions, then the last 20 turns; bounded as the gateway bounds a
  -- prompt (UTF-8 bytes of the JSON, plus 16 a message).
  -- The window starts on a visitor's turn (providers refuse a conversation that opens with the
  -- assistant).
  with recent as (
    select w.role, w.content, pg_catalog.row_number() over (order by w.created_at) as ord
      from (select * from public.widget_messages x
             where x.org_id = key.org_id and x.conversation_id = conversation.id and x.role <> 'notice'
             order by x.created_at desc limit 20) w
  )
  select pg_catalog.jsonb_agg(turns.m order by turns.ord) into history from (
    select 0 as ord, pg_catalog.jsonb_build_object('role', 'system', 'content', config ->> 'instructions') as m
     where coalesce(config ->> 'instructions', '') <> ''
    union all
    select r.ord, pg_catalog.jsonb_build_object('role', case when r.role = 'visitor' then 'user' else 'assistant' end, 'content', r.content)
      from recent r
     where r.ord >= (select pg_catalog.min(v.ord) from recent v where v.role = 'visitor')
  ) turns (ord, m);
  bound := pg_catalog.octet_length(history::text) + 16 * pg_catalog.jsonb_array_length(history);

  begin
    admitted := private.admit_model_call(agent, null, null, coalesce(config ->> 'model', 'gpt-4o-mini'), bound, null, true,
      pg_catalog.jsonb_build_object('scope', 'widget_key', 'scope_id', key.id, 'budget', key.monthly_budget_micro));
  exception when sqlstate 'PGRST' then
    -- The agent's model is not one it may call, or it is disabled: the visitor is told politely.
    admitted := pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_model_unavailable');
  end;
  if admitted ->> 'reason' = 'model_rate_limited' then
    -- The agent's own rate (the model gateway's): busy, like the key's and the visitor's limits.
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_rate_limited', 'retry_after', admitted -> 'retry_after',
                                         'conversation_id', conversation.id);
  end if;
  if not (admitted ->> 'ok')::boolean then
    insert into public.widget_messages (org_id, project_id, conversation_id, role, content)
    values (key.org_id, key.project_id, conversation.id, 'notice', p_notice);
    perform private.escalate(conversation, pg_catalog.format('The widget could not answer (%s).', admitted ->> 'reason'), true);
    return pg_catalog.jsonb_build_object('ok', false, 'reason', admitted ->> 'reason', 'conversation_id', conversation.id);
  end if;
  return pg_catalog.jsonb_build_object('ok', true, 'conversation_id', conversation.id, 'reservation', admitted,
                                       'messages', history, 'input_bound', bound, 'hold', key.hold_answers);
end
$$;
comment on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text) is
  'A widget message before its answer, in one statement: session key and origin, rate limits, storage, review items, the model reservation.';
revoke execute on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text)
  from public, anon, authenticated;
grant execute on function private.widget_message_begin(uuid, integer, uuid, text, uuid, text, boolean, text, text) to service_role;

-- Everything after the answer, in one statement: the model call settles (settle_model_call), and
-- the answer is stored with its model call; or, for a key that holds answers, the answer becomes
-- a draft in the review queue and the visitor's notice (p_notice, then) is stored; or, when there
-- is no answer (the model failed), the polite notice is stored and the team gets an escalation.
create function private.widget_message_end(
  p_conversation_id uuid, p_reservation_id uuid, p_outcome public.model_call_outcome, p_input_tokens integer,
  p_output_tokens integer, p_usage_estimated boolean, p_latency_ms integer, p_error_code text, p_answer text, p_notice text,
  p_hold boolean
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  conversation public.widget_conversations;
  settled jsonb;
begin
  -- The conversation before the meters, as widget_message_begin takes them: never in opposite orders.
  update public.widget_conversations c set last_message_at = pg_catalog.now() where c.id = p_conversation_id
  returning c.* into conversation;
  settled := private.settle_model_call(p_reservation_id, p_outcome, p_input_tokens, p_output_tokens, p_usage_estimated,
                                       p_latency_ms, p_error_code);
  if conversation.id is null then
    return settled;
  end if;
  if p_outcome = 'succeeded' and coalesce(p_answer, '') <> '' and p_hold then
    insert into public.widget_messages (org_id, project_id, conversation_id, role, content, model_call_id)
    values (conversation.org_id, conversation.project_id, conversation.id, 'notice', p_notice, (settled ->> 'call_id')::uuid);
    insert into public.review_items (org_id, project_id, agent_id, conversation_id, kind, summary)
    values (conversation.org_id, conversation.project_id, conversation.agent_id, conversation.id, 'draft', pg_catalog.left(p_answer, 2000));
  elsif p_outcome = 'succeeded' and coalesce(p_answer, '') <> '' then
    insert into public.widget_messages (org_id, project_id, conversation_id, role, content, model_call_id)
    values (conversation.org_id, conversation.project_id, conversation.id, 'assistant', pg_catalog.left(p_answer, 20000),
            (settled ->> 'call_id')::uuid);
  elsif p_outcome <> 'cancelled' then
    insert into public.widget_messages (org_id, project_id, conversation_id, role, content, model_call_id)
    values (conversation.org_id, conversation.project_id, conversation.id, 'notice', p_notice, (settled ->> 'call_id')::uuid);
    perform private.escalate(conversation, pg_catalog.format('The widget could not answer (%s).', coalesce(p_error_code, 'no answer')), true);
  end if;
  return settled;
end
$$;
comment on function private.widget_message_end(uuid, uuid, public.model_call_outcome, integer, integer, boolean, integer, text, text, text, boolean) is
  'A widget message after its answer, in one statement: settles the model call and stores the answer, or the notice and an escalation.';
revoke execute on function private.widget_message_end(uuid, uuid, public.model_call_outcome, integer, integer, boolean, integer, text, text, text, boolean)
  from public, anon, authenticated;
grant execute on function private.widget_message_end(uuid, uuid, public.model_call_outcome, integer, integer, boolean, integer, text, text, text, boolean)
  to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- Turns a widget on for an agent (project admin of its project, in context): a new key for the
-- given origins, shown in this answer only. Refuses if the agent already has a live key (rotate
-- or disable it instead).
create function public.create_widget_key(p_agent_id uuid, p_allowed_origins text[] default '{}')
returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  agent public.agents;
  key text := private.new_widget_key();
  created public.widget_keys;
begin
  select a.* into agent from public.agents a
   where a.id = p_agent_id and a.org_id = private.current_org_id() and a.project_id = any (private.admin_project_ids());
  if agent.id is null then
    perform private.refuse_request(404, 'agent_not_found', 'No agent with that id that you administer in this context.');
  end if;
  if not private.origins_valid(p_allowed_origins) then
    perform private.refuse_request(400, 'invalid_origins', 'Up to 50 exact origins such as https://shop.example.com (no path, lower case).');
  end if;
  if exists (select 1 from public.widget_keys k where k.org_id = agent.org_id and k.agent_id = agent.id and k.disabled_at is null) then
    perform private.refuse_request(409, 'widget_key_exists', 'The agent has a live widget key: rotate or disable it.');
  end if;
  insert into public.widget_keys (org_id, project_id, agent_id, key_prefix, key_sha256, allowed_origins)
  values (agent.org_id, agent.project_id, agent.id, pg_catalog.left(key, 12), private.sha256_hex(key), coalesce(p_allowed_origins, '{}'))
  returning * into created;
  return (pg_catalog.to_jsonb(created) - 'key_sha256') || pg_catalog.jsonb_build_object('key', key);
end
$$;
comment on function public.create_widget_key(uuid, text[]) is
  'Turns on an agent''s widget with a new publishable key for the given origins (project admin); the key is shown only here.';
revoke execute on function public.create_widget_key(uuid, text[]) from public, anon, authenticated;
grant execute on function public.create_widget_key(uuid, text[]) to authenticated;

-- A new secret for a live key (project admin): the old one, and every session issued for it, stop
-- working at once. The new key is shown in this answer only.
create function public.rotate_widget_key(p_key_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  found public.widget_keys := private.managed_widget_key(p_key_id);
  key text := private.new_widget_key();
begin
  if found.disabled_at is not null then
    perform private.refuse_request(409, 'widget_key_disabled', 'A disabled key is not rotated; create a new one.');
  end if;
  update public.widget_keys k
     set key_prefix = pg_catalog.left(key, 12), key_sha256 = private.sha256_hex(key), version = k.version + 1, rotated_at = pg_catalog.now()
   where k.id = found.id
  returning * into found;
  return (pg_catalog.to_jsonb(found) - 'key_sha256') || pg_catalog.jsonb_build_object('key', key);
end
$$;
comment on function public.rotate_widget_key(uuid) is 'Replaces a widget key''s secret (project admin); the old key and its sessions stop at once.';
revoke execute on function public.rotate_widget_key(uuid) from public, anon, authenticated;
grant execute on function public.rotate_widget_key(uuid) to authenticated;

-- Turns a key off at once (project admin); its sessions stop with it.
create function public.disable_widget_key(p_key_id uuid) returns public.widget_keys
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  found public.widget_keys := private.managed_widget_key(p_key_id);
begin
  update public.widget_keys k set disabled_at = coalesce(k.disabled_at, pg_catalog.now()) where k.id = found.id returning * into found;
  found.key_sha256 := null;
  return found;
end
$$;
comment on function public.disable_widget_key(uuid) is 'Disables a widget key at once (project admin).';
revoke execute on function public.disable_widget_key(uuid) from public, anon, authenticated;
grant execute on function public.disable_widget_key(uuid) to authenticated;

-- Moves a review item (project contributor or above on its project, in context), as one new row
-- of its history; the item follows it. Returns the history row.
create function public.change_review_status(p_item_id uuid, p_status public.review_status, p_assignee uuid default null,
                                            p_note text default null)
returns public.review_item_events
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  item public.review_items;
  event public.review_item_events;
begin
  select i.* into item from public.review_items i
   where i.id = p_item_id and i.org_id = private.current_org_id()
     and i.project_id = any (private.project_ids_with_role('project_contributor'));
  if item.id is null then
    perform private.refuse_request(404, 'review_item_not_found', 'No review item with that id that you can review in this context.');
  end if;
  if p_assignee is not null and not exists (select 1 from public.organization_members m where m.org_id = item.org_id and m.user_id = p_assignee) then
    perform private.refuse_request(400, 'invalid_assignee', 'The assignee must be a member of the organization.');
  end if;
  insert into public.review_item_events (org_id, project_id, item_id, status, assignee, note, actor)
  values (item.org_id, item.project_id, item.id, p_status, p_assignee, p_note, (select auth.uid()))
  returning * into event;
  return event;
end
$$;
comment on function public.change_review_status(uuid, public.review_status, uuid, text) is
  'Moves a review item through open → in_review → resolved or dismissed (project contributor), appending to its history.';
revoke execute on function public.change_review_status(uuid, public.review_status, uuid, text) from public, anon, authenticated;
grant execute on function public.change_review_status(uuid, public.review_status, uuid, text) to authenticated;

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their projects' widget keys" on public.widget_keys
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "widget keys are created through create_widget_key" on public.widget_keys
  for insert to authenticated
  with check (false);
create policy "project admins change widget key settings" on public.widget_keys
  for update to authenticated
  using (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]))
  with check (org_id = (select private.current_org_id()) and project_id = any ((select private.admin_project_ids())::uuid[]));
create policy "widget keys are kept (disable them)" on public.widget_keys
  for delete to authenticated
  using (false);

create policy "members read their projects' conversations" on public.widget_conversations
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "conversations are written by the widget function" on public.widget_conversations
  for insert to authenticated
  with check (false);
create policy "conversations are not changed by members" on public.widget_conversations
  for update to authenticated
  using (false);
create policy "conversations go with retention" on public.widget_conversations
  for delete to authenticated
  using (false);

create policy "members read their projects' messages" on public.widget_messages
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "messages are written by the widget function" on public.widget_messages
  for insert to authenticated
  with check (false);
create policy "messages are not changed" on public.widget_messages
  for update to authenticated
  using (false);
create policy "messages go with their conversation" on public.widget_messages
  for delete to authenticated
  using (false);

create policy "members read their projects' review items" on public.review_items
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "review items are raised by the widget function" on public.review_items
  for insert to authenticated
  with check (false);
create policy "review items move through their history" on public.review_items
  for update to authenticated
  using (false);
create policy "review items are kept" on public.review_items
  for delete to authenticated
  using (false);

create policy "members read their projects' review history" on public.review_item_events
  for select to authenticated
  using (org_id = (select private.current_org_id()) and project_id = coalesce((select private.context_project_id()), project_id));
create policy "review history is appended through change_review_status" on public.review_item_events
  for insert to authenticated
  with check (false);
create policy "review history is never changed" on public.review_item_events
  for update to authenticated
  using (false);
create policy "review history is never deleted" on public.review_item_events
  for delete to authenticated
  using (false);

create policy "members read their organization's retention" on public.transcript_settings
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "tenant admins set retention" on public.transcript_settings
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "tenant admins change retention" on public.transcript_settings
  for update to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "retention is kept" on public.transcript_settings
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.widget_keys, public.widget_conversations, public.widget_messages, public.review_items,
              public.review_item_events, public.transcript_settings
  from anon, authenticated, service_role;
-- Every column of a key but its hash; admins change its settings, never its secret or version.
grant select (id, org_id, project_id, agent_id, key_prefix, allowed_origins, monthly_budget_micro, requests_per_minute,
              visitor_requests_per_minute, proof_of_work_bits, hold_answers, version, created_by, created_at, rotated_at, disabled_at),
      update (allowed_origins, monthly_budget_micro, requests_per_minute, visitor_requests_per_minute, proof_of_work_bits, hold_answers)
  on public.widget_keys to authenticated;
grant select (id, org_id, project_id, agent_id, key_prefix, allowed_origins, monthly_budget_micro, requests_per_minute,
              visitor_requests_per_minute, proof_of_work_bits, hold_answers, version, created_by, created_at, rotated_at, disabled_at)
  on public.widget_keys to service_role;
grant select on public.widget_conversations, public.widget_messages, public.review_items, public.review_item_events
  to authenticated, service_role;
grant select, insert (org_id, retention_days), update (retention_days, updated_at) on public.transcript_settings to authenticated;
grant select on public.transcript_settings to service_role;
