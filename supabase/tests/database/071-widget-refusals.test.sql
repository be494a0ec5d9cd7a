-- A widget's refusals, for its site owner (20261206001800_widget_refusals.sql): noted per reason
-- and origin at most once a minute, at most 20 origins a key, audited like every tenant table;
-- members read their own; nobody writes them through the API. The isolation matrix (900) probes
-- the table across organizations.
begin;
\ir _helpers.psql
select plan(17);

\set key '''7a000000-0000-4000-8000-00000000000a'''
delete from public.widget_refusals where widget_key_id = :key;

-- An origin the key doesn't allow.
select private.note_widget_refusal(:key, 1, 'widget_origin_not_allowed', 'https://evil.example');
select is((select times::int from public.widget_refusals where widget_key_id = :key and origin = 'https://evil.example'), 1,
          'a refused origin is noted with the origin that tried');
select is((select count(*)::int from audit.records where action = 'widget_refusal.insert'
            and payload::jsonb -> 'new' ->> 'origin' = 'https://evil.example'), 1, 'and audited like any tenant row');

-- At most once a minute.
select private.note_widget_refusal(:key, 1, 'widget_origin_not_allowed', 'https://evil.example');
select is((select times::int from public.widget_refusals where widget_key_id = :key and origin = 'https://evil.example'), 1,
          'the same refusal within the minute writes nothing');
select is((select count(*)::int from audit.records where action like 'widget_refusal.%'
            and payload::jsonb -> 'new' ->> 'origin' = 'https://evil.example'), 1, 'and so makes no audit entry');
update public.widget_refusals set last_at = now() - interval '2 minutes' where widget_key_id = :key;
select private.note_widget_refusal(:key, 1, 'widget_origin_not_allowed', 'https://evil.example');
select is((select times::int from public.widget_refusals where widget_key_id = :key and origin = 'https://evil.example'), 2,
          'a minute later it counts again');

-- Sessions: one that only aged out is no refusal; one that a rotation or turning off ended is.
select private.note_widget_refusal(:key, (select version from public.widget_keys where id = :key), 'widget_session_expired', 'https://shop.acme.test');
select is((select count(*)::int from public.widget_refusals where widget_key_id = :key and origin = 'https://shop.acme.test'), 0,
          'a session of the current version that expired is not noted');
select private.note_widget_refusal(:key, (select version - 1 from public.widget_keys where id = :key), 'widget_renewal_refused', 'https://shop.acme.test');
select is((select reason from public.widget_refusals where widget_key_id = :key and origin = 'https://shop.acme.test'), 'widget_key_rotated',
          'a session of an earlier version is noted as the key rotated');
update public.widget_keys set disabled_at = now() where id = :key;
select private.note_widget_refusal(:key, (select version from public.widget_keys where id = :key), 'widget_session_expired', 'https://shop.acme.test');
select ok(exists (select 1 from public.widget_refusals where widget_key_id = :key and reason = 'widget_key_disabled'),
          'and of a key turned off as the key disabled');
update public.widget_keys set disabled_at = null where id = :key;

-- Bounded: 20 origins of a key's own, then one shared row.
select private.note_widget_refusal(:key, 1, 'widget_origin_not_allowed', format('https://site%s.example', n)) from generate_series(1, 30) n;
select is((select count(distinct origin)::int from public.widget_refusals where widget_key_id = :key), 21,
          'a key keeps 20 origins of its own, and one row for the rest');
select ok(exists (select 1 from public.widget_refusals where widget_key_id = :key and origin = '*'),
          'the rest share the origin *');
select private.note_widget_refusal(:key, 1, 'not a code', 'https://x.example');
select is((select count(*)::int from public.widget_refusals where reason = 'not a code'), 0, 'a reason that is not a code is not kept');

-- Who reads and writes.
select is(pg_temp.probe(pg_temp.uid('victor'), pg_temp.org('acme'), $$select * from public.widget_refusals$$), 'allowed',
          'a viewer of the project reads its refusals');
select is(pg_temp.probe(pg_temp.uid('grace'), pg_temp.org('globex'),
            format($$select * from public.widget_refusals where widget_key_id = %L$$, :key)), 'denied',
          'another organization''s admin reads none of them');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), $$update public.widget_refusals set times = 1$$), 'denied',
          'a tenant admin changes none');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'), $$delete from public.widget_refusals$$), 'denied',
          'nor removes one');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            format($$insert into public.widget_refusals (project_id, widget_key_id, reason, origin) values (%L, %L, 'x', 'y')$$,
                   pg_temp.project('acme'), :key)), 'denied',
          'nor makes one up');
select is(pg_temp.probe(pg_temp.uid('ada'), pg_temp.org('acme'),
            format($$select private.note_widget_refusal(%L, 1, 'widget_origin_not_allowed', 'https://forged.example')$$, :key)), 'denied',
          'and only the widget function may note one');

select * from finish();
rollback;
