/**
 * The stack as `npm start` runs it, with no vendor key: the local model stand-in, the LOCAL ONLY
 * webhook receiver and the run worker. An admin's https_webhook connection to the receiver passes
 * its live check, and a run of an agent with a tool bound to it goes model → tool → model through
 * the worker, its delivery arriving at the receiver byte for byte. It has a stack of its own (on
 * free ports, in a temporary folder), so it runs with the runs suite, alone.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startOnFreePorts } from "../../scripts/stack/index.ts";

const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_PROJECT = "1a000000-0000-4000-8000-00000000000a";
const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-npm-start-"));
let stack: Stack;
let sql: postgres.Sql;

beforeAll(async () => {
  stack = await startOnFreePorts({ root: process.cwd(), stateDir });
  sql = postgres(stack.info.dbUrl, { max: 2, onnotice: () => {} });
}, 120_000);

afterAll(async () => {
  await sql?.end();
  await stack?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

describe("npm start, with no vendor key", () => {
  it("verifies a connection to the local receiver, and a run delivers to it through the worker", async () => {
    const receiver = stack.info.webhookReceiver!.url;
    const received = async () => ((await (await fetch(`${receiver}/api/requests`)).json()) as { requests: { path: string; body: string }[] }).requests;

    // The live check reaches the receiver through the egress guard's development allowance.
    const res = await fetch(`${stack.info.functionsUrl}/connectors/connections`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.info.serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify({ org_id: ACME, provider: "https_webhook", display_name: "Local receiver", credential: { url: `${receiver}/hooks/try-it` } }),
    });
    const saved = (await res.json()) as { connection: { id: string } };
    expect(res.status).toBe(201);
    expect((await received()).map((r) => r.body)).toContain('{"type":"gatehouse.verification"}');

    await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
              values (${ACME}, ${ACME_PROJECT}, ${ACME_AGENT}, 'notify', 'https_webhook', ${saved.connection.id})`;
    await sql`insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
              values (${ACME}, ${ACME_PROJECT}, ${ACME_AGENT}, 'notify', 'allow', ${saved.connection.id})`;
    const [run] = await sql.begin(async (tx) => {
      await tx`select set_config('role', 'service_role', true)`;
      return await tx`select id from public.start_agent_run(${ACME_AGENT}, ${tx.json({ prompt: 'use notify with {"text": "hello from a local run"}' })})`;
    });
    const deadline = Date.now() + 30_000;
    let status = "";
    while (!["succeeded", "failed", "budget_exhausted", "timed_out"].includes(status)) {
      if (Date.now() > deadline) throw new Error(`the run is still ${status}`);
      await new Promise((r) => setTimeout(r, 200));
      [{ status }] = await sql`select status::text from public.agent_runs where id = ${run.id}`;
    }
    expect(status).toBe("succeeded");
    expect((await received()).find((r) => r.path === "/hooks/try-it" && r.body.includes("hello from a local run"))?.body)
      .toBe('{"text":"hello from a local run"}');
    // The receiver's page lists it (LOCAL ONLY, no script).
    const page = await (await fetch(`${receiver}/`)).text();
    expect(page).toContain("LOCAL ONLY");
    expect(page).toContain("hello from a local run");
  }, 60_000);
});
