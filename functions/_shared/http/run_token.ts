/**
 * Run-scoped tokens (supabase/migrations/…_run_tokens.sql): a runtime acts for one run with the
 * token in `X-Run-Token` (and the public anon key as its `Authorization`, which the platform
 * verifies first). The run, and from its row the organization, project and agent, come from the
 * database; nothing the request says about them is trusted.
 */
import { serviceDb } from "./db.ts";
import { refuse } from "./errors.ts";

/** What a valid run token acts for. */
export interface RunTokenScope {
  runId: string;
  orgId: string;
  projectId: string;
  agentId: string;
}

/** The scope of the request's X-Run-Token; null without one; 401 run_token_invalid for one that is not valid now. */
export async function runTokenOf(req: Request): Promise<RunTokenScope | null> {
  const token = req.headers.get("x-run-token");
  if (token === null) return null;
  const [row] = await serviceDb()`select run_id, org_id, project_id, agent_id from private.run_token_scope(${token})`;
  if (!row) throw refuse("run_token_invalid");
  return { runId: row.run_id, orgId: row.org_id, projectId: row.project_id, agentId: row.agent_id };
}

/** Swaps the request's valid run token for a new one (the old one revoked): {token, run_id, expires_at}. */
export async function renewRunToken(req: Request): Promise<{ token: string; run_id: string; expires_at: string }> {
  const token = req.headers.get("x-run-token");
  if (token === null) throw refuse("run_token_invalid", "send the run token to renew in X-Run-Token");
  const [{ renewed }] = await serviceDb()`select private.renew_run_token(${token}) as renewed`;
  return renewed as { token: string; run_id: string; expires_at: string };
}
