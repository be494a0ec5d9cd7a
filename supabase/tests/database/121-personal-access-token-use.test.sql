-- Using personal access tokens (20261206002400_personal_access_token_use.sql): the exchange
-- (last_used_at, first use and expiry in the chain), liveness on every request, the owner's role
-- capped by the scopes, the one scope helper in the routes, the policies and the writes, the
-- token's organization and project as the context, and the leaked-token revocation.
begin;
\ir _helpers.psql
select plan(58);
create temporary table made (name text primary key, v jsonb) on commit drop;
grant all on made to authenticated;

-- Acts as a request made with token `p_name` of `made` would be, after PostgREST's pre-request
-- check: the access token's claims (as the tokens function signs them), then the context.
create function pg_temp.act_with(p_name text, p_method text default 'GET', p_path text default '/agent_runs') returns void
language plpgsql as $$
declare
  t public.personal_access_tokens;
begin
  select * into t from public.personal_access_tokens where id = (select (v ->> 'id')::uuid from made where name = p_name);
  perform set_config('request.jwt.claims', json_build_object('sub', t.user_id, 'role', 'authenticated', 'aal', 'aal1',
    'pat', json_build_object('id', t.id, 'org_id', t.org_id, 'project_id', t.project_id, 'scopes', t.scopes))::text, true);
  perform set_config('request.method', p_method, true);
  perform set_config('request.path', p_path, true);
  perform set_config('request.headers', '{}', true);
  perform set_config('gatehouse.org_id', '', true);
  perform set_config('gatehouse.project_id', '', true);
  perform set_config('role', 'authenticated', true);
  perform private.check_request();
end
$$;
create function pg_temp.rows_changed(p_sql text) returns integer language plpgsql as $$
declare
  n integer;
begin
  execute p_sql;
  get diagnostics n = row_count;
  return n;
end
$$;
create function pg_temp.token(p_name text) returns text language sql as $$ select v ->> 'token' from made where name = p_name $$;
create function pg_temp.token_id(p_name text) returns uuid language sql as $$ select (v ->> 'id')::uuid from made where name = p_name $$;

-- Ada (Acme's tenant admin) makes four; Casey (a contributor of Acme) one bound to Acme's project.
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
insert into made values ('reader', public.create_personal_access_token('Reader', '{runs:read}'));
insert into made values ('runner', public.create_personal_access_token('Runner', '{runs:read,runs:write}'));
insert into made values ('agents', public.create_personal_access_token('Agents', '{agents:read}'));
insert into made values ('auditor', public.create_personal_access_token('Auditor', '{audit:read}', 5));
insert into made values ('caller', public.create_personal_access_token('Caller', '{tools:call}'));
reset role;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
insert into made values ('casey', public.create_personal_access_token('Bound', '{runs:read,runs:write}', 90, pg_temp.project('acme')));
reset role;

-- =============================================================================================
-- The exchange
-- =============================================================================================
select is(private.exchange_personal_access_token('gtp_' || repeat('a', 36)), '{"refusal": "token_invalid"}', 'an unknown token is refused');
select is(private.exchange_personal_access_token('not a token'), '{"refusal": "token_invalid"}', 'and anything not shaped like one');
select is((private.exchange_personal_access_token(pg_temp.token('reader')) ->> 'org_id')::uuid, pg_temp.org('acme'),
          'a live token answers its organization');
select is(private.exchange_personal_access_token(pg_temp.token('reader')) -> 'scopes', '["runs:read"]', 'and its scopes');
select isnt((select last_used_at from public.personal_access_tokens where id = pg_temp.token_id('reader')), null, 'using it sets last_used_at');
select is((select count(*)::int from audit.records where action = 'personal_access_token.first_use' and target_id = pg_temp.token_id('reader')::text),
          1, 'its first use is an audit entry, once (it was used twice)');
select is((select actor from audit.records where action = 'personal_access_token.first_use' and target_id = pg_temp.token_id('reader')::text),
          pg_temp.uid('ada'), 'naming its owner');
select is((select count(*)::int from audit.records where action = 'personal_access_token.update' and target_id = pg_temp.token_id('reader')::text),
          0, 'and using it is no change of the row in the chain');

-- Expired: refused, and recorded once (by its first refused use, or by the sweep).
update public.personal_access_tokens set created_at = now() - interval '10 days', expires_at = now() - interval '1 second'
 where id = pg_temp.token_id('auditor');
select is(private.exchange_personal_access_token(pg_temp.token('auditor')), '{"refusal": "token_expired"}', 'an expired token is refused');
select is(private.exchange_personal_access_token(pg_temp.token('auditor')), '{"refusal": "token_expired"}', 'every time');
select is((select count(*)::int from audit.records where action = 'personal_access_token.expired' and target_id = pg_temp.token_id('auditor')::text),
          1, 'its expiry is an audit entry, once');
update public.personal_access_tokens set created_at = now() - interval '10 days', expires_at = now() - interval '1 second'
 where id = pg_temp.token_id('agents');
select cmp_ok(private.record_expired_tokens(), '>=', 1, 'the sweep records a token that expired unused');
select is((select count(*)::int from audit.records where action = 'personal_access_token.expired' and target_id = pg_temp.token_id('agents')::text),
          1, 'once');
select is(private.record_expired_tokens(), 0, 'and not again');
update public.personal_access_tokens set expires_at = now() + interval '5 days' where id in (pg_temp.token_id('agents'), pg_temp.token_id('auditor'));

-- =============================================================================================
-- Every request: the token row decides
-- =============================================================================================
select pg_temp.act_with('reader');
select is(private.current_org_id(), pg_temp.org('acme'), 'a live token''s request counts, in the token''s organization, without X-Org-Id');
reset role;
select is(private.session_refusal(), null, 'its access token counts');
select set_config('request.jwt.claims', '', true);
update public.personal_access_tokens set created_at = now() - interval '10 days', expires_at = now() - interval '1 second' where id = pg_temp.token_id('reader');
select throws_like($$ select pg_temp.act_with('reader') $$, '%token_expired%', 'an expired token''s access token is refused at once');
select set_config('request.jwt.claims', '', true);
update public.personal_access_tokens set expires_at = now() + interval '5 days' where id = pg_temp.token_id('reader');
select pg_temp.act_with('reader');
select set_config('request.jwt.claims', (current_setting('request.jwt.claims')::jsonb
  || jsonb_build_object('pat', current_setting('request.jwt.claims')::jsonb -> 'pat' || '{"scopes": ["runs:read", "audit:read"]}'))::text, true);
reset role;
select is(private.session_refusal(), 'token_invalid', 'claims that say more than the token row are refused');

-- =============================================================================================
-- The owner's role, capped by the scopes
-- =============================================================================================
-- (The context and claims outlast `reset role`; org_role is the definer helpers' own.)
select pg_temp.act_with('reader');
reset role;
select is(private.org_role(), 'project_viewer', 'a tenant admin''s reading token acts as a viewer');
select is(private.has_org_role('tenant_admin'), false, 'never as the admin');
select is(cardinality(private.project_ids_with_role('project_contributor')), 0, 'and contributes to no project');
select pg_temp.act_with('runner', 'POST', '/rpc/start_agent_run');
reset role;
select is(private.org_role(), 'project_contributor', 'runs:write acts as a contributor, never above');

-- =============================================================================================
-- Routes: the ones a scope opens, and no other
-- =============================================================================================
select throws_like($$ select pg_temp.act_with('reader', 'GET', '/connections') $$, '%token_route_not_allowed%', 'a route no scope opens is refused');
select throws_like($$ select pg_temp.act_with('reader', 'POST', '/rpc/create_personal_access_token') $$, '%token_route_not_allowed%',
                   'minting a token is one');
select throws_like($$ select pg_temp.act_with('reader', 'POST', '/rpc/decide_action') $$, '%token_route_not_allowed%', 'deciding an action is one');
select throws_like($$ select pg_temp.act_with('reader', 'GET', '/audit_log') $$, '%token_scope%', 'a route of another scope is refused');
select throws_like($$ select pg_temp.act_with('reader', 'POST', '/rpc/start_agent_run') $$, '%token_scope%', 'reading does not start runs');
select lives_ok($$ select pg_temp.act_with('auditor', 'GET', '/audit_log') $$, 'audit:read reads the audit log');
reset role;
select pg_temp.act_with('reader');
select set_config('request.headers', json_build_object('x-org-id', pg_temp.org('globex'))::text, true);
select throws_like($$ select private.check_request() $$, '%token_org_mismatch%', 'a token names no other organization');
reset role;
select pg_temp.act_with('casey');
select set_config('request.headers', json_build_object('x-org-id', pg_temp.org('acme'), 'x-project-id', gen_random_uuid())::text, true);
select throws_like($$ select private.check_request() $$, '%token_project_mismatch%', 'nor a bound token another project');
reset role;

-- =============================================================================================
-- Tables: read with the scope that names them, within the project; written by no token directly
-- =============================================================================================
select pg_temp.act_with('reader');
select cmp_ok((select count(*)::int from public.agent_runs), '>', 0, 'runs:read reads runs');
select is((select count(*)::int from public.agents), 0, 'but no agent');
select is((select count(*)::int from public.connections), 0, 'no connection');
select is((select count(*)::int from public.organization_members), 0, 'no member');
select is((select count(*)::int from public.personal_access_tokens), 0, 'and no token, its own included');
select is((select count(*)::int from audit.entries), 0, 'nor the chain');
reset role;
select pg_temp.act_with('agents', 'GET', '/agents');
select cmp_ok((select count(*)::int from public.agents), '>', 0, 'agents:read reads agents');
select is(pg_temp.rows_changed('update public.agents set name = name'), 0,
          'and changes none, though its owner may');
select throws_ok(format($$ insert into public.agents (project_id, name) values (%L, 'By a token') $$, pg_temp.project('acme')),
                 '42501', null, 'nor adds one');
reset role;
select pg_temp.act_with('auditor', 'GET', '/audit_log');
select cmp_ok((select count(*)::int from public.audit_log), '>', 0, 'audit:read reads the chain');
reset role;

-- A project-bound token sees its project's runs only.
select set_config('request.jwt.claims', '', true);
insert into public.projects (org_id, name, slug) values (pg_temp.org('acme'), 'Elsewhere', 'elsewhere-121');
insert into public.agents (org_id, project_id, name)
  select pg_temp.org('acme'), id, 'Elsewhere agent' from public.projects where slug = 'elsewhere-121';
insert into public.agent_versions (org_id, project_id, agent_id, version)
  select a.org_id, a.project_id, a.id, 1 from public.agents a where a.name = 'Elsewhere agent';
insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, status)
  select v.org_id, v.project_id, v.agent_id, v.id, 'queued' from public.agent_versions v
    join public.agents a on a.id = v.agent_id where a.name = 'Elsewhere agent';
select id as elsewhere from public.projects where slug = 'elsewhere-121' \gset
reset role;
select pg_temp.act_with('runner');
select is((select count(*)::int from public.agent_runs where project_id = :'elsewhere'),
          1, 'an organization-wide token reads every project''s runs');
reset role;
select pg_temp.act_with('casey');
select is((select count(*)::int from public.agent_runs where project_id <> pg_temp.project('acme')), 0, 'a project-bound token, only its project''s');
select is(private.project_ids_with_role('project_viewer'), array[pg_temp.project('acme')], 'and acts in that project alone');
reset role;

-- =============================================================================================
-- Writes a scope allows, checked where they happen
-- =============================================================================================
select pg_temp.act_with('runner', 'POST', '/rpc/start_agent_run');
select is((select status::text from public.start_agent_run(pg_temp.agent('acme'), '{"from": "a token"}')), 'queued', 'runs:write starts a run');
reset role;
select pg_temp.act_with('caller', 'POST', '/rpc/propose_action');
select throws_like($$ select public.start_agent_run(pg_temp.agent('acme')) $$, '%token_scope%',
                   'a contributor''s token without runs:write starts none, even by a path that skipped the route check');
reset role;
select pg_temp.act_with('reader');
select throws_like($$ select public.mint_run_token(pg_temp.run('acme')) $$, '%run_not_found%', 'nor mints a run token (its role is a viewer''s)');
select throws_like($$ select public.create_personal_access_token('More', '{runs:read}') $$, '%token_scope%', 'a token mints no token');
select throws_like($$ select public.revoke_personal_access_token(pg_temp.token_id('runner')) $$, '%token_scope%', 'nor revokes one');
reset role;

-- =============================================================================================
-- Revocation follows the owner, at once
-- =============================================================================================
-- Casey lowered to viewer: the write token stops in the same transaction; the next request is refused.
select set_config('request.jwt.claims', '', true);
update public.organization_members set role = 'project_viewer' where org_id = pg_temp.org('acme') and user_id = pg_temp.uid('casey');
select throws_like($$ select pg_temp.act_with('casey') $$, '%token_revoked%', 'a demoted owner''s token is refused on its next request');
reset role;
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select lives_ok($$ select public.revoke_personal_access_token(pg_temp.token_id('reader')) $$, 'a token is revoked');
reset role;
select throws_like($$ select pg_temp.act_with('reader') $$, '%token_revoked%', 'and its access token stops at once');
select is(private.exchange_personal_access_token(pg_temp.token('reader')), '{"refusal": "token_revoked"}', 'nor is it exchanged again');

-- A banned owner's tokens stop too, as their sessions do.
select set_config('request.jwt.claims', '', true);
update auth.users set banned_until = now() + interval '1 day' where id = pg_temp.uid('ada');
select is(private.exchange_personal_access_token(pg_temp.token('agents')), '{"refusal": "user_disabled"}', 'a banned owner''s token is not exchanged');
select throws_like($$ select pg_temp.act_with('agents', 'GET', '/agents') $$, '%user_disabled%', 'nor is its access token taken');
reset role;
select set_config('request.jwt.claims', '', true);
update auth.users set banned_until = null where id = pg_temp.uid('ada');

-- =============================================================================================
-- Leaked
-- =============================================================================================
select is(private.revoke_leaked_token(pg_temp.token('runner'), 'https://github.com/octo/repo/blob/main/.env', 'content') - 'org_id',
          '{"found": true, "revoked": true}', 'a reported token of ours is revoked');
select is((select revoked_reason from public.personal_access_tokens where id = pg_temp.token_id('runner')), 'leaked', 'as leaked');
select is((select payload ->> 'url' from audit.records where action = 'personal_access_token.leak_reported'
             and target_id = pg_temp.token_id('runner')::text), 'https://github.com/octo/repo/blob/main/.env', 'with where it was found in the chain');
select is(private.revoke_leaked_token('gtp_' || repeat('b', 36), null, null), '{"found": false}', 'someone else''s is not ours');

select * from finish();
rollback;
