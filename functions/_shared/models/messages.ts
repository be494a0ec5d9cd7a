/**
 * Anthropic's Messages wire, which the model gateway also serves (POST /v1/messages), so that
 * the official `@anthropic-ai/sdk` pointed at the gateway works unchanged, on any model of the
 * catalog. A Messages request is translated into the gateway's own request (the OpenAI wire of
 * wire.ts, validated by the same ChatRequest), made, metered and settled like any call, and its
 * answer or stream translated back:
 *
 *   system                        → a system message
 *   text blocks                   → message text
 *   tool_use blocks (assistant)   → the assistant's tool_calls (input as JSON arguments)
 *   tool_result blocks (user)     → tool messages, before the turn's text
 *   tools, tool_choice            → function tools, none/auto/required/a function
 *
 * and back: the answer's text and tool_calls become text and tool_use blocks; a stream becomes
 * message_start, content_block_start / content_block_delta (text_delta, input_json_delta) /
 * content_block_stop per block, message_delta (stop reason and usage) and message_stop.
 */
import { z } from "@hono/zod-openapi";
import type { Frames } from "../http/sse.ts";
import type { StreamShape } from "./call.ts";
import { type ChatCompletion, type ChatCompletionChunk, ChatRequest, type FinishReason } from "./wire.ts";

const Text = z.string().max(1_000_000);
const TextBlock = z.strictObject({ type: z.literal("text"), text: Text });
const ToolUseBlock = z.strictObject({
  type: z.literal("tool_use"),
  id: z.string().max(128),
  name: z.string().max(64),
  input: z.record(z.string(), z.unknown()),
});
const ToolResultBlock = z.strictObject({
  type: z.literal("tool_result"),
  tool_use_id: z.string().max(128),
  content: z.union([Text, z.array(TextBlock).max(100)]).optional(),
  is_error: z.boolean().optional(),
});
const Block = z.discriminatedUnion("type", [TextBlock, ToolUseBlock, ToolResultBlock]);

/** POST /v1/messages: the fields the gateway understands (text, tools and their blocks); any other is refused (400). */
export const MessagesRequest = z.strictObject({
  model: z.string().min(1).max(100).describe("A model of GET /v1/models"),
  max_tokens: z.int().min(1).max(1_000_000),
  messages: z.array(z.strictObject({
    role: z.enum(["user", "assistant"]),
    content: z.union([Text, z.array(Block).min(1).max(1000)]),
  })).min(1).max(1000),
  system: z.union([Text, z.array(TextBlock).min(1).max(100)]).optional(),
  tools: z.array(z.strictObject({
    type: z.literal("custom").optional(),
    name: z.string().max(64),
    description: z.string().max(100_000).optional(),
    input_schema: z.record(z.string(), z.unknown()),
  })).min(1).max(128).optional(),
  tool_choice: z.union([
    z.strictObject({ type: z.enum(["auto", "any"]), disable_parallel_tool_use: z.boolean().optional() }),
    z.strictObject({ type: z.literal("none") }),
    z.strictObject({ type: z.literal("tool"), name: z.string().max(64), disable_parallel_tool_use: z.boolean().optional() }),
  ]).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  stop_sequences: z.array(z.string().min(1).max(100)).min(1).max(4).optional(),
  metadata: z.strictObject({ user_id: z.string().max(256).nullable().optional() }).optional(),
  stream: z.boolean().optional(),
}).openapi("MessagesRequest");
export type MessagesRequest = z.infer<typeof MessagesRequest>;

type Blocks = z.infer<typeof Block>[];
const blocksOf = (content: string | Blocks): Blocks => (typeof content === "string" ? [{ type: "text", text: content }] : content);
const textOfBlocks = (blocks: { type: string; text?: string }[]) => blocks.map((b) => (b.type === "text" ? b.text : "")).join("");

/**
 * The gateway's own request for a Messages request, checked as any chat request is (tool names,
 * ids, a result answering an earlier call): `{ ok: false, message }` when it is not one.
 */
export function chatRequestOf(m: MessagesRequest): { ok: true; request: ChatRequest } | { ok: false; message: string } {
  const messages: unknown[] = [];
  if (m.system !== undefined) messages.push({ role: "system", content: typeof m.system === "string" ? m.system : textOfBlocks(m.system) });
  for (const turn of m.messages) {
    const blocks = blocksOf(turn.content);
    const text = textOfBlocks(blocks);
    if (turn.role === "assistant") {
      const calls = blocks.flatMap((b) =>
        b.type === "tool_use" ? [{ id: b.id, type: "function", function: { name: b.name, arguments: JSON.stringify(b.input) } }] : []
      );
      if (blocks.some((b) => b.type === "tool_result")) return { ok: false, message: "a tool_result block belongs to a user turn" };
      messages.push(calls.length > 0 ? { role: "assistant", content: text === "" ? null : text, tool_calls: calls } : { role: "assistant", content: text });
      continue;
    }
    if (blocks.some((b) => b.type === "tool_use")) return { ok: false, message: "a tool_use block belongs to an assistant turn" };
    for (const b of blocks) {
      if (b.type === "tool_result") {
        const content = b.content === undefined ? "" : typeof b.content === "string" ? b.content : textOfBlocks(b.content);
        messages.push({ role: "tool", tool_call_id: b.tool_use_id, content });
      }
    }
    if (typeof turn.content === "string" || blocks.some((b) => b.type === "text")) messages.push({ role: "user", content: text });
  }
  const single = m.tool_choice && "disable_parallel_tool_use" in m.tool_choice && m.tool_choice.disable_parallel_tool_use === true;
  const choice = toolChoiceOf(m.tool_choice);
  const parsed = ChatRequest.safeParse({
    model: m.model,
    messages,
    max_tokens: m.max_tokens,
    ...(m.tools
      ? {
        tools: m.tools.map((t) => ({
          type: "function",
          function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.input_schema },
        })),
      }
      : {}),
    ...(choice !== undefined ? { tool_choice: choice } : {}),
    ...(single ? { parallel_tool_calls: false } : {}),
    ...(m.temperature !== undefined ? { temperature: m.temperature } : {}),
    ...(m.top_p !== undefined ? { top_p: m.top_p } : {}),
    ...(m.stop_sequences ? { stop: m.stop_sequences } : {}),
    ...(m.metadata?.user_id ? { user: m.metadata.user_id } : {}),
    ...(m.stream !== undefined ? { stream: m.stream } : {}),
  });
  if (parsed.success) return { ok: true, request: parsed.data };
  return { ok: false, message: parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ") };
}

/** Anthropic's tool_choice as OpenAI's: auto, any (required), none, or the one tool. */
function toolChoiceOf(choice: MessagesRequest["tool_choice"]): unknown {
  if (choice === undefined) return undefined;
  if (choice.type === "tool") return { type: "function", function: { name: choice.name } };
  return choice.type === "any" ? "required" : choice.type;
}

/** Anthropic's stop reason for a finish reason. */
function stopReason(reason: FinishReason | null): string {
  if (reason === "length") return "max_tokens";
  if (reason === "tool_calls") return "tool_use";
  if (reason === "content_filter") return "refusal";
  return "end_turn";
}

/** A tool call's arguments as the object Anthropic's wire carries (arguments that are not a JSON object: {}). */
function inputOf(args: string): Record<string, unknown> {
  try {
    const value = JSON.parse(args);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** A message id for an answer's id (the vendor's own when it was Anthropic's). */
const messageId = (id: string) => `msg_${id.replace(/^chatcmpl-(msg_)?/, "")}`;

/** A non-streamed answer as Anthropic's Message, named as the caller named the model. */
export function messageOf(completion: ChatCompletion, model: string) {
  const choice = completion.choices[0];
  const text = choice?.message.content ?? "";
  const content = [
    ...(text !== "" || !choice?.message.tool_calls ? [{ type: "text" as const, text }] : []),
    ...(choice?.message.tool_calls ?? []).map((c) => ({ type: "tool_use" as const, id: c.id, name: c.function.name, input: inputOf(c.function.arguments) })),
  ];
  return {
    id: messageId(completion.id),
    type: "message" as const,
    role: "assistant" as const,
    model,
    content,
    stop_reason: stopReason(choice?.finish_reason ?? null),
    stop_sequence: null,
    usage: { input_tokens: completion.usage.prompt_tokens, output_tokens: completion.usage.completion_tokens },
  };
}

/** Named server-sent events (Anthropic's wire names each event), sent as they are by http/sse.ts. */
class NamedEvents implements Frames {
  constructor(readonly events: { type: string }[]) {}
  /** The events as SSE frames: `event: <type>` and `data: <json>`. */
  frames(): string {
    return this.events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");
  }
}

/**
 * The shape of a streamed answer on Anthropic's wire: message_start at the first chunk; each text
 * or tool call a content block (start, deltas, stop), in the order they came; the stop reason and
 * usage in message_delta once the chunks end (the usage chunk comes after the finish reason), then
 * message_stop. A failure midway is an `error` event.
 */
export function messagesStreamShape(model: string): StreamShape {
  let started = false;
  let block = -1;
  let open: "text" | "tool" | null = null;
  const toolBlocks = new Map<number, number>();
  let finish: FinishReason | null = null;
  let usage = { input_tokens: 0, output_tokens: 0 };
  const close = () => {
    if (open === null) return [];
    open = null;
    return [{ type: "content_block_stop", index: block }];
  };
  return {
    event(chunk: ChatCompletionChunk) {
      const events: { type: string }[] = [];
      if (!started) {
        started = true;
        events.push({
          type: "message_start",
          message: {
            id: messageId(chunk.id), type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null,
            usage: { input_tokens: 0, output_tokens: 0 },
          },
        } as { type: string });
      }
      if (chunk.usage) usage = { input_tokens: chunk.usage.prompt_tokens, output_tokens: chunk.usage.completion_tokens };
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        if (open !== "text") {
          events.push(...close(), { type: "content_block_start", index: ++block, content_block: { type: "text", text: "" } } as { type: string });
          open = "text";
        }
        events.push({ type: "content_block_delta", index: block, delta: { type: "text_delta", text: choice.delta.content } } as { type: string });
      }
      for (const d of choice?.delta.tool_calls ?? []) {
        if (d.id !== undefined || !toolBlocks.has(d.index)) {
          events.push(...close(), {
            type: "content_block_start", index: ++block,
            content_block: { type: "tool_use", id: d.id ?? `toolu_${block}`, name: d.function?.name ?? "", input: {} },
          } as { type: string });
          open = "tool";
          toolBlocks.set(d.index, block);
        }
        const args = d.function?.arguments;
        if (args) events.push({ type: "content_block_delta", index: toolBlocks.get(d.index)!, delta: { type: "input_json_delta", partial_json: args } } as { type: string });
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      return events.length > 0 ? new NamedEvents(events) : null;
    },
    end() {
      return [new NamedEvents([
        ...close(),
        { type: "message_delta", delta: { stop_reason: stopReason(finish), stop_sequence: null }, usage } as { type: string },
        { type: "message_stop" },
      ])];
    },
    fail(failure) {
      return [new NamedEvents([{ type: "error", error: { type: "api_error", code: failure.code, message: failure.message } } as { type: string }])];
    },
  };
}
