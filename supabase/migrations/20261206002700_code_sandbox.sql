-- Code execution through the same path as every other tool (issue 27; docs/sandbox.md).
--
-- A tenant admin turns code execution on for the organization by connecting a sandbox: a
-- connection of provider `sandbox` whose settings name the backend that runs the code
-- (`{"backend": "bubblewrap"}`, the run worker's host) and, optionally, tighter limits. An agent's
-- tool bound to it (conventionally `code.run`) takes {runtime, code, files}: that payload is what
-- is proposed, approved and hash-pinned, exactly as a webhook's body is, and the execution gate
-- lets the approved bytes through once. So everything the connectors already enforce holds for
-- code without a line of its own: the approval policy (allow only when it names the sandbox
-- connection), dual control by risk, withdrawal when the tool or the connection changes, the
-- workspace's connector rate limit and monthly budget, prepaid credits, and the connector.call
-- audit entry (which for a sandbox carries the execution's limits and outcome, never the code or
-- its output).
--
-- What changes in the database:
--   - connection_destination: a sandbox connection's destination is `sandbox:<backend>`, so an
--     approval pins the backend the code runs on, and a connection moved to another backend
--     withdraws what was approved for the old one;
--   - charge_connector_call: an execution that ran (it exited, or was killed at a limit) is charged
--     the platform's connector price like a delivery that reached its provider; one refused before
--     anything ran is not.

-- Where a connection's deliveries go, as before (…_approval_targets.sql), and a sandbox's backend.
create or replace function private.connection_destination(p_provider public.connector_provider, p_credential text, p_config jsonb)
returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  return case p_provider
    when 'github' then 'api.github.com'
    when 'notion' then 'api.notion.com'
    when 'oauth2' then private.url_host(p_config ->> 'api_url')
    when 'sandbox' then case when p_config ->> 'backend' ~ '^[a-z][a-z0-9-]{0,31}$' then 'sandbox:' || (p_config ->> 'backend') end
    else private.url_host((p_credential::jsonb) ->> 'url')
  end;
exception when invalid_text_representation then
  return null;
end
$$;
comment on function private.connection_destination(public.connector_provider, text, jsonb) is
  'The host a connection delivers to, from its provider, credential and settings; a sandbox''s is sandbox:<backend>.';
revoke execute on function private.connection_destination(public.connector_provider, text, jsonb) from public, anon, authenticated;

-- The connector price, as before (…_platform_prices.sql), and for a sandbox execution that ran.
create or replace function private.charge_connector_call(p_org_id uuid, p_outcome text, p_http_status integer) returns bigint
language plpgsql volatile security definer
set search_path = ''
as $$
declare
  price bigint := (select p.micro from private.billing_prices p where p.item = 'connector_call');
begin
  if p_org_id is null then
    raise exception 'charge_connector_call needs an organization' using errcode = '22023';
  end if;
  if p_http_status is null
     and coalesce(p_outcome, '') not in ('egress_request_failed', 'egress_redirect_blocked', 'egress_response_too_large',
                                         'egress_timeout', 'egress_aborted')
     and coalesce(p_outcome, '') !~ '^(exit_[0-9]{1,3}|killed_(deadline|memory))$' then
    return 0;
  end if;
  if price > 0 then
    insert into public.credit_ledger (org_id, kind, amount_micro, reason)
    values (p_org_id, 'usage_debit', -price, 'Connector call');
  end if;
  return price;
end
$$;
comment on function private.charge_connector_call(uuid, text, integer) is
  'Debits a connector call at the platform''s price when something reached the provider or a sandbox ran the code; nothing for a call refused before it went anywhere.';
revoke execute on function private.charge_connector_call(uuid, text, integer) from public, anon, authenticated;
grant execute on function private.charge_connector_call(uuid, text, integer) to service_role;
