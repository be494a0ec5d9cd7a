/**
 * A widget message's answer, shared by the widget function (a visitor on a site) and the
 * widget-preview function (a person in the console): after private.widget_message_begin has
 * stored the message and reserved the model call, the agent's answer through the one model-call
 * module (models/call.ts), settled, and stored, in private.widget_message_end; or, when no answer
 * can be given, the polite notice.
 */
import type { Context } from "hono";
import { configuration } from "../http/config.ts";
import { serviceDb } from "../http/db.ts";
import { eventList } from "../http/sse.ts";
import { completeCall, type ModelCall, streamCall } from "../models/call.ts";
import { modelEnvFrom, type Provider, upstreamFor } from "../models/upstream.ts";
import type { ChatMessage } from "../models/wire.ts";

/** What a visitor reads when no answer can be given. */
export const NOTICES = {
  unavailable: "Sorry, I can't answer right now. Someone from the team has been told and will follow up.",
  busy: "You're sending messages faster than I can answer. Please wait a moment and try again.",
  held: "Thanks! Someone from the team will look at this and reply here.",
} as const;

const modelEnv = configuration(modelEnvFrom, "model_gateway_misconfigured");

export interface Reservation {
  reservation_id: string;
  provider: Provider;
  upstream_model: string;
  api_key: string | null;
  base_url: string | null;
  max_tokens: number;
}
export type Begun =
  | {
    ok: true;
    conversation_id: string;
    reservation: Reservation;
    messages: { role: "system" | "user" | "assistant"; content: string }[];
    input_bound: number;
    /** The key holds answers for review: the answer becomes a draft, the visitor hears so. */
    hold: boolean;
  }
  | { ok: false; reason: string; conversation_id?: string; retry_after?: number };

/**
 * What a message the model path refused answers (200): the polite notice a visitor reads, busy for
 * a rate limit and unavailable otherwise, with the refusal's own code.
 */
export function refusedReply(begun: Extract<Begun, { ok: false }>) {
  const busy = begun.reason === "widget_rate_limited";
  return {
    conversation_id: begun.conversation_id ?? null,
    reply: { role: "notice" as const, content: busy ? NOTICES.busy : NOTICES.unavailable },
    degraded: busy ? "busy" : "unavailable",
    code: begun.reason,
    ...(begun.retry_after ? { retry_after: begun.retry_after } : {}),
  };
}

/**
 * The agent's answer through the one model-call module (models/call.ts), as JSON or as a stream; a
 * failure is a polite notice. The call is settled, and the answer (or the notice, and an
 * escalation) stored, in one statement: private.widget_message_end.
 */
export async function answer(c: Context, begun: Extract<Begun, { ok: true }>, stream: boolean): Promise<Response> {
  const reservation = begun.reservation;
  const call: ModelCall = {
    upstream: () => upstreamFor(modelEnv(), reservation.provider, reservation.api_key ? { apiKey: reservation.api_key, baseUrl: reservation.base_url } : null),
    request: { model: reservation.upstream_model, messages: begun.messages as ChatMessage[], maxTokens: reservation.max_tokens, maxTokensField: "max_tokens" },
    inputBound: begun.input_bound,
    signal: c.req.raw.signal,
    // For a key that holds answers, the notice stored is the one saying so.
    settle: (end) => serviceDb()`
      select private.widget_message_end(${begun.conversation_id}, ${reservation.reservation_id}, ${end.outcome},
                                        ${end.inputTokens}, ${end.outputTokens}, ${end.estimated}, ${Math.round(end.latencyMs)},
                                        ${end.errorCode}, ${end.answer}, ${begun.hold && end.outcome === "succeeded" ? NOTICES.held : NOTICES.unavailable},
                                        ${begun.hold})`,
    label: reservation.reservation_id,
  };
  const notice = { conversation_id: begun.conversation_id, reply: { role: "notice" as const, content: NOTICES.unavailable }, degraded: "unavailable" };

  if (!stream || begun.hold) {
    const answered = await completeCall(call);
    const text = answered.ok ? answered.completion.choices[0]?.message.content ?? "" : "";
    // No answer, or an empty one: the database stored the notice (and told the team).
    if (!text.trim()) {
      const failed = answered.ok ? notice : { ...notice, code: answered.failure.code };
      return stream ? eventList([{ ...failed, done: true }]) : c.json(failed, 200);
    }
    if (begun.hold) {
      const held = { conversation_id: begun.conversation_id, reply: { role: "notice" as const, content: NOTICES.held }, held: true };
      return stream ? eventList([{ ...held, done: true }]) : c.json(held, 200);
    }
    return c.json({ conversation_id: begun.conversation_id, reply: { role: "assistant" as const, content: text } }, 200);
  }
  // As server-sent events: `{delta}` per chunk of text, then `{done, conversation_id}`, or the
  // notice when the model fails midway or writes nothing.
  let written = false;
  const streamed = await streamCall(call, {
    event: (chunk) => {
      const delta = chunk.choices[0]?.delta?.content;
      if (!delta) return null;
      if (delta.trim()) written = true;
      return { delta };
    },
    end: () => [written ? { done: true, conversation_id: begun.conversation_id } : { ...notice, done: true }],
    fail: (failure) => [{ ...notice, code: failure.code, done: true }],
  });
  return streamed.ok ? streamed.response : eventList([{ ...notice, code: streamed.failure.code, done: true }]);
}
