/**
 * One model call, whoever makes it (the model gateway, the widget, the run worker): the vendor
 * call with the caller's abort wired in, the usage it reports made into what is charged, and the
 * settlement, exactly once, however the call ends. A caller passes only what is its own: where
 * the settlement is recorded (`settle`), and the shape of its answer (the completion, or for a
 * stream its events).
 *
 * What is charged:
 *   - an answer: the vendor's usage; an input it did not report is the prompt's bound, and an
 *     output estimated from the bytes received is capped at max_tokens;
 *   - a failure before the vendor had the prompt (its error, an address the egress guard refused,
 *     no key): nothing;
 *   - a prompt the vendor received and never answered in time, or a client that went away before
 *     the answer: the prompt's bound, as the vendor bills it (else hanging up early, or a vendor
 *     hanging, would be a way around the budget).
 */
import type { HttpError } from "../http/errors.ts";
import { eventStream, outliveResponse } from "../http/sse.ts";
import { upstreamFailure } from "./upstream.ts";
import type { ChatCompletion, ChatCompletionChunk, Upstream, UpstreamRequest, UpstreamStream, Usage } from "./wire.ts";

/** How a call ended, as it is settled. */
export interface CallEnd {
  outcome: "succeeded" | "failed" | "cancelled";
  inputTokens: number;
  outputTokens: number;
  estimated: boolean;
  latencyMs: number;
  errorCode: string | null;
  /** The answer's text when the call succeeded (a stream's deltas, joined), else null. */
  answer: string | null;
}

/** A call about to be made. */
export interface ModelCall {
  /** The vendor's side; made inside the call, so that a refusal to make it (no key) is settled too. */
  upstream: () => Upstream;
  request: UpstreamRequest;
  /** The prompt's token bound the reservation was made with: charged when the input is unknown. */
  inputBound: number;
  /** Aborted when the caller's client goes away. */
  signal: AbortSignal;
  /** Records the end of the call; called once. A failure here is logged by kind, never thrown. */
  settle(end: CallEnd): Promise<unknown>;
  /** Names the call in a settlement failure's log line (a reservation id). */
  label: string;
}

/** Where a call's time went, for the caller's Server-Timing: the vendor's share, and the settlement's. */
export interface CallTiming {
  vendorMs: number;
  settleMs: number;
}

/** What a non-streamed call answered. */
export type Completed =
  | { ok: true; completion: ChatCompletion; usage: Usage; timing: CallTiming }
  | { ok: false; failure: HttpError; cancelled: boolean; timing: CallTiming };

/** What a streamed call's caller makes of it: an event per chunk (null for none), and the closing events. */
export interface StreamShape {
  event(chunk: ChatCompletionChunk): unknown;
  /** After the call is settled as succeeded. */
  end(): unknown[];
  /** After the call is settled as failed. */
  fail(failure: HttpError): unknown[];
}

/** What a streamed call answered: the event stream, or the failure before any event. */
export type Streamed =
  | { ok: true; response: Response; timing: CallTiming }
  | { ok: false; failure: HttpError; cancelled: boolean; timing: CallTiming };

/** Makes a non-streamed call and settles it. */
export async function completeCall(call: ModelCall): Promise<Completed> {
  const abort = abortWith(call.signal);
  const started = performance.now();
  const timing = { vendorMs: 0, settleMs: 0 };
  try {
    const upstream = call.upstream();
    const answered = await vendor(timing, () => upstream.complete(call.request, abort.signal));
    const answer = answered.completion.choices[0]?.message.content ?? "";
    await settleWith(call, timing, { outcome: "succeeded", usage: answered.usage, errorCode: null, started, answer });
    return { ok: true, completion: answered.completion, usage: answered.usage, timing };
  } catch (e) {
    const failure = upstreamFailure(e);
    const cancelled = abort.signal.aborted;
    await settleWith(call, timing, { outcome: cancelled ? "cancelled" : "failed", usage: failedUsage(failure, cancelled), errorCode: failure.code, started, answer: null });
    return { ok: false, failure, cancelled, timing };
  }
}

/**
 * Makes a streamed call: the response streams `shape`'s events as the vendor's chunks arrive,
 * reading the next chunk only when the client wants the next event, and settles the call when the
 * chunks end, the vendor fails midway, or the client goes away (what was used).
 */
export async function streamCall(call: ModelCall, shape: StreamShape): Promise<Streamed> {
  const abort = abortWith(call.signal);
  const started = performance.now();
  const timing = { vendorMs: 0, settleMs: 0 };
  let vendorStream: UpstreamStream;
  try {
    const upstream = call.upstream();
    vendorStream = await vendor(timing, () => upstream.stream(call.request, abort.signal));
  } catch (e) {
    const failure = upstreamFailure(e);
    const cancelled = abort.signal.aborted;
    await settleWith(call, timing, { outcome: cancelled ? "cancelled" : "failed", usage: failedUsage(failure, cancelled), errorCode: failure.code, started, answer: null });
    return { ok: false, failure, cancelled, timing };
  }
  let text = "";
  const settle = (outcome: CallEnd["outcome"], errorCode: string | null) =>
    settleWith(call, timing, { outcome, usage: vendorStream.usage(), errorCode, started, answer: outcome === "succeeded" ? text : null });
  const response = eventStream({
    chunks: vendorStream.chunks,
    abort,
    event: (chunk) => {
      text += chunk.choices[0]?.delta?.content ?? "";
      return shape.event(chunk);
    },
    end: async () => {
      await settle("succeeded", null);
      return shape.end();
    },
    fail: async (e) => {
      const failure = upstreamFailure(e);
      await settle("failed", failure.code);
      return shape.fail(failure);
    },
    cancel: () => settle("cancelled", null),
  });
  return { ok: true, response, timing };
}

/** An abort controller that follows the caller's signal. */
function abortWith(signal: AbortSignal): AbortController {
  const abort = new AbortController();
  if (signal.aborted) abort.abort();
  else signal.addEventListener("abort", () => abort.abort(), { once: true });
  return abort;
}

/** Runs the vendor's part, adding its time to `timing`. */
async function vendor<T>(timing: CallTiming, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    timing.vendorMs += performance.now() - started;
  }
}

/** The usage of a call that failed: the prompt's bound if the vendor had it (see the header), else nothing. */
function failedUsage(failure: HttpError, cancelled: boolean): Usage {
  const sent = cancelled || failure.code === "model_upstream_timeout";
  return sent ? { input: null, output: 0, estimated: true } : { input: 0, output: 0, estimated: false };
}

/**
 * Settles through the caller's `settle`, held past the response (outliveResponse): a settlement
 * that fails is logged by kind only; the reservation then expires and is closed at its maximum,
 * so nothing is under-counted.
 */
async function settleWith(
  call: ModelCall,
  timing: CallTiming,
  end: { outcome: CallEnd["outcome"]; usage: Usage; errorCode: string | null; started: number; answer: string | null },
): Promise<void> {
  const maxTokens = call.request.maxTokens;
  const started = performance.now();
  await outliveResponse(call.settle({
    outcome: end.outcome,
    inputTokens: end.usage.input ?? call.inputBound,
    outputTokens: end.usage.estimated ? Math.min(end.usage.output, maxTokens) : end.usage.output,
    estimated: end.usage.estimated,
    latencyMs: Math.max(0, performance.now() - end.started),
    errorCode: end.errorCode,
    answer: end.answer,
  }).then(() => {}, (e) => console.error(`model call: settling ${call.label} failed (${(e as Error)?.name})`)));
  timing.settleMs += performance.now() - started;
}
