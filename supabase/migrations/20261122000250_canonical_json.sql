-- Canonical JSON and the Merkle tree: the byte-exact encodings approvals and the audit chain hash.
--
-- Why (seed 000): an approval binds the SHA-256 of a payload's RFC 8785 canonical bytes, and the
-- audit chain hashes entries' canonical bytes and keeps an RFC 6962 Merkle tree of them. Both
-- must be computed the same way here as in TypeScript (functions/_shared/json/canonical.ts,
-- functions/_shared/audit/merkle.ts); tests hold both to the RFC vectors. These are pure,
-- immutable helpers in `private` (never exposed), run by the definer functions that use them.

-- =============================================================================================
-- Helper functions: RFC 8785 canonical JSON
-- =============================================================================================
-- A JSON number as ECMAScript's Number::toString prints the IEEE 754 double nearest to it (RFC
-- 8785 section 3.2.2.3). float8 output with extra_float_digits = 1 gives the shortest digits that
-- round-trip, except at points exactly halfway between two doubles, which PostgreSQL's Ryu output
-- leaves out (1e23 comes out as 9.999999999999999e+22 where ECMAScript prints 1e+23). So the digits
-- are shortened further while the shorter decimal still reads back as the same double; only then
-- are they laid out as ECMAScript does.
create function private.jcs_number(p_value numeric) returns text
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
comment on function private.jcs_number(numeric) is 'A JSON number serialized as RFC 8785 requires (ECMAScript Number::toString).';

-- RFC 8785 sorts object keys by their UTF-16 code units: code point order, except that characters
-- above U+FFFF sort as surrogates (before U+E000..U+FFFF).
create function private.jcs_utf16_units(p_key text) returns integer[]
language sql immutable strict
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(unit order by ord, half), '{}')
    from (
      select c.ord, h.half,
             case when cp < 65536 then cp
                  when h.half = 1 then 55296 + ((cp - 65536) >> 10)
                  else 56320 + ((cp - 65536) & 1023) end as unit
        from pg_catalog.regexp_split_to_table(p_key, '') with ordinality as c (ch, ord)
        cross join lateral (select pg_catalog.ascii(c.ch) as cp) code
        cross join lateral pg_catalog.generate_series(1, case when code.cp < 65536 then 1 else 2 end) as h (half)
    ) units
$$;
comment on function private.jcs_utf16_units(text) is 'A string as UTF-16 code units: the sort key RFC 8785 orders object members by.';

create function private.jcs(p_value jsonb) returns text
language plpgsql immutable strict
set search_path = ''
as $$
declare
  out text;
begin
  case pg_catalog.jsonb_typeof(p_value)
    when 'object' then
      -- Code point order (collation "C" on UTF-8) is UTF-16 order unless a key holds a character
      -- from U+E000 up; only then are the keys compared as UTF-16 code units.
      select '{' || coalesce(pg_catalog.string_agg(pg_catalog.to_json(e.key)::text || ':' || private.jcs_member(e.value), ','
                 order by case when special.any_key then private.jcs_utf16_units(e.key) end, e.key collate "C"), '') || '}'
        into out
        from pg_catalog.jsonb_each(p_value) e,
             lateral (select pg_catalog.bool_or(k ~ '[\ue000-\U0010ffff]') as any_key
                        from pg_catalog.jsonb_object_keys(p_value) k) special;
    when 'array' then
      select '[' || coalesce(pg_catalog.string_agg(private.jcs_member(e.value), ',' order by e.ord), '') || ']'
        into out from pg_catalog.jsonb_array_elements(p_value) with ordinality as e (value, ord);
    else
      out := private.jcs_member(p_value);
  end case;
  return out;
end
$$;
comment on function private.jcs(jsonb) is 'RFC 8785 (JSON Canonicalization Scheme) serialization of a JSON value.';

-- One JSON value: scalars here (the common case, without another level of recursion), containers
-- through private.jcs. PostgreSQL escapes strings exactly as ECMAScript's JSON.stringify does ("\"", "\\",
-- \b \f \n \r \t, other controls as \u00xx, nothing else); integers below 2^53 print as they are.
create function private.jcs_member(p_value jsonb) returns text
language plpgsql immutable strict
set search_path = ''
as $$
declare
  kind text := pg_catalog.jsonb_typeof(p_value);
  n numeric;
begin
  if kind = 'object' or kind = 'array' then
    return private.jcs(p_value);
  elsif kind = 'number' then
    n := p_value::numeric;
    if pg_catalog.abs(n) < 9007199254740992 and n = pg_catalog.trunc(n) then
      return pg_catalog.trunc(n)::text;
    end if;
    return private.jcs_number(n);
  end if;
  return p_value::text;
end
$$;
comment on function private.jcs_member(jsonb) is 'RFC 8785 serialization of one JSON value (scalars inline, containers via private.jcs).';

-- The hashes approvals and the audit chain are made of, defined once for writing and verifying alike.
create function private.sha256_hex(p_text text) returns text
language sql immutable strict
set search_path = ''
as $$
  select pg_catalog.encode(extensions.digest(pg_catalog.convert_to(p_text, 'UTF8'), 'sha256'), 'hex')
$$;
comment on function private.sha256_hex(text) is 'The SHA-256 of a text''s UTF-8 bytes, as 64 lowercase hex digits.';

create function private.payload_sha256(p_payload jsonb) returns text
language plpgsql immutable strict
set search_path = ''
as $$
begin
  return private.sha256_hex(private.jcs(p_payload));
end
$$;
comment on function private.payload_sha256(jsonb) is 'SHA-256 (hex) of a JSON value''s RFC 8785 bytes: what an approval binds.';

-- =============================================================================================
-- Helper functions: the RFC 6962 Merkle tree
-- =============================================================================================
-- Leaves are entry hashes: leaf = SHA-256(0x00 || entry_hash), node = SHA-256(0x01 || left || right).
-- The frontier of a tree of n leaves holds one perfect-subtree root per set bit of n, left to
-- right; adding a leaf merges it with the subtrees it completes (one per trailing set bit of n).
create function private.merkle_frontier_push(p_frontier bytea[], p_size bigint, p_entry_hash bytea) returns bytea[]
language plpgsql immutable strict
set search_path = ''
as $$
declare
  node bytea := extensions.digest('\x00'::bytea || p_entry_hash, 'sha256');
  remaining bigint := p_size;
  frontier bytea[] := p_frontier;
  last integer;
begin
  while remaining & 1 = 1 loop
    last := pg_catalog.array_length(frontier, 1);
    node := extensions.digest('\x01'::bytea || frontier[last] || node, 'sha256');
    frontier := frontier[1:last - 1];
    remaining := remaining >> 1;
  end loop;
  return frontier || node;
end
$$;
comment on function private.merkle_frontier_push(bytea[], bigint, bytea) is 'The Merkle frontier after appending one leaf to a tree of p_size leaves.';

create function private.merkle_root(p_frontier bytea[]) returns bytea
language plpgsql immutable strict
set search_path = ''
as $$
declare
  root bytea;
  i integer;
begin
  if coalesce(pg_catalog.array_length(p_frontier, 1), 0) = 0 then
    return extensions.digest(''::bytea, 'sha256');  -- RFC 6962: the hash of the empty tree
  end if;
  root := p_frontier[pg_catalog.array_length(p_frontier, 1)];
  for i in reverse pg_catalog.array_length(p_frontier, 1) - 1 .. 1 loop
    root := extensions.digest('\x01'::bytea || p_frontier[i] || root, 'sha256');
  end loop;
  return root;
end
$$;
comment on function private.merkle_root(bytea[]) is 'The RFC 6962 Merkle tree hash of the tree a frontier describes.';

-- =============================================================================================
-- Grants
-- =============================================================================================
revoke execute on function private.jcs_number(numeric), private.jcs_utf16_units(text), private.jcs(jsonb),
  private.jcs_member(jsonb), private.sha256_hex(text), private.payload_sha256(jsonb),
  private.merkle_frontier_push(bytea[], bigint, bytea), private.merkle_root(bytea[])
  from public, anon, authenticated;
grant execute on function private.jcs(jsonb), private.payload_sha256(jsonb) to service_role;
