/**
 * The MCP endpoint (functions/mcp; docs/mcp.md) through the gateway with the SDK's own client
 * (@modelcontextprotocol/sdk's Client and StreamableHTTPClientTransport), as an agent running
 * elsewhere would use it: it lists its run's tools, calls one the policy allows (delivered to the
 * provider fake, metered and audited), calls one that needs approval (answered at once with the
 * pending request; executed by the status tool once a second admin approves), and a personal
 * access token without tools:call is refused.
 */
import { randomUUID } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeProviders, startProviders } from "../helpers/providers.ts";
import { createRunOrg, type RunOrg } from "../helpers/run_org.ts";
import { asMemberIn, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
const { functionsUrl, apiUrl } = stack();
let providers: FakeProviders;
let org: RunOrg;
let run: string;

/** An MCP client connected with `bearer` (to `?run=` when given). */
async function connect(bearer: string, runId?: string): Promise<Client> {
  const url = new URL(`${functionsUrl}/mcp${runId ? `?run=${runId}` : ""}`);
  const client = new Client({ name: "gatehouse-test", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${bearer}` } } }));
  return client;
}

type Structured = Record<string, unknown>;

beforeAll(async () => {
  providers = await startProviders({ for: "mcp" });
  org = await createRunOrg(sql, {
    name: "MCP", vendorBaseUrl: "https://127.0.0.1:9/v1", vendorKey: `sk-test-${randomUUID()}`,
    providerBase: providers.base, slackHooks: providers.slackHooks, customHooks: providers.customHooks,
  });
  // The agent runs elsewhere: its run starts running, and nothing is enqueued for our worker.
  const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                              values (${org.org}, ${org.project}, ${org.agent}, ${sql.json({ runtime: "external", model: "gpt-4o-mini" })}) returning id`;
  await sql`update public.agent_versions set published_at = now(), published_by = ${org.admin} where id = ${version.id}`;
  run = await org.asAdmin(async (tx) => {
    const [r] = await tx`select id, status from public.start_agent_run(${org.agent}, ${tx.json({ from: "elsewhere" })})`;
    expect(r.status).toBe("running");
    return r.id as string;
  });
});
afterAll(async () => {
  await providers?.close();
  await sql.end();
});

async function runToken(): Promise<string> {
  return await org.asAdmin(async (tx) => {
    const [{ t }] = await tx`select public.mint_run_token(${run}) as t`;
    return (t as { token: string }).token;
  });
}

describe("the MCP endpoint", () => {
  it("lists the run's tools to the SDK's client, with a run token", async () => {
    const client = await connect(await runToken());
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(["notify", "gatehouse_action_status"]);
    expect(tools[0].inputSchema.type).toBe("object");
    await client.close();
  });

  it("calls a tool the policy allows: delivered through the tool's connection, metered and audited", async () => {
    await org.allowTool();
    const client = await connect(await runToken());
    const before = providers.requests.filter((r) => r.path === org.hookPath).length;
    const result = await client.callTool({ name: "notify", arguments: { text: "Deploy finished" } });
    expect(result.isError).toBe(false);
    expect(result.structuredContent).toMatchObject({ status: "executed", delivered: true });
    const delivered = providers.requests.filter((r) => r.path === org.hookPath);
    expect(delivered.length).toBe(before + 1);
    expect(JSON.parse(delivered.at(-1)!.body)).toEqual({ text: "Deploy finished" });
    const requestId = (result.structuredContent as Structured).request_id as string;
    const [request] = await sql`select status, requested_via, run_id from public.action_requests where id = ${requestId}`;
    expect(request).toEqual({ status: "executed", requested_via: "agent_runtime", run_id: run });
    const [{ n }] = await sql`select count(*)::int as n from audit.records where org_id = ${org.org} and target_id = ${requestId}`;
    expect(n).toBeGreaterThan(0);
    await sql`delete from public.approval_policies where org_id = ${org.org}`;
    await client.close();
  });

  it("answers a call that needs approval at once with the pending request, and executes it once approved", async () => {
    const client = await connect(await runToken());
    const before = providers.requests.filter((r) => r.path === org.hookPath).length;
    const pending = await client.callTool({ name: "notify", arguments: { text: "Refund order 1042" } });
    expect(pending.isError).toBe(false);
    const waiting = pending.structuredContent as Structured;
    expect(waiting).toMatchObject({ status: "approval_pending", approvals_required: 1 });
    // The console's own route for the request (the console is served at the API's origin locally).
    expect(waiting.console_url).toBe(`${apiUrl}/o/${org.org}/approvals/${waiting.request_id}`);
    expect(providers.requests.filter((r) => r.path === org.hookPath).length).toBe(before);
    const still = await client.callTool({ name: "gatehouse_action_status", arguments: { request_id: waiting.request_id } });
    expect((still.structuredContent as Structured).status).toBe("approval_pending");

    // A second admin approves the exact payload (the run's starter can't approve its own).
    const approver = randomUUID();
    await sql`insert into auth.users (id, email) values (${approver}, ${`approver-${approver.slice(0, 8)}@mcp.test`})`;
    await sql`insert into public.organization_members (org_id, user_id, role) values (${org.org}, ${approver}, 'tenant_admin')`;
    await asMemberIn(sql, approver, org.org, async (tx) => {
      const [r] = await tx`select approval_sha256 from public.action_requests where id = ${waiting.request_id as string}`;
      await tx`select public.decide_action(${waiting.request_id as string}, ${r.approval_sha256}, true)`;
    });

    const done = await client.callTool({ name: "gatehouse_action_status", arguments: { request_id: waiting.request_id } });
    expect(done.structuredContent).toMatchObject({ status: "executed", delivered: true });
    const delivered = providers.requests.filter((r) => r.path === org.hookPath);
    expect(delivered.length).toBe(before + 1);
    expect(JSON.parse(delivered.at(-1)!.body)).toEqual({ text: "Refund order 1042" });
    // Asking again sends nothing twice.
    const again = await client.callTool({ name: "gatehouse_action_status", arguments: { request_id: waiting.request_id } });
    expect((again.structuredContent as Structured).status).toBe("executed");
    expect(providers.requests.filter((r) => r.path === org.hookPath).length).toBe(before + 1);
    await client.close();
  });

  it("offers no code tool, and refuses a call to one before anything is proposed: code runs only on Gatehouse's worker", async () => {
    const res = await fetch(`${functionsUrl}/connectors/connections`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack().serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify({ org_id: org.org, provider: "sandbox", display_name: "Code sandbox", config: { backend: "bubblewrap" } }),
    });
    expect(res.status).toBe(201);
    const { connection } = await res.json() as { connection: { id: string } };
    await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
              values (${org.org}, ${org.project}, ${org.agent}, 'code.run', 'sandbox', ${connection.id})`;
    try {
      const client = await connect(await runToken());
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["notify", "gatehouse_action_status"]);
      const result = await client.callTool({ name: "code.run", arguments: { runtime: "python", code: "print(1)" } });
      expect(result.isError).toBe(true);
      expect((result.structuredContent as Structured).error).toBe("sandbox_unavailable");
      expect(await sql`select 1 from public.action_requests where run_id = ${run} and tool = 'code.run'`).toHaveLength(0);
      await client.close();
    } finally {
      await sql`delete from public.agent_tools where org_id = ${org.org} and tool = 'code.run'`;
    }
  });

  it("answers an unknown tool as a tool error, not a transport failure", async () => {
    const client = await connect(await runToken());
    const result = await client.callTool({ name: "nope", arguments: {} });
    expect(result.isError).toBe(true);
    expect((result.structuredContent as Structured).error).toBe("tool_not_found");
    await client.close();
  });

  it("takes a personal access token with tools:call in a named run, and refuses one without it", async () => {
    const token = async (scopes: string[]) => await org.asAdmin(async (tx) => {
      const [{ made }] = await tx`select public.create_personal_access_token('mcp', ${scopes}::text[], 7, ${org.project}) as made`;
      return (made as { token: string }).token;
    });
    const caller = await connect(await token(["tools:call"]), run);
    expect((await caller.listTools()).tools.map((t) => t.name)).toContain("notify");
    const pending = await caller.callTool({ name: "notify", arguments: { text: "From a token" } });
    const requestId = (pending.structuredContent as Structured).request_id as string;
    const [request] = await sql`select requested_via, requested_by from public.action_requests where id = ${requestId}`;
    expect(request).toEqual({ requested_via: "member", requested_by: org.admin });
    await caller.close();

    await expect(connect(await token(["runs:read"]), run)).rejects.toThrow(/403|token_scope/);
    const noRun = await fetch(`${functionsUrl}/mcp`, {
      method: "POST",
      headers: { authorization: `Bearer ${await token(["tools:call"])}`, "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect([noRun.status, (await noRun.json()).error.code]).toEqual([400, "mcp_run_required"]);
    const noAuth = await fetch(`${functionsUrl}/mcp`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect([noAuth.status, (await noAuth.json()).error.code]).toEqual([401, "missing_auth"]);
  });
});
