-- Static analysis of every PL/pgSQL function we own (plpgsql_check): unknown columns, type
-- mismatches and dead references fail here instead of at run time.
begin;
select plan(1);

select is(
  (select array_agg(format('%s line %s: %s', p.oid::regprocedure, r.lineno, r.message) order by 1)
     from pg_proc p
     join pg_namespace n on n.oid = p.pronamespace
     join pg_language l on l.oid = p.prolang
     cross join lateral extensions.plpgsql_check_function_tb(p.oid) r
    where l.lanname = 'plpgsql'
      and p.prorettype <> 'trigger'::regtype
      and n.nspname in ('public', 'private', 'vault', 'auth')
      and r.level = 'error'),
  null,
  'every PL/pgSQL function passes plpgsql_check'
);

select * from finish();
rollback;
