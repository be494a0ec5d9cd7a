/**
 * /functions/v1/connectors: connections to outside services, and the execution of approved
 * actions through them (functions/_shared/connectors/). Members act in the organization named by
 * X-Org-Id; the service role names it with `org_id` in the body (the execute route takes it from
 * the action). The route table below is the function's OpenAPI document (GET /openapi.json).
 *
 * No answer ever holds a credential, and credentials never appear in logs.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { type Caller, callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { runTokenOf } from "../_shared/http/run_token.ts";
import { disableAgent, disableConnection, saveConnection } from "../_shared/connectors/connections.ts";
import type { OrgContext } from "../_shared/connectors/calls.ts";
import { executeAction } from "../_shared/connectors/execution.ts";
import { completeOAuth, startOAuth } from "../_shared/connectors/oauth.ts";
import { connectorEnvFrom, OAuth2Config, OAuth2Credential, PROVIDERS } from "../_shared/connectors/providers.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const MAX_BODY = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------
const orgField = { org_id: z.uuid().optional().describe("The service role names the organization here; members send X-Org-Id") };
const displayName = z.string().trim().min(1).max(100);
const Id = z.object({ id: z.uuid().describe("The resource's id") });

const SaveBody = z.strictObject({
  ...orgField,
  provider: z.enum(PROVIDERS),
  display_name: displayName,
  credential: z.unknown().optional().describe("{url} for a webhook, {token} for github and notion; none (or {}) for a sandbox"),
  connection_id: z.uuid().optional().describe("Replace this connection's credential"),
  config: z.unknown().optional().describe("A sandbox's settings only: {backend: \"bubblewrap\", limits?: {seconds, memory_mib, processes}}"),
});
const EmptyBody = z.strictObject(orgField);
const OAuthStartBody = OAuth2Config.extend({
  ...orgField,
  display_name: displayName,
  client_secret: OAuth2Credential.shape.client_secret,
});
const OAuthCallbackBody = z.strictObject({
  ...orgField,
  state: z.string().min(16).max(128),
  code: z.string().min(1).max(2048),
});
const ExecuteBody = z.strictObject({ payload: z.unknown().describe("The payload the runtime is about to send; its canonical hash must be the approved one") });

const Connection = z.object({
  id: z.uuid(),
  org_id: z.uuid(),
  provider: z.enum(PROVIDERS),
  display_name: z.string(),
  scopes: z.array(z.string()),
  status: z.enum(["active", "disabled"]),
  token_expires_at: z.string().nullable(),
  verified_at: z.string(),
});
const Revocation = z.enum(["revoked", "not_supported", "failed"]);
const Disabled = z.object({ connection: Connection, revocation: Revocation });


// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------
const app = functionApp({
  name: "connectors",
  version: "2.0.0",
  description: "Connections to outside services (checked live, credentials in Vault) and the execution of approved actions through them.",
});
app.use(jsonBody(MAX_BODY));

app.openapi(createRoute({
  method: "post", path: "/connections", summary: "Check a webhook or token live, then save it; or connect the code sandbox (tenant admin)",
  request: { headers: OrgHeader, ...jsonRequest(SaveBody) },
  responses: {
    201: { description: "The new connection", content: jsonContent(z.object({ connection: Connection })) },
    200: { description: "The connection whose credential was replaced", content: jsonContent(z.object({ connection: Connection })) },
    ...refusals(400, 401, 402, 403, 404, 413, 415, 422, 429, 502),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  const { org_id, ...input } = c.req.valid("json");
  const connection = await saveConnection(inOrg(c.req.raw, caller, org_id), input);
  return input.connection_id ? c.json({ connection }, 200) : c.json({ connection }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/connections/{id}/disable", summary: "Revoke at the provider, delete from Vault (tenant admin)",
  request: { params: Id, headers: OrgHeader, ...jsonRequest(EmptyBody) },
  responses: { 200: { description: "The disabled connection", content: jsonContent(Disabled) }, ...refusals(400, 401, 403, 404, 413, 415) },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  return c.json(await disableConnection(inOrg(c.req.raw, caller, c.req.valid("json").org_id), c.req.valid("param").id), 200);
});

app.openapi(createRoute({
  method: "post", path: "/oauth2/start", summary: "Start an OAuth2 authorization with PKCE (tenant admin)",
  request: { headers: OrgHeader, ...jsonRequest(OAuthStartBody) },
  responses: {
    201: {
      description: "Where to send the admin, and the state to come back with",
      content: jsonContent(z.object({ authorization_url: z.url(), state: z.string(), scopes: z.array(z.string()), expires_in: z.number().int() })),
    },
    ...refusals(400, 401, 403, 413, 415, 422),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  const { org_id, ...input } = c.req.valid("json");
  return c.json(await startOAuth(inOrg(c.req.raw, caller, org_id), input), 201);
});

app.openapi(createRoute({
  method: "post", path: "/oauth2/callback", summary: "Exchange the code and save the connection (tenant admin)",
  request: { headers: OrgHeader, ...jsonRequest(OAuthCallbackBody) },
  responses: { 201: { description: "The new connection", content: jsonContent(z.object({ connection: Connection })) }, ...refusals(400, 401, 402, 403, 413, 415, 422, 429, 502) },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  const { org_id, ...input } = c.req.valid("json");
  const connection = await completeOAuth(inOrg(c.req.raw, caller, org_id), input);
  return c.json({ connection }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/agents/{id}/disable", summary: "Disable an agent and its tools; revoke the connections nothing enabled uses (project admin)",
  request: { params: Id, headers: OrgHeader, ...jsonRequest(EmptyBody) },
  responses: {
    200: { description: "The agent and the connections released", content: jsonContent(z.object({ agent_id: z.uuid(), connections: z.array(Disabled) })) },
    ...refusals(400, 401, 403, 404, 413, 415),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  return c.json(await disableAgent(inOrg(c.req.raw, caller, c.req.valid("json").org_id), c.req.valid("param").id), 200);
});

app.openapi(createRoute({
  method: "post", path: "/actions/{id}/execute", summary: "Execute an approved action through its tool's connection (the agent runtime: a run token for the action's run, or the service role)",
  request: { params: Id, headers: z.object({ "x-run-token": z.string().optional().describe("A run-scoped token: executes only its run's actions") }), ...jsonRequest(ExecuteBody) },
  responses: {
    200: {
      description: "The delivery's outcome and the provider's sanitized answer",
      content: jsonContent(z.object({ delivered: z.boolean(), outcome: z.string(), http_status: z.number().int().nullable(), result: z.unknown() })),
    },
    ...refusals(400, 401, 402, 403, 404, 409, 413, 415, 429),
  },
}), async (c) => {
  const token = await runTokenOf(c.req.raw);
  if (!token && callerOf(c.req.raw).kind !== "service") throw refuse("runtime_only", "only the agent runtime (a run token, or the service role) executes actions");
  const executed = await executeAction({ sql: db(), env: connectorEnv() }, {
    requestId: c.req.valid("param").id, payload: c.req.valid("json").payload ?? null, runId: token?.runId ?? null,
  });
  if (!executed.ok) throw refuse(executed.reason);
  return c.json(executed.value, 200);
});

Deno.serve(app.fetch);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------
const connectorEnv = configuration(connectorEnvFrom, "connectors_misconfigured");

/** The organization the request acts in: X-Org-Id for a member, org_id in the body for the service role. */
function orgOf(req: Request, caller: Caller, bodyOrgId: string | undefined): string {
  if (caller.kind === "user") {
    if (bodyOrgId !== undefined) throw refuse("invalid_body", "members name the organization with X-Org-Id, not org_id");
    return orgIdOf(req);
  }
  if (!bodyOrgId) throw refuse("missing_org_id");
  return bodyOrgId;
}

/** The context a connector operation of this request runs in. */
function inOrg(req: Request, caller: Caller, bodyOrgId: string | undefined): OrgContext {
  return { sql: db(), caller, orgId: orgOf(req, caller, bodyOrgId), env: connectorEnv() };
}
