-- Agent runs (issue 24): a run that reaches its step limit ends as steps_exhausted, its own
-- status like budget_exhausted and timed_out. Its own migration because Postgres can't use an enum
-- value in the transaction that adds it, and the next migration does.
alter type public.run_status add value 'steps_exhausted' after 'budget_exhausted';
