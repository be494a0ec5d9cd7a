/**
 * One step of an agent run, as the run worker (functions/_worker/main.ts) takes it from the job
 * engine: a model turn and the tool calls it made, through the same controls as every other
 * caller (supabase/migrations/…_run_worker.sql has the database's side):
 *
 *   1. claim     private.claim_run_step leases the step and hands over what it needs, read from
 *                the run row: the organization, project and agent, the version's model and
 *                instructions, the agent's tools, the transcript, and a run token. Nothing the
 *                job's payload says is used but the run's id (tenancy/row_scope.ts's rule).
 *   2. model     the model call goes through the one model-call module (models/admit.ts,
 *                models/call.ts) with the run token: reserved against the run's, agent's and
 *                organization's budgets, metered and settled like the gateway's. The answer is
 *                kept in the transcript before anything acts on it.
 *   3. tools     each tool call becomes public.propose_action on the agent's bound tool (pinned
 *                target, policy decides). Allowed: executed at once through the execution gate
 *                and the connector (connectors/execution.ts), and the sanitized answer is the
 *                tool's result. A tool bound to a sandbox connection (code.run) takes code, which
 *                is checked for shape first, approved and hash-pinned like any payload, and run in
 *                a fresh sandbox by this worker (sandbox/tool.ts). Pending: the run waits in the database, and the decision enqueues
 *                its resume. Rejected, denied, withdrawn: the result says so. Expired: the run
 *                ends approval_expired.
 *   4. finish    the step ends in the transaction that enqueues the next one, or waits, or ends
 *                the run (succeeded with the model's last answer, or its limit's status).
 *
 * Each database call is one statement (one round trip) on the service-role pool. Every write
 * after the claim is checked against the step's lease, so a worker that lost its step (killed and
 * taken over, or the run was cancelled) changes nothing.
 */
import type { Sql } from "../http/db.ts";
import { databaseRefusal, HttpError } from "../http/errors.ts";
import { executeAction } from "../connectors/execution.ts";
import type { ConnectorEnv } from "../connectors/providers.ts";
import { admitCall } from "../models/admit.ts";
import { completeCall } from "../models/call.ts";
import type { ModelEnv } from "../models/upstream.ts";
import { ChatMessage, type ChatRequest, type Tool, type ToolCall } from "../models/wire.ts";
import { CODE_RUN_PARAMETERS, CodeRun, codeRunDescription } from "../sandbox/tool.ts";

/** What a worker brings to a step. */
export interface StepContext {
  /** The service-role pool: one statement per database call. */
  sql: Sql;
  /** The pool executions open their gate's transaction on. */
  executionSql: Sql;
  modelEnv: ModelEnv;
  connectorEnv: ConnectorEnv;
  /** Names the worker in the step's lease. */
  workerId: string;
  /** How long a lease lasts; the worker renews it every third of that while the step runs. */
  leaseSeconds: number;
}

/** How a step ended, for the worker's log (codes only, never content). */
export type StepOutcome =
  | { kind: "idle"; reason: string }
  | { kind: "continued" | "waiting" | "ended"; step: number; status?: string }
  /** A failure worth another try (the job engine retries the job): the step was released. */
  | { kind: "retry"; step: number; code: string };

/** A tool the run's agent may call, under the function name the model sees. */
interface RunTool {
  name: string;
  tool: string;
  provider: string;
}

interface Claim {
  action: "step" | "none";
  reason?: string;
  step: number;
  lease: string;
  attempt: number;
  run: { id: string; org_id: string; project_id: string; agent_id: string };
  model: string;
  tools: RunTool[];
  messages: unknown[];
  answer: AssistantMessage | null;
  answered: string[];
  token: string;
}

interface AssistantMessage {
  role: "assistant";
  content: string | null;
  tool_calls?: ToolCall[];
}

/** A step's lease is gone (another worker took it over, or the run ended): stop, change nothing. */
const LOST = new Set(["run_ended", "step_lease_lost", "run_deadline_passed", "run_token_invalid", "run_not_running"]);
/** Model failures worth another try later: the vendor's limits and outages, ours. */
const RETRY = new Set(["model_rate_limited", "model_upstream_rate_limited", "model_upstream_unavailable", "model_upstream_timeout"]);
/** The limit refusals that end a run with their own status. */
const BUDGET = new Set(["model_budget_exhausted"]);

/** The database's refusal as an HttpError (or the error itself when it is one); null for anything else. */
function refusalOf(e: unknown): HttpError | null {
  return e instanceof HttpError ? e : databaseRefusal(e);
}

/**
 * The run's tools as function tools: the payload the tool's connection receives, as one JSON
 * object; a sandbox tool's is the code to run (sandbox/tool.ts).
 */
function toolDefinitions(tools: RunTool[]): Tool[] {
  return tools.map((t) => ({
    type: "function",
    function: t.provider === "sandbox"
      ? { name: t.name, description: codeRunDescription(t.tool), parameters: structuredClone(CODE_RUN_PARAMETERS) }
      : {
        name: t.name,
        description: `${t.tool}: sends its arguments as the JSON payload of a ${t.provider} action (a person may have to approve it first).`,
        parameters: { type: "object", additionalProperties: true },
      },
  }));
}

/** The most of a tool's result the transcript keeps (a message holds at most 256 KiB). */
const MAX_RESULT_CHARS = 192 * 1024;

/** A tool's result as the transcript keeps it: the whole JSON, or, too large, what it was and that it was cut. */
function resultText(result: unknown, code: string): string {
  const text = JSON.stringify(result);
  if (text.length <= MAX_RESULT_CHARS) return text;
  return JSON.stringify({ error: "tool_result_too_large", outcome: code, message: `the tool's result was ${text.length} characters; at most ${MAX_RESULT_CHARS} are kept` });
}

/** Runs the next step of `runId`. Throws only what the job engine should retry (after releasing the step). */
export async function runStep(ctx: StepContext, runId: string): Promise<StepOutcome> {
  const { sql } = ctx;
  const [{ c }] = await sql`select private.claim_run_step(${runId}, ${ctx.workerId}, ${ctx.leaseSeconds}) as c`;
  const claim = c as Claim;
  if (claim.action !== "step") return { kind: "idle", reason: claim.reason ?? "nothing_to_do" };
  const { step, lease } = claim;
  const held = { runId, step, lease };

  // The lease is renewed while the step runs (a long model call, a slow provider).
  const heartbeat = setInterval(() => {
    sql`select private.renew_run_step(${runId}, ${step}, ${lease}, ${ctx.leaseSeconds})`.catch(() => {});
  }, Math.max(500, (ctx.leaseSeconds * 1000) / 3));
  try {
    let answer = claim.answer;
    if (!answer) {
      const turn = await modelTurn(ctx, claim);
      if (turn.kind !== "answer") return await settleTurn(ctx, held, turn);
      answer = turn.message;
    }
    const calls = answer.tool_calls ?? [];
    if (calls.length === 0) {
      // The run's result holds the last answer (the transcript holds all of it; a result is at most 64 KiB).
      await finish(ctx, held, "succeeded", { result: { output: (answer.content ?? "").slice(0, 16_000) } });
      return { kind: "ended", step, status: "succeeded" };
    }
    for (const call of calls) {
      if (claim.answered.includes(call.id)) continue;
      const done = await toolCall(ctx, claim, call);
      if (done) return done;
    }
    await finish(ctx, held, "continue");
    return { kind: "continued", step };
  } catch (e) {
    const refusal = refusalOf(e);
    if (refusal && LOST.has(refusal.code)) return { kind: "idle", reason: refusal.code };
    throw e;
  } finally {
    clearInterval(heartbeat);
  }
}

type Turn =
  | { kind: "answer"; message: AssistantMessage }
  | { kind: "end"; status: "failed" | "budget_exhausted"; code: string }
  | { kind: "retry"; code: string };

/** The step's model call, with the run token; its answer is kept in the transcript. */
async function modelTurn(ctx: StepContext, claim: Claim): Promise<Turn> {
  const messages = ChatMessage.array().safeParse(claim.messages);
  if (!messages.success) return { kind: "end", status: "failed", code: "invalid_transcript" };
  const tools = toolDefinitions(claim.tools);
  const body: ChatRequest = { model: claim.model, messages: messages.data, ...(tools.length > 0 ? { tools } : {}) };
  const started = performance.now();
  let answered;
  try {
    const { call } = await admitCall({ kind: "token", token: claim.token, namedRunId: claim.run.id }, ctx.modelEnv, body, AbortSignal.timeout(ctx.modelEnv.timeoutMs + 5_000));
    answered = await completeCall(call);
  } catch (e) {
    const refusal = refusalOf(e);
    if (!refusal || LOST.has(refusal.code)) throw e;
    if (BUDGET.has(refusal.code)) return { kind: "end", status: "budget_exhausted", code: refusal.code };
    if (RETRY.has(refusal.code)) return { kind: "retry", code: refusal.code };
    return { kind: "end", status: "failed", code: refusal.code };
  }
  if (!answered.ok) {
    return RETRY.has(answered.failure.code) ? { kind: "retry", code: answered.failure.code } : { kind: "end", status: "failed", code: answered.failure.code };
  }
  const said = answered.completion.choices[0]?.message;
  const message: AssistantMessage = {
    role: "assistant",
    content: said?.content ?? null,
    ...(said?.tool_calls?.length ? { tool_calls: said.tool_calls } : {}),
  };
  if (message.content === null && !message.tool_calls) message.content = "";
  const meta = { tool_name: null, ms: Math.round(performance.now() - started), code: null, iter: claim.step };
  await ctx.sql`select private.record_model_turn(${claim.run.id}, ${claim.step}, ${claim.lease},
                                                 ${JSON.stringify(message)}::text::jsonb, ${JSON.stringify(meta)}::text::jsonb)`;
  return { kind: "answer", message };
}

/** A model turn that did not answer: the run ends with its status, or the step is released for a retry. */
async function settleTurn(ctx: StepContext, held: Held, turn: Exclude<Turn, { kind: "answer" }>): Promise<StepOutcome> {
  if (turn.kind === "retry") {
    await ctx.sql`select private.release_run_step(${held.runId}, ${held.step}, ${held.lease})`;
    throw new RetryStep(held.step, turn.code);
  }
  await finish(ctx, held, turn.status, { endCode: turn.code });
  return { kind: "ended", step: held.step, status: turn.status };
}

/** Thrown for the job engine to try the job again later (the step was released first). */
export class RetryStep extends Error {
  override name = "RetryStep";
  constructor(readonly step: number, readonly code: string) {
    super(`step ${step} will be tried again (${code})`);
  }
}

interface Held {
  runId: string;
  step: number;
  lease: string;
}

/** One tool call: proposed, then executed, waited for, or answered with why not. A step outcome when the step stops here. */
async function toolCall(ctx: StepContext, claim: Claim, call: ToolCall): Promise<StepOutcome | null> {
  const held = { runId: claim.run.id, step: claim.step, lease: claim.lease };
  const tool = claim.tools.find((t) => t.name === call.function.name);
  const started = performance.now();
  let result: unknown;
  let code: string;
  const program = tool?.provider === "sandbox" ? CodeRun.safeParse(parseArguments(call.function.arguments)) : null;
  if (!tool) {
    [result, code] = [{ error: "unknown_tool", message: `no tool named ${call.function.name}` }, "unknown_tool"];
  } else if (program && !program.success) {
    // Nobody is asked to approve code the sandbox would refuse; the model is told what to fix.
    const issues = program.error.issues.map((i) => `${i.path.join(".") || "arguments"}: ${i.message}`).join("; ");
    [result, code] = [{ error: "invalid_arguments", message: `code.run takes {runtime, code, files?}: ${issues.slice(0, 500)}` }, "invalid_arguments"];
  } else {
    let proposed: { request_id: string; status: string; expired: boolean; outcome: string | null; outcome_detail: string | null };
    try {
      const [{ p }] = await ctx.sql`select private.propose_run_action(${claim.run.id}, ${claim.step}, ${claim.lease}, ${call.id}, ${tool.tool},
                                                                       ${call.function.arguments}::text::jsonb) as p`;
      proposed = p;
    } catch (e) {
      const refusal = refusalOf(e);
      if (!refusal || LOST.has(refusal.code)) throw e;
      proposed = { request_id: "", status: "refused", expired: false, outcome: refusal.code, outcome_detail: null };
    }
    switch (proposed.status) {
      case "pending":
        if (proposed.expired) {
          await finish(ctx, held, "approval_expired", { endCode: "approval_expired" });
          return { kind: "ended", step: claim.step, status: "approval_expired" };
        }
        await finish(ctx, held, "wait", { requestId: proposed.request_id });
        return { kind: "waiting", step: claim.step };
      case "approved": {
        const executed = await executeAction({ sql: ctx.executionSql, env: ctx.connectorEnv }, {
          requestId: proposed.request_id, payload: JSON.parse(call.function.arguments), runId: claim.run.id,
        });
        // A sandbox's answer is the execution itself (exit code, output, files); a provider's, the delivery and its answer.
        [result, code] = !executed.ok
          ? [{ error: executed.reason }, executed.reason]
          : [tool.provider === "sandbox" ? executed.value.result : executed.value, executed.value.outcome];
        break;
      }
      case "executed":
        // Let through before this attempt: its recorded outcome, or unknown (never delivered twice).
        [result, code] = proposed.outcome
          ? [{ delivered: proposed.outcome === "delivered", outcome: proposed.outcome_detail ?? proposed.outcome }, proposed.outcome_detail ?? proposed.outcome]
          : [{ error: "delivery_outcome_unknown", message: "the action was let through, and how its delivery ended was not recorded; it is not sent again" }, "delivery_outcome_unknown"];
        break;
      case "rejected":
        [result, code] = [{ error: "rejected", message: "a person rejected this action; it was not sent" }, "rejected"];
        break;
      case "denied":
        [result, code] = [{ error: "denied_by_policy", message: "the organization's policy denies this action; it was not sent" }, "denied_by_policy"];
        break;
      case "withdrawn":
        [result, code] = [{ error: "approval_target_changed", message: "the tool's connection changed after it was proposed; it was not sent" }, "approval_target_changed"];
        break;
      default:
        [result, code] = [{ error: proposed.outcome ?? "not_proposed" }, proposed.outcome ?? "not_proposed"];
    }
  }
  const meta = { tool_name: tool?.tool ?? null, ms: Math.round(performance.now() - started), code: safeCode(code), iter: claim.step };
  await ctx.sql`select private.record_tool_result(${claim.run.id}, ${claim.step}, ${claim.lease}, ${call.id}, ${resultText(result, code)},
                                                  ${JSON.stringify(meta)}::text::jsonb)`;
  return null;
}

/** A tool call's arguments as JSON, or undefined when they don't parse. */
function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A telemetry code: a short identifier, else none. */
function safeCode(code: string): string | null {
  return /^[a-z][a-z0-9_]{0,63}$/.test(code) ? code : null;
}

/** Ends the step: continue, wait for a request, or end the run. */
async function finish(
  ctx: StepContext,
  held: Held,
  next: "continue" | "wait" | "succeeded" | "failed" | "budget_exhausted" | "approval_expired",
  options: { result?: unknown; endCode?: string; requestId?: string } = {},
): Promise<void> {
  await ctx.sql`select private.finish_run_step(${held.runId}, ${held.step}, ${held.lease}, ${next},
                                               ${options.result === undefined ? null : JSON.stringify(options.result)}::text::jsonb,
                                               ${options.endCode ?? null}, ${options.requestId ?? null}, null)`;
}
