/**
 * The runtime's side of the execution gate (seed 000: no external action runs unless a human
 * approved its exact payload). An agent runtime that wants to send an approved action presents
 * the payload it is about to send; public.execute_action() recomputes its canonical hash and lets
 * it through once (approved, unexpired, not executed, same canonical payload, and the tool, its
 * connection and the connection's destination still what was approved), handing back the
 * canonical bytes that were approved, what gets sent byte for byte, and the connection they go
 * through: the pinned one, never whatever the tool's name points at now. How the delivery ended is
 * then recorded once. Racing runtimes queue on the request's row lock, so only one gets through.
 *
 * Both steps run inside the caller's transaction, as the service role (db.ts: asService). The
 * connectors function opens the gate, admits and meters the call in the same transaction (so a
 * refusal there rolls the gate back and keeps the approval unused), delivers, then records.
 */
import type { Tx } from "../http/db.ts";
import type { Provider } from "../connectors/providers.ts";

/** An action the gate has let through: what gets sent, byte for byte. */
export interface ApprovedAction {
  requestId: string;
  tool: string;
  toolId: string;
  provider: Provider;
  /** The connection the action was approved to go through. */
  connectionId: string;
  /** The host that connection delivered to when the action was approved. */
  destination: string;
  /** The RFC 8785 text that was approved. */
  canonicalPayload: string;
  payloadSha256: string;
  /** What the approvers decided on: the payload's hash and the whole target. */
  approvalSha256: string;
}

/** Why the gate refused: the database's reasons, each also recorded in the audit chain (and committed with it). */
export type GateRefusal = "already_executed" | "approval_target_changed" | "not_approved" | "expired" | "payload_mismatch";

/** What opening the gate answered. */
export type GateResult = { ok: true; value: ApprovedAction } | { ok: false; reason: GateRefusal };

interface GateAnswer {
  ok: boolean;
  reason?: GateRefusal;
  request_id: string;
  tool?: string;
  tool_id?: string;
  provider?: Provider;
  connection_id?: string;
  destination?: string;
  canonical_payload?: string;
  payload_sha256?: string;
  approval_sha256?: string;
}

/**
 * Opens the gate for action `requestId` with the payload about to be sent. On success the action
 * is marked executed when `tx` commits; a refusal is recorded in the audit chain.
 */
export async function openGate(tx: Tx, input: { requestId: string; payload: unknown }): Promise<GateResult> {
  const [{ answer }] = await tx`select public.execute_action(${input.requestId}, ${JSON.stringify(input.payload)}::text::jsonb) as answer`;
  const a = answer as GateAnswer;
  if (!a.ok) return { ok: false, reason: a.reason! };
  return {
    ok: true,
    value: {
      requestId: a.request_id,
      tool: a.tool!,
      toolId: a.tool_id!,
      provider: a.provider!,
      connectionId: a.connection_id!,
      destination: a.destination!,
      canonicalPayload: a.canonical_payload!,
      payloadSha256: a.payload_sha256!,
      approvalSha256: a.approval_sha256!,
    },
  };
}

/**
 * Records how the delivery of an action the gate let through ended (once per action). `detail` is
 * a short outcome code, never a message that could quote the request or a credential.
 */
export async function recordOutcome(tx: Tx, outcome: { requestId: string; delivered: boolean; detail: string }): Promise<void> {
  await tx`select public.record_action_outcome(${outcome.requestId}, ${outcome.delivered}, ${outcome.detail})`;
}
