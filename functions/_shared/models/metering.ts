/**
 * The gateway's two database calls per model call: reserve before it (admission, burst limits,
 * the maximum cost reserved on every budget) and settle after it (the actual cost), both in
 * supabase/migrations/…_model_gateway.sql.
 *
 * The agent runtime's calls are one statement each on the service-role pool (one round trip);
 * a member's (the console playground) run in a transaction as the service role acting for them,
 * so that the audit chain names them.
 */
import type { Caller, UserCaller } from "../http/caller.ts";
import { asService, db, serviceDb } from "../http/db.ts";
import { refuse } from "../http/errors.ts";
import type { OwnKey, Provider } from "./upstream.ts";

/**
 * Who a call is for: the runtime's run (the service role's X-Run-Id), the run a run-scoped token
 * acts for (the database checks the token in the reservation's own statement, and refuses a token
 * whose request names another run), or a member's agent in an organization.
 */
export type CallScope =
  | { kind: "run"; runId: string }
  | { kind: "token"; token: string; namedRunId: string | null }
  | { kind: "member"; user: UserCaller; orgId: string; agentId: string };

/** An admitted call. */
export interface Reservation {
  id: string;
  orgId: string;
  agentId: string;
  provider: Provider;
  upstreamModel: string;
  ownKey: OwnKey | null;
  maxTokens: number;
  reservedMicro: number;
}

interface Reserved {
  ok: true;
  reservation_id: string;
  org_id: string;
  agent_id: string;
  provider: Provider;
  upstream_model: string;
  api_key: string | null;
  base_url: string | null;
  max_tokens: number;
  reserved_micro: number;
}
interface Refused {
  ok: false;
  reason: "model_rate_limited" | "model_budget_exhausted";
  message: string;
  retry_after?: number;
  scope?: string;
}

/** One statement as the caller: the runtime's on the service pool, a member's in a transaction acting for them. */
async function statement<T>(scope: CallScope, run: (sql: ReturnType<typeof serviceDb>) => Promise<T>): Promise<T> {
  if (scope.kind !== "member") return run(serviceDb());
  return await db().begin(async (tx) => {
    await asService(tx, { actingFor: scope.user });
    return run(tx as unknown as ReturnType<typeof serviceDb>);
  }) as T;
}

/** Admits a call and reserves its maximum cost, or throws the refusal (429 with retry_after, 402, 4xx). */
export async function reserve(
  scope: CallScope,
  call: { model: string; inputBound: number; maxTokens: number | null; stream: boolean },
): Promise<Reservation> {
  const [{ r }] = await statement(scope, (sql) =>
    scope.kind === "token"
      ? sql`select private.reserve_model_call_for_token(${scope.token}, ${scope.namedRunId}, ${call.model}, ${call.inputBound},
                                                      ${call.maxTokens}, ${call.stream}) as r`
      : sql`select private.reserve_model_call(${scope.kind === "run" ? scope.runId : null}, ${scope.kind === "member" ? scope.orgId : null},
                                              ${scope.kind === "member" ? scope.agentId : null}, ${call.model}, ${call.inputBound},
                                              ${call.maxTokens}, ${call.stream}) as r`
  );
  const result = r as Reserved | Refused;
  if (!result.ok) {
    if (result.reason === "model_rate_limited") {
      const after = String(result.retry_after ?? 1);
      throw refuse("model_rate_limited", result.message, { fields: { retry_after: result.retry_after ?? 1 }, headers: { "retry-after": after } });
    }
    throw refuse("model_budget_exhausted", result.message, { fields: { scope: result.scope } });
  }
  return {
    id: result.reservation_id,
    orgId: result.org_id,
    agentId: result.agent_id,
    provider: result.provider,
    upstreamModel: result.upstream_model,
    ownKey: result.api_key ? { apiKey: result.api_key, baseUrl: result.base_url } : null,
    maxTokens: result.max_tokens,
    reservedMicro: result.reserved_micro,
  };
}

/** How a call ended. */
export interface Settlement {
  outcome: "succeeded" | "failed" | "cancelled";
  inputTokens: number;
  outputTokens: number;
  estimated: boolean;
  latencyMs: number;
  errorCode?: string | null;
}

/** Settles a call at its actual usage (releasing the rest of the reservation). Null when it was already closed. */
export async function settle(scope: CallScope, reservation: Reservation, s: Settlement): Promise<{ call_id: string; cost_micro: number } | null> {
  const [{ r }] = await statement(scope, (sql) =>
    sql`select private.settle_model_call(${reservation.id}, ${s.outcome}, ${s.inputTokens}, ${s.outputTokens}, ${s.estimated},
                                         ${Math.max(0, Math.round(s.latencyMs))}, ${s.errorCode ?? null}) as r`
  );
  return r as { call_id: string; cost_micro: number } | null;
}

/** The catalog models a caller may call. */
export async function allowedModels(scope: CallScope): Promise<{ model: string; provider: Provider }[]> {
  if (scope.kind === "member") {
    // The callers of a completion only (private.member_allowed_models checks the role).
    return await statement(scope, (sql) => sql`select model, provider from private.member_allowed_models(${scope.orgId}, ${scope.agentId})`) as unknown as {
      model: string;
      provider: Provider;
    }[];
  }
  if (scope.kind === "token") {
    const [own] = await serviceDb()`select run_id from private.run_token_scope(${scope.token})`;
    if (!own) throw refuse("run_token_invalid");
    if (scope.namedRunId !== null && scope.namedRunId !== own.run_id) throw refuse("run_token_scope");
    return allowedModels({ kind: "run", runId: own.run_id });
  }
  const rows = await serviceDb()`select r.id is not null as run_found, m.model, m.provider
                                   from (select 1) one
                                   left join public.agent_runs r on r.id = ${scope.runId}
                                   left join lateral private.allowed_models(r.org_id, r.agent_id) m on true`;
  if (!rows[0]?.run_found) throw refuse("run_not_found");
  return rows.filter((r) => r.model !== null).map((r) => ({ model: r.model as string, provider: r.provider as Provider }));
}

/** The scope of a request's caller: the service role names a run (X-Run-Id), a member an organization and agent. */
export function scopeOf(caller: Caller, headers: { runId: string | null; orgId: () => string; agentId: string | null }): CallScope {
  if (caller.kind === "service") {
    if (!headers.runId) throw refuse("missing_run_id");
    return { kind: "run", runId: headers.runId };
  }
  if (headers.runId) throw refuse("invalid_body", "members call through an agent (X-Agent-Id), not a run");
  const orgId = headers.orgId();
  if (!headers.agentId) throw refuse("missing_agent_id");
  return { kind: "member", user: caller, orgId, agentId: headers.agentId };
}
