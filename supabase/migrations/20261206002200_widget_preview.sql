-- A preview of a widget in the console (issue 25, section 2): before putting a widget on a site, a
-- project admin or contributor chats with it from the Widgets screen, through the widget's own path:
-- its rate limits, its budget and the organization's, the transcript and the review queue. The
-- widget-preview function (verify_jwt on: a signed-in person) checks, as that person, that they may
-- work on the key's project (contributor or above), then calls widget_message_begin as the service
-- role with gatehouse.widget_preview_key set to the key for that transaction alone; the
-- conversation's origin is the console's. No origin is added to the key, and no public route
-- takes a preview.
--
-- widget_message_begin is as before (20261206000400_edge_seams.sql), but for that check, and one
-- more: a conversation goes on only from the origin it started on, so that a preview (whose person
-- can read a visitor's conversation and visitor ids) can't write into a visitor's conversation.

create or replace function private.widget_message_begin(
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
  org_limits public.model_limits;
  agent_rate integer;
  history jsonb;
  bound integer;
  admitted jsonb;
  refusal text;
begin
  select k.* into key from public.widget_keys k where k.id = p_key_id;
  if key.id is null or key.disabled_at is not null or key.version <> p_key_version then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_session_expired');
  end if;
  -- A preview from the console (the widget-preview function, which has checked the person first)
  -- names the key in gatehouse.widget_preview_key, for this transaction: its origin is the console's.
  if not (p_origin = any (key.allowed_origins))
     and pg_catalog.current_setting('gatehouse.widget_preview_key', true) is distinct from key.id::text then
    return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_origin_not_allowed');
  end if;
  if p_conversation_id is not null then
    select c.* into conversation from public.widget_conversations c
     where c.org_id = key.org_id and c.id = p_conversation_id and c.widget_key_id = key.id and c.visitor_id = p_visitor_id
       -- A conversation goes on on its own origin only: a console preview never writes into a
       -- visitor's conversation (whose ids its members can read), nor a page into a preview's.
       and c.origin = p_origin
       -- A rotation ends the old key's conversations, whoever asks.
       and (key.rotated_at is null or c.started_at >= key.rotated_at);
    if conversation.id is null then
      return pg_catalog.jsonb_build_object('ok', false, 'reason', 'widget_conversation_not_found');
    end if;
  end if;

  -- The visitor's limit, then the key's: a minute's worth may come at once, then they are paced.
  -- The visitor's, the organization's and the agent's (the model gateway's, which
  -- admit_model_call counts below) are read first without a write, so that one visitor over their
  -- own limit spends nothing of the key's, and a message any limit refuses leaves no row behind
  -- (not a visitor's rate state, not a conversation), however many fresh visitors send one. Then
  -- the key's is taken, then the visitor's.
  wait := private.peek_model_rate(key.org_id, 'visitor', p_visitor_id, key.visitor_requests_per_minute, key.visitor_requests_per_minute);
  if wait is null then
    select l.* into org_limits from (select 1) one left join public.model_limits l on l.org_id = key.org_id;
    wait := private.peek_model_rate(key.org_id, 'organization', key.org_id, coalesce(org_limits.requests_per_minute, 600),
                                    coalesce(org_limits.burst, 60));
  end if;
  if wait is null then
    select c.requests_per_minute into agent_rate from public.model_caps c
     where c.org_id = key.org_id and c.project_id = key.project_id and c.agent_id = key.agent_id;
    if agent_rate is not null then
      wait := private.peek_model_rate(key.org_id, 'agent', key.agent_id, agent_rate, least(coalesce(org_limits.burst, 60), agent_rate));
    end if;
  end if;
  if wait is null then
    wait := private.take_model_rate(key.org_id, 'widget_key', key.id, key.requests_per_minute, key.requests_per_minute);
  end if;
  if wait is null then
    wait := private.take_model_rate(key.org_id, 'visitor', p_visitor_id, key.visitor_requests_per_minute, key.visitor_requests_per_minute);
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
    -- A refusal of the model gateway's (the agent's model is not allowed, the organization's
    -- prepaid credits or the platform's ceiling can't cover the call): the visitor is told
    -- politely, and the refusal keeps its own code for the team and the embed.
    get stacked diagnostics refusal = message_text;
    admitted := pg_catalog.jsonb_build_object('ok', false, 'reason', coalesce(refusal::jsonb ->> 'code', 'widget_model_unavailable'));
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
  'A widget message before its answer, in one statement: session key and origin (or a console preview), rate limits, storage, review items, the model reservation.';
