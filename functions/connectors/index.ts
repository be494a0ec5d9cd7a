/**
 * /functions/v1/connectors: connections to outside services, and the execution of approved
 * actions through them (functions/_shared/connectors/connections.ts). All routes are POST with a JSON body.
 * Members act in the organization named by X-Org-Id; the service role names it with `org_id` in
 * the body (the execute route takes it from the action).
 *
 *   POST /connections                  tenant admin: check a webhook or token live, then save it
 *        {provider, display_name, credential: {url} | {token}, connection_id?}
 *   POST /connections/{id}/disable     tenant admin: revoke at the provider, delete from Vault
 *   POST /oauth2/start                 tenant admin: {display_name, authorize_url, token_url, revoke_url?,
 *                                      api_url, client_id, client_secret, redirect_uri} → {authorization_url, state, scopes}
 *   POST /oauth2/callback              tenant admin: {state, code} → the saved connection
 *   POST /agents/{id}/disable          project admin: disable the agent and its tools, and revoke
 *                                      the connections nothing enabled uses any more
 *   POST /actions/{id}/execute         service role (agent runtime): {payload} → the sanitized result
 *
 * No answer ever holds a credential, and credentials never appear in logs.
 */
import { z } from "zod";
import { type Caller, callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { completeOAuth, disableAgent, disableConnection, executeAction, saveConnection, startOAuth } from "../_shared/connectors/connections.ts";
import { db } from "../_shared/http/db.ts";
import { HttpError, readJsonBody, requireMethod, withErrors } from "../_shared/http/errors.ts";
import { connectorEnvFrom, type ConnectorEnv, OAuth2Config, OAuth2Credential } from "../_shared/connectors/providers.ts";

const MAX_BODY = 64 * 1024;
const uuid = z.uuid();
const orgField = { org_id: z.uuid().optional() };
const displayName = z.string().trim().min(1).max(100);

const SaveBody = z.strictObject({
  ...orgField,
  provider: z.enum(["slack_webhook", "discord_webhook", "https_webhook", "github", "notion", "oauth2"]),
  display_name: displayName,
  credential: z.unknown(),
  connection_id: z.uuid().optional(),
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
const ExecuteBody = z.strictObject({ payload: z.unknown() });

let env: ConnectorEnv | null = null;
function connectorEnv(): ConnectorEnv {
  if (env) return env;
  try {
    env = connectorEnvFrom((name) => Deno.env.get(name));
  } catch {
    throw new HttpError(503, "connectors_misconfigured", "the connectors function's configuration is not valid");
  }
  return env;
}

/** The organization the request acts in: X-Org-Id for a member, org_id in the body for the service role. */
function orgOf(req: Request, caller: Caller, body: { org_id?: string }): string {
  if (caller.kind === "user") {
    if (body.org_id !== undefined) throw new HttpError(400, "invalid_body", "members name the organization with X-Org-Id, not org_id");
    return orgIdOf(req);
  }
  if (!body.org_id) throw new HttpError(400, "missing_org_id", "the service role names the organization with org_id");
  return body.org_id;
}

function idOf(raw: string): string {
  const parsed = uuid.safeParse(raw.toLowerCase());
  if (!parsed.success) throw new HttpError(404, "not_found", "no such resource");
  return parsed.data;
}

Deno.serve(withErrors(async (req) => {
  requireMethod(req, "POST");
  const caller = callerOf(req);
  const path = new URL(req.url).pathname.replace(/^\/connectors/, "").replace(/\/$/, "");
  const sql = db();
  let m: RegExpMatchArray | null;

  if (path === "/connections") {
    const body = await readJsonBody(req, SaveBody, MAX_BODY);
    const { org_id: _, ...input } = body;
    const connection = await saveConnection(sql, caller, orgOf(req, caller, body), input, connectorEnv());
    return Response.json({ connection }, { status: input.connection_id ? 200 : 201 });
  }
  if ((m = path.match(/^\/connections\/([^/]+)\/disable$/))) {
    const body = await readJsonBody(req, EmptyBody, MAX_BODY);
    return Response.json(await disableConnection(sql, caller, orgOf(req, caller, body), idOf(m[1]), connectorEnv()));
  }
  if (path === "/oauth2/start") {
    const body = await readJsonBody(req, OAuthStartBody, MAX_BODY);
    const { org_id: _, ...input } = body;
    return Response.json(await startOAuth(sql, caller, orgOf(req, caller, body), input, connectorEnv()), { status: 201 });
  }
  if (path === "/oauth2/callback") {
    const body = await readJsonBody(req, OAuthCallbackBody, MAX_BODY);
    const connection = await completeOAuth(sql, caller, orgOf(req, caller, body), body, connectorEnv());
    return Response.json({ connection }, { status: 201 });
  }
  if ((m = path.match(/^\/agents\/([^/]+)\/disable$/))) {
    const body = await readJsonBody(req, EmptyBody, MAX_BODY);
    return Response.json(await disableAgent(sql, caller, orgOf(req, caller, body), idOf(m[1]), connectorEnv()));
  }
  if ((m = path.match(/^\/actions\/([^/]+)\/execute$/))) {
    if (caller.kind !== "service") throw new HttpError(403, "runtime_only", "only the agent runtime (service role) executes actions");
    const body = await readJsonBody(req, ExecuteBody, MAX_BODY);
    const answer = await executeAction(sql, idOf(m[1]), body.payload ?? null, connectorEnv());
    if (answer.ok) return Response.json(answer);
    const status = answer.reason === "rate_limited" || answer.reason === "budget_exhausted" ? 429 : 409;
    return Response.json({ error: { code: answer.reason, message: refusalMessage(answer.reason) } }, { status });
  }
  throw new HttpError(404, "not_found", "no such route; see functions/connectors/index.ts");
}));

function refusalMessage(reason: string): string {
  switch (reason) {
    case "rate_limited": return "this workspace has reached its connector calls per minute; the approval is kept, retry in a minute";
    case "budget_exhausted": return "this workspace has used its monthly connector budget; the approval is kept";
    case "agent_disabled": return "the agent is disabled";
    case "tool_not_enabled": return "the agent has no enabled tool of that name bound to a connection";
    case "connection_inactive": return "the tool's connection is disabled";
    case "already_executed": return "this approval has been used";
    case "not_approved": return "the action is not approved";
    case "expired": return "the action's approval window has passed";
    case "payload_mismatch": return "the payload is not the one that was approved";
    default: return reason;
  }
}
