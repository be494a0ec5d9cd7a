/**
 * Executing an approved action through the connection its agent's tool is bound to, for the
 * agent runtime (the service role). It reads top to bottom:
 *
 *   1. open the gate and admit the call, in one transaction: the gate lets the approved payload
 *      through once, to the target that was approved (approvals/gate.ts); the admission check
 *      derives the destination again from the credential and meters the call. A refusal of the admission check rolls the transaction back, so the
 *      approval stays unused, to be executed later.
 *   2. deliver: the connection's credential (an OAuth2 token refreshed first when it is about to
 *      expire), then the provider call with the approved canonical bytes; for a sandbox
 *      connection, the approved code runs in a fresh sandbox (sandbox/tool.ts) instead.
 *   3. record the call in the audit chain and the outcome on the action request, in one transaction.
 *   4. sanitize the provider's answer with the connection's own credentials before the agent sees it.
 */
import { type ApprovedAction, type GateRefusal, openGate, recordOutcome } from "../approvals/gate.ts";
import type { Caller } from "../http/caller.ts";
import { asService, type Sql, type Tx } from "../http/db.ts";
import { auditCall, auditCallIn, type CallAudit, holdId, type LimitRefusal, meterIn, timed } from "./calls.ts";
import { type ConnectorEnv, deliver, destinationOf, OAuth2Config, OAuth2Credential, type Provider, refreshTokens } from "./providers.ts";
import { executeCode, SandboxConfig } from "../sandbox/tool.ts";
import { sanitizeToolResult } from "./sanitize.ts";
import { saveCredentialIn } from "./store.ts";

/** Refreshed this long before the access token expires. */
export const REFRESH_MARGIN_MS = 60_000;

/** Why the admission check held an approved action back. */
export type AdmissionRefusal = "approval_target_changed" | "connection_inactive" | "sandbox_unavailable" | LimitRefusal;

/** Why an action was not executed: the gate's reasons (committed) or the admission check's (rolled back). */
export type ExecuteRefusal = GateRefusal | AdmissionRefusal;

/** What executing an approved action answered. */
export type ExecuteResult =
  | { ok: true; value: { delivered: boolean; outcome: string; http_status: number | null; result: unknown } }
  | { ok: false; reason: ExecuteRefusal };

/** The connection an admitted action goes through. */
interface Binding {
  orgId: string;
  agentId: string;
  runId: string;
  connectionId: string;
  provider: Provider;
  /** What the meter holds of a prepaid organization's credits for this call, until it is recorded. */
  holdId: string;
  /** The connection and its credential as the admission check read them (delivery uses them unless a refresh is due). */
  stored: StoredCredential;
}

/** A connection's settings and credential, as private.connection_credential answers them (never returned). */
interface StoredCredential {
  display_name: string;
  scopes: string[];
  config: Record<string, unknown>;
  token_expires_at: Date | null;
  credential: string;
}

/** The active connection's settings and credential, inside `tx` (the service role); undefined when it is not active. */
async function readCredential(tx: Tx, connectionId: string): Promise<StoredCredential | undefined> {
  const [row] = await tx`
    select display_name, scopes, config, token_expires_at, credential from private.connection_credential(${connectionId})`;
  return row as StoredCredential | undefined;
}

type Admission = { ok: true; value: Binding } | { ok: false; reason: AdmissionRefusal; audit: CallAudit };

/** Thrown inside the gate's transaction to roll it back; carries the admission check's refusal out. */
class NotAdmitted extends Error {
  constructor(readonly refusal: Extract<Admission, { ok: false }>) {
    super(refusal.reason);
  }
}

const service: Caller = { kind: "service" };

/** How the runtime's executions reach the database and the providers (it acts as the service role). */
export interface RuntimeContext {
  sql: Sql;
  env: ConnectorEnv;
}

/**
 * Executes approved action `requestId` with the payload the runtime is about to send: the
 * provider receives the approved canonical bytes, and the runtime gets back the sanitized answer.
 */
export async function executeAction(
  ctx: RuntimeContext,
  input: { requestId: string; payload: unknown; runId?: string | null },
): Promise<ExecuteResult | { ok: false; reason: "action_request_not_found" }> {
  const { sql } = ctx;
  const runtime = { sql, caller: service };
  // 1. Open the gate and admit the call. A runtime that holds a run's token (runId) executes only
  // that run's actions: another's is not found, and its gate is never touched.
  let opened: { ok: true; value: { action: ApprovedAction; binding: Binding } } | { ok: false; reason: GateRefusal | "action_request_not_found" };
  try {
    opened = await sql.begin(async (tx) => {
      await asService(tx);
      if (input.runId) {
        const [own] = await tx`select 1 from public.action_requests where id = ${input.requestId} and run_id = ${input.runId}`;
        if (!own) return { ok: false as const, reason: "action_request_not_found" as const };
      }
      const gate = await openGate(tx, input);
      if (!gate.ok) return gate;  // committed: the refusal is in the audit chain
      const admission = await admit(tx, gate.value, ctx.env);
      if (!admission.ok) throw new NotAdmitted(admission);  // rolled back: the approval stays unused
      return { ok: true as const, value: { action: gate.value, binding: admission.value } };
    });
  } catch (e) {
    if (!(e instanceof NotAdmitted)) throw e;
    await auditCall(runtime, e.refusal.audit);
    return { ok: false, reason: e.refusal.reason };
  }
  if (!opened.ok) return opened;
  const { action, binding } = opened.value;

  // 2. Deliver.
  const delivery = await deliverAction(ctx, { action, binding });

  // 3. Record the call and the outcome, in one transaction: both or neither.
  await sql.begin(async (tx) => {
    await asService(tx);
    if (delivery.audit) await auditCallIn(tx, delivery.audit);
    await recordOutcome(tx, { requestId: action.requestId, delivered: delivery.delivered, detail: delivery.outcome });
  });

  // 4. Sanitize what the agent gets back.
  return {
    ok: true,
    value: {
      delivered: delivery.delivered,
      outcome: delivery.outcome,
      http_status: delivery.status,
      result: sanitizeToolResult(delivery.body, { secrets: delivery.secrets }),
    },
  };
}

/**
 * The admission check, inside the gate's transaction: the connection the action was approved to
 * go through (the gate has checked that the tool is still bound there and that the connection is
 * active and delivers to the approved destination), the destination derived again from the
 * credential about to be used, for a sandbox that this process runs its backend with every layer
 * in force (its self-test, run once per process), then the meter.
 */
async function admit(tx: Tx, action: ApprovedAction, env: ConnectorEnv): Promise<Admission> {
  const [row] = await tx`
    select r.org_id, r.agent_id, r.run_id, t.cost_units
      from public.action_requests r
      join public.agent_tools t on t.org_id = r.org_id and t.id = r.tool_id
     where r.id = ${action.requestId}`;
  const hold = holdId();
  const audit = { orgId: row.org_id, connectionId: action.connectionId, provider: action.provider, kind: "deliver" as const,
                  agentId: row.agent_id, runId: row.run_id, tool: action.tool, actionRequestId: action.requestId };
  const stored = await readCredential(tx, action.connectionId);
  let reason: AdmissionRefusal | null;
  if (!stored) reason = "connection_inactive";
  else if (destinationOf(action.provider, JSON.parse(stored.credential), stored.config) !== action.destination) {
    reason = "approval_target_changed";
  } else if (action.provider === "sandbox" && !(await sandboxHere(env, stored.config))) {
    reason = "sandbox_unavailable";
  } else reason = await meterIn(tx, { orgId: row.org_id, cost: row.cost_units, holdId: hold });
  if (reason !== null) return { ok: false, reason, audit: { ...audit, outcome: reason } };
  return {
    ok: true,
    value: {
      orgId: row.org_id, agentId: row.agent_id, runId: row.run_id, connectionId: action.connectionId, provider: action.provider, holdId: hold,
      stored: stored!,
    },
  };
}

/**
 * Whether this process runs the backend a sandbox connection names, with settings it takes (a
 * connection written behind the connectors function's back can't loosen the limits), and its
 * self-test passed.
 */
async function sandboxHere(env: ConnectorEnv, config: Record<string, unknown>): Promise<boolean> {
  if (!env.sandbox || env.sandbox.name !== config.backend || !SandboxConfig.safeParse(config).success) return false;
  return (await env.sandbox.selfTest()).ok;
}

interface Delivery {
  /** Whether it reached the provider (2xx), or the code ran (whatever its exit). */
  delivered: boolean;
  outcome: string;
  status: number | null;
  body: unknown;
  /** The credentials the call used, for the sanitizer. */
  secrets: string[];
  /** The call's audit record, written with the outcome; null when it failed before a call was made. */
  audit: CallAudit | null;
}

/** Delivers an admitted action. An unexpected failure is a delivery that failed, never its message. */
async function deliverAction(ctx: RuntimeContext, admitted: { action: ApprovedAction; binding: Binding }): Promise<Delivery> {
  const { action, binding: b } = admitted;
  const audit = { orgId: b.orgId, connectionId: b.connectionId, provider: b.provider, kind: "deliver" as const,
                  agentId: b.agentId, runId: b.runId, tool: action.tool, actionRequestId: action.requestId, holdId: b.holdId };
  try {
    const provider = b.provider;
    if (provider === "sandbox") return await runSandboxed(ctx, admitted, audit);
    const fresh = await freshCredential(ctx, b);
    if (!fresh.ok) return { delivered: false, outcome: fresh.reason, status: null, body: null, secrets: [], audit: { ...audit, outcome: fresh.reason } };
    const { credential, config } = fresh.value;
    const [result, latencyMs] = await timed(() => deliver({ provider, credential, config, canonicalPayload: action.canonicalPayload }, ctx.env));
    return {
      delivered: result.outcome === "delivered", outcome: result.outcome, status: result.status, body: result.body, secrets: Object.values(credential),
      audit: { ...audit, outcome: result.outcome, status: result.status, latencyMs },
    };
  } catch {
    // The error may quote the request or a credential, so only its kind is kept.
    return { delivered: false, outcome: "delivery_error", status: null, body: null, secrets: [], audit: null };
  }
}

/**
 * Runs an admitted code action: the approved canonical payload, in a fresh sandbox with the
 * connection's limits. Its audit entry carries the execution's limits and outcome, never the code
 * or its output; the output is the tool's result.
 */
async function runSandboxed(ctx: RuntimeContext, admitted: { action: ApprovedAction; binding: Binding }, audit: Omit<CallAudit, "outcome">): Promise<Delivery> {
  const config = SandboxConfig.safeParse(admitted.binding.stored.config);
  if (!config.success || !ctx.env.sandbox) {
    return { delivered: false, outcome: "sandbox_unavailable", status: null, body: null, secrets: [], audit: { ...audit, outcome: "sandbox_unavailable" } };
  }
  const ran = await executeCode(ctx.env.sandbox, config.data, admitted.action.canonicalPayload);
  if (!ran.ok) {
    return { delivered: false, outcome: ran.outcome, status: null, body: { error: ran.outcome, message: ran.message }, secrets: [], audit: { ...audit, outcome: ran.outcome } };
  }
  return {
    delivered: true, outcome: ran.outcome, status: null, body: ran.result, secrets: [],
    audit: { ...audit, outcome: ran.outcome, latencyMs: ran.audit.ms, sandbox: ran.audit },
  };
}

type Fresh =
  | { ok: true; value: { credential: Record<string, string>; config: Record<string, unknown> } }
  | { ok: false; reason: "connection_inactive" | "token_expired" | "refresh_failed" };

/**
 * The connection's credential for a delivery. An OAuth2 access token that expires within
 * REFRESH_MARGIN_MS is refreshed first, under a per-connection lock: the provider rotates refresh
 * tokens, so two deliveries refreshing at once would make the second one fail. Whoever waits on
 * the lock re-reads the credential and uses the token the first one stored.
 */
async function freshCredential(ctx: RuntimeContext, binding: Binding): Promise<Fresh> {
  const { sql, env } = ctx;
  const due = (expiresAt: Date | null) => expiresAt !== null && expiresAt.getTime() - Date.now() <= REFRESH_MARGIN_MS;

  // What the admission check read, in the gate's transaction: no second read unless a refresh is due.
  const row = binding.stored;
  if (binding.provider !== "oauth2" || !due(row.token_expires_at)) {
    return { ok: true, value: { credential: JSON.parse(row.credential), config: row.config } };
  }
  return await sql.begin(async (tx): Promise<Fresh> => {
    await asService(tx);
    await tx`select pg_advisory_xact_lock(hashtextextended(${"connection-refresh:" + binding.connectionId}, 0))`;
    const locked = await readCredential(tx, binding.connectionId);
    if (!locked) return { ok: false, reason: "connection_inactive" };
    const config = locked.config as Record<string, unknown>;
    const current = OAuth2Credential.parse(JSON.parse(locked.credential as string));
    if (!due(locked.token_expires_at)) return { ok: true, value: { credential: current as Record<string, string>, config } };
    if (!current.refresh_token) return { ok: false, reason: "token_expired" };

    const [refreshed, latencyMs] = await timed(() => refreshTokens({ config: OAuth2Config.parse(config), credential: current }, env));
    // In this transaction: waiters on the lock hold pooled connections, so the holder takes none.
    await auditCallIn(tx, {
      orgId: binding.orgId, connectionId: binding.connectionId, provider: "oauth2", kind: "refresh",
      outcome: refreshed.ok ? "delivered" : refreshed.reason, status: refreshed.result.status, latencyMs,
    });
    if (!refreshed.ok) return { ok: false, reason: "refresh_failed" };
    const next: OAuth2Credential = {
      access_token: refreshed.tokens.access_token,
      refresh_token: refreshed.tokens.refresh_token ?? current.refresh_token,
      client_secret: current.client_secret,
    };
    await saveCredentialIn(tx, {
      orgId: binding.orgId, provider: "oauth2", displayName: locked.display_name, scopes: locked.scopes, credential: next,
      expiresAt: refreshed.tokens.expiresAt, connectionId: binding.connectionId, config,
    });
    return { ok: true, value: { credential: next as Record<string, string>, config } };
  });
}
