-- Widgets, database side (20261122000900_widgets.sql): keys are off until a project admin creates
-- one, stored as a hash with a checksum, rotated and disabled at once; the review history is
-- append-only for every role and each status change is audited; transcripts are purged past
-- their organization's retention, with an audit entry. The isolation matrix (900) covers the new
-- tables.
begin;
\ir _helpers.psql
select plan(34);
create temporary table made (v jsonb) on commit drop;
create temporary table rotated (v jsonb) on commit drop;
grant all on made, rotated to authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------------------------------
-- A new agent has no widget: nothing answers for it until a key is created.
insert into public.agents (id, org_id, project_id, name) values
  ('2a000000-0000-4000-8000-0000000000aa', pg_temp.org('acme'), pg_temp.project('acme'), 'Widget agent');
insert into public.agent_versions (org_id, project_id, agent_id, config) values
  (pg_temp.org('acme'), pg_temp.project('acme'), '2a000000-0000-4000-8000-0000000000aa', '{"model":"gpt-4o-mini"}');
update public.agent_versions set published_at = now(), published_by = pg_temp.uid('ada')
 where agent_id = '2a000000-0000-4000-8000-0000000000aa';
select is((select count(*)::int from public.widget_keys where agent_id = '2a000000-0000-4000-8000-0000000000aa'), 0,
          'a new agent has no widget key: widgets are off by default');

-- Only a project admin creates one: casey administers Acme's project; victor only views it.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'),
            $$select public.create_widget_key('2a000000-0000-4000-8000-0000000000aa', '{https://shop.acme.test}')$$),
          'denied', 'a viewer cannot turn a widget on');
select is(pg_temp.probe(pg_temp.uid('grace'), pg_temp.org('globex'),
            $$select public.create_widget_key('2a000000-0000-4000-8000-0000000000aa', '{https://shop.acme.test}')$$),
          'denied', 'another organization''s admin cannot either');
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like($$ select public.create_widget_key('2a000000-0000-4000-8000-0000000000aa', '{https://shop.acme.test/path}') $$,
                   '%invalid_origins%', 'an origin with a path is refused: origins are exact');
insert into made select public.create_widget_key('2a000000-0000-4000-8000-0000000000aa', '{https://shop.acme.test,http://localhost:8080}');
reset role;
select set_config('request.jwt.claims', '', true);

select matches((select v ->> 'key' from made), '^ghw_[A-Za-z0-9_-]{32}_[0-9a-f]{6}$', 'the key has a recognisable prefix and a checksum');
select is((select key_sha256 from public.widget_keys where id = (select (v ->> 'id')::uuid from made)),
          (select private.sha256_hex(v ->> 'key') from made), 'the key is stored as its SHA-256');
select is((select count(*)::int from public.widget_keys k, made where to_jsonb(k)::text like '%' || (made.v ->> 'key') || '%'), 0,
          'and nowhere as itself');
select is((select count(*)::int from audit.records r, made where r.payload::text like '%' || (made.v ->> 'key') || '%'
             or r.payload::text like '%' || private.sha256_hex(made.v ->> 'key') || '%'), 0,
          'nor in the audit chain, not even its hash');
select ok(not (made.v ? 'key_sha256'), 'the answer carries the key once, not its hash') from made;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select throws_like($$ select public.create_widget_key('2a000000-0000-4000-8000-0000000000aa') $$,
                   '%widget_key_exists%', 'one live key per agent');
reset role;
select set_config('request.jwt.claims', '', true);

-- The widget function finds the key by the key, and only a well-formed, live one.
set local role service_role;
select is((select agent_id from private.widget_key_for((select v ->> 'key' from made))), '2a000000-0000-4000-8000-0000000000aa'::uuid,
          'the key names its agent');
select is((select count(*)::int from private.widget_key_for((select overlay(v ->> 'key' placing (case when substr(v ->> 'key', 10, 1) = 'x' then 'y' else 'x' end) from 10 for 1) from made))), 0,
          'a key with one character changed fails its checksum');
select is((select count(*)::int from private.widget_key_for('ghw_' || repeat('a', 32) || '_000000')), 0, 'a made-up key finds nothing');
reset role;

-- Rotation replaces the secret at once; disabling turns the key off at once.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
insert into rotated select public.rotate_widget_key((select (v ->> 'id')::uuid from made));
reset role;
select set_config('request.jwt.claims', '', true);
set local role service_role;
select is((select count(*)::int from private.widget_key_for((select v ->> 'key' from made))), 0, 'after rotation the old key is dead');
select is((select version from private.widget_key_for((select v ->> 'key' from rotated))), 2, 'and the new one works, at version 2');
reset role;
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select public.disable_widget_key((select (v ->> 'id')::uuid from made));
reset role;
select set_config('request.jwt.claims', '', true);
set local role service_role;
select is((select count(*)::int from private.widget_key_for((select v ->> 'key' from rotated))), 0, 'a disabled key is dead at once');
reset role;

-- Settings: project admins change origins and limits, nobody changes the hash.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'),
            $$update public.widget_keys set allowed_origins = '{https://evil.test}'$$),
          'denied', 'a viewer cannot change a key''s origins');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            $$update public.widget_keys set key_sha256 = repeat('0', 64)$$),
          'denied', 'not even a tenant admin can set a key''s hash');

-- ---------------------------------------------------------------------------------------------
-- The review queue
-- ---------------------------------------------------------------------------------------------
-- Acme's seeded lead is in review, assigned to ada.
select pg_temp.act_as(pg_temp.uid('casey'), pg_temp.org('acme'));
select is((public.change_review_status('9a000000-0000-4000-8000-00000000000a', 'resolved', null, 'called back')).status,
          'resolved'::public.review_status, 'a contributor resolves an item in review');
select throws_like($$ select public.change_review_status('9a000000-0000-4000-8000-00000000000a', 'in_review') $$,
                   '%review_transition_not_allowed%', 'a resolved item does not go back');
reset role;
select set_config('request.jwt.claims', '', true);
select is((select status from public.review_items where id = '9a000000-0000-4000-8000-00000000000a'), 'resolved'::public.review_status,
          'the item follows its history');
select is((select array_agg(status::text order by created_at) from public.review_item_events where item_id = '9a000000-0000-4000-8000-00000000000a'),
          array['open', 'in_review', 'resolved'], 'the history keeps every step, from the item''s creation');
select is((select count(*)::int from audit.records where action = 'review_item_event.insert'
             and target_id in (select id::text from public.review_item_events where item_id = '9a000000-0000-4000-8000-00000000000a')), 3,
          'every status change is an audit entry');
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'),
            $$select public.change_review_status('9b000000-0000-4000-8000-00000000000b', 'resolved')$$),
          'denied', 'nobody moves another organization''s item');

-- Append-only for every role, the owner included.
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), 'update public.review_item_events set note = $$x$$'), 'denied',
          'a tenant admin cannot change the history');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), 'delete from public.review_item_events'), 'denied',
          'nor delete it');
set local role service_role;
select throws_ok($$ update public.review_item_events set note = 'x' $$, '42501', null, 'the service role cannot change it');
select throws_ok($$ delete from public.review_item_events $$, '42501', null, 'nor delete it');
reset role;
select throws_like($$ delete from public.review_item_events $$, '%history_is_append_only%', 'nor can the owner');

-- ---------------------------------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------------------------------
update public.widget_conversations set last_message_at = now() - interval '31 days' where org_id = pg_temp.org('acme');
update public.widget_conversations set last_message_at = now() - interval '31 days' where org_id = pg_temp.org('globex');
create temporary table before_purge on commit drop as
  select (select count(*)::int from public.widget_conversations where org_id = pg_temp.org('acme')) as acme,
         (select count(*)::int from public.widget_messages where org_id = pg_temp.org('globex')) as globex_messages;
grant select on before_purge to service_role;
set local role service_role;
select is(private.purge_transcripts(), (select acme from before_purge), 'Acme''s 30-day transcripts go; Globex keeps its for 90 days');
reset role;
select is((select array[(select count(*)::int from public.widget_messages where org_id = pg_temp.org('acme')),
                        (select count(*)::int from public.widget_messages where org_id = pg_temp.org('globex'))]),
          array[0, (select globex_messages from before_purge)], 'the purged conversations'' messages went with them, and only theirs');
select is((select payload::jsonb ->> 'conversations' from audit.records where org_id = pg_temp.org('acme') and action = 'transcript.purged'),
          (select acme::text from before_purge), 'the purge is in the organization''s audit chain');

-- A widget is turned on only for an agent with a published version.
insert into public.agents (id, org_id, project_id, name)
values ('2a000000-0000-4000-8000-0000000000ff', pg_temp.org('acme'), pg_temp.project('acme'), 'Unpublished helper');
select pg_temp.act_as(pg_temp.uid('ada'), pg_temp.org('acme'));
select throws_like($$ select public.create_widget_key('2a000000-0000-4000-8000-0000000000ff', array['https://shop.acme.test']) $$,
                   '%agent_not_published%', 'a widget for an agent with no published version is refused');
reset role;
select is((select count(*)::int from public.widget_keys where agent_id = '2a000000-0000-4000-8000-0000000000ff'), 0, 'and no key was made');

select * from finish();
rollback;
