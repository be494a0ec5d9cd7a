/**
 * Workspace termination and purge (issue 29, part 1; seed 000), end to end on npm test's stack,
 * driven by run workers of the test's own:
 *   - a tenant admin terminates the workspace (the slug typed to confirm): access ends in that
 *     transaction, and the run's queued job goes with it;
 *   - a worker revokes the OAuth connection's tokens at the provider fake and cancels the Stripe
 *     subscription at the Stripe fake (both wire-accurate), then deletes table by table;
 *   - it is killed half-way (a lock holds it in the middle of the tables), and another worker
 *     finishes the purge once the lease runs out;
 *   - after it, no table with an org_id (read from the catalog) holds a row of the organization,
 *     the Vault secrets it had are gone, every payload of its chain but the last is empty, the last
 *     entry is org.purged with the counts, and the exported chain verifies offline;
 *   - a purge whose step fails with a database error stays where it was, says why, and finishes
 *     once the error is gone.
 * The catalog-wide check on a seeded organization with a row in every exposed table is pgTAP's
 * (supabase/tests/database/130-workspace-purge.test.sql).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyExportText } from "../../functions/_shared/audit/verify.ts";
import { startPurge, waitForPurge } from "../../scripts/purge.ts";
import type { ManagedChild } from "../../scripts/stack/processes.ts";
import { stopChild } from "../../scripts/stack/processes.ts";
import { startWorker } from "../../scripts/stack/worker.ts";
import { type FakeProviders, startProviders } from "../helpers/providers.ts";
import { createRunOrg, type RunOrg } from "../helpers/run_org.ts";
import { stack } from "../helpers/stack.ts";
import { type StripeFake, startStripeFake } from "../helpers/stripe_fake.ts";

let sql: postgres.Sql;
let providers: FakeProviders;
let stripe: StripeFake;
const workers: ManagedChild[] = [];
const logDir = mkdtempSync(join(tmpdir(), "gatehouse-purge-"));

async function newWorker(name: string): Promise<ManagedChild> {
  const worker = await startWorker({
    root: process.cwd(),
    name,
    env: { ...stack().workerEnv, GATEHOUSE_RUN_SWEEP_SECONDS: "1", GATEHOUSE_PURGE_LEASE_SECONDS: "3" },
    logFile: join(logDir, `${name}.log`),
  });
  workers.push(worker);
  return worker;
}

/** The workers' logs, for a failure's message. */
function workerLogs(): string {
  return readdirSync(logDir).map((f) => `--- ${f}\n${readFileSync(join(logDir, f), "utf8").slice(-4000)}`).join("\n");
}

interface Termination {
  step: string;
  counts: Record<string, number>;
  external: Record<string, unknown> | null;
  final_seq: string | null;
  last_error: string | null;
}

async function termination(orgId: string): Promise<Termination | undefined> {
  const [t] = await sql`select step, counts, external, final_seq, last_error from private.workspace_terminations where org_id = ${orgId}`;
  return t as Termination | undefined;
}

/** Polls until `test` holds of the organization's termination (30 s at most). */
async function until(orgId: string, what: string, test: (t: Termination) => boolean, timeoutMs = 30_000): Promise<Termination> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = await termination(orgId);
    if (t && test(t)) return t;
    if (Date.now() > deadline) throw new Error(`the purge of ${orgId} is not ${what}: ${JSON.stringify(t)}\n${workerLogs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The tables (any schema) that hold rows of the organization, read from the catalog; the audit chain's are listed apart. */
async function rowsLeft(orgId: string): Promise<Record<string, number>> {
  const tables = await sql<{ name: string }[]>`
    select format('%I.%I', n.nspname, c.relname) as name
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p') and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
       and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'org_id' and not a.attisdropped)`;
  const left: Record<string, number> = {};
  for (const { name } of tables) {
    const [{ n }] = await sql.unsafe(`select count(*)::int as n from ${name} where org_id = $1`, [orgId]);
    if (n > 0) left[name] = n;
  }
  return left;
}

/** An OAuth2 connection of the organization whose tokens the provider fake knows, stored in Vault as the connectors function stores one. */
async function oauthConnection(org: RunOrg): Promise<{ id: string; refresh: string; access: string }> {
  const refresh = `refresh_${randomBytes(12).toString("hex")}`;
  const access = `access_${randomBytes(12).toString("hex")}`;
  providers.refreshTokens.add(refresh);
  providers.accessTokens.set(access, { expiresAt: Date.now() + 3_600_000, refreshToken: refresh });
  const config = {
    authorize_url: `${providers.base}/oauth/authorize`, token_url: `${providers.base}/oauth/token`, revoke_url: `${providers.base}/oauth/revoke`,
    api_url: `${providers.base}/oauth/api/`, client_id: providers.oauthClient.id, redirect_uri: `${stack().functionsUrl}/connectors/oauth2/callback`,
  };
  const credential = JSON.stringify({ access_token: access, refresh_token: refresh, client_secret: providers.oauthClient.secret });
  const [row] = await sql`
    insert into public.connections (org_id, provider, display_name, scopes, config, secret_id, verified_at)
    values (${org.org}, 'oauth2', 'Helpdesk', '{tickets:read}', ${sql.json(config)}, vault.create_secret(${credential}), now())
    returning id`;
  return { id: row.id, refresh, access };
}

beforeAll(async () => {
  sql = postgres(stack().dbUrl, { max: 4, onnotice: () => {} });
  // The MCP test's provider port: the runs suite's runs.test.ts holds the connectors' one (so the
  // tool's connection is the organization's own HTTPS endpoint, which any port may serve).
  providers = await startProviders({ for: "mcp" });
  stripe = await startStripeFake();
}, 60_000);

afterAll(async () => {
  for (const w of workers) await stopChild(w).catch(() => {});
  await providers?.close();
  await stripe?.close();
  await sql?.end();
  rmSync(logDir, { recursive: true, force: true });
});

describe("a workspace purge", () => {
  it("cuts access at once, revokes and cancels outside, survives a killed worker, and leaves only the chain's hashes, which verify offline", async () => {
    const org = await createRunOrg(sql, { name: "Purged", vendorBaseUrl: "https://127.0.0.1:9/v1", vendorKey: `sk-purge-${Date.now()}`, providerBase: providers.base, slackHooks: providers.slackHooks, customHooks: providers.customHooks });
    const oauth = await oauthConnection(org);
    const customer = `cus_${randomBytes(8).toString("hex")}`;
    const subscription = `sub_${randomBytes(8).toString("hex")}`;
    stripe.subscriptions.set(subscription, { customer, status: "active" });
    await sql`insert into public.billing_accounts (org_id, stripe_customer_id, subscription_id, subscription_status)
              values (${org.org}, ${customer}, ${subscription}, 'active')`;
    await sql`insert into public.credit_ledger (org_id, kind, amount_micro, stripe_event_id, stripe_object_id, payment_intent)
              values (${org.org}, 'top_up', 10000000, ${`evt_${randomUUID().slice(0, 8)}`}, ${`cs_${randomUUID().slice(0, 8)}`}, ${`pi_${randomBytes(6).toString("hex")}`})`;
    const runId = await org.start("hello");
    const secrets = (await sql`select secret_id from public.connections where org_id = ${org.org} and secret_id is not null
                               union all select secret_id from public.model_provider_keys where org_id = ${org.org}`).map((r) => r.secret_id as string);
    expect(secrets).toHaveLength(3);
    expect(await sql`select 1 from graphile_worker.jobs where key = ${`run:${runId}`}`).toHaveLength(1);
    const [{ slug }] = await sql`select slug from public.organizations where id = ${org.org}`;

    // A tenant admin starts it: the slug is the confirmation, and a wrong one is refused.
    await expect(org.asAdmin((tx) => tx`select public.terminate_workspace(${"not-" + slug})`)).rejects.toThrow(/confirmation_mismatch/);
    const [{ started }] = await org.asAdmin((tx) => tx`select public.terminate_workspace(${slug}) as started`);
    expect(started).toMatchObject({ org_id: org.org, status: "terminating" });
    // In that transaction: nobody is a member, and the run's queued job is gone.
    expect(await sql`select 1 from public.organization_members where org_id = ${org.org}`).toHaveLength(0);
    await expect(org.asAdmin((tx) => tx`select id from public.agents`)).rejects.toThrow(/not a member/);
    expect(await sql`select 1 from graphile_worker.jobs where key = ${`run:${runId}`}`).toHaveLength(0);

    // A lock holds the purge in the middle of its tables; the worker is killed there.
    const holder = await sql.reserve();
    await holder`begin`;
    await holder`lock table public.webhook_deliveries in access exclusive mode`;
    const first = await newWorker("purge-1");
    const halfway = await until(org.org, "half-way", (t) => t.step === "deleting" && (t.counts["public.agents"] ?? 0) > 0);
    expect(halfway.counts["public.webhook_deliveries"]).toBeUndefined();
    expect(halfway.external).toMatchObject({ revocations: { revoked: 1, not_supported: 1 }, stripe_subscription: "cancelled" });
    // Outside, before any delete: the provider revoked the tokens, Stripe cancelled (and invoiced what was due).
    expect(providers.revoked.has(oauth.refresh) || providers.revoked.has(oauth.access)).toBe(true);
    expect(stripe.subscriptions.get(subscription)).toMatchObject({ status: "canceled", cancelParams: { invoice_now: "true", prorate: "false" } });
    first.child.kill("SIGKILL");
    await holder`rollback`;
    holder.release();

    await newWorker("purge-2");
    const done = await until(org.org, "done", (t) => t.step === "done");
    expect(await rowsLeft(org.org)).toEqual({
      "audit.entries": Number(done.final_seq), "audit.records": Number(done.final_seq), "audit.heads": 1,
      "private.workspace_terminations": 1, ...(await checkpointRows(org.org)),
    });
    expect(await sql`select id from vault.secrets where id = any(${secrets}::uuid[])`).toHaveLength(0);
    // Revoked once: the resumed purge did not go back to the provider.
    expect(providers.requests.filter((r) => r.path === "/oauth/revoke").length).toBeLessThanOrEqual(2);

    // The chain: every payload gone but the last, which is org.purged with what went.
    const audit = await sql`select e.seq, e.action, r.payload from audit.entries e join audit.records r on r.id = e.record_id
                            where e.org_id = ${org.org} order by e.seq`;
    expect(audit.at(-1)).toMatchObject({ seq: done.final_seq, action: "org.purged" });
    expect(audit.slice(0, -1).every((e) => e.payload === null)).toBe(true);
    const final = audit.at(-1)!.payload as Record<string, unknown>;
    expect(final).toMatchObject({
      reason: "customer",
      deleted: { "public.agents": 1, "public.connections": 2, "public.agent_runs": 1, "public.organizations": 1 },
      external: { stripe_subscription: "cancelled", revocations: { revoked: 1, not_supported: 1 } },
      billing_retained: { stripe_customer: customer, stripe_subscription: subscription, payments: [{ kind: "top_up", amount_micro: 10000000 }] },
    });
    expect(JSON.stringify(final)).not.toContain("Ops agent");
    expect(audit.map((e) => e.action)).toContain("org.termination_started");

    // Exported by the platform and verified offline: the chain still holds end to end.
    const res = await fetch(`${stack().functionsUrl}/audit-export?org_id=${org.org}`, { headers: { authorization: `Bearer ${stack().serviceRoleKey}` } });
    expect(res.status).toBe(200);
    const exported = await res.text();
    expect(exported).not.toContain("Ops agent");
    expect(await verifyExportText(exported)).toMatchObject({ ok: true, entries: Number(done.final_seq) });
    const [verdict] = await sql`select ok from audit.verify_chain(${org.org})`;
    expect(verdict.ok).toBe(true);

    // Done is done: another start or step changes nothing.
    const [again] = await sql`select step from private.start_termination(${org.org}, 'breach')`;
    expect(again.step).toBe("done");
    expect((await sql`select private.purge_step(${org.org}) as step`)[0].step).toBe("done");
    expect((await sql`select count(*)::int as n from audit.records where org_id = ${org.org}`)[0].n).toBe(Number(done.final_seq));
  }, 120_000);

  it("stays where a database error stopped it, says why, and finishes once the error is gone", async () => {
    const org = await createRunOrg(sql, { name: "Breached", vendorBaseUrl: "https://127.0.0.1:9/v1", vendorKey: `sk-purge-${Date.now()}`, providerBase: providers.base, slackHooks: providers.slackHooks, customHooks: providers.customHooks });
    // A fault the purge can't skip (a trigger that fires always, even with triggers off for replication).
    await sql.unsafe(`create or replace function public.purge_test_fault() returns trigger language plpgsql as $$
                      begin raise exception 'disk full (test fault)'; end $$`);
    await sql.unsafe(`create trigger purge_test_fault before delete on public.agent_tools for each row execute function public.purge_test_fault();
                      alter table public.agent_tools enable always trigger purge_test_fault`);
    try {
      // The platform's command (npm run purge), for a breach, twice at once: both wait on the
      // organization's row (held here), then one starts it and the other finds it started.
      const holder = await sql.reserve();
      await holder`begin`;
      await holder`select 1 from public.organizations where id = ${org.org} for update`;
      const racing = Promise.all([startPurge(stack().dbUrl, org.org, "breach"), startPurge(stack().dbUrl, org.org, "breach")]);
      await new Promise((r) => setTimeout(r, 1_000));
      await holder`commit`;
      holder.release();
      const both = await racing;
      expect(both.map((t) => ["external", "deleting"].includes(t.step))).toEqual([true, true]);
      expect(await sql`select 1 from audit.records where org_id = ${org.org} and action = 'org.termination_started'`).toHaveLength(1);
      if (workers.every((w) => w.child.exitCode !== null || w.child.signalCode !== null)) await newWorker("purge-3");
      const stuck = await until(org.org, "stopped by the fault", (t) => t.last_error !== null && t.step === "deleting");
      expect(stuck.last_error).toContain("disk full (test fault)");
      expect(stuck.counts["public.agent_tools"]).toBeUndefined();
      // Half-deleted, and nobody can see the half that is left.
      expect(Object.keys(await rowsLeft(org.org))).toContain("public.agent_tools");
      await expect(org.asAdmin((tx) => tx`select id from public.agent_tools`)).rejects.toThrow(/not a member/);
      // It doesn't hold up the others: a workspace started after it is purged while it keeps failing.
      const bare = randomUUID();
      await sql`insert into public.organizations (id, name, slug) values (${bare}, 'Bare', ${`bare-${bare.slice(0, 8)}`})`;
      await sql`insert into public.projects (org_id, name, slug) values (${bare}, 'Only', 'only')`;
      await startPurge(stack().dbUrl, bare, "breach");
      await until(bare, "done beside a failing purge", (t) => t.step === "done");
      expect((await termination(org.org))?.step).toBe("deleting");
    } finally {
      await sql.unsafe(`drop trigger purge_test_fault on public.agent_tools; drop function public.purge_test_fault()`);
    }
    const lines: string[] = [];
    const done = await waitForPurge(stack().dbUrl, org.org, { timeoutMs: 30_000, log: (l) => lines.push(l) });
    expect(done.step).toBe("done");
    expect(lines.at(-1)).toBe("done");
    expect(done.counts["public.agent_tools"]).toBe(1);
    await expect(startPurge(stack().dbUrl, randomUUID(), "breach")).rejects.toThrow(/organization_not_found/);
    expect(Object.keys(await rowsLeft(org.org)).sort()).toEqual(
      ["audit.entries", "audit.heads", "audit.records", "private.workspace_terminations", ...Object.keys(await checkpointRows(org.org))].sort(),
    );
  }, 120_000);
});

/** The checkpoint tables' rows of the organization (a checkpoint may have been signed meanwhile): kept, like the hashes. */
async function checkpointRows(orgId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ["audit.checkpoints", "audit.cosignatures", "audit.frontiers"]) {
    const [{ n }] = await sql.unsafe(`select count(*)::int as n from ${table} where org_id = $1`, [orgId]);
    if (n > 0) out[table] = n;
  }
  return out;
}
