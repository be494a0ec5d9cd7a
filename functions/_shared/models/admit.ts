/**
 * A model call's admission, for whoever makes it on the OpenAI wire (the model gateway for its
 * callers, the run worker for its runs): the prompt's bound (tools included), the reservation for
 * the caller's scope (models/metering.ts), and the call made ready for models/call.ts to make and
 * settle against that reservation.
 */
import { type ModelCall } from "./call.ts";
import { type CallScope, reserve, settle } from "./metering.ts";
import { type ModelEnv, upstreamFor } from "./upstream.ts";
import { type ChatRequest, inputTokenBound, type UpstreamRequest } from "./wire.ts";

/** An admitted call, and how long its admission took (for the caller's Server-Timing). */
export interface Admitted {
  call: ModelCall;
  admitMs: number;
}

/** Reserves the call's most (the prompt's bound and its output cap) for `scope`; throws the refusal (429, 402, 4xx). */
export async function admitCall(scope: CallScope, env: ModelEnv, body: ChatRequest, signal: AbortSignal): Promise<Admitted> {
  const inputBound = inputTokenBound(body.messages, { tools: body.tools, toolChoice: body.tool_choice });
  const admitting = performance.now();
  const reservation = await reserve(scope, {
    model: body.model, inputBound, maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null, stream: body.stream === true,
  });
  const admitMs = performance.now() - admitting;
  const request: UpstreamRequest = {
    model: reservation.upstreamModel,
    messages: body.messages,
    maxTokens: reservation.maxTokens,
    maxTokensField: body.max_tokens !== undefined ? "max_tokens" : "max_completion_tokens",
    ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
    ...(body.top_p !== undefined ? { topP: body.top_p } : {}),
    ...(body.stop !== undefined ? { stop: typeof body.stop === "string" ? [body.stop] : body.stop } : {}),
    ...(body.seed !== undefined ? { seed: body.seed } : {}),
    ...(body.user !== undefined ? { user: body.user } : {}),
    ...(body.tools !== undefined ? { tools: body.tools } : {}),
    ...(body.tool_choice !== undefined ? { toolChoice: body.tool_choice } : {}),
    ...(body.parallel_tool_calls !== undefined ? { parallelToolCalls: body.parallel_tool_calls } : {}),
  };
  return {
    call: {
      upstream: () => upstreamFor(env, reservation.provider, reservation.ownKey),
      request,
      inputBound,
      signal,
      settle: (end) => settle(scope, reservation, end),
      label: reservation.id,
    },
    admitMs,
  };
}
