-- RFC 8785 numbers at rounding boundaries: audit.jcs_number now prints the shortest digits that
-- round-trip even when they sit exactly halfway between two doubles.
--
-- PostgreSQL's shortest float output (Ryu) leaves out such halfway points, so 1e23 came out as
-- 9.999999999999999e+22, while ECMAScript's Number::toString, which RFC 8785 follows, prints 1e+23
-- (both denote the same double). Found by the appendix B vectors in
-- tests/integration/canonical_json.test.ts. The digits are now shortened while the shorter
-- decimal still reads back as the same double. A chain that already held such a number in a
-- payload would now report that payload's hash as changed; no deployment predates this migration.

-- =============================================================================================
-- Helper functions
-- =============================================================================================
create or replace function audit.jcs_number(p_value numeric) returns text
language plpgsql immutable strict
set search_path = ''
set extra_float_digits = 1
as $$
declare
  double float8 := p_value::float8;
  shortest text := pg_catalog.abs(double)::text;
  sign text := case when double < 0 then '-' else '' end;
  mantissa text;
  exponent integer := 0;
  digits text;
  point integer;  -- value = 0.<digits> × 10^point
  rounded numeric;
  candidate numeric;
begin
  if double = 0 then
    return '0';
  end if;
  if shortest like '%e%' then
    mantissa := pg_catalog.split_part(shortest, 'e', 1);
    exponent := pg_catalog.split_part(shortest, 'e', 2)::integer;
  else
    mantissa := shortest;
  end if;
  point := coalesce(nullif(pg_catalog.strpos(mantissa, '.'), 0) - 1, pg_catalog.length(mantissa)) + exponent;
  digits := pg_catalog.replace(mantissa, '.', '');
  -- Leading zeros (0.00123) move the point; trailing zeros are not significant.
  while pg_catalog.left(digits, 1) = '0' loop
    digits := pg_catalog.substr(digits, 2);
    point := point - 1;
  end loop;
  digits := pg_catalog.rtrim(digits, '0');
  -- One digit fewer, rounded to nearest, while that still reads back as the same double.
  while pg_catalog.length(digits) > 1 loop
    rounded := pg_catalog.round(('0.' || digits)::numeric, pg_catalog.length(digits) - 1);
    candidate := (rounded::text || 'e' || point::text)::numeric;
    -- Outside the doubles' range, float8 input raises instead of rounding.
    exit when candidate > 1.7976931348623157e308 or candidate < 4.9406564584124654e-324
           or candidate::float8 <> pg_catalog.abs(double);
    if rounded = 1 then
      digits := '1';
      point := point + 1;
    else
      digits := pg_catalog.rtrim(pg_catalog.substr(rounded::text, 3), '0');
    end if;
  end loop;
  if pg_catalog.length(digits) <= point and point <= 21 then
    return sign || digits || pg_catalog.repeat('0', point - pg_catalog.length(digits));
  elsif 0 < point and point <= 21 then
    return sign || pg_catalog.left(digits, point) || '.' || pg_catalog.substr(digits, point + 1);
  elsif -6 < point and point <= 0 then
    return sign || '0.' || pg_catalog.repeat('0', -point) || digits;
  end if;
  return sign || pg_catalog.left(digits, 1)
         || case when pg_catalog.length(digits) > 1 then '.' || pg_catalog.substr(digits, 2) else '' end
         || 'e' || case when point - 1 > 0 then '+' else '-' end || pg_catalog.abs(point - 1)::text;
end
$$;
comment on function audit.jcs_number(numeric) is 'A JSON number serialized as RFC 8785 requires (ECMAScript Number::toString).';
