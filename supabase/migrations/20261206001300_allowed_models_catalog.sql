-- An allowlist names catalog models only (issue 25): saving `gpt-4o-mni` in allowed_models used to
-- succeed and then silently block every call. A name the catalog (private.model_catalog) doesn't
-- have is refused with 400 unknown_model, naming it, on the organization's limits and on every cap.

create function private.refuse_unknown_models() returns trigger
language plpgsql security definer
set search_path = ''
as $$
declare
  unknown text;
begin
  select m into unknown
    from pg_catalog.unnest(new.allowed_models) m
   where not exists (select 1 from private.model_catalog c where c.model = m)
   limit 1;
  if unknown is not null or pg_catalog.array_position(new.allowed_models, null) is not null then
    perform private.refuse_request(400, 'unknown_model', pg_catalog.format(
      '%s is not a model of the catalog (GET /functions/v1/model-gateway/v1/models lists them).', coalesce(unknown, 'null')));
  end if;
  return new;
end
$$;
comment on function private.refuse_unknown_models() is 'Refuses an allowed_models list that names a model the catalog does not have (400 unknown_model).';
revoke execute on function private.refuse_unknown_models() from public, anon, authenticated;

create trigger known_models before insert or update of allowed_models on public.model_limits
  for each row when (new.allowed_models is not null) execute function private.refuse_unknown_models();
create trigger known_models before insert or update of allowed_models on public.model_caps
  for each row when (new.allowed_models is not null) execute function private.refuse_unknown_models();
