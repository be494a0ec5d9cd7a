/**
 * The OpenAI Chat Completions wire the model gateway speaks to its callers: the request it takes
 * (a strict subset: text messages, sampling settings, streaming), and the shapes it answers with,
 * whichever provider served the call. Adapters (openai.ts, anthropic.ts) translate to and from
 * their vendor's wire with the vendor's SDK.
 */
import { z } from "@hono/zod-openapi";

const TextPart = z.strictObject({ type: z.literal("text"), text: z.string().max(1_000_000) });
const Content = z.union([z.string().max(1_000_000), z.array(TextPart).min(1).max(100)]);
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).optional();

/** A message: text only (image, audio and tool content are not supported yet). */
export const ChatMessage = z.discriminatedUnion("role", [
  z.strictObject({ role: z.literal("system"), content: Content, name }),
  z.strictObject({ role: z.literal("developer"), content: Content, name }),
  z.strictObject({ role: z.literal("user"), content: Content, name }),
  z.strictObject({ role: z.literal("assistant"), content: Content, name }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** POST /v1/chat/completions: the fields the gateway understands; any other is refused (400). */
export const ChatRequest = z.strictObject({
  model: z.string().min(1).max(100).describe("A model of GET /v1/models"),
  messages: z.array(ChatMessage).min(1).max(1000),
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
}).refine((r) => r.max_tokens === undefined || r.max_completion_tokens === undefined, {
  message: "send max_tokens or max_completion_tokens, not both",
}).openapi("ChatCompletionRequest");
export type ChatRequest = z.infer<typeof ChatRequest>;

/** The text of a message's content. */
export function textOf(content: ChatMessage["content"]): string {
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

/** The UTF-8 length of a string, in bytes. */
export function utf8Bytes(text: string): number {
  return new TextEncoder().encode(text).byteLength;
}

/**
 * An upper bound of the prompt's tokens, reserved before the call: the UTF-8 bytes of the
 * messages as JSON (no tokenizer makes more tokens than bytes, and JSON only adds quoting), plus
 * 16 per message for the role markers the vendor adds.
 */
export function inputTokenBound(messages: ChatMessage[]): number {
  return utf8Bytes(JSON.stringify(messages)) + 16 * messages.length;
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
}

export type FinishReason = "stop" | "length" | "content_filter" | "tool_calls";

/** A non-streamed answer (OpenAI's chat.completion object). */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: { index: 0; message: { role: "assistant"; content: string; refusal: null }; logprobs: null; finish_reason: FinishReason }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
}

/** One streamed chunk (OpenAI's chat.completion.chunk object). */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: { index: 0; delta: { role?: "assistant"; content?: string }; logprobs: null; finish_reason: FinishReason | null }[];
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
