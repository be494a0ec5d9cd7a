-- Approvals end when their target changes (issue 23): a new terminal status for an action request
-- whose tool binding or connection changed after it was proposed. It is its own migration because
-- Postgres can't use an enum value in the transaction that adds it, and the next migration does.
alter type public.action_status add value 'withdrawn';
