/**
 * The OpenAI Chat Completions wire the model gateway speaks to its callers: the request it takes
 * (a strict subset: text messages, function tools and their calls and results, sampling settings,
 * streaming), and the shapes it answers with, whichever provider served the call. Adapters
 * (openai.ts, anthropic.ts) translate to and from their vendor's wire with the vendor's SDK.
 */
import { z } from "@hono/zod-openapi";

const TextPart = z.strictObject({ type: z.literal("text"), text: z.string().max(1_000_000) });
const Content = z.union([z.string().max(1_000_000), z.array(TextPart).min(1).max(100)]);
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional();

/** A tool's name, as both vendors take it. */
const ToolName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a tool name is 1 to 64 letters, digits, _ or -");
/** A tool call's id: OpenAI's `call_…` and Anthropic's `toolu_…` both fit, and either vendor takes it back. */
const ToolCallId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "a tool call id is 1 to 128 letters, digits, _ or -");
/** Bytes of one tool's JSON schema (OpenAI's own limits are far below the 4 MiB body). */
const MAX_SCHEMA_BYTES = 100_000;

/** A JSON schema of a function's arguments: an object schema (both vendors refuse any other). */
const Parameters = z.looseObject({ type: z.literal("object") })
  .refine((s) => utf8Bytes(JSON.stringify(s)) <= MAX_SCHEMA_BYTES, `a tool's parameters are at most ${MAX_SCHEMA_BYTES} bytes of JSON`);

/** A function tool the model may call. */
export const Tool = z.strictObject({
  type: z.literal("function"),
  function: z.strictObject({
    name: ToolName,
    description: z.string().max(100_000).optional(),
    parameters: Parameters.optional(),
    strict: z.boolean().nullable().optional(),
  }),
});
export type Tool = z.infer<typeof Tool>;

/** none, auto, required, or the one function the model must call. */
export const ToolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.strictObject({ type: z.literal("function"), function: z.strictObject({ name: ToolName }) }),
]);
export type ToolChoice = z.infer<typeof ToolChoice>;

/** A call the model made: its arguments are a JSON object's text (an Anthropic model is given them as an object). */
export const ToolCall = z.strictObject({
  id: ToolCallId,
  type: z.literal("function"),
  function: z.strictObject({
    name: ToolName,
    arguments: z.string().max(1_000_000).refine(isJsonObject, "a tool call's arguments are a JSON object"),
  }),
});
export type ToolCall = z.infer<typeof ToolCall>;

/**
 * A message: text, an assistant's tool calls (its content may then be null), or a tool's result
 * (image and audio content are not supported yet).
 */
export const ChatMessage = z.discriminatedUnion("role", [
  z.strictObject({ role: z.literal("system"), content: Content, name }),
  z.strictObject({ role: z.literal("developer"), content: Content, name }),
  z.strictObject({ role: z.literal("user"), content: Content, name }),
  z.strictObject({
    role: z.literal("assistant"),
    content: Content.nullable().optional(),
    name,
    refusal: z.string().max(100_000).nullable().optional(),
    tool_calls: z.array(ToolCall).min(1).max(128).optional(),
  }).refine((m) => (m.content !== null && m.content !== undefined) || m.tool_calls !== undefined, {
    message: "an assistant message has content or tool_calls",
  }),
  z.strictObject({ role: z.literal("tool"), content: Content, tool_call_id: ToolCallId }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** POST /v1/chat/completions: the fields the gateway understands; any other is refused (400). */
export const ChatRequest = z.strictObject({
  model: z.string().min(1).max(100).describe("A model of GET /v1/models"),
  messages: z.array(ChatMessage).min(1).max(1000),
  tools: z.array(Tool).min(1).max(128).optional().describe("Function tools the model may call (their schemas count in the prompt's bound)"),
  tool_choice: ToolChoice.optional(),
  parallel_tool_calls: z.boolean().optional(),
  max_tokens: z.int().min(1).max(1_000_000).optional().describe("The output cap; without it, the organization's default_max_tokens"),
  max_completion_tokens: z.int().min(1).max(1_000_000).optional().describe("The same as max_tokens (send one of them)"),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  stop: z.union([z.string().min(1).max(100), z.array(z.string().min(1).max(100)).min(1).max(4)]).optional(),
  seed: z.int().optional(),
  user: z.string().max(256).optional(),
  n: z.literal(1).optional().describe("One choice per call"),
  stream: z.boolean().optional(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).optional(),
}).superRefine((r, ctx) => {
  if (r.max_tokens !== undefined && r.max_completion_tokens !== undefined) {
    ctx.addIssue({ code: "custom", message: "send max_tokens or max_completion_tokens, not both" });
  }
  const names = (r.tools ?? []).map((t) => t.function.name);
  if (new Set(names).size !== names.length) ctx.addIssue({ code: "custom", path: ["tools"], message: "each tool has its own name" });
  if (r.tools === undefined && (r.tool_choice !== undefined || r.parallel_tool_calls !== undefined)) {
    ctx.addIssue({ code: "custom", path: ["tool_choice"], message: "tool_choice and parallel_tool_calls need tools" });
  }
  if (typeof r.tool_choice === "object" && !names.includes(r.tool_choice.function.name)) {
    ctx.addIssue({ code: "custom", path: ["tool_choice"], message: "tool_choice names a tool that is not offered" });
  }
  // A tool's result answers a call an assistant message made before it (Anthropic refuses any other).
  const called = new Set<string>();
  r.messages.forEach((m, i) => {
    if (m.role === "assistant") for (const c of m.tool_calls ?? []) called.add(c.id);
    if (m.role === "tool" && !called.has(m.tool_call_id)) {
      ctx.addIssue({ code: "custom", path: ["messages", i, "tool_call_id"], message: "a tool message answers a tool call made before it" });
    }
  });
}).openapi("ChatCompletionRequest");
export type ChatRequest = z.infer<typeof ChatRequest>;

/** The text of a message's content (none: ""). */
export function textOf(content: ChatMessage["content"]): string {
  if (content === null || content === undefined) return "";
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

/** Whether a string is the JSON text of an object. */
function isJsonObject(text: string): boolean {
  try {
    const value = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** The UTF-8 length of a string, in bytes. */
export function utf8Bytes(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}

/**
 * An upper bound of the prompt's tokens, reserved before the call: the UTF-8 bytes of the
 * messages as JSON (no tokenizer makes more tokens than bytes, and JSON only adds quoting; tool
 * calls and tool results are in the messages), plus 16 per message for the role markers the
 * vendor adds, plus the tools offered and the tool choice as JSON (the vendor puts their schemas
 * in the prompt), with 16 more per tool.
 */
export function inputTokenBound(messages: ChatMessage[], options: { tools?: Tool[]; toolChoice?: ToolChoice } = {}): number {
  const tools = options.tools ?? [];
  const offered = tools.length > 0 ? utf8Bytes(JSON.stringify(tools)) + 16 * tools.length : 0;
  const choice = options.toolChoice !== undefined ? utf8Bytes(JSON.stringify(options.toolChoice)) : 0;
  return utf8Bytes(JSON.stringify(messages)) + 16 * messages.length + offered + choice;
}

/**
 * Token counts of a call; `estimated` when the vendor reported none (a stream cut off), when
 * `output` is an upper bound (the UTF-8 bytes received, capped at max_tokens by the gateway) and
 * `input` may be null: unknown, so the reservation's bound is charged.
 */
export interface Usage {
  input: number | null;
  output: number;
  estimated: boolean;
}

/** What an adapter sends upstream: the vendor's model name and the caller's settings. */
export interface UpstreamRequest {
  model: string;
  messages: ChatMessage[];
  maxTokens: number;
  /** Which output-cap field the caller used (OpenAI-compatible servers differ in which they know). */
  maxTokensField: "max_tokens" | "max_completion_tokens";
  temperature?: number;
  topP?: number;
  stop?: string[];
  seed?: number;
  user?: string;
  tools?: Tool[];
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
}

export type FinishReason = "stop" | "length" | "content_filter" | "tool_calls";

/** A non-streamed answer (OpenAI's chat.completion object). */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string | null; refusal: null; tool_calls?: ToolCall[] }; logprobs: null; finish_reason: FinishReason }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/**
 * A streamed piece of a tool call, as OpenAI streams them: the first of a call carries its index,
 * id, type and name (and arguments ""), the next ones the same index and a fragment of arguments.
 */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function?: { name?: string; arguments?: string };
}

/** The bytes of the arguments in a chunk's tool call deltas (the output bound of a stream cut off). */
export function toolDeltaBytes(deltas: ToolCallDelta[] | undefined): number {
  return (deltas ?? []).reduce((n, d) => n + utf8Bytes(d.function?.name ?? "") + utf8Bytes(d.function?.arguments ?? ""), 0);
}

/** One streamed chunk (OpenAI's chat.completion.chunk object). */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string | null; tool_calls?: ToolCallDelta[] }; logprobs: null; finish_reason: FinishReason | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

/** A streamed answer: the chunks, and the usage once they are read (or as far as they were). */
export interface UpstreamStream {
  chunks: AsyncIterable<ChatCompletionChunk>;
  usage(): Usage;
}

/** One vendor's side of a call. Failures are thrown as the vendor SDK throws them (see upstream.ts). */
export interface Upstream {
  complete(request: UpstreamRequest, signal: AbortSignal): Promise<{ completion: ChatCompletion; usage: Usage }>;
  stream(request: UpstreamRequest, signal: AbortSignal): Promise<UpstreamStream>;
  /** The vendor's models list: the live check of a key before it is saved. */
  listModels(signal: AbortSignal): Promise<string[]>;
}

/** OpenAI's usage object from token counts. */
export function openAiUsage(input: number, output: number) {
  return { prompt_tokens: input, completion_tokens: output, total_tokens: input + output };
}
