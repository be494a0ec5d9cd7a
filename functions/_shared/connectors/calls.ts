/**
 * What every provider call (live check, delivery, refresh, revocation) goes through besides the
 * egress guard: it is first counted against the workspace's rate limit and monthly budget, and a
 * prepaid organization's credits checked (private.meter_connector_call, one statement;
 * revocations are counted but never held back), and then recorded as an audit entry
 * `connector.call`: connection, provider, kind, agent, run, action, outcome, HTTP status and
 * latency, and for a sandbox execution its limits and outcome. The entry never holds a credential,
 * a body, code or its output. A live check or delivery is charged the
 * platform's connector price with its entry (private.charge_connector_call), unless the egress
 * guard refused it before anything left.
 */
import type { EgressCode } from "../egress/check.ts";
import type { Caller } from "../http/caller.ts";
import { asService, type Sql, type Tx } from "../http/db.ts";
import { refuse, type HttpError } from "../http/errors.ts";
import type { CallResult, ConnectorEnv, Provider } from "./providers.ts";
import type { ExecutionAudit } from "../sandbox/tool.ts";

/** Who a connector operation acts for, and how it reaches the database and the providers. */
export interface ConnectorContext {
  sql: Sql;
  caller: Caller;
  env: ConnectorEnv;
}

/** A connector operation in one organization (X-Org-Id for a member, org_id for the service role). */
export interface OrgContext extends ConnectorContext {
  orgId: string;
}

/** One provider call, as the audit chain records it. */
export interface CallAudit {
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
  /**
   * The id under which the meter holds a prepaid organization's price for this call, until the
   * call is recorded here (private.connector_holds): one per metered call, made with holdId().
   */
  holdId?: string;
  /** A sandbox execution's limits and outcome (never its code or output). */
  sandbox?: ExecutionAudit;
}

/** A fresh hold id for one metered call. */
export function holdId(): string {
  return crypto.randomUUID();
}

/** Why the meter refused a call: the codes the function answers with. */
export type LimitRefusal = "credits_exhausted" | "connector_rate_limited" | "connector_budget_exhausted";

/** Records one provider call in the organization's audit chain, inside `tx` (as the service role, for `caller`). */
export async function auditCallIn(tx: Tx, a: CallAudit): Promise<void> {
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
    ...(a.sandbox ? { sandbox: a.sandbox } : {}),
  };
  await tx`insert into audit.records (org_id, action, target_type, target_id, payload)
           values (${a.orgId}, 'connector.call', 'connection', ${a.connectionId}, ${tx.json(payload)})`;
  // The call is over: what the meter held for it goes, and the platform's price is charged with
  // the record of a call that was made (live checks and deliveries; the database charges nothing
  // when nothing reached the provider).
  if (a.holdId) await tx`select private.release_connector_hold(${a.orgId}, ${a.holdId})`;
  if (a.kind === "verify" || a.kind === "deliver") {
    await tx`select private.charge_connector_call(${a.orgId}, ${a.outcome}, ${a.status ?? null})`;
  }
}

/** Records one provider call in the organization's audit chain, with the context's caller as its actor. */
export function auditCall(ctx: Pick<ConnectorContext, "sql" | "caller">, a: CallAudit): Promise<void> {
  return ctx.sql.begin(async (tx) => {
    await asService(tx, { actingFor: ctx.caller });
    await auditCallIn(tx, a);
  });
}

/**
 * Counts a call of `cost` units against the organization's limits inside `tx`: null when admitted,
 * else which limit refused it. With `holdId`, a prepaid organization's price is held for the call
 * until auditCallIn records it; without (revocations), nothing is held and credits don't refuse it.
 */
export async function meterIn(tx: Tx, call: { orgId: string; cost: number; holdId?: string }): Promise<LimitRefusal | null> {
  const [{ refusal }] = await tx`select private.meter_connector_call(${call.orgId}, ${call.cost}, ${call.holdId ?? null}) as refusal`;
  return refusal as LimitRefusal | null;
}

/** Counts one call (`cost` units, default 1) against the workspace's limits; a refusal is audited and thrown (429). */
export async function meter(ctx: Pick<ConnectorContext, "sql" | "caller">, audit: Omit<CallAudit, "outcome">, options: { cost?: number } = {}): Promise<void> {
  const refusal = await ctx.sql.begin(async (tx) => {
    await asService(tx, { actingFor: ctx.caller });
    const refusal = await meterIn(tx, { orgId: audit.orgId, cost: options.cost ?? 1, holdId: audit.holdId });
    if (refusal) await auditCallIn(tx, { ...audit, outcome: refusal });
    return refusal;
  });
  if (refusal) throw refuse(refusal);
}

/** Runs `f` and measures it, in whole milliseconds. */
export async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await f();
  return [value, Math.round(performance.now() - started)];
}

/** The error for a failed live check, naming the outcome but never the credential. */
export function verificationError(result: CallResult): HttpError {
  if (result.outcome.startsWith("egress_")) {
    return refuse(result.outcome as EgressCode, "the egress guard refused or could not complete the call to this URL");
  }
  if (result.outcome === "unauthorized") return refuse("connector_credential_rejected", `the provider refused the credential (HTTP ${result.status})`);
  if (result.outcome === "rejected") return refuse("connector_verification_rejected", `the provider rejected the check (HTTP ${result.status})`);
  return refuse("connector_provider_error", `the provider failed the check (HTTP ${result.status ?? "none"})`);
}
