/**
 * Seed 004's worker trust boundary (functions/_shared/tenancy/row_scope.ts): a worker's organization
 * comes from the row it acts on, whatever organization its payload claims.
 */
import { afterAll, describe, expect, it } from "vitest";
import type postgres from "postgres";
import { scopeToRow } from "../../functions/_shared/tenancy/row_scope.ts";
import { superuser } from "../helpers/stack.ts";
import { ACME, GLOBEX, GLOBEX_AGENT } from "../helpers/fixtures.ts";

const sql = superuser();
afterAll(() => sql.end());

/** Runs `work` in a transaction as the service role, the way a worker connects. */
function asWorker<T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`set local role service_role`;
    return work(tx);
  }) as Promise<T>;
}

describe("worker trust boundary", () => {
  it("ignores a forged organization id in the payload and works for the row's own organization", async () => {
    const { scope, context } = await asWorker(async (tx) => {
      const scope = await scopeToRow(tx, { table: "public.agents", id: GLOBEX_AGENT }, { claimedOrgId: ACME });
      const [{ context }] = await tx`select current_setting('gatehouse.org_id') as context`;
      return { scope, context };
    });
    expect(scope).toEqual({ ok: true, value: { orgId: GLOBEX, claimMismatch: true } });
    expect(context).toBe(GLOBEX);
  });

  it("reports no mismatch when the payload's organization is the row's", async () => {
    const scope = await asWorker((tx) =>
      scopeToRow(tx, { table: "public.agents", id: GLOBEX_AGENT }, { claimedOrgId: GLOBEX.toUpperCase() }),
    );
    expect(scope).toEqual({ ok: true, value: { orgId: GLOBEX, claimMismatch: false } });
  });

  it("refuses a row that does not exist, or an id that is not one, without guessing", async () => {
    const missing = await asWorker((tx) =>
      scopeToRow(tx, { table: "public.agents", id: "2b000000-0000-4000-8000-0000000000ff" }, { claimedOrgId: GLOBEX }),
    );
    expect(missing).toEqual({ ok: false, reason: "row_not_found" });
    const malformed = await asWorker((tx) => scopeToRow(tx, { table: "public.agents", id: "' or 1=1" }));
    expect(malformed).toEqual({ ok: false, reason: "invalid_row_id" });
  });

  it("only resolves tenant tables", async () => {
    await expect(asWorker((tx) => scopeToRow(tx, { table: "auth.users", id: GLOBEX_AGENT }))).rejects.toThrow(
      /auth\.users is not a tenant table/,
    );
  });

  it("is not callable by signed-in users", async () => {
    await expect(
      sql.begin(async (tx) => {
        await tx`set local role authenticated`;
        return scopeToRow(tx, { table: "public.agents", id: GLOBEX_AGENT });
      }),
    ).rejects.toThrow(/permission denied/);
  });
});
