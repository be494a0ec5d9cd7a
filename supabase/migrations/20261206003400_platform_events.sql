-- Key rotation (issue 29): a rotation of a platform key (the audit checkpoints' signing key, Vault's
-- root key, the JWT secret) concerns every organization: its checkpoints, its secrets, its
-- sessions. So it is recorded in every organization's chain, one entry each, by the rotation
-- itself (npm run rotate).

create function private.record_platform_event(p_action text, p_payload jsonb) returns integer
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  n integer;
begin
  if p_action !~ '^platform\.[a-z][a-z0-9_]*$' then
    raise exception 'a platform event''s action is platform.<name>, not %', p_action using errcode = 'invalid_parameter_value';
  end if;
  insert into audit.records (org_id, action, target_type, target_id, payload)
  select o.id, p_action, 'platform', null, p_payload::json from public.organizations o;
  get diagnostics n = row_count;
  return n;
end
$$;
comment on function private.record_platform_event(text, jsonb) is
  'Records a platform-wide event (a key rotation) in every organization''s audit chain; returns how many chains.';
revoke execute on function private.record_platform_event(text, jsonb) from public, anon, authenticated, service_role;
