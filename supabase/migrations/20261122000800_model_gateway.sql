-- The model gateway (seeds 002, 003): the database side of the model-gateway edge function, the
-- one path every model call takes.
--
-- - private.model_catalog: the models Gatehouse can call, their provider and price (integer
--   micro-units, millionths of a currency unit, per million tokens). Global, so not exposed.
-- - model_limits (one row per organization) and model_caps (per project, or per agent): which
--   models may be called, the burst limit, the monthly budget and its soft threshold, and the
--   narrower budgets of a project, an agent and each of an agent's runs.
-- - model_provider_keys: an organization's own vendor key per provider (bring-your-own-key), in
--   Vault, written only by save_model_provider_key after the function has verified it live.
-- - model_calls: one row per call (tokens, cost, latency, outcome, which key paid), audited as
--   `model.call`; never the prompt or the output. model_usage_daily sums them by day, agent, model.
-- - model_budget_events: the soft threshold crossed, once per organization and month.
--
-- A call is admitted by private.reserve_model_call and closed by private.settle_model_call, one
-- statement each:
--   reserve  resolves who is calling (a run's organization, project and agent come from the run
--            row), checks the allowlists, counts the call against the burst limits (GCRA, one
--            statement per limit), and reserves the call's maximum cost against every budget that
--            applies, in a fixed order (organization, project, agent, run), each with one guarded
--            upsert on its meter row. Concurrent reservations queue on those rows, so together they
--            can never exceed a budget. A refusal reserves nothing and is recorded in the audit chain.
--   settle   replaces the reservation with the actual cost on every meter, writes the model_calls
--            row, and records the soft-threshold event the first time a month's spend crosses it.
-- A reservation nobody settled (the function died mid-call) is closed by the next reservation of
-- its organization once it expires, charged at its reserved maximum (outcome `abandoned`).

-- =============================================================================================
-- Types
-- =============================================================================================
create type public.model_provider as enum ('openai', 'anthropic');
create type public.model_call_outcome as enum ('succeeded', 'failed', 'cancelled', 'abandoned');
create type public.model_key_source as enum ('platform', 'byok');

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.model_catalog (
  model text primary key check (model ~ '^[a-z0-9][a-z0-9._:-]{0,99}$'),
  provider public.model_provider not null,
  -- The vendor's name for the model (the catalog's id is ours, and stable).
  upstream_model text not null,
  input_micro_per_mtok bigint not null check (input_micro_per_mtok >= 0),
  output_micro_per_mtok bigint not null check (output_micro_per_mtok >= 0),
  max_output_tokens integer not null check (max_output_tokens between 1 and 1000000)
);
comment on table private.model_catalog is
  'The models the gateway calls: provider, the vendor''s name, price in micro-units per million tokens, output limit.';

-- List prices of the vendors (USD, November 2026), in micro-dollars per million tokens.
insert into private.model_catalog (model, provider, upstream_model, input_micro_per_mtok, output_micro_per_mtok, max_output_tokens)
values
  ('gpt-4o-mini',       'openai',    'gpt-4o-mini',       150000,   600000, 16384),
  ('gpt-4.1-mini',      'openai',    'gpt-4.1-mini',      400000,  1600000, 32768),
  ('gpt-4.1',           'openai',    'gpt-4.1',          2000000,  8000000, 32768),
  ('claude-haiku-4-5',  'anthropic', 'claude-haiku-4-5', 1000000,  5000000, 64000),
  ('claude-sonnet-4-5', 'anthropic', 'claude-sonnet-4-5', 3000000, 15000000, 64000);

create table public.model_limits (
  org_id uuid primary key references public.organizations (id) on delete cascade,
  -- Null allows every model in the catalog.
  allowed_models text[] check (cardinality(allowed_models) <= 100),
  requests_per_minute integer not null default 600 check (requests_per_minute between 1 and 100000),
  burst integer not null default 60 check (burst between 1 and 10000),
  monthly_budget_micro bigint not null default 50000000 check (monthly_budget_micro between 0 and 1000000000000000),
  soft_budget_micro bigint check (soft_budget_micro between 0 and monthly_budget_micro),
  default_max_tokens integer not null default 1024 check (default_max_tokens between 1 and 1000000),
  updated_at timestamptz not null default now()
);
comment on table public.model_limits is
  'An organization''s model limits: allowed models, burst limit, monthly budget and soft threshold (micro-units), '
  'and the output cap of calls that send no max_tokens. An organization without a row gets the column defaults.';
comment on column public.model_limits.burst is
  'How many calls may arrive at once before requests_per_minute paces them (the GCRA burst).';

create table public.model_caps (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null,
  project_id uuid not null,
  -- Null: a cap of the whole project (only its monthly budget applies).
  agent_id uuid,
  allowed_models text[] check (cardinality(allowed_models) <= 100),
  requests_per_minute integer check (requests_per_minute between 1 and 100000),
  monthly_budget_micro bigint check (monthly_budget_micro between 0 and 1000000000000000),
  run_budget_micro bigint check (run_budget_micro between 0 and 1000000000000000),
  updated_at timestamptz not null default now(),
  check (agent_id is not null or (allowed_models is null and requests_per_minute is null and run_budget_micro is null)),
  unique nulls not distinct (org_id, project_id, agent_id),
  foreign key (org_id, project_id) references public.projects (org_id, id) on delete cascade,
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id) on delete cascade
);
comment on table public.model_caps is
  'Caps narrower than the organization''s: a project''s monthly budget (agent_id null), or an agent''s models, '
  'rate, monthly budget and budget per run. Null columns impose nothing.';

create table public.model_provider_keys (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  provider public.model_provider not null,
  -- An OpenAI-compatible endpoint of the organization's own (Azure, a self-hosted server); null is
  -- the vendor's. Only the organization's own key is ever sent there.
  base_url text check (base_url ~ '^https?://' and char_length(base_url) <= 500),
  key_hint text not null check (key_hint ~ '^…[A-Za-z0-9_-]{0,4}$'),
  secret_id uuid not null,
  verified_at timestamptz not null,
  created_by uuid default auth.uid(),
  created_at timestamptz not null default now(),
  unique (org_id, provider)
);
comment on table public.model_provider_keys is
  'An organization''s own vendor keys (bring-your-own-key), one per provider, in Vault; written only by save_model_provider_key().';
comment on column public.model_provider_keys.key_hint is 'The key''s last four characters, to tell keys apart; never more.';
comment on column public.model_provider_keys.secret_id is 'The Vault secret holding the key; not readable by clients.';

create table public.model_calls (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  project_id uuid not null,
  agent_id uuid not null,
  run_id uuid,
  -- The member who called from the console playground; null for the agent runtime.
  user_id uuid,
  provider public.model_provider not null,
  model text not null,
  key_source public.model_key_source not null,
  stream boolean not null,
  input_tokens integer not null check (input_tokens >= 0),
  output_tokens integer not null check (output_tokens >= 0),
  -- True when the vendor reported no usage (a stream cut off before its last chunk) and the
  -- tokens were counted by the gateway.
  usage_estimated boolean not null default false,
  reserved_micro bigint not null check (reserved_micro >= 0),
  cost_micro bigint not null check (cost_micro >= 0),
  latency_ms integer not null check (latency_ms >= 0),
  outcome public.model_call_outcome not null,
  error_code text check (error_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  started_at timestamptz not null,
  created_at timestamptz not null default pg_catalog.clock_timestamp(),
  -- An agent with calls is kept (disable it instead): its calls are what was spent. Its
  -- organization's deletion takes both.
  foreign key (org_id, project_id, agent_id) references public.agents (org_id, project_id, id),
  -- Cover the two keys (and say nothing new: id is unique).
  unique (org_id, id),
  unique (org_id, project_id, agent_id, id)
);
comment on table public.model_calls is
  'One row per model call: tokens, cost (micro-units), latency, outcome, which key paid. Never the prompt or the output. '
  'Written only by the gateway (private.settle_model_call).';

create table public.model_budget_events (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  period date not null,
  kind text not null check (kind in ('soft_budget_crossed')),
  threshold_micro bigint not null,
  spent_micro bigint not null,
  created_at timestamptz not null default now(),
  unique (org_id, period, kind)
);
comment on table public.model_budget_events is
  'Budget events: the month''s spend crossing the soft threshold, recorded once per organization and month.';

-- Spend per budget and period: `committed_micro` is what was spent plus what is reserved by calls
-- in flight, and never exceeds the budget. Written only by reserve and settle.
create table private.model_meters (
  org_id uuid not null references public.organizations (id) on delete cascade,
  scope text not null check (scope in ('organization', 'project', 'agent', 'run', 'widget_key')),
  scope_id uuid not null,
  -- The month, or -infinity for a run's budget (which is for the run's life).
  period date not null,
  committed_micro bigint not null check (committed_micro >= 0),
  spent_micro bigint not null check (spent_micro >= 0),
  primary key (org_id, scope, scope_id, period)
);
comment on table private.model_meters is 'Model spend per budget and period: spent, and spent plus reserved (committed).';

-- The GCRA state of each burst limit: the theoretical arrival time of the next call.
create table private.model_rates (
  org_id uuid not null references public.organizations (id) on delete cascade,
  scope text not null check (scope in ('organization', 'agent', 'widget_key', 'visitor')),
  scope_id uuid not null,
  tat timestamptz not null,
  -- Calls refused since the last model.refused entry of this limit, and when that was: a burst
  -- of refusals is one audit entry a minute, not one each (which would let a caller flood the chain).
  refused integer not null default 0,
  refusal_recorded_at timestamptz,
  primary key (org_id, scope, scope_id)
);
comment on table private.model_rates is 'Burst limits (GCRA): the theoretical arrival time of each limit''s next call, and refusals not yet recorded.';

create table private.model_reservations (
  id uuid primary key default gen_random_uuid(),
  org_id uuid not null references public.organizations (id) on delete cascade,
  project_id uuid not null,
  agent_id uuid not null,
  run_id uuid,
  user_id uuid,
  model text not null,
  provider public.model_provider not null,
  key_source public.model_key_source not null,
  stream boolean not null,
  input_micro_per_mtok bigint not null,
  output_micro_per_mtok bigint not null,
  reserved_micro bigint not null,
  -- The meters holding the reservation, in locking order: {scope, scope_id, period} objects.
  meters jsonb not null,
  started_at timestamptz not null default pg_catalog.clock_timestamp(),
  expires_at timestamptz not null,
  -- The sweep of an organization's expired reservations reads this (and id is unique anyway).
  unique (org_id, expires_at, id)
);
comment on table private.model_reservations is 'Model calls in flight: what each reserved, on which meters, until when.';

-- =============================================================================================
-- Triggers
-- =============================================================================================
select private.make_tenant_table('public.model_limits', 'model_limits');
select private.make_tenant_table('public.model_caps', 'model_cap');
select private.make_tenant_table('public.model_provider_keys', 'model_provider_key', array['secret_id']);
select private.make_tenant_table('public.model_budget_events', 'model_budget_event');

-- model_calls is a ledger: the RLS and context pieces of a tenant table, an audit entry
-- `model.call` per row (the row's fields: it holds no prompt or output), and no change after
-- (no role is granted to delete its rows).
alter table public.model_calls enable row level security;
alter table public.model_calls force row level security;
create trigger require_org_context before insert or update or delete on public.model_calls
  for each statement execute function private.require_org_context();
select private.take_ids_from_context('public.model_calls');

create function audit.record_model_call() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  perform audit.append(new.org_id, 'model.call', 'public.model_calls', new.id::text,
                       pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(new)));
  return null;
end
$$;
comment on function audit.record_model_call() is 'AFTER INSERT trigger of model_calls: records the call as `model.call`.';
revoke execute on function audit.record_model_call() from public, anon, authenticated;
create trigger audit after insert on public.model_calls
  for each row execute function audit.record_model_call();

-- A BEFORE UPDATE OR DELETE trigger for rows that are final (ledgers, histories): refuses with
-- 409 and the code and message the trigger names, for every role and the owner too:
--   create trigger final before update on public.t
--     for each row execute function private.refuse_final_change('code', 'Message.');
create function private.refuse_final_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform private.refuse_request(409, tg_argv[0], tg_argv[1]);
  return null;
end
$$;
comment on function private.refuse_final_change() is 'BEFORE UPDATE OR DELETE trigger of final rows: refuses (409) with the trigger''s code and message.';
revoke execute on function private.refuse_final_change() from public, anon, authenticated;
create trigger final before update on public.model_calls
  for each row execute function private.refuse_final_change('model_calls_are_final', 'Model calls are a ledger: they are never changed.');

-- A row holding a Vault reference takes its secret with it when it goes (a key removed, or its
-- organization deleted): model keys, and connections too, whose organization's deletion used to
-- leave their credential decryptable in Vault.
create function private.forget_vault_secret() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  delete from vault.secrets s where s.id = old.secret_id;
  return null;
end
$$;
comment on function private.forget_vault_secret() is 'AFTER DELETE trigger of a row with secret_id: deletes the secret from Vault.';
revoke execute on function private.forget_vault_secret() from public, anon, authenticated;
create trigger forget_secret after delete on public.model_provider_keys
  for each row execute function private.forget_vault_secret();
create trigger forget_secret after delete on public.connections
  for each row execute function private.forget_vault_secret();

-- =============================================================================================
-- Helper functions (the model-gateway function runs them as the service role; no client role
-- may, and PostgREST never exposes `private`)
-- =============================================================================================
-- The cost of a call in micro-units, rounded up.
create function private.model_cost(p_input_tokens bigint, p_output_tokens bigint, p_input_price bigint, p_output_price bigint)
returns bigint
language sql immutable
set search_path = ''
as $$
  select pg_catalog.ceil((p_input_tokens::numeric * p_input_price + p_output_tokens::numeric * p_output_price) / 1000000)::bigint
$$;
comment on function private.model_cost(bigint, bigint, bigint, bigint) is
  'Micro-units for input and output tokens at prices per million tokens, rounded up.';
revoke execute on function private.model_cost(bigint, bigint, bigint, bigint) from public, anon, authenticated;

-- Counts one call against a burst limit (GCRA: one call every 60/per_minute seconds, `burst` at
-- once), in one statement. Null when admitted; else the seconds until a call would be.
create function private.take_model_rate(p_org_id uuid, p_scope text, p_scope_id uuid, p_per_minute integer, p_burst integer)
returns numeric
language plpgsql volatile
set search_path = ''
as $$
declare
  now_at timestamptz := pg_catalog.clock_timestamp();
  step interval := pg_catalog.make_interval(secs => 60.0 / p_per_minute);
  tolerance interval := pg_catalog.make_interval(secs => 60.0 / p_per_minute * (p_burst - 1));
  admitted timestamptz;
  waiting timestamptz;
begin
  insert into private.model_rates as r (org_id, scope, scope_id, tat)
  values (p_org_id, p_scope, p_scope_id, now_at + step)
  on conflict (org_id, scope, scope_id) do update
     set tat = greatest(r.tat, now_at) + step
   where greatest(r.tat, now_at) - now_at <= tolerance
  returning r.tat into admitted;
  if admitted is not null then
    return null;
  end if;
  update private.model_rates r set refused = r.refused + 1
   where r.org_id = p_org_id and r.scope = p_scope and r.scope_id = p_scope_id
  returning r.tat into waiting;
  return greatest(extract(epoch from waiting - tolerance - now_at), 0.001);
end
$$;
comment on function private.take_model_rate(uuid, text, uuid, integer, integer) is
  'GCRA: admits and counts one call in one statement (null), or returns the seconds to wait.';
revoke execute on function private.take_model_rate(uuid, text, uuid, integer, integer) from public, anon, authenticated;

-- Moves a reservation's amount on its meters: `reserved` leaves the committed spend and `cost`
-- joins it and the spent total. One update per meter, in the order the reservation lists them
-- (the order reserve took them in), so that settling and reserving never lock them in opposite
-- orders. The cost is never above the reservation (close_model_reservation caps it).
create function private.move_model_meters(p_org_id uuid, p_meters jsonb, p_reserved bigint, p_cost bigint) returns void
language plpgsql volatile
set search_path = ''
as $$
declare
  meter record;
begin
  for meter in
    select x.m ->> 'scope' as scope, (x.m ->> 'scope_id')::uuid as scope_id, (x.m ->> 'period')::date as period
      from pg_catalog.jsonb_array_elements(p_meters) with ordinality as x (m, ord)
     order by x.ord
  loop
    update private.model_meters m
       set committed_micro = m.committed_micro - p_reserved + p_cost,
           spent_micro = m.spent_micro + p_cost
     where m.org_id = p_org_id and m.scope = meter.scope and m.scope_id = meter.scope_id and m.period = meter.period;
  end loop;
end
$$;
comment on function private.move_model_meters(uuid, jsonb, bigint, bigint) is
  'Replaces a reserved amount by the actual cost on the meters a reservation holds.';
revoke execute on function private.move_model_meters(uuid, jsonb, bigint, bigint) from public, anon, authenticated;

-- Closes a reservation: the meters move from the reserved amount to the cost, the call is written
-- to model_calls (which records it in the audit chain), and the organization's soft threshold is
-- recorded the first time this month's spend crosses it. The cost is the usage at the
-- reservation's prices, and never more than was reserved: the reservation is an upper bound for
-- an honest vendor, and a budget can't be passed by one that reports more. Returns the call's row.
create function private.close_model_reservation(
  p_reservation private.model_reservations, p_outcome public.model_call_outcome, p_input_tokens integer,
  p_output_tokens integer, p_usage_estimated boolean, p_latency_ms integer, p_error_code text
) returns public.model_calls
language plpgsql volatile
set search_path = ''
as $$
declare
  cost bigint;
  settled public.model_calls;
  soft bigint;
  spent bigint;
  org_meter jsonb;
begin
  cost := case when p_outcome = 'abandoned' then p_reservation.reserved_micro
               else least(private.model_cost(p_input_tokens, p_output_tokens, p_reservation.input_micro_per_mtok,
                                             p_reservation.output_micro_per_mtok), p_reservation.reserved_micro) end;
  perform private.move_model_meters(p_reservation.org_id, p_reservation.meters, p_reservation.reserved_micro, cost);
  insert into public.model_calls (org_id, project_id, agent_id, run_id, user_id, provider, model, key_source, stream,
                                  input_tokens, output_tokens, usage_estimated, reserved_micro, cost_micro, latency_ms,
                                  outcome, error_code, started_at)
  values (p_reservation.org_id, p_reservation.project_id, p_reservation.agent_id, p_reservation.run_id, p_reservation.user_id,
          p_reservation.provider, p_reservation.model, p_reservation.key_source, p_reservation.stream,
          p_input_tokens, p_output_tokens, p_usage_estimated, p_reservation.reserved_micro, cost, p_latency_ms,
          p_outcome, p_error_code, p_reservation.started_at)
  returning * into settled;

  -- The soft threshold, on the organization's meter of the month the call was reserved in.
  select l.soft_budget_micro into soft from public.model_limits l where l.org_id = p_reservation.org_id;
  org_meter := pg_catalog.jsonb_path_query_first(p_reservation.meters, '$[*] ? (@.scope == "organization")');
  if soft is not null and cost > 0 and org_meter is not null then
    select m.spent_micro into spent from private.model_meters m
     where m.org_id = p_reservation.org_id and m.scope = 'organization' and m.scope_id = p_reservation.org_id
       and m.period = (org_meter ->> 'period')::date;
    if spent >= soft and spent - cost < soft then
      insert into public.model_budget_events (org_id, period, kind, threshold_micro, spent_micro)
      values (p_reservation.org_id, (org_meter ->> 'period')::date, 'soft_budget_crossed', soft, spent)
      on conflict (org_id, period, kind) do nothing;
    end if;
  end if;
  return settled;
end
$$;
comment on function private.close_model_reservation(private.model_reservations, public.model_call_outcome, integer, integer, boolean, integer, text) is
  'Settles a reservation on its meters at the actual cost and writes its model_calls row.';
revoke execute on function private.close_model_reservation(private.model_reservations, public.model_call_outcome, integer, integer, boolean, integer, text)
  from public, anon, authenticated;

-- Records a refused call in the audit chain, and answers the refusal.
create function private.refuse_model_call(p_org_id uuid, p_agent_id uuid, p_refusal jsonb) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
begin
  perform audit.append(p_org_id, 'model.refused', 'public.agents', p_agent_id::text, p_refusal);
  return p_refusal || '{"ok": false}';
end
$$;

-- The burst limits' refusals since their last audit entry, when a minute has passed since it
-- (they then count as recorded); null otherwise. The first refusal of a burst is recorded at once.
create function private.rate_refusals_to_record(p_org_id uuid) returns integer
language plpgsql volatile
set search_path = ''
as $$
declare
  n integer;
begin
  with due as (
    select r.scope, r.scope_id, r.refused from private.model_rates r
     where r.org_id = p_org_id and r.refused > 0
       and (r.refusal_recorded_at is null or r.refusal_recorded_at < pg_catalog.clock_timestamp() - interval '1 minute')
       for update
  ), recorded as (
    update private.model_rates r set refused = 0, refusal_recorded_at = pg_catalog.clock_timestamp()
      from due
     where r.org_id = p_org_id and r.scope = due.scope and r.scope_id = due.scope_id
    returning due.refused
  )
  select sum(recorded.refused)::integer into n from recorded;
  return n;
end
$$;
comment on function private.rate_refusals_to_record(uuid) is
  'Refusals by an organization''s burst limits to record now (at most once a minute per limit), or null.';
revoke execute on function private.rate_refusals_to_record(uuid) from public, anon, authenticated;
comment on function private.refuse_model_call(uuid, uuid, jsonb) is 'Records a refused model call (model.refused) and returns the refusal.';
revoke execute on function private.refuse_model_call(uuid, uuid, jsonb) from public, anon, authenticated;

-- Admits a call of `agent`'s (for `run`, or for the member `caller`, or for neither: a widget's
-- visitor) and reserves its maximum cost: the allowlists, the output limit, the burst limits, then
-- every budget that applies, in a fixed order (organization, project, agent, run, and
-- p_extra_meter, {scope, scope_id, budget}, a widget key's). Unknown or disallowed models are
-- refused with refuse_request (4xx); limits answer {ok: false, reason, ...} and are audited.
create function private.admit_model_call(
  agent public.agents, run public.agent_runs, caller uuid, p_model text, p_input_bound integer, p_max_tokens integer,
  p_stream boolean, p_extra_meter jsonb default null
) returns jsonb
language plpgsql volatile
set search_path = ''
as $$
declare
  model private.model_catalog;
  limits public.model_limits;
  agent_cap public.model_caps;
  project_cap public.model_caps;
  own_key record;
  wait numeric;
  max_tokens integer;
  amount bigint;
  this_month date := pg_catalog.date_trunc('month', pg_catalog.now())::date;
  meters jsonb := '[]'::jsonb;
  meter record;
  over_scope text;
  reservation private.model_reservations;
  expired private.model_reservations;
  refusal jsonb;
  refused_calls integer;
begin
  if p_model is null or p_input_bound is null or p_input_bound < 0 or p_max_tokens < 1 then
    raise exception 'admit_model_call needs a model, an input bound of zero or more and a positive max_tokens'
      using errcode = '22023';
  end if;
  if agent.disabled_at is not null then
    perform private.refuse_request(409, 'agent_disabled', 'The agent is disabled.');
  end if;

  -- What may be called, and how much of it.
  select m.* into model from private.model_catalog m where m.model = p_model;
  if model.model is null then
    perform private.refuse_request(404, 'model_not_found', pg_catalog.format('No model %s in the catalog (GET /v1/models lists them).', p_model));
  end if;
  select l.* into limits from (select 1) one left join public.model_limits l on l.org_id = agent.org_id;
  limits.requests_per_minute := coalesce(limits.requests_per_minute, 600);
  limits.burst := coalesce(limits.burst, 60);
  limits.monthly_budget_micro := coalesce(limits.monthly_budget_micro, 50000000);
  limits.default_max_tokens := coalesce(limits.default_max_tokens, 1024);
  select c.* into agent_cap from public.model_caps c
   where c.org_id = agent.org_id and c.project_id = agent.project_id and c.agent_id = agent.id;
  select c.* into project_cap from public.model_caps c
   where c.org_id = agent.org_id and c.project_id = agent.project_id and c.agent_id is null;
  if not (p_model = any (coalesce(limits.allowed_models, array[p_model])))
     or not (p_model = any (coalesce(agent_cap.allowed_models, array[p_model]))) then
    perform private.refuse_request(403, 'model_not_allowed',
      pg_catalog.format('%s is not among the models this %s may call.', p_model,
                        case when p_model = any (coalesce(limits.allowed_models, array[p_model])) then 'agent' else 'organization' end));
  end if;
  max_tokens := coalesce(p_max_tokens, least(limits.default_max_tokens, model.max_output_tokens));
  if max_tokens > model.max_output_tokens then
    perform private.refuse_request(400, 'max_tokens_too_large',
      pg_catalog.format('%s writes at most %s tokens.', p_model, model.max_output_tokens));
  end if;

  -- Burst limits: the organization's, then the agent's.
  wait := private.take_model_rate(agent.org_id, 'organization', agent.org_id, limits.requests_per_minute, limits.burst);
  if wait is null and agent_cap.requests_per_minute is not null then
    wait := private.take_model_rate(agent.org_id, 'agent', agent.id, agent_cap.requests_per_minute,
                                    least(limits.burst, agent_cap.requests_per_minute));
  end if;
  if wait is not null then
    refusal := pg_catalog.jsonb_build_object(
      'reason', 'model_rate_limited', 'model', p_model, 'run_id', run.id,
      'retry_after', pg_catalog.ceil(wait)::integer,
      'message', 'Too many model calls at once; retry after the given seconds.');
    refused_calls := private.rate_refusals_to_record(agent.org_id);
    if refused_calls is null then
      return refusal || '{"ok": false}';
    end if;
    return private.refuse_model_call(agent.org_id, agent.id, refusal || pg_catalog.jsonb_build_object('refused_calls', refused_calls));
  end if;

  -- Reservations of this organization that nobody settled, and that have expired, are closed
  -- at their reserved maximum before anything new is reserved.
  for expired in
    delete from private.model_reservations r
     where r.org_id = agent.org_id and r.expires_at < pg_catalog.now()
    returning r.*
  loop
    perform private.close_model_reservation(expired, 'abandoned', 0, 0, true,
      greatest(extract(epoch from pg_catalog.clock_timestamp() - expired.started_at) * 1000, 0)::integer, 'reservation_expired');
  end loop;

  -- The reservation: the most the call can cost, on every budget that applies, in a fixed order.
  amount := private.model_cost(p_input_bound, max_tokens, model.input_micro_per_mtok, model.output_micro_per_mtok);
  begin
    for meter in
      select * from (values
        (1, 'organization', agent.org_id, this_month, limits.monthly_budget_micro),
        (2, 'project', agent.project_id, this_month, project_cap.monthly_budget_micro),
        (3, 'agent', agent.id, this_month, agent_cap.monthly_budget_micro),
        (4, 'run', run.id, '-infinity'::date, agent_cap.run_budget_micro),
        (5, p_extra_meter ->> 'scope', (p_extra_meter ->> 'scope_id')::uuid, this_month, (p_extra_meter ->> 'budget')::bigint)
      ) as m (ord, scope, scope_id, period, budget)
      where m.budget is not null and m.scope_id is not null
      order by m.ord
    loop
      insert into private.model_meters as m (org_id, scope, scope_id, period, committed_micro, spent_micro)
      select agent.org_id, meter.scope, meter.scope_id, meter.period, amount, 0
       where amount <= meter.budget
      on conflict (org_id, scope, scope_id, period) do update
         set committed_micro = m.committed_micro + excluded.committed_micro
       where m.committed_micro + excluded.committed_micro <= meter.budget;
      if not found then
        over_scope := meter.scope;
        -- Undo this block's reservations on the scopes before it.
        raise exception using errcode = 'GH402';
      end if;
      meters := meters || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'scope', meter.scope, 'scope_id', meter.scope_id, 'period', meter.period));
    end loop;
  exception when sqlstate 'GH402' then
    return private.refuse_model_call(agent.org_id, agent.id, pg_catalog.jsonb_build_object(
      'reason', 'model_budget_exhausted', 'scope', over_scope, 'model', p_model, 'run_id', run.id,
      'needed_micro', amount,
      'message', pg_catalog.format('The %s''s model budget has too little left for this call (it may cost %s micro-units).',
                                   over_scope, amount)));
  end;

  -- Whose key: the organization's own, if it saved one for the provider.
  select k.base_url, s.decrypted_secret as api_key into own_key
    from public.model_provider_keys k join vault.decrypted_secrets s on s.id = k.secret_id
   where k.org_id = agent.org_id and k.provider = model.provider;

  insert into private.model_reservations (org_id, project_id, agent_id, run_id, user_id, model, provider, key_source, stream,
                                          input_micro_per_mtok, output_micro_per_mtok, reserved_micro, meters, expires_at)
  values (agent.org_id, agent.project_id, agent.id, run.id, caller, model.model, model.provider,
          case when own_key.api_key is null then 'platform' else 'byok' end::public.model_key_source, coalesce(p_stream, false),
          model.input_micro_per_mtok, model.output_micro_per_mtok, amount, meters,
          pg_catalog.now() + interval '15 minutes')
  returning * into reservation;

  return pg_catalog.jsonb_build_object(
    'ok', true, 'reservation_id', reservation.id, 'org_id', agent.org_id, 'project_id', agent.project_id,
    'agent_id', agent.id, 'run_id', run.id, 'provider', model.provider, 'upstream_model', model.upstream_model,
    'key_source', reservation.key_source, 'api_key', own_key.api_key, 'base_url', own_key.base_url,
    'max_tokens', max_tokens, 'reserved_micro', amount);
end
$$;
comment on function private.admit_model_call(public.agents, public.agent_runs, uuid, text, integer, integer, boolean, jsonb) is
  'Admits an agent''s model call (allowlists, burst limits) and reserves its maximum cost on every budget that applies.';
revoke execute on function private.admit_model_call(public.agents, public.agent_runs, uuid, text, integer, integer, boolean, jsonb)
  from public, anon, authenticated;

-- Admits a model call, or says why not (see the header). The agent runtime (service role, no
-- user) names its run; a member (the service role acting for them, auth.uid() set) names the
-- organization and an agent of a project where they are project_contributor or above.
-- p_input_bound is an upper bound of the prompt's tokens (the gateway's: its UTF-8 bytes);
-- p_max_tokens the output cap asked for (null: the organization's default).
--
-- Answers {ok: true, reservation_id, org_id, project_id, agent_id, run_id, provider,
-- upstream_model, key_source, api_key, base_url, max_tokens, reserved_micro}, where api_key and
-- base_url are the organization's own (null for the platform's); or {ok: false, reason, message,
-- retry_after?, scope?}. Unknown runs, agents and models are refused with refuse_request (4xx).
create function private.reserve_model_call(
  p_run_id uuid, p_org_id uuid, p_agent_id uuid, p_model text, p_input_bound integer, p_max_tokens integer,
  p_stream boolean
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  caller uuid := (select auth.uid());
  run public.agent_runs;
  agent public.agents;
begin
  -- Who is calling, and for which agent.
  if p_run_id is not null then
    select r.* into run from public.agent_runs r where r.id = p_run_id;
    if run.id is null or caller is not null then
      perform private.refuse_request(404, 'run_not_found', 'No such run.');
    end if;
    if run.status <> 'running' then
      perform private.refuse_request(409, 'run_not_active', 'The run has ended; start a new run.');
    end if;
    select a.* into agent from public.agents a where a.org_id = run.org_id and a.id = run.agent_id;
  else
    if caller is null or p_org_id is null or p_agent_id is null then
      raise exception 'a member''s call names an organization and an agent' using errcode = '22023';
    end if;
    if not exists (select 1 from public.organization_members m where m.org_id = p_org_id and m.user_id = caller) then
      perform private.refuse_request(403, 'context_not_a_member', 'You are not a member of this organization.');
    end if;
    select a.* into agent from public.agents a where a.org_id = p_org_id and a.id = p_agent_id;
    if agent.id is null then
      perform private.refuse_request(404, 'agent_not_found', 'No such agent in this organization.');
    end if;
    if not exists (
      select 1 from public.organization_members m
        left join public.project_members pm on pm.org_id = m.org_id and pm.project_id = agent.project_id and pm.user_id = m.user_id
       where m.org_id = agent.org_id and m.user_id = caller and least(m.role, pm.role) <= 'project_contributor') then
      perform private.refuse_request(403, 'forbidden', 'Calling models needs the project_contributor role in the agent''s project.');
    end if;
  end if;
  return private.admit_model_call(agent, run, caller, p_model, p_input_bound, p_max_tokens, p_stream);
end
$$;
comment on function private.reserve_model_call(uuid, uuid, uuid, text, integer, integer, boolean) is
  'Admits a model call (allowlists, burst limits) and reserves its maximum cost on every budget, in one statement.';
revoke execute on function private.reserve_model_call(uuid, uuid, uuid, text, integer, integer, boolean) from public, anon, authenticated;
grant execute on function private.reserve_model_call(uuid, uuid, uuid, text, integer, integer, boolean) to service_role;

-- Closes a call admitted by reserve_model_call (close_model_reservation): the actual usage
-- replaces the reservation on every meter (a failed call, no usage, releases all of it), the
-- model_calls row is written, and the soft threshold's event is recorded once a month. Returns
-- {call_id, cost_micro}; null when the reservation is no longer open (settled, or expired and
-- closed as abandoned).
create function private.settle_model_call(
  p_reservation_id uuid, p_outcome public.model_call_outcome, p_input_tokens integer, p_output_tokens integer,
  p_usage_estimated boolean, p_latency_ms integer, p_error_code text default null
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  reservation private.model_reservations;
  settled public.model_calls;
begin
  if p_outcome is null or p_outcome = 'abandoned' or p_input_tokens < 0 or p_output_tokens < 0 or p_latency_ms < 0 then
    raise exception 'settle_model_call needs an outcome and usage of zero or more' using errcode = '22023';
  end if;
  delete from private.model_reservations r where r.id = p_reservation_id returning r.* into reservation;
  if reservation.id is null then
    return null;
  end if;
  settled := private.close_model_reservation(reservation, p_outcome, coalesce(p_input_tokens, 0), coalesce(p_output_tokens, 0),
                                          coalesce(p_usage_estimated, false), coalesce(p_latency_ms, 0), p_error_code);
  return pg_catalog.jsonb_build_object('call_id', settled.id, 'cost_micro', settled.cost_micro);
end
$$;
comment on function private.settle_model_call(uuid, public.model_call_outcome, integer, integer, boolean, integer, text) is
  'Settles a model call at its actual usage, writes its model_calls row, records the soft-budget event once a month.';
revoke execute on function private.settle_model_call(uuid, public.model_call_outcome, integer, integer, boolean, integer, text)
  from public, anon, authenticated;
grant execute on function private.settle_model_call(uuid, public.model_call_outcome, integer, integer, boolean, integer, text)
  to service_role;

-- The catalog models a caller may use: the organization's allowlist and the agent's (when
-- named), for GET /v1/models.
create function private.allowed_models(p_org_id uuid, p_agent_id uuid)
returns table (model text, provider public.model_provider)
language sql stable security definer
set search_path = ''
as $$
  select c.model, c.provider
    from private.model_catalog c
    left join public.model_limits l on l.org_id = p_org_id
    left join public.model_caps a on a.org_id = p_org_id and a.agent_id = p_agent_id
   where c.model = any (coalesce(l.allowed_models, array[c.model]))
     and c.model = any (coalesce(a.allowed_models, array[c.model]))
   order by c.model
$$;
comment on function private.allowed_models(uuid, uuid) is 'The catalog models an organization (and agent, when named) may call.';
revoke execute on function private.allowed_models(uuid, uuid) from public, anon, authenticated;
grant execute on function private.allowed_models(uuid, uuid) to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
-- The one writer of an organization's own vendor keys. Called by the model-gateway function as
-- the service role, after the key answered a live call (the provider's models list); p_org_id is
-- the organization the function validated its caller (a tenant admin) against. Replaces the
-- provider's key if there is one. Answers the row without the Vault reference.
create function public.save_model_provider_key(p_org_id uuid, p_provider public.model_provider, p_api_key text,
                                               p_base_url text default null)
returns public.model_provider_keys
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  saved public.model_provider_keys;
  hint text;
begin
  if p_org_id is null or p_provider is null then
    perform private.refuse_request(400, 'invalid_body', 'An organization and a provider are required.');
  end if;
  if p_api_key is null or pg_catalog.octet_length(p_api_key) not between 8 and 4096 or p_api_key ~ '\s' then
    perform private.refuse_request(400, 'invalid_api_key', 'The key must be 8 to 4096 bytes without whitespace.');
  end if;
  hint := '…' || pg_catalog.regexp_replace(pg_catalog.right(p_api_key, 4), '[^A-Za-z0-9_-]', '', 'g');
  select k.* into saved from public.model_provider_keys k where k.org_id = p_org_id and k.provider = p_provider for update;
  if saved.id is null then
    insert into public.model_provider_keys (org_id, provider, base_url, key_hint, secret_id, verified_at)
    values (p_org_id, p_provider, p_base_url, hint, vault.create_secret(p_api_key, null, 'model provider key'), pg_catalog.now())
    returning * into saved;
  else
    perform vault.update_secret(saved.secret_id, p_api_key);
    update public.model_provider_keys k
       set base_url = p_base_url, key_hint = hint, verified_at = pg_catalog.now()
     where k.id = saved.id
    returning * into saved;
  end if;
  saved.secret_id := null;  -- the answer never carries even the reference
  return saved;
end
$$;
comment on function public.save_model_provider_key(uuid, public.model_provider, text, text) is
  'The one writer of an organization''s own model vendor keys (service role, after live verification): Vault only.';
revoke execute on function public.save_model_provider_key(uuid, public.model_provider, text, text) from public, anon, authenticated;
grant execute on function public.save_model_provider_key(uuid, public.model_provider, text, text) to service_role;

-- Removes the organization's own key for a provider (tenant admin in context, or the service role
-- naming the organization), deleting it from Vault; calls go back to the platform's key. Answers
-- whether there was one.
create function public.remove_model_provider_key(p_provider public.model_provider, p_org_id uuid default null)
returns boolean
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  org uuid := case when private.is_runtime() then p_org_id else private.current_org_id() end;
  removed uuid;
begin
  if org is null or (not private.is_runtime() and not private.has_org_role('tenant_admin')) then
    perform private.refuse_request(403, 'forbidden', 'Removing a model key needs the tenant_admin role in the organization.');
  end if;
  -- The row's trigger (forget_secret) deletes the key from Vault.
  delete from public.model_provider_keys k where k.org_id = org and k.provider = p_provider returning k.secret_id into removed;
  return removed is not null;
end
$$;
comment on function public.remove_model_provider_key(public.model_provider, uuid) is
  'Removes an organization''s own model key (tenant admin) and deletes it from Vault.';
revoke execute on function public.remove_model_provider_key(public.model_provider, uuid) from public, anon, authenticated;
grant execute on function public.remove_model_provider_key(public.model_provider, uuid) to authenticated, service_role;

-- =============================================================================================
-- Views
-- =============================================================================================
create view public.model_usage_daily with (security_invoker = true) as
  select c.org_id, (c.created_at at time zone 'UTC')::date as day, c.project_id, c.agent_id, c.model, c.key_source,
         count(*)::integer as calls,
         (count(*) filter (where c.outcome <> 'succeeded'))::integer as unsuccessful_calls,
         sum(c.input_tokens)::bigint as input_tokens, sum(c.output_tokens)::bigint as output_tokens,
         sum(c.cost_micro)::bigint as cost_micro
    from public.model_calls c
   group by 1, 2, 3, 4, 5, 6;
comment on view public.model_usage_daily is 'Model calls summed by UTC day, agent, model and key source (under the caller''s RLS).';
create trigger refuse_write instead of insert or update or delete on public.model_usage_daily
  for each row execute function private.refuse_view_write();

-- =============================================================================================
-- RLS policies
-- =============================================================================================
create policy "members read their organization's model limits" on public.model_limits
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "tenant admins set model limits" on public.model_limits
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "tenant admins change model limits" on public.model_limits
  for update to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "model limits are kept" on public.model_limits
  for delete to authenticated
  using (false);

create policy "members read their projects' model caps" on public.model_caps
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "tenant admins add model caps" on public.model_caps
  for insert to authenticated
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "tenant admins change model caps" on public.model_caps
  for update to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')))
  with check (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));
create policy "tenant admins remove model caps" on public.model_caps
  for delete to authenticated
  using (org_id = (select private.current_org_id()) and (select private.has_org_role('tenant_admin')));

create policy "members read their organization's model keys" on public.model_provider_keys
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "model keys are saved through the gateway" on public.model_provider_keys
  for insert to authenticated
  with check (false);
create policy "model keys change through the gateway" on public.model_provider_keys
  for update to authenticated
  using (false);
create policy "model keys are removed through remove_model_provider_key" on public.model_provider_keys
  for delete to authenticated
  using (false);

create policy "members read their projects' model calls" on public.model_calls
  for select to authenticated
  using (org_id = (select private.current_org_id())
         and project_id = coalesce((select private.context_project_id()), project_id));
create policy "model calls are written by the gateway" on public.model_calls
  for insert to authenticated
  with check (false);
create policy "model calls are final" on public.model_calls
  for update to authenticated
  using (false);
create policy "model calls are kept" on public.model_calls
  for delete to authenticated
  using (false);

create policy "members read their organization's budget events" on public.model_budget_events
  for select to authenticated
  using (org_id = (select private.current_org_id()));
create policy "budget events are recorded by the gateway" on public.model_budget_events
  for insert to authenticated
  with check (false);
create policy "budget events are final" on public.model_budget_events
  for update to authenticated
  using (false);
create policy "budget events are kept" on public.model_budget_events
  for delete to authenticated
  using (false);

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke all on public.model_limits, public.model_caps, public.model_provider_keys, public.model_calls,
              public.model_budget_events, public.model_usage_daily
  from anon, authenticated, service_role;
grant select, insert (org_id, allowed_models, requests_per_minute, burst, monthly_budget_micro, soft_budget_micro, default_max_tokens),
      update (allowed_models, requests_per_minute, burst, monthly_budget_micro, soft_budget_micro, default_max_tokens, updated_at)
  on public.model_limits to authenticated;
grant select, delete,
      insert (org_id, project_id, agent_id, allowed_models, requests_per_minute, monthly_budget_micro, run_budget_micro),
      update (allowed_models, requests_per_minute, monthly_budget_micro, run_budget_micro, updated_at)
  on public.model_caps to authenticated;
grant select, insert, update, delete on public.model_limits, public.model_caps to service_role;
-- Every column but secret_id.
grant select (id, org_id, provider, base_url, key_hint, verified_at, created_by, created_at)
  on public.model_provider_keys to authenticated, service_role;
-- Read-only for everyone: the gateway writes through settle_model_call, which it owns.
grant select on public.model_calls, public.model_budget_events, public.model_usage_daily to authenticated, service_role;
