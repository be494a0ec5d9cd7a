/**
 * Seed 004's worker trust boundary: background code that acts on a row names the row, and the
 * organization it works for is read from that row (private.row_org_id), never taken from the job's
 * payload. A tenant id carried in a payload is for tracing only; a mismatch is reported so the
 * caller can log it, and is otherwise ignored.
 *
 * Call scopeToRow first thing inside the worker's transaction: it also sets the transaction's
 * organization context, so triggers (and any RLS-bound statement) see the row's own organization.
 */

/** The part of a postgres.js transaction (or any SQL client) that scopeToRow needs. */
export interface SqlTx {
  unsafe(query: string, parameters?: unknown[]): PromiseLike<readonly Record<string, unknown>[]>;
}

/** A tenant row to work on: a table with org_id and id columns, and the row's id. */
export interface RowRef {
  table: string;
  id: string;
}

/** The organization a worker acts for, derived from the row. */
export interface RowScope {
  orgId: string;
  /** True when the payload claimed a different organization than the row's (log it; never use it). */
  claimMismatch: boolean;
}

export type ScopeResult =
  | { ok: true; value: RowScope }
  | { ok: false; reason: "invalid_row_id" | "row_not_found" };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Derives the organization of `row` from the database and makes it the transaction's context. */
export async function scopeToRow(
  tx: SqlTx,
  row: RowRef,
  options: { claimedOrgId?: string | null } = {},
): Promise<ScopeResult> {
  if (!UUID.test(row.id)) return { ok: false, reason: "invalid_row_id" };
  const [found] = await tx.unsafe("select private.row_org_id($1::regclass, $2::uuid) as org_id", [row.table, row.id]);
  const orgId = found?.org_id;
  if (typeof orgId !== "string") return { ok: false, reason: "row_not_found" };
  await tx.unsafe("select set_config('gatehouse.org_id', $1, true)", [orgId]);
  const claimed = options.claimedOrgId;
  return { ok: true, value: { orgId, claimMismatch: claimed != null && claimed.toLowerCase() !== orgId } };
}
