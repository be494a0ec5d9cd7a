/**
 * The runtime's side of the execution gate: an agent runtime that wants to send an approved action
 * presents the payload it is about to send; public.execute_action() recomputes its canonical hash
 * and lets it through once (approved, unexpired, not executed, same canonical payload). Only then
 * does the executor get the action, with the canonical bytes that were approved, and its outcome is
 * recorded. The connector layer plugs in as an executor, and as an admission check that runs
 * inside the gate's transaction: when it refuses (a rate limit, say), the transaction rolls back
 * and the approval stays unused, to be executed later.
 */
import type postgres from "postgres";

/** An action the gate has let through: what the executor sends, byte for byte. */
export interface ApprovedAction {
  requestId: string;
  connector: string;
  tool: string;
  /** The RFC 8785 text that was approved. */
  canonicalPayload: string;
  payloadSha256: string;
}

/** Sends an approved action; reports whether it was delivered (a short detail, never a secret). */
export type Executor = (action: ApprovedAction) => Promise<{ delivered: boolean; detail?: string }>;

/** Why the gate refused: the database's reasons, each also recorded in the audit chain. */
export type GateRefusal = "already_executed" | "not_approved" | "expired" | "payload_mismatch";

/**
 * Checked inside the gate's transaction once the gate has let the action through: null admits it;
 * a reason refuses it and rolls the transaction back, so the approval is not used up.
 */
export type Admission = (tx: postgres.TransactionSql, action: ApprovedAction) => Promise<string | null>;

/** The result of one attempt to execute an action. */
export type ExecuteResult =
  | { ok: true; value: { action: ApprovedAction; delivered: boolean; detail?: string } }
  | { ok: false; reason: GateRefusal }
  | { ok: false; reason: "not_admitted"; admission: string };

class NotAdmitted extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

interface GateAnswer {
  ok: boolean;
  reason?: GateRefusal;
  request_id: string;
  connector?: string;
  tool?: string;
  canonical_payload?: string;
  payload_sha256?: string;
}

/**
 * Executes action `requestId` as the agent runtime (the service role) with the payload about to be
 * sent. `sql` is a direct database connection (SUPABASE_DB_URL). The executor runs at most once
 * per approval, however many runtimes race for it; `admit`, when given, can hold it back.
 */
export async function executeApprovedAction(
  sql: postgres.Sql,
  input: { requestId: string; payload: unknown },
  executor: Executor,
  admit?: Admission,
): Promise<ExecuteResult> {
  let action: ApprovedAction;
  try {
    const answer = await sql.begin(async (tx) => {
      await tx`set local role service_role`;
      const [row] = await tx`select public.execute_action(${input.requestId}, ${JSON.stringify(input.payload)}::text::jsonb) as answer`;
      const answer = row.answer as GateAnswer;
      if (!answer.ok || !admit) return answer;
      await tx`reset role`;
      const refusal = await admit(tx, actionOf(answer));
      if (refusal !== null) throw new NotAdmitted(refusal);
      return answer;
    });
    if (!answer.ok) return { ok: false, reason: answer.reason! };
    action = actionOf(answer);
  } catch (e) {
    if (e instanceof NotAdmitted) return { ok: false, reason: "not_admitted", admission: e.reason };
    throw e;
  }
  let outcome: { delivered: boolean; detail?: string };
  try {
    outcome = await executor(action);
  } catch {
    // The executor's error may quote the request or a credential, so only its kind is kept.
    outcome = { delivered: false, detail: "executor_error" };
  }
  await sql.begin(async (tx) => {
    await tx`set local role service_role`;
    await tx`select public.record_action_outcome(${action.requestId}, ${outcome.delivered}, ${outcome.detail ?? null})`;
  });
  return { ok: true, value: { action, ...outcome } };
}

function actionOf(answer: GateAnswer): ApprovedAction {
  return {
    requestId: answer.request_id,
    connector: answer.connector!,
    tool: answer.tool!,
    canonicalPayload: answer.canonical_payload!,
    payloadSha256: answer.payload_sha256!,
  };
}
