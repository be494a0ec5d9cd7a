-- Agent runs (issue 24): the run lifecycle's statuses, queued → running ⇄ waiting_approval →
-- succeeded | failed | cancelled | budget_exhausted | timed_out | approval_expired. Its own
-- migration because Postgres can't use an enum value in the transaction that adds it, and the next
-- migration does.
alter type public.run_status add value 'queued' before 'running';
alter type public.run_status add value 'waiting_approval' after 'running';
alter type public.run_status add value 'budget_exhausted';
alter type public.run_status add value 'timed_out';
alter type public.run_status add value 'approval_expired';
