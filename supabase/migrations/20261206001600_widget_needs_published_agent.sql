-- A widget is turned on only for an agent with a published version (issue 25): before, the key was
-- made and every visitor's message was refused afterwards, with nothing to tell the site owner
-- why. Now turning it on is refused at once (409 agent_not_published), whoever inserts the key.

create function private.require_published_agent() returns trigger
language plpgsql security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from public.agent_versions v
                  where v.org_id = new.org_id and v.project_id = new.project_id and v.agent_id = new.agent_id
                    and v.published_at is not null) then
    perform private.refuse_request(409, 'agent_not_published',
      'Publish a version of the agent before turning its widget on: visitors would get no answer.');
  end if;
  return new;
end
$$;
comment on function private.require_published_agent() is 'Refuses a widget key for an agent without a published version (409 agent_not_published).';
revoke execute on function private.require_published_agent() from public, anon, authenticated;

create trigger require_published_agent before insert on public.widget_keys
  for each row execute function private.require_published_agent();
