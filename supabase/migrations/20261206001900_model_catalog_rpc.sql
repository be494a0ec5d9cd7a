-- The model catalog for the console (issue 25): an agent's configuration and the allowlists of
-- the organization's limits and caps offer the catalog's models as choices, never a free-typed
-- name (the database refuses a name the catalog doesn't have: …_allowed_models_catalog.sql).
-- The catalog is the platform's, the same for every organization, and holds no secret: its
-- vendor-side names and prices are what the gateway's GET /v1/models shows too.

create function public.model_catalog()
returns table (model text, provider public.model_provider, input_micro_per_mtok bigint, output_micro_per_mtok bigint, max_output_tokens integer)
language sql stable security definer
set search_path = ''
as $$
  select c.model, c.provider, c.input_micro_per_mtok, c.output_micro_per_mtok, c.max_output_tokens
    from private.model_catalog c
   order by c.provider, c.model
$$;
comment on function public.model_catalog() is
  'The models agents may be configured with: provider, list price (micro-USD per million tokens, in and out) and output limit.';
revoke execute on function public.model_catalog() from public, anon;
grant execute on function public.model_catalog() to authenticated, service_role;
