-- Run-scoped tokens (issue 24, section 5): a runtime, ours or a customer's, acts for one run with a
-- short-lived token bound to it (organization, project, agent and run), never with the
-- service-role key.
--
-- A token is `ghr_` and 43 base64url characters (32 random bytes). Only its SHA-256 is kept. It
-- lives 15 minutes, and is renewed (a new token, the old one revoked) only while its run is active:
-- once the run ends, neither it nor a renewal is accepted. The edge functions take it in the
-- `X-Run-Token` header (the platform verifies the `Authorization` JWT first, so a runtime sends the
-- public anon key there) and act for exactly its run: private.run_token_scope re-derives the run
-- from the token, and the run's organization, project and agent from the run row.
--
-- Who mints: a project contributor of the run's project (public.mint_run_token, as themselves),
-- or the agent runtime (the service role, our worker). A token can't mint another: it is not a
-- JWT, so PostgREST never takes it as a caller, and mint_run_token needs a signed-in member.

-- =============================================================================================
-- Tables
-- =============================================================================================
create table private.run_tokens (
  token_sha256 text primary key check (token_sha256 ~ '^[0-9a-f]{64}$'),
  org_id uuid not null references public.organizations (id) on delete cascade,
  run_id uuid not null references public.agent_runs (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  check (expires_at > created_at),
  -- Cover the two foreign keys (and say nothing new: the hash is unique).
  unique (org_id, token_sha256),
  unique (run_id, token_sha256)
);
comment on table private.run_tokens is
  'Run-scoped tokens by their SHA-256: 15 minutes, renewable while the run is active, revoked when renewed.';

-- =============================================================================================
-- Helper functions
-- =============================================================================================
-- Issues a token for an active run: the token itself is returned once and never stored.
create function private.issue_run_token(p_run public.agent_runs) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  token text := 'ghr_' || pg_catalog.rtrim(pg_catalog.translate(
    pg_catalog.encode(extensions.gen_random_bytes(32), 'base64'), '+/', '-_'), '=');
  expires timestamptz := pg_catalog.now() + interval '15 minutes';
begin
  if p_run.ended_at is not null then
    perform private.refuse_request(409, 'run_not_active', 'The run has ended; it takes no more tokens.');
  end if;
  -- The run's tokens that can no longer be used go (a renewed one is revoked, an old one expired).
  delete from private.run_tokens t
   where t.run_id = p_run.id and (t.revoked_at is not null or t.expires_at <= pg_catalog.now());
  insert into private.run_tokens (token_sha256, org_id, run_id, expires_at)
  values (private.sha256_hex(token), p_run.org_id, p_run.id, expires);
  return pg_catalog.jsonb_build_object('token', token, 'run_id', p_run.id, 'expires_at', expires);
end
$$;
comment on function private.issue_run_token(public.agent_runs) is 'A new 15-minute token for an active run (returned once; only its hash is kept).';
revoke execute on function private.issue_run_token(public.agent_runs) from public, anon, authenticated;

-- The run a token acts for, with its organization, project and agent from the run row; no row
-- for a token that is unknown, expired, revoked, or whose run has ended.
create function private.run_token_scope(p_token text)
returns table (run_id uuid, org_id uuid, project_id uuid, agent_id uuid)
language sql stable security definer
set search_path = ''
as $$
  select r.id, r.org_id, r.project_id, r.agent_id
    from private.run_tokens t
    join public.agent_runs r on r.id = t.run_id and r.org_id = t.org_id
   where p_token ~ '^ghr_[A-Za-z0-9_-]{43}$'
     and t.token_sha256 = private.sha256_hex(p_token)
     and t.revoked_at is null and t.expires_at > pg_catalog.now()
     and r.ended_at is null
$$;
comment on function private.run_token_scope(text) is
  'The run (and its organization, project, agent) a valid token acts for; nothing for an expired, revoked or ended one.';
revoke execute on function private.run_token_scope(text) from public, anon, authenticated;
grant execute on function private.run_token_scope(text) to service_role;

-- A model call's admission for whoever holds a run token, in the one statement the gateway spends
-- on it: the token gives the run (refused 401 run_token_invalid, or 403 run_token_scope when the
-- request names another run), then reserve_model_call admits the call for that run.
create function private.reserve_model_call_for_token(
  p_token text, p_named_run uuid, p_model text, p_input_bound integer, p_max_tokens integer, p_stream boolean
) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  token_run uuid;
begin
  select s.run_id into token_run from private.run_token_scope(p_token) s;
  if token_run is null then
    perform private.refuse_request(401, 'run_token_invalid', 'The run token is unknown, expired, revoked, or its run has ended.');
  end if;
  if p_named_run is not null and p_named_run <> token_run then
    perform private.refuse_request(403, 'run_token_scope', 'The run token acts for another run than the one named.');
  end if;
  return private.reserve_model_call(token_run, null, null, p_model, p_input_bound, p_max_tokens, p_stream);
end
$$;
comment on function private.reserve_model_call_for_token(text, uuid, text, integer, integer, boolean) is
  'reserve_model_call for the run a valid run token acts for (one statement); run_token_invalid or run_token_scope otherwise.';
revoke execute on function private.reserve_model_call_for_token(text, uuid, text, integer, integer, boolean) from public, anon, authenticated;
grant execute on function private.reserve_model_call_for_token(text, uuid, text, integer, integer, boolean) to service_role;

-- =============================================================================================
-- RPCs
-- =============================================================================================
create function public.mint_run_token(p_run_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  run public.agent_runs;
begin
  if not private.is_runtime() and (select auth.uid()) is null then
    perform private.refuse_request(401, 'sign_in_required', 'A run token is minted by a signed-in member or the runtime.');
  end if;
  select r.* into run from public.agent_runs r
   where r.id = p_run_id
     and (private.is_runtime()
          or (r.org_id = private.current_org_id() and r.project_id = any (private.project_ids_with_role('project_contributor'))));
  if run.id is null then
    perform private.refuse_request(404, 'run_not_found', 'No run with that id that you can act for in this context.');
  end if;
  return private.issue_run_token(run);
end
$$;
comment on function public.mint_run_token(uuid) is
  'A 15-minute token for one active run, for a runtime to act for it (project_contributor of its project, or the runtime).';
revoke execute on function public.mint_run_token(uuid) from public, anon, authenticated;
grant execute on function public.mint_run_token(uuid) to authenticated, service_role;

-- Renews a valid token of an active run: a new token, and the old one revoked (a token renews
-- once). Called by the edge functions for whoever holds the token.
create function private.renew_run_token(p_token text) returns jsonb
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  scope record;
  run public.agent_runs;
begin
  select * into scope from private.run_token_scope(p_token);
  if scope.run_id is null then
    perform private.refuse_request(401, 'run_token_invalid', 'The run token is unknown, expired, revoked, or its run has ended.');
  end if;
  update private.run_tokens t set revoked_at = pg_catalog.now()
   where t.token_sha256 = private.sha256_hex(p_token) and t.revoked_at is null;
  if not found then
    perform private.refuse_request(401, 'run_token_invalid', 'The run token was renewed already.');
  end if;
  select r.* into run from public.agent_runs r where r.id = scope.run_id;
  return private.issue_run_token(run);
end
$$;
comment on function private.renew_run_token(text) is 'Swaps a valid token of an active run for a new one (the old one revoked).';
revoke execute on function private.renew_run_token(text) from public, anon, authenticated;
grant execute on function private.renew_run_token(text) to service_role;
