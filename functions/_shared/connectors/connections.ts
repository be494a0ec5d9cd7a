/**
 * The connector layer: saving a connection after a live check, OAuth2 authorization, revocation
 * when a connection or an agent is disabled, and executing approved actions through a
 * connection. Provider wire formats are in providers.ts; every request goes through the egress
 * guard.
 *
 * Every provider call (check, delivery, refresh, revocation) is first counted against the
 * workspace's rate limit and monthly budget by private.meter_connector_call (one statement;
 * revocations are never held back), and is then an audit entry `connector.call`: connection,
 * provider, kind, agent, run, action, outcome, HTTP status and latency. The entry never holds the
 * credential or a body. Credentials are read from Vault over the function's direct connection
 * (private.connection_credential) and never leave this module but towards their provider.
 */
import { createHash, randomBytes } from "node:crypto";
import type postgres from "postgres";
import { type Admission, type ApprovedAction, executeApprovedAction } from "../approvals/gate.ts";
import type { Caller } from "../http/caller.ts";
import { requireOrgRole } from "../http/caller.ts";
import { checkUrl } from "../egress/guard.ts";
import { HttpError } from "../http/errors.ts";
import {
  authorizationUrl,
  type CallResult,
  type ConnectorEnv,
  deliver,
  exchangeCode,
  OAuth2Config,
  OAuth2Credential,
  parseCredential,
  type Provider,
  refreshTokens,
  revokeTokens,
  verifyCredential,
} from "./providers.ts";
import { sanitizeToolResult } from "./sanitize.ts";

type Sql = postgres.Sql | postgres.TransactionSql;

/** A connection as clients see it (no credential, no Vault reference). */
export interface ConnectionView {
  id: string;
  org_id: string;
  provider: Provider;
  display_name: string;
  scopes: string[];
  status: string;
  token_expires_at: string | null;
  verified_at: string;
}

/** Refreshed this long before the access token expires. */
export const REFRESH_MARGIN_MS = 60_000;

interface CallAudit {
  orgId: string;
  connectionId: string | null;
  /** Null when the action names no tool bound to a connection. */
  provider: Provider | null;
  kind: "verify" | "deliver" | "refresh" | "revoke";
  outcome: string;
  status?: number | null;
  latencyMs?: number;
  agentId?: string;
  runId?: string;
  tool?: string;
  actionRequestId?: string;
}

/** Acts as `caller` for the audit chain (auth.uid() is the person) within transaction `tx`. */
async function actAs(tx: postgres.TransactionSql, caller: Caller): Promise<void> {
  await tx`select set_config('request.jwt.claims', ${caller.kind === "user" ? JSON.stringify(caller.claims) : '{"role":"service_role"}'}, true)`;
}

/** Records one provider call in the organization's audit chain, inside `tx`. */
async function auditCallIn(tx: postgres.TransactionSql, caller: Caller, a: CallAudit): Promise<void> {
  await actAs(tx, caller);
  const payload = {
    kind: a.kind,
    provider: a.provider,
    outcome: a.outcome,
    http_status: a.status ?? null,
    latency_ms: a.latencyMs ?? null,
    agent_id: a.agentId ?? null,
    run_id: a.runId ?? null,
    tool: a.tool ?? null,
    action_request_id: a.actionRequestId ?? null,
  };
  await tx`insert into audit.records (org_id, action, target_type, target_id, payload)
           values (${a.orgId}, 'connector.call', 'connection', ${a.connectionId}, ${tx.json(payload)})`;
}

/** Records one provider call in the organization's audit chain. */
function auditCall(sql: postgres.Sql, caller: Caller, a: CallAudit): Promise<void> {
  return sql.begin((tx) => auditCallIn(tx, caller, a));
}

/** Counts a call against the workspace's limits; a refusal is audited and thrown as a 429. */
async function meter(sql: postgres.Sql, caller: Caller, audit: Omit<CallAudit, "outcome">, cost = 1): Promise<void> {
  const [{ refusal }] = await sql`select private.meter_connector_call(${audit.orgId}, ${cost}) as refusal`;
  if (refusal === null) return;
  await auditCall(sql, caller, { ...audit, outcome: refusal });
  throw limitError(refusal);
}

function limitError(refusal: string): HttpError {
  return refusal === "budget_exhausted"
    ? new HttpError(429, "connector_budget_exhausted", "this workspace has used its monthly connector budget")
    : new HttpError(429, "connector_rate_limited", "this workspace has reached its connector calls per minute; retry in a minute");
}

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await f();
  return [value, Math.round(performance.now() - started)];
}

/** The error for a failed live check, naming the outcome but never the credential. */
function verificationError(result: CallResult): HttpError {
  if (result.outcome.startsWith("egress_")) {
    return new HttpError(422, result.outcome, "the egress guard refused or could not complete the call to this URL");
  }
  if (result.outcome === "unauthorized") {
    return new HttpError(422, "connector_credential_rejected", `the provider refused the credential (HTTP ${result.status})`);
  }
  if (result.outcome === "rejected") {
    return new HttpError(422, "connector_verification_rejected", `the provider rejected the check (HTTP ${result.status})`);
  }
  return new HttpError(502, "connector_provider_error", `the provider failed the check (HTTP ${result.status ?? "none"})`);
}

async function scopesNeeded(sql: Sql, orgId: string, provider: Provider): Promise<string[]> {
  const [{ scopes }] = await sql`select private.scopes_needed(${orgId}, ${provider}::public.connector_provider) as scopes`;
  return scopes as string[];
}

type SavedCredential = { orgId: string; provider: Provider; displayName: string; scopes: string[]; credential: object; expiresAt: Date | null; connectionId: string | null; config: object };

/** Stores a checked credential through save_connection, inside `tx`, as the service role acting for `caller`. */
async function saveCredentialIn(tx: postgres.TransactionSql, caller: Caller, c: SavedCredential): Promise<ConnectionView> {
  await actAs(tx, caller);
  await tx`set local role service_role`;
  const [row] = await tx`
    select id, org_id, provider, display_name, scopes, status, token_expires_at, verified_at
      from public.save_connection(${c.orgId}, ${c.provider}::public.connector_provider, ${c.displayName}, ${c.scopes}::text[],
                                  ${JSON.stringify(c.credential)}, ${c.expiresAt}, ${c.connectionId}, ${JSON.stringify(c.config)}::text::jsonb)`;
  await tx`reset role`;
  return row as ConnectionView;
}

function saveCredential(sql: postgres.Sql, caller: Caller, c: SavedCredential): Promise<ConnectionView> {
  return sql.begin((tx) => saveCredentialIn(tx, caller, c));
}

// ---------------------------------------------------------------------------------------------
// Saving a webhook or token connection
// ---------------------------------------------------------------------------------------------
export interface SaveInput {
  provider: Provider;
  display_name: string;
  credential: unknown;
  connection_id?: string;
}

/**
 * Checks the credential with a live call to its provider, then stores it through
 * save_connection, asking for the scopes the workspace's enabled tools of that provider need.
 * A GitHub token that reports its scopes must hold exactly those (least privilege).
 */
export async function saveConnection(sql: postgres.Sql, caller: Caller, orgId: string, input: SaveInput, env: ConnectorEnv): Promise<ConnectionView> {
  const provider = input.provider;
  if (provider === "oauth2") {
    throw new HttpError(400, "use_oauth2_flow", "OAuth2 connections are made with /oauth2/start and /oauth2/callback");
  }
  const credential = parseCredential(provider, input.credential, env.urls);
  if (!credential.ok) throw new HttpError(400, "invalid_credential", credential.message);
  const needed = await sql.begin(async (tx) => {
    await requireOrgRole(tx, caller, orgId, "tenant_admin");
    if (input.connection_id) {
      const [row] = await tx`select 1 from public.connections where id = ${input.connection_id} and org_id = ${orgId} and provider = ${provider}::public.connector_provider`;
      if (!row) throw new HttpError(404, "connection_not_found", "no such connection of this provider in this organization");
    }
    return scopesNeeded(tx, orgId, provider);
  });

  const audit = { orgId, connectionId: input.connection_id ?? null, provider, kind: "verify" as const };
  await meter(sql, caller, audit);
  const [result, latencyMs] = await timed(() => verifyCredential(provider, credential.value, env));
  await auditCall(sql, caller, { ...audit, outcome: result.outcome, status: result.status, latencyMs });
  if (result.outcome !== "delivered") throw verificationError(result);

  let scopes = needed;
  if (result.grantedScopes) {
    const missing = needed.filter((s) => !result.grantedScopes!.includes(s));
    const excess = result.grantedScopes.filter((s) => !needed.includes(s));
    if (missing.length > 0) {
      throw new HttpError(422, "connector_missing_scopes", `the token lacks scopes the enabled tools need: ${missing.join(", ")}`);
    }
    if (excess.length > 0) {
      throw new HttpError(422, "connector_excess_scopes", `the token holds scopes no enabled tool needs: ${excess.join(", ")}; issue one with only ${needed.join(", ") || "no scopes"}`);
    }
    scopes = result.grantedScopes;
  }
  return saveCredential(sql, caller, {
    orgId, provider, displayName: input.display_name, scopes, credential: credential.value,
    expiresAt: null, connectionId: input.connection_id ?? null, config: {},
  });
}

// ---------------------------------------------------------------------------------------------
// OAuth2: authorization code with PKCE
// ---------------------------------------------------------------------------------------------
/** What a tenant admin sends to start an OAuth2 authorization: the provider's settings and the client secret. */
export type OAuthStartInput = OAuth2Config & { display_name: string; client_secret: string };

/** The hex SHA-256 of an authorization's state: what the database keys it by. */
const stateKey = (state: string) => createHash("sha256").update(state).digest("hex");

/**
 * Starts an OAuth2 authorization for the scopes the workspace's enabled `oauth2` tools need: checks
 * the endpoints the function will call with the egress guard, keeps the client secret and a PKCE
 * verifier in Vault under the state's hash for 10 minutes, and answers the URL to send the admin to.
 */
export async function startOAuth(sql: postgres.Sql, caller: Caller, orgId: string, input: OAuthStartInput, env: ConnectorEnv) {
  const { display_name, client_secret, ...config } = input;
  // The role first: only a tenant admin may have the function look names up and call out.
  await sql.begin((tx) => requireOrgRole(tx, caller, orgId, "tenant_admin"));
  if (new URL(config.authorize_url).protocol !== "https:" && !env.egress.testOnly?.http) {
    throw new HttpError(400, "invalid_authorize_url", "authorize_url must be https");
  }
  for (const [name, url] of [["token_url", config.token_url], ["revoke_url", config.revoke_url], ["api_url", config.api_url]] as const) {
    if (!url) continue;
    const checked = await checkUrl(url, env.egress);
    if (!checked.ok) throw new HttpError(422, checked.code, `${name} was refused by the egress guard: ${checked.reason}`);
  }
  const state = randomBytes(32).toString("base64url");
  const verifier = randomBytes(32).toString("base64url");
  const scopes = await sql.begin(async (tx) => {
    const scopes = await scopesNeeded(tx, orgId, "oauth2");
    await tx`select private.begin_oauth_authorization(${stateKey(state)}, ${orgId}, ${display_name}, ${JSON.stringify(config)}::text::jsonb,
                                                      ${scopes}::text[], ${JSON.stringify({ client_secret, code_verifier: verifier })},
                                                      ${caller.kind === "user" ? caller.userId : null})`;
    return scopes;
  });
  return {
    authorization_url: authorizationUrl(config, scopes, state, createHash("sha256").update(verifier).digest("base64url")),
    state,
    scopes,
    expires_in: 600,
  };
}

/**
 * Completes an OAuth2 authorization: takes the state once, exchanges the code (the live check),
 * refuses tokens granted more scopes than were asked for (revoking them), and saves the connection.
 */
export async function completeOAuth(sql: postgres.Sql, caller: Caller, orgId: string, input: { state: string; code: string }, env: ConnectorEnv): Promise<ConnectionView> {
  const pending = await sql.begin(async (tx) => {
    await requireOrgRole(tx, caller, orgId, "tenant_admin");
    const [row] = await tx`select * from private.take_oauth_authorization(${stateKey(input.state)}, ${orgId})`;
    return row;
  });
  if (!pending) throw new HttpError(400, "oauth_state_invalid", "no authorization in flight with that state (unknown, used or expired)");
  const config = OAuth2Config.parse(pending.config);
  const secrets = JSON.parse(pending.secret as string) as { client_secret: string; code_verifier: string };
  const requested = pending.scopes as string[];

  const audit = { orgId, connectionId: null, provider: "oauth2" as const, kind: "verify" as const };
  await meter(sql, caller, audit);
  const [exchanged, latencyMs] = await timed(() => exchangeCode(config, secrets.client_secret, input.code, secrets.code_verifier, env));
  await auditCall(sql, caller, { ...audit, outcome: exchanged.ok ? "delivered" : exchanged.result.outcome, status: exchanged.result.status, latencyMs });
  if (!exchanged.ok) throw verificationError(exchanged.result);
  const { tokens } = exchanged;
  const credential: OAuth2Credential = {
    access_token: tokens.access_token,
    ...(tokens.refresh_token ? { refresh_token: tokens.refresh_token } : {}),
    client_secret: secrets.client_secret,
  };
  const excess = (tokens.scopes ?? []).filter((s) => !requested.includes(s));
  if (excess.length > 0) {
    await revokeAndAudit(sql, caller, { id: null, orgId, provider: "oauth2", config, credential: JSON.stringify(credential) }, env);
    throw new HttpError(422, "connector_excess_scopes", `the provider granted scopes that were not asked for: ${excess.join(", ")}; the tokens were revoked`);
  }
  return saveCredential(sql, caller, {
    orgId, provider: "oauth2", displayName: pending.display_name, scopes: tokens.scopes ?? requested, credential,
    expiresAt: tokens.expiresAt, connectionId: null, config,
  });
}

// ---------------------------------------------------------------------------------------------
// Disabling: revoke at the provider, then delete from Vault
// ---------------------------------------------------------------------------------------------
interface StoredConnection {
  id: string | null;
  orgId: string;
  provider: Provider;
  config: unknown;
  credential: string;
}

/** Revokes an OAuth2 connection's tokens where the provider can; what happened, for the answer. */
async function revokeAndAudit(sql: postgres.Sql, caller: Caller, c: StoredConnection, env: ConnectorEnv): Promise<"revoked" | "not_supported" | "failed"> {
  if (c.provider !== "oauth2") return "not_supported";
  const config = OAuth2Config.safeParse(c.config);
  const credential = OAuth2Credential.safeParse(JSON.parse(c.credential));
  if (!config.success || !credential.success || !config.data.revoke_url) return "not_supported";
  // Revocation is never held back by a limit; it is still counted.
  await sql`select private.meter_connector_call(${c.orgId}, 0)`;
  const [result, latencyMs] = await timed(() => revokeTokens(config.data, credential.data, env));
  const outcome = result?.outcome ?? "not_supported";
  await auditCall(sql, caller, { orgId: c.orgId, connectionId: c.id, provider: c.provider, kind: "revoke", outcome, status: result?.status ?? null, latencyMs });
  return outcome === "delivered" ? "revoked" : "failed";
}

async function storedConnection(sql: Sql, connectionId: string): Promise<StoredConnection | null> {
  const [row] = await sql`select id, org_id, provider, config, credential from private.connection_credential(${connectionId})`;
  return row ? { id: row.id, orgId: row.org_id, provider: row.provider, config: row.config, credential: row.credential } : null;
}

/**
 * Revokes (where the provider can) and disables connection `connectionId` of `orgId`, as
 * `caller` (whose right to do so the caller of this function has checked).
 */
async function revokeAndDisable(sql: postgres.Sql, caller: Caller, orgId: string, connectionId: string, env: ConnectorEnv) {
  const [owner] = await sql`select org_id from public.connections where id = ${connectionId}`;
  if (!owner || owner.org_id !== orgId) throw new HttpError(404, "connection_not_found", "no such connection in this organization");
  const stored = await storedConnection(sql, connectionId);
  const revocation = stored ? await revokeAndAudit(sql, caller, stored, env) : "not_supported";
  const connection = await sql.begin(async (tx) => {
    await actAs(tx, caller);
    await tx`set local role service_role`;
    const [row] = await tx`
      select id, org_id, provider, display_name, scopes, status, token_expires_at, verified_at
        from public.disable_connection(${connectionId})`;
    return row as ConnectionView;
  });
  return { connection, revocation };
}

/** Disables a connection of `orgId` (tenant admin): revokes its tokens at the provider, then deletes them from Vault. */
export async function disableConnection(sql: postgres.Sql, caller: Caller, orgId: string, connectionId: string, env: ConnectorEnv) {
  await sql.begin((tx) => requireOrgRole(tx, caller, orgId, "tenant_admin"));
  return revokeAndDisable(sql, caller, orgId, connectionId, env);
}

/**
 * Disables an agent (project admin of its project): its tools are disabled, and each connection
 * nothing enabled uses any more is revoked at the provider and disabled.
 */
export async function disableAgent(sql: postgres.Sql, caller: Caller, orgId: string, agentId: string, env: ConnectorEnv) {
  const released = await sql.begin(async (tx) => {
    if (caller.kind === "user") {
      // A member in the organization's context; disable_agent checks the project admin role.
      await requireOrgRole(tx, caller, orgId, "project_viewer");
      await tx`set local role authenticated`;
    } else {
      await tx`set local role service_role`;
    }
    const [agent] = await tx`select org_id from public.agents where id = ${agentId}`;
    if (!agent || agent.org_id !== orgId) throw new HttpError(404, "agent_not_found", "no such agent in this organization");
    const rows = await tx`select id from public.disable_agent(${agentId}) as id`;
    return rows.map((r) => r.id as string);
  });
  const connections = [];
  for (const id of released) connections.push(await revokeAndDisable(sql, caller, orgId, id, env));
  return { agent_id: agentId, connections };
}

// ---------------------------------------------------------------------------------------------
// Executing approved actions
// ---------------------------------------------------------------------------------------------
interface Binding {
  orgId: string;
  agentId: string;
  runId: string;
  connectionId: string;
  provider: Provider;
}

/**
 * The connection's credential for a delivery. An OAuth2 access token that expires within
 * REFRESH_MARGIN_MS is refreshed first, under a per-connection lock: the provider rotates refresh
 * tokens, so two deliveries refreshing at once would make the second one fail. Whoever waits on
 * the lock re-reads the credential and uses the token the first one stored.
 */
async function freshCredential(sql: postgres.Sql, caller: Caller, binding: Binding, env: ConnectorEnv):
  Promise<{ credential: Record<string, string>; config: Record<string, unknown> } | { failed: string }> {
  const read = async (q: postgres.Sql | postgres.TransactionSql) => {
    const [row] = await q`
      select display_name, scopes, config, token_expires_at, credential from private.connection_credential(${binding.connectionId})`;
    return row;
  };
  const due = (expiresAt: Date | null) => expiresAt !== null && expiresAt.getTime() - Date.now() <= REFRESH_MARGIN_MS;

  const row = await read(sql);
  if (!row) return { failed: "connection_inactive" };
  if (binding.provider !== "oauth2" || !due(row.token_expires_at)) {
    return { credential: JSON.parse(row.credential as string), config: row.config };
  }
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtextextended(${"connection-refresh:" + binding.connectionId}, 0))`;
    const locked = await read(tx);
    if (!locked) return { failed: "connection_inactive" };
    const config = locked.config as Record<string, unknown>;
    const current = OAuth2Credential.parse(JSON.parse(locked.credential as string));
    if (!due(locked.token_expires_at)) return { credential: current as Record<string, string>, config };
    if (!current.refresh_token) return { failed: "token_expired" };

    const [refreshed, latencyMs] = await timed(() => refreshTokens(OAuth2Config.parse(config), current, env));
    // In this transaction: waiters on the lock hold pooled connections, so the holder takes none.
    await auditCallIn(tx, caller, {
      orgId: binding.orgId, connectionId: binding.connectionId, provider: "oauth2", kind: "refresh",
      outcome: refreshed.ok ? "delivered" : refreshed.result.outcome, status: refreshed.result.status, latencyMs,
    });
    if (!refreshed.ok) return { failed: "refresh_failed" };
    const next: OAuth2Credential = {
      access_token: refreshed.tokens.access_token,
      refresh_token: refreshed.tokens.refresh_token ?? current.refresh_token,
      client_secret: current.client_secret,
    };
    await saveCredentialIn(tx, caller, {
      orgId: binding.orgId, provider: "oauth2", displayName: locked.display_name, scopes: locked.scopes, credential: next,
      expiresAt: refreshed.tokens.expiresAt, connectionId: binding.connectionId, config,
    });
    return { credential: next as Record<string, string>, config };
  });
}

/** What executing an approved action answered. */
export type ExecuteAnswer =
  | { ok: true; delivered: boolean; outcome: string; http_status: number | null; result: unknown }
  | { ok: false; reason: string };

/**
 * Executes approved action `requestId` through the connection its agent's tool is bound to (the
 * service role, for the agent runtime). Inside the gate's transaction the tool's binding is
 * resolved and the call metered; a refusal there leaves the approval unused. The result handed
 * back for the model passes through the sanitizer with the connection's own credentials.
 */
export async function executeAction(sql: postgres.Sql, requestId: string, payload: unknown, env: ConnectorEnv): Promise<ExecuteAnswer> {
  const caller: Caller = { kind: "service" };
  let binding = null as Binding | null;
  let refusedAudit = null as CallAudit | null;
  const admit: Admission = async (tx, action) => {
    const [row] = await tx`
      select r.org_id, r.agent_id, r.run_id, t.connection_id, t.provider, t.cost_units, t.enabled, a.disabled_at, c.status
        from public.action_requests r
        join public.agents a on a.org_id = r.org_id and a.id = r.agent_id
        left join public.agent_tools t on t.org_id = r.org_id and t.agent_id = r.agent_id and t.tool = r.tool
        left join public.connections c on c.org_id = t.org_id and c.id = t.connection_id
       where r.id = ${action.requestId}`;
    const base = { orgId: row.org_id, connectionId: row.connection_id, provider: row.provider, kind: "deliver" as const,
                   agentId: row.agent_id, runId: row.run_id, tool: action.tool, actionRequestId: action.requestId };
    let refusal: string | null = null;
    if (row.disabled_at !== null) refusal = "agent_disabled";
    else if (row.connection_id === null || !row.enabled) refusal = "tool_not_enabled";
    else if (row.status !== "active") refusal = "connection_inactive";
    else {
      const [{ refusal: limit }] = await tx`select private.meter_connector_call(${row.org_id}, ${row.cost_units}) as refusal`;
      refusal = limit;
    }
    if (refusal !== null) {
      refusedAudit = { ...base, outcome: refusal };
      return refusal;
    }
    binding = { orgId: row.org_id, agentId: row.agent_id, runId: row.run_id, connectionId: row.connection_id, provider: row.provider };
    return null;
  };

  let answer = null as ExecuteAnswer | null;
  const executor = async (action: ApprovedAction) => {
    const b = binding!;
    const audit = { orgId: b.orgId, connectionId: b.connectionId, provider: b.provider, kind: "deliver" as const, agentId: b.agentId,
                    runId: b.runId, tool: action.tool, actionRequestId: action.requestId };
    const fresh = await freshCredential(sql, caller, b, env);
    if ("failed" in fresh) {
      await auditCall(sql, caller, { ...audit, outcome: fresh.failed });
      answer = { ok: true, delivered: false, outcome: fresh.failed, http_status: null, result: null };
      return { delivered: false, detail: fresh.failed };
    }
    const [result, latencyMs] = await timed(() => deliver(b.provider, fresh.credential, fresh.config, action.canonicalPayload, env));
    await auditCall(sql, caller, { ...audit, outcome: result.outcome, status: result.status, latencyMs });
    const secrets = Object.values(fresh.credential).filter((v) => typeof v === "string");
    answer = {
      ok: true,
      delivered: result.outcome === "delivered",
      outcome: result.outcome,
      http_status: result.status,
      result: sanitizeToolResult(result.body, { secrets }),
    };
    return { delivered: result.outcome === "delivered", detail: result.outcome };
  };

  const executed = await executeApprovedAction(sql, { requestId, payload }, executor, admit);
  if (!executed.ok) {
    if (executed.reason === "not_admitted") {
      if (refusedAudit) await auditCall(sql, caller, refusedAudit);
      return { ok: false, reason: executed.admission };
    }
    return { ok: false, reason: executed.reason };
  }
  return answer ?? { ok: true, delivered: executed.value.delivered, outcome: executed.value.detail ?? "executor_error", http_status: null, result: null };
}
