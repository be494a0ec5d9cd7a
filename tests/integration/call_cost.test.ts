/**
 * The running credit totals under concurrency (issue 24, part 0): an organization's balance and
 * month's usage (private.credit_totals) are kept by the ledger's insert trigger, so calls read one
 * row instead of summing the ledger. Here, many model calls, connector charges, top-ups and
 * transactions that fail race on one organization (prepaid, then postpaid), and the totals must
 * equal the ledger's sums afterwards. In organizations of their own.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { stack } from "../helpers/stack.ts";

const sql = postgres(stack().dbUrl, { max: 8, onnotice: () => {} });
afterAll(async () => {
  await sql.end();
});

/** A fresh organization with a running run of a published agent, limits out of the way. */
async function organization(mode: "prepaid" | "postpaid"): Promise<{ org: string; run: string }> {
  const org = randomUUID();
  const slug = `totals-${org.slice(0, 8)}`;
  const run = await sql.begin(async (tx) => {
    await tx`insert into public.organizations (id, name, slug) values (${org}, ${slug}, ${slug})`;
    const [project] = await tx`insert into public.projects (org_id, name, slug) values (${org}, 'Totals', 'totals') returning id`;
    const [agent] = await tx`insert into public.agents (org_id, project_id, name) values (${org}, ${project.id}, 'Totals') returning id`;
    const [version] = await tx`insert into public.agent_versions (org_id, project_id, agent_id, version, published_at, published_by)
                               values (${org}, ${project.id}, ${agent.id}, 1, now(), ${randomUUID()}) returning id`;
    const [r] = await tx`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                         values (${org}, ${project.id}, ${agent.id}, ${version.id}) returning id`;
    await tx`insert into public.model_limits (org_id, requests_per_minute, burst) values (${org}, 100000, 10000)`;
    await tx`insert into public.billing_accounts (org_id, mode) values (${org}, ${mode}::public.billing_mode)`;
    await tx`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${org}, 'grant', 1000000, 'Race credits')`;
    return r.id as string;
  });
  return { org, run };
}

/** One of the racing actions, by number: a model call, a connector charge, a top-up, or a top-up whose transaction fails. */
async function act(i: number, t: { org: string; run: string }): Promise<void> {
  switch (i % 4) {
    case 0: {
      const [{ r }] = await sql`select private.reserve_model_call(${t.run}, null, null, 'gpt-4o-mini', 20, 16, false) as r`;
      expect(r.ok).toBe(true);
      await sql`select private.settle_model_call(${r.reservation_id}, 'succeeded', 20, 16, false, 5)`;
      return;
    }
    case 1:
      await sql`select private.charge_connector_call(${t.org}, 'delivered', 200)`;
      return;
    case 2:
      await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${t.org}, 'top_up', ${1000 + i}, 'Race top-up')`;
      return;
    default:
      await expect(sql.begin(async (tx) => {
        await tx`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${t.org}, 'top_up', 999999, 'Never')`;
        throw new Error("the transaction fails");
      })).rejects.toThrow("the transaction fails");
  }
}

describe("the running credit totals", () => {
  for (const mode of ["prepaid", "postpaid"] as const) {
    it(`equal the ledger's sums after 200 racing calls, charges, top-ups and failed transactions (${mode})`, async () => {
      const t = await organization(mode);
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < 200) await act(next++, t);
      }));
      const [totals] = await sql`select balance_micro, entries, month_usage_micro from private.credit_totals where org_id = ${t.org}`;
      const [ledger] = await sql`select sum(amount_micro)::bigint as balance, count(*)::bigint as entries,
                                        coalesce(-sum(amount_micro) filter (where kind = 'usage_debit'
                                                   and created_at >= date_trunc('month', now(), 'UTC')), 0)::bigint as usage
                                   from public.credit_ledger where org_id = ${t.org}`;
      // The grant, 50 model calls', 50 connector charges' and 50 top-ups' entries; none of the 50 failed ones.
      expect(Number(ledger.entries)).toBe(1 + 50 + 50 + 50);
      expect({ balance: totals.balance_micro, entries: totals.entries, usage: totals.month_usage_micro })
        .toEqual({ balance: ledger.balance, entries: ledger.entries, usage: ledger.usage });
      const [view] = await sql`select balance_micro from public.credit_balances where org_id = ${t.org}`;
      expect(view.balance_micro).toBe(ledger.balance);
      expect(await sql`select private.credit_balance(${t.org}) as b`).toEqual([{ b: ledger.balance }]);
    });
  }
});
