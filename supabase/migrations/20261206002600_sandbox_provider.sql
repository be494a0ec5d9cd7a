-- The code sandbox as a connector provider (issue 27; docs/sandbox.md). A value added to an enum
-- can't be used in the transaction that adds it, so it has a migration of its own; the next one
-- (…_code_sandbox.sql) uses it.
alter type public.connector_provider add value if not exists 'sandbox';
