/**
 * /functions/v1/mcp: Gatehouse's tool path for agents that run elsewhere, over the Model Context
 * Protocol's Streamable HTTP transport (the official @modelcontextprotocol/sdk; docs/mcp.md).
 *
 * A connection acts for one run, which names the agent whose tools it sees:
 *   - `Authorization: Bearer ghr_…`, a run token (mint_run_token): the runtime of exactly its run;
 *   - `Authorization: Bearer gtp_…`, a personal access token with tools:call, and `?run=<id>`: a run
 *     of a project its owner contributes to, acting as that person (who then can't approve it).
 *
 *   tools/list   the run's agent's enabled tools, each taking its action's payload as one JSON
 *                object, and gatehouse_action_status
 *   tools/call   the same path as a worker's tool call: a proposal pinned to its payload and
 *                destination (public.propose_action), the organization's policy, approval where
 *                it asks for one, then execution through the tool's connection with metering
 *                and audit. A call that waits for a person answers at once with the pending
 *                request (its id and console link); gatehouse_action_status checks it later and,
 *                once approved, executes it. No connection is held open waiting.
 *
 * Stateless, JSON answers (no SSE stream, no session): each POST stands alone. verify_jwt is off:
 * neither token is a JWT; each is checked here before anything else.
 *
 * Configuration: GATEHOUSE_CONSOLE_URL, the console's origin for the pending request's link
 * (default: SUPABASE_URL, where the local gateway serves the console).
 */
import { createRoute, z } from "@hono/zod-openapi";
// The SDK's exports map sends `x.js` to the types at `x.js.d.ts`, which Deno does not find: each
// import names its types by the extensionless subpath, which the map sends to `x.d.ts`.
// @ts-types="@modelcontextprotocol/sdk/server/index"
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
// @ts-types="@modelcontextprotocol/sdk/server/webStandardStreamableHttp"
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
// @ts-types="@modelcontextprotocol/sdk/types"
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { executeAction } from "../_shared/connectors/execution.ts";
import { connectorEnvFrom } from "../_shared/connectors/providers.ts";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import type { UserCaller } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { asMember, asService, db, serviceDb, type Tx } from "../_shared/http/db.ts";
import { databaseRefusal, HttpError, refuse } from "../_shared/http/errors.ts";
import { refusals } from "../_shared/http/schemas.ts";
import { exchangeToken, grantClaims } from "../_shared/pat/exchange.ts";
import { patFormatValid } from "../_shared/pat/token.ts";

const connectorEnv = configuration(connectorEnvFrom, "connectors_misconfigured");

/** The tool that checks a pending request. */
export const STATUS_TOOL = "gatehouse_action_status";

/** Who a connection acts as, for which run. */
type Actor =
  | { kind: "run_token"; runId: string; orgId: string; projectId: string; agentId: string }
  | { kind: "member"; runId: string; orgId: string; projectId: string; agentId: string; caller: UserCaller };

interface Proposed {
  id: string;
  status: "pending" | "approved" | "denied" | "rejected" | "executed" | "expired" | "withdrawn";
  approvals_required: number;
  expires_at: string;
}

const app = functionApp({
  name: "mcp",
  version: "1.0.0",
  description: "The Model Context Protocol over Streamable HTTP: a run's tools through Gatehouse's proposal, policy, approval, execution, metering and audit.",
});
app.use(jsonBody(256 * 1024));

app.openapi(createRoute({
  method: "post", path: "/",
  summary: "An MCP JSON-RPC message (initialize, tools/list, tools/call): a run token, or a personal access token with tools:call and ?run=",
  request: { query: z.object({ run: z.uuid().optional().describe("The run a personal access token acts in (a run token names its own)") }) },
  security: [{ bearer: [] }],
  responses: {
    200: { description: "The JSON-RPC answer (application/json)" },
    202: { description: "A notification, accepted" },
    ...refusals(400, 401, 403, 404, 406, 413, 415),
  },
}), async (c) => {
  const actor = await actorOf(c.req.raw, c.req.valid("query").run);
  const server = mcpServer(actor);
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  await server.connect(transport);
  try {
    return await transport.handleRequest(c.req.raw, { parsedBody: await c.req.json() });
  } finally {
    await server.close().catch(() => {});
  }
});

/** Who the request acts as: a run token's runtime, or a token's owner in the named run; 401/403/404 otherwise. */
async function actorOf(req: Request, namedRun: string | undefined): Promise<Actor> {
  const bearer = req.headers.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1] ?? req.headers.get("x-run-token");
  if (!bearer) throw refuse("missing_auth", "send Authorization: Bearer <run token, or personal access token with tools:call>");
  if (bearer.startsWith("ghr_")) {
    const [row] = await serviceDb()`select run_id, org_id, project_id, agent_id from private.run_token_scope(${bearer})`;
    if (!row) throw refuse("run_token_invalid");
    if (namedRun && namedRun !== row.run_id) throw refuse("run_token_scope");
    return { kind: "run_token", runId: row.run_id, orgId: row.org_id, projectId: row.project_id, agentId: row.agent_id };
  }
  if (!patFormatValid(bearer)) throw refuse("token_invalid", "send a run token (ghr_…) or a personal access token (gtp_…) whose checksum holds");
  const grant = await exchangeToken(bearer);
  if (!grant.scopes.includes("tools:call")) throw refuse("token_scope", "this needs a token with the tools:call scope");
  if (!namedRun) throw refuse("mcp_run_required");
  const caller: UserCaller = { kind: "user", userId: grant.userId, claims: grantClaims(grant), token: { id: grant.id, orgId: grant.orgId, projectId: grant.projectId, scopes: grant.scopes } };
  // The run, if its owner may act in it: a contributor of its project, within the token's binding.
  const [run] = await db().begin(async (tx) => {
    await asService(tx);
    const [r] = await tx`select id, org_id, project_id, agent_id from public.agent_runs where id = ${namedRun} and org_id = ${grant.orgId}`;
    if (!r) return [];
    await asMember(tx, caller, grant.orgId);
    const [{ ok }] = await tx`select ${r.project_id}::uuid = any (private.project_ids_with_role('project_contributor')) as ok`;
    return ok ? [r] : [];
  });
  if (!run) throw refuse("run_not_found", "no run with that id that this token may act in");
  return { kind: "member", runId: run.id, orgId: run.org_id, projectId: run.project_id, agentId: run.agent_id, caller };
}

/** Runs `work` as the actor: the runtime (service role) for a run token, the token's owner under RLS otherwise. */
async function asActor<T>(actor: Actor, work: (tx: Tx) => Promise<T>): Promise<T> {
  return await db().begin(async (tx) => {
    if (actor.kind === "run_token") await asService(tx);
    else await asMember(tx, actor.caller, actor.orgId);
    return await work(tx);
  }) as T;
}

/** An MCP server for one request, acting as `actor`. */
function mcpServer(actor: Actor): Server {
  const server = new Server({ name: "gatehouse", version: "1.0.0" }, { capabilities: { tools: {} } });

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    // Code tools run on Gatehouse's run worker only (edge functions start no processes), so they are not offered here.
    const tools = await serviceDb()`select t.tool, t.provider from public.agent_tools t
                                      where t.org_id = ${actor.orgId} and t.agent_id = ${actor.agentId} and t.enabled
                                        and t.provider <> 'sandbox' order by t.tool`;
    return {
      tools: [
        ...tools.map((t) => ({
          name: t.tool as string,
          description: `${t.tool}: sends its arguments as the JSON payload of a ${t.provider} action. The organization's policy may ask a person ` +
            `to approve it first: then the answer names the pending request, and ${STATUS_TOOL} tells when it has been decided.`,
          inputSchema: { type: "object" as const, additionalProperties: true },
        })),
        {
          name: STATUS_TOOL,
          description: "Checks a request that waited for approval; once it is approved, executes it and answers its outcome.",
          inputSchema: { type: "object" as const, properties: { request_id: { type: "string", format: "uuid" } }, required: ["request_id"] },
        },
      ],
    };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request): Promise<CallToolResult> => {
    const { name, arguments: args = {} } = request.params;
    try {
      if (name === STATUS_TOOL) return await actionStatus(actor, String((args as { request_id?: unknown }).request_id ?? ""));
      if (await isCodeTool(actor, name)) {
        // Refused before it is proposed: nobody is asked to approve code that nothing here could run.
        return failed("sandbox_unavailable", "code tools run only in runs on Gatehouse's own worker (docs/sandbox.md); an agent that runs elsewhere runs its code itself");
      }
      const proposed = await asActor(actor, async (tx) => {
        const [row] = await tx`select (r).id, (r).status, (r).approvals_required, (r).expires_at
                                 from (select public.propose_action(${actor.runId}, ${name}, ${tx.json(args as never)}) as r) p`;
        return row as Proposed;
      });
      return await settle(actor, proposed, args);
    } catch (e) {
      const refusal = e instanceof HttpError ? e : databaseRefusal(e);
      if (!refusal) throw e;
      return failed(refusal.code, refusal.message);
    }
  });
  return server;
}

/** Whether the run's agent's tool `name` is bound to a code sandbox. */
async function isCodeTool(actor: Actor, name: string): Promise<boolean> {
  const [row] = await serviceDb()`select 1 from public.agent_tools t
                                   where t.org_id = ${actor.orgId} and t.agent_id = ${actor.agentId} and t.tool = ${name} and t.provider = 'sandbox'`;
  return row !== undefined;
}

/** A proposal's answer: executed when approved, the pending request when it waits, why not otherwise. */
async function settle(actor: Actor, proposed: Proposed, payload: unknown): Promise<CallToolResult> {
  switch (proposed.status) {
    case "approved": {
      const executed = await executeAction({ sql: db(), env: connectorEnv() }, { requestId: proposed.id, payload, runId: actor.runId });
      if (!executed.ok) return failed(executed.reason, "the action was not executed");
      return answer({ status: "executed", request_id: proposed.id, ...executed.value }, !executed.value.delivered);
    }
    case "pending":
      return answer({
        status: "approval_pending",
        request_id: proposed.id,
        approvals_required: proposed.approvals_required,
        expires_at: proposed.expires_at,
        console_url: `${consoleOrigin()}/o/${actor.orgId}/approvals/${proposed.id}`,
        next: `A person must approve this action. Call ${STATUS_TOOL} with this request_id later: once approved, it executes then.`,
      }, false);
    case "denied":
      return failed("denied_by_policy", "the organization's policy denies this action; it was not sent");
    case "rejected":
      return failed("rejected", "a person rejected this action; it was not sent");
    case "expired":
      return failed("approval_expired", "nobody decided in time; it was not sent");
    case "withdrawn":
      return failed("approval_target_changed", "the tool's connection changed after it was proposed; it was not sent");
    case "executed":
      return answer({ status: "executed", request_id: proposed.id, message: "executed before; it is not sent again" }, false);
  }
}

/** gatehouse_action_status: the request of this run, and its execution once approved. */
async function actionStatus(actor: Actor, requestId: string): Promise<CallToolResult> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(requestId)) return failed("invalid_request_id", "request_id is a uuid");
  const [row] = await serviceDb()`select id, status, approvals_required, expires_at, canonical_payload from public.action_requests
                                   where id = ${requestId} and org_id = ${actor.orgId} and run_id = ${actor.runId}`;
  if (!row) return failed("action_request_not_found", "no request of this run has that id");
  // Approved and not yet executed: the pinned payload (what was approved) goes out now.
  return await settle(actor, { ...(row as Proposed), expires_at: String(row.expires_at) }, JSON.parse(row.canonical_payload as string));
}

function answer(value: Record<string, unknown>, isError: boolean): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: value, isError };
}

function failed(code: string, message: string): CallToolResult {
  return answer({ error: code, message }, true);
}

/** The console's origin (GATEHOUSE_CONSOLE_URL, default SUPABASE_URL), as billing and invitations read it. */
const consoleOrigin = configuration((get) => new URL(z.url().parse(get("GATEHOUSE_CONSOLE_URL") ?? get("SUPABASE_URL"))).origin, "mcp_misconfigured");

Deno.serve(app.fetch);
