/**
 * A local model upstream: one HTTP(S) server that speaks two vendors' wires closely enough that
 * the official SDKs (`openai`, `@anthropic-ai/sdk`) work against it unchanged, streaming and not.
 *
 *   /openai/v1/models               GET   OpenAI model list (a few fixed ids)
 *   /openai/v1/models/<id>          GET   one model
 *   /openai/v1/chat/completions     POST  Chat Completions (JSON, or SSE with `"stream": true`)
 *   /anthropic/v1/models            GET   Anthropic model list
 *   /anthropic/v1/models/<id>       GET   one model
 *   /anthropic/v1/messages          POST  Messages (JSON, or SSE with `"stream": true`)
 *
 * It has two uses:
 *  - `npm start` runs it as a clearly labelled *local stand-in* (there is no network to the real
 *    vendors): every reply is deterministic and says it comes from the stand-in
 *    (`[local stand-in model] You said: …`, see `standInReply`).
 *
 * Tool calls, by one rule (so that an agent's whole tool loop runs with no vendor key, and tests
 * can script it), the same on both wires:
 *  - When the request offers tools (and tool_choice is not none), and the conversation ends with a
 *    user turn whose text, trimmed, ends with `use <tool> with <json>` (`use` at the start or after
 *    a space, <tool> the name of an offered tool, <json> a JSON object running to the end of the
 *    text), the answer is one call of that tool with those arguments: OpenAI's `tool_calls`
 *    (`call_…` id, finish_reason "tool_calls"; streamed as delta.tool_calls, the arguments in
 *    fragments), Anthropic's `tool_use` block (`toolu_…` id, stop_reason "tool_use"; streamed as
 *    content_block_start and input_json_delta events). Otherwise the usual text reply.
 *  - When the conversation ends with tool results (OpenAI: `tool` messages; Anthropic: a user turn
 *    of `tool_result` blocks), the reply is text quoting them, joined by "; ":
 *    `[local stand-in model] The tool answered: <content>`.
 *  - Tests run it as a wire-accurate fake: `behave()` makes the next requests fail with a vendor
 *    error, hang, reset the connection, stream slowly or report chosen usage; `requests` records
 *    what arrived (with the key that was sent) and `stats` counts streams and chunks, so a test
 *    can see that a client which went away really stopped the stream.
 *
 * Keys: OpenAI's is `Authorization: Bearer <key>`; Anthropic's is `x-api-key: <key>` or, as
 * @anthropic-ai/sdk 1.x sends its `apiKey`, `Authorization: Bearer <key>`.
 *
 * Each request is handled in this order: record it, then the network-level behaviours (hang,
 * reset), then route (404 in the vendor's shape), authenticate (401), check Anthropic's version
 * header, then a `status` behaviour, then validate the body (400) and answer. Errors always use
 * the vendor's JSON error shape, so the SDKs raise their own typed errors (AuthenticationError,
 * InternalServerError, RateLimitError, …).
 *
 * Only Node's http/https; nothing is read from or written to disk.
 */
import { randomBytes } from "node:crypto";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";

export interface ModelUpstreamOptions {
  host?: string; // default "127.0.0.1"
  port?: number; // default 0 (a free port)
  tls?: { cert: string; key: string }; // serve HTTPS with this PEM cert/key
  keys?: ReadonlySet<string>; // API keys accepted; undefined = any non-empty key
  label?: string; // default "local stand-in model"; appears in every reply text
  record?: boolean; // keep every request in `requests` (default true; npm start's long-lived stand-in turns it off)
}

export type UpstreamBehavior =
  | { kind: "reply" } // default: the deterministic reply
  | { kind: "status"; status: number; message?: string } // answer this HTTP status with the vendor's JSON error shape
  | { kind: "hang" } // accept the request and never answer (until close)
  | { kind: "reset" } // destroy the socket without answering
  | { kind: "slow"; chunkDelayMs: number } // reply normally, but wait this long before each stream chunk (and before a non-stream answer)
  | { kind: "usage"; input: number; output: number }; // reply normally but report this usage

export interface UpstreamRequest {
  wire: "openai" | "anthropic";
  method: string;
  path: string;
  apiKey: string | null;
  body: unknown;
  at: number;
}

export interface ModelUpstream {
  url: string; // e.g. "http://127.0.0.1:43123" (https when tls)
  openaiBaseUrl: string; // `${url}/openai/v1`  (what you pass as the OpenAI SDK baseURL)
  anthropicBaseUrl: string; // `${url}/anthropic`  (what you pass as the Anthropic SDK baseURL; it appends /v1/messages)
  requests: UpstreamRequest[]; // every request received, in order (apiKey is the key sent, for tests to assert on)
  behave(next: UpstreamBehavior): void; // behaviour for subsequent requests (default {kind:"reply"})
  /** Streams in flight right now and streams whose client went away before the end (for disconnect tests). */
  stats: { streamsOpen: number; streamsAborted: number; chunksSent: number };
  close(): Promise<void>; // closes the server and destroys open sockets (hanging requests included)
}

const DEFAULT_LABEL = "local stand-in model";
/** How much of the last user message the reply quotes, in characters (code points). */
const QUOTE_CHARS = 200;
/** OpenAI's default when a request names no output limit (Anthropic requires one). */
const DEFAULT_MAX_TOKENS = 1024;
/** Request bodies above this are answered 413 without being parsed. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The deterministic reply
// ---------------------------------------------------------------------------------------------

interface ComposedReply {
  words: string[];
  inputTokens: number;
  outputTokens: number;
  /** True when maxTokens cut the reply short (finish_reason "length", stop_reason "max_tokens"). */
  truncated: boolean;
}

function composeReply(input: { texts: string[]; maxTokens: number; label: string; lastUserText?: string; toolResult?: string }): ComposedReply {
  const lastUser = input.lastUserText ?? input.texts[input.texts.length - 1] ?? "";
  // Truncate by code points, so a surrogate pair is never split in half.
  const quote = (text: string) => Array.from(text).slice(0, QUOTE_CHARS).join("");
  const said = input.toolResult !== undefined ? `The tool answered: ${quote(input.toolResult)}` : `You said: ${quote(lastUser)}`;
  const pieces = `[${input.label}] ${said}`.split(" ");
  const all = pieces.map((p, i) => (i === 0 ? p : ` ${p}`));
  const words = all.slice(0, Math.max(0, input.maxTokens));
  // A rough, deterministic "tokenizer": four UTF-8 bytes a token, plus three a message.
  const inputTokens = input.texts.reduce((n, t) => n + Math.ceil(Buffer.byteLength(t, "utf8") / 4) + 3, 0);
  return { words, inputTokens, outputTokens: words.length, truncated: words.length < all.length };
}

/**
 * The deterministic reply and usage for a request: exported so tests can compute expected values.
 * `texts` is the text of every message in order (system first); the reply quotes `lastUserText`
 * (the last user message's text), which defaults to the last of `texts` for the common case of a
 * conversation that ends with the user's turn. Joining `words` gives the reply text.
 */
export function standInReply(input: { texts: string[]; maxTokens: number; label: string; lastUserText?: string }): {
  words: string[];
  inputTokens: number;
  outputTokens: number;
} {
  const { words, inputTokens, outputTokens } = composeReply(input);
  return { words, inputTokens, outputTokens };
}

/** The call the stand-in makes (see the module header), before the wire gives it an id. */
interface ToolUse {
  name: string;
  /** The arguments, as compact JSON. */
  arguments: string;
  input: Record<string, unknown>;
  inputTokens: number;
  outputTokens: number;
}

const USE_TOOL = /(?:^|\s)use ([A-Za-z0-9_-]{1,64}) with (\{[\s\S]*\})$/;

/** The tool call a conversation's last user turn asks for, if it names an offered tool with a JSON object. */
function toolUse(lastUserText: string, offered: string[], texts: string[]): ToolUse | null {
  const m = USE_TOOL.exec(lastUserText.trim());
  if (!m || !offered.includes(m[1])) return null;
  let input: unknown;
  try {
    input = JSON.parse(m[2]);
  } catch {
    return null;
  }
  if (!isObject(input)) return null;
  const args = JSON.stringify(input);
  const { inputTokens } = composeReply({ texts, maxTokens: 0, label: "" });
  return { name: m[1], arguments: args, input, inputTokens, outputTokens: Math.ceil(Buffer.byteLength(m[1] + args, "utf8") / 4) + 1 };
}

/** A tool call's arguments in the fragments a stream sends them in (a few characters each). */
function fragments(text: string): string[] {
  const chars = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += 6) out.push(chars.slice(i, i + 6).join(""));
  return out;
}

/** The text of message content given as a string or as an array of `{type: "text", text}` parts. */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .filter((p): p is { type: "text"; text: string } => isObject(p) && p.type === "text" && typeof p.text === "string")
    .map((p) => p.text)
    .join("");
}

/** The texts `standInReply` counts and the last user message's text, for one conversation. */
function conversation(system: unknown, messages: Record<string, unknown>[]): { texts: string[]; lastUserText: string } {
  const texts: string[] = [];
  if (system !== undefined && system !== null) texts.push(contentText(system));
  let lastUserText = "";
  for (const m of messages) {
    const text = contentText(m.content);
    texts.push(text);
    if (m.role === "user") lastUserText = text;
  }
  return { texts, lastUserText };
}

// ---------------------------------------------------------------------------------------------
// Vendor shapes: models and errors
// ---------------------------------------------------------------------------------------------

/** OpenAI's model list (fixed `created` times so that answers are deterministic). */
const OPENAI_MODELS = [
  { id: "gpt-4o-mini", object: "model", created: 1721172741, owned_by: "gatehouse-stand-in" },
  { id: "gpt-4.1", object: "model", created: 1744316542, owned_by: "gatehouse-stand-in" },
  { id: "gpt-4.1-mini", object: "model", created: 1744318173, owned_by: "gatehouse-stand-in" },
];

const ANTHROPIC_MODELS = [
  { type: "model", id: "claude-sonnet-4-5", display_name: "Claude Sonnet 4.5 (local stand-in)", created_at: "2025-09-29T00:00:00Z" },
  { type: "model", id: "claude-haiku-4-5", display_name: "Claude Haiku 4.5 (local stand-in)", created_at: "2025-10-15T00:00:00Z" },
];

/** The `error.type` OpenAI uses for a status. */
function openaiErrorType(status: number): string {
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** The `error.type` Anthropic uses for a status (https://docs.anthropic.com/en/api/errors). */
function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

function defaultErrorMessage(status: number): string {
  if (status === 429) return "Rate limit reached (local stand-in).";
  if (status === 529) return "Overloaded (local stand-in).";
  if (status >= 500) return "The server had an error while processing your request (local stand-in).";
  return `Request failed with status ${status} (local stand-in).`;
}

type Wire = UpstreamRequest["wire"];

/** One vendor error answer: the status, the vendor's JSON shape, and retry-after for 429. */
function sendError(res: ServerResponse, wire: Wire, status: number, message: string, extra: { type?: string; code?: string | null } = {}): void {
  const body =
    wire === "openai"
      ? { error: { message, type: extra.type ?? openaiErrorType(status), param: null, code: extra.code ?? null } }
      : { type: "error", error: { type: extra.type ?? anthropicErrorType(status), message } };
  const headers: Record<string, string> = {};
  if (status === 429) headers["retry-after"] = "1";
  sendJson(res, wire, status, body, headers);
}

function sendJson(res: ServerResponse, wire: Wire, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { ...jsonHeaders(wire), ...headers });
  res.end(JSON.stringify(body));
}

/** The headers every answer carries: the vendor's request-id header, which the SDKs expose as `_request_id`. */
function baseHeaders(wire: Wire): Record<string, string> {
  const requestId = `req_${randomId(24)}`;
  return wire === "openai"
    ? { "x-request-id": requestId, server: "gatehouse-model-stand-in" }
    : { "request-id": requestId, server: "gatehouse-model-stand-in" };
}

function jsonHeaders(wire: Wire): Record<string, string> {
  return { ...baseHeaders(wire), "content-type": "application/json" };
}

const ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
function randomId(length: number): string {
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ID_ALPHABET[b % ID_ALPHABET.length];
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isPositiveInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0;
}

// ---------------------------------------------------------------------------------------------
// Answering one request
// ---------------------------------------------------------------------------------------------

type Stats = ModelUpstream["stats"];

/** Per-request state: whether the client has gone (the response closed before it finished). */
interface Exchange {
  res: ServerResponse;
  wire: Wire;
  behavior: UpstreamBehavior;
  label: string;
  stats: Stats;
  gone: boolean;
}

/** Wait `ms`, or less if the client goes away meanwhile. */
function pause(ex: Exchange, ms: number): Promise<void> {
  if (ms <= 0 || ex.gone) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      ex.res.off("close", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    ex.res.on("close", done);
  });
}

function chunkDelay(ex: Exchange): number {
  return ex.behavior.kind === "slow" ? Math.max(0, ex.behavior.chunkDelayMs) : 0;
}

/**
 * A server-sent event stream on one response. Each event is written as soon as it is ready (Node
 * writes a chunk straight to the socket, and the server disables Nagle), so a client sees the
 * reply progressively. `send` returns false once the client has gone; the caller then stops.
 */
class EventStream {
  constructor(private readonly ex: Exchange) {
    const { res, stats } = ex;
    res.writeHead(200, {
      ...baseHeaders(ex.wire),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    });
    res.flushHeaders();
    stats.streamsOpen++;
    res.on("close", () => {
      stats.streamsOpen--;
      // 'close' follows 'finish' on a completed response; without it the client went away first.
      if (!res.writableFinished) stats.streamsAborted++;
    });
  }

  /** Writes one event (after the slow behaviour's delay); false once the client has gone. */
  async send(frame: string): Promise<boolean> {
    await pause(this.ex, chunkDelay(this.ex));
    if (this.ex.gone) return false;
    const flushed = this.ex.res.write(frame);
    this.ex.stats.chunksSent++;
    if (!flushed && !this.ex.gone) {
      // Respect backpressure: wait for the socket to drain (or to close).
      await new Promise<void>((resolve) => {
        const done = () => {
          this.ex.res.off("drain", done);
          this.ex.res.off("close", done);
          resolve();
        };
        this.ex.res.on("drain", done);
        this.ex.res.on("close", done);
      });
    }
    return !this.ex.gone;
  }

  end(): void {
    if (!this.ex.gone) this.ex.res.end();
  }
}

/** The usage to report: the computed one, or the `usage` behaviour's override. */
function reportedUsage(ex: Exchange, reply: ComposedReply): { input: number; output: number } {
  return ex.behavior.kind === "usage"
    ? { input: ex.behavior.input, output: ex.behavior.output }
    : { input: reply.inputTokens, output: reply.outputTokens };
}

// --- OpenAI ------------------------------------------------------------------------------------

async function openaiChatCompletions(ex: Exchange, body: unknown): Promise<void> {
  if (!isObject(body)) return sendError(ex.res, "openai", 400, "We could not parse the JSON body of your request.");
  if (typeof body.model !== "string" || body.model === "")
    return sendError(ex.res, "openai", 400, "you must provide a model parameter");
  const messages = body.messages;
  if (!Array.isArray(messages) || messages.length === 0 || !messages.every((m) => isObject(m) && typeof m.role === "string"))
    return sendError(ex.res, "openai", 400, "Missing required parameter: 'messages'.", { code: "missing_required_parameter" });
  const limit = body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS;
  if (!isPositiveInteger(limit))
    return sendError(ex.res, "openai", 400, "Invalid 'max_completion_tokens': expected a positive integer.", { code: "invalid_value" });

  // System (and developer) messages are ordinary messages on this wire; tool messages' content
  // and assistants' tool call arguments are text the prompt holds, and so are the tools offered.
  const list = messages as Record<string, unknown>[];
  const { texts, lastUserText } = conversation(undefined, list);
  for (const m of list) {
    if (Array.isArray(m.tool_calls)) for (const c of m.tool_calls) if (isObject(c) && isObject(c.function)) texts.push(String(c.function.arguments ?? ""));
  }
  const tools = Array.isArray(body.tools) ? body.tools : [];
  if (!tools.every((t) => isObject(t) && t.type === "function" && isObject(t.function) && typeof t.function.name === "string"))
    return sendError(ex.res, "openai", 400, "Invalid 'tools': each tool needs type 'function' and a function name.", { code: "invalid_value" });
  if (tools.length > 0) texts.push(JSON.stringify(tools));
  const last = list[list.length - 1];
  const trailingResults: string[] = [];
  for (let i = list.length - 1; i >= 0 && list[i].role === "tool"; i--) trailingResults.unshift(contentText(list[i].content));
  const offered = body.tool_choice === "none" ? [] : tools.map((t) => String((t as { function: { name: string } }).function.name));
  const use = last?.role === "user" ? toolUse(lastUserText, offered, texts) : null;
  if (use) return openaiToolCall(ex, body, use);
  const reply = composeReply({ texts, maxTokens: limit, label: ex.label, lastUserText, ...(trailingResults.length > 0 ? { toolResult: trailingResults.join("; ") } : {}) });
  const usage = reportedUsage(ex, reply);
  const openaiUsage = { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output };
  const id = `chatcmpl-${randomId(29)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model;
  const finishReason = reply.truncated ? "length" : "stop";

  if (body.stream !== true) {
    await pause(ex, chunkDelay(ex));
    if (ex.gone) return;
    return sendJson(ex.res, "openai", 200, {
      id,
      object: "chat.completion",
      created,
      model,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: reply.words.join(""), refusal: null },
          logprobs: null,
          finish_reason: finishReason,
        },
      ],
      usage: openaiUsage,
      system_fingerprint: null,
    });
  }

  // As OpenAI does: with include_usage, every chunk carries `usage: null` and one last chunk with
  // no choices carries the usage; without it, chunks have no usage field at all.
  const streamOptions = body.stream_options;
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true;
  const chunk = (choices: unknown[], usageField?: unknown) => {
    const c: Record<string, unknown> = { id, object: "chat.completion.chunk", created, model, system_fingerprint: null, choices };
    if (includeUsage) c.usage = usageField ?? null;
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  const choice = (delta: Record<string, unknown>, finish: string | null) => ({ index: 0, delta, logprobs: null, finish_reason: finish });

  const stream = new EventStream(ex);
  const frames = [
    chunk([choice({ role: "assistant", content: "", refusal: null }, null)]),
    ...reply.words.map((w) => chunk([choice({ content: w }, null)])),
    chunk([choice({}, finishReason)]),
    ...(includeUsage ? [chunk([], openaiUsage)] : []),
    "data: [DONE]\n\n",
  ];
  for (const frame of frames) if (!(await stream.send(frame))) return;
  stream.end();
}

/** The stand-in's tool call on OpenAI's wire: message.tool_calls, or delta.tool_calls with the arguments in fragments. */
async function openaiToolCall(ex: Exchange, body: Record<string, unknown>, use: ToolUse): Promise<void> {
  const usage = ex.behavior.kind === "usage" ? { input: ex.behavior.input, output: ex.behavior.output } : { input: use.inputTokens, output: use.outputTokens };
  const openaiUsage = { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output };
  const id = `chatcmpl-${randomId(29)}`;
  const callId = `call_${randomId(24)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model;
  if (body.stream !== true) {
    await pause(ex, chunkDelay(ex));
    if (ex.gone) return;
    return sendJson(ex.res, "openai", 200, {
      id,
      object: "chat.completion",
      created,
      model,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: null,
            refusal: null,
            tool_calls: [{ id: callId, type: "function", function: { name: use.name, arguments: use.arguments } }],
          },
          logprobs: null,
          finish_reason: "tool_calls",
        },
      ],
      usage: openaiUsage,
      system_fingerprint: null,
    });
  }
  const streamOptions = body.stream_options;
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true;
  const chunk = (choices: unknown[], usageField?: unknown) => {
    const c: Record<string, unknown> = { id, object: "chat.completion.chunk", created, model, system_fingerprint: null, choices };
    if (includeUsage) c.usage = usageField ?? null;
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  const choice = (delta: Record<string, unknown>, finish: string | null) => ({ index: 0, delta, logprobs: null, finish_reason: finish });
  const stream = new EventStream(ex);
  const frames = [
    chunk([choice({ role: "assistant", content: null, tool_calls: [{ index: 0, id: callId, type: "function", function: { name: use.name, arguments: "" } }], refusal: null }, null)]),
    ...fragments(use.arguments).map((f) => chunk([choice({ tool_calls: [{ index: 0, function: { arguments: f } }] }, null)])),
    chunk([choice({}, "tool_calls")]),
    ...(includeUsage ? [chunk([], openaiUsage)] : []),
    "data: [DONE]\n\n",
  ];
  for (const frame of frames) if (!(await stream.send(frame))) return;
  stream.end();
}

// --- Anthropic ---------------------------------------------------------------------------------

async function anthropicMessages(ex: Exchange, body: unknown): Promise<void> {
  const invalid = (message: string) => sendError(ex.res, "anthropic", 400, message);
  if (!isObject(body)) return invalid("There was an error parsing the body of your request: expected a JSON object.");
  if (typeof body.model !== "string" || body.model === "") return invalid("model: Field required");
  if (body.max_tokens === undefined) return invalid("max_tokens: Field required");
  if (!isPositiveInteger(body.max_tokens)) return invalid("max_tokens: Input should be a positive integer");
  const messages = body.messages;
  if (messages === undefined) return invalid("messages: Field required");
  if (!Array.isArray(messages) || messages.length === 0) return invalid("messages: at least one message is required");
  if (!messages.every((m) => isObject(m) && (m.role === "user" || m.role === "assistant")))
    return invalid("messages: each message needs a role of 'user' or 'assistant'");
  if (body.system !== undefined && typeof body.system !== "string" && !Array.isArray(body.system))
    return invalid("system: Input should be a valid string or a list of text blocks");

  const tools = Array.isArray(body.tools) ? body.tools : [];
  if (!tools.every((t) => isObject(t) && typeof t.name === "string" && isObject(t.input_schema) && t.input_schema.type === "object"))
    return invalid("tools: each tool needs a name and an input_schema of type 'object'");
  const list = messages as Record<string, unknown>[];
  const { texts, lastUserText } = conversation(body.system, list);
  // tool_use inputs and tool_result contents are text the prompt holds, and so are the tools.
  const blocks = (m: Record<string, unknown>) => (Array.isArray(m.content) ? m.content.filter(isObject) : []);
  const calledIds = new Set<string>();
  for (const [i, m] of list.entries()) {
    for (const b of blocks(m)) {
      if (b.type === "tool_use") {
        if (m.role !== "assistant" || typeof b.id !== "string" || !isObject(b.input)) return invalid(`messages.${i}: a tool_use block belongs to an assistant turn, with an id and an input object`);
        calledIds.add(b.id);
        texts.push(JSON.stringify(b.input));
      } else if (b.type === "tool_result") {
        if (m.role !== "user" || typeof b.tool_use_id !== "string" || !calledIds.has(b.tool_use_id))
          return invalid(`messages.${i}: tool_result block(s) provided when previous message does not have matching tool_use block(s)`);
        texts.push(contentText(b.content));
      }
    }
  }
  if (tools.length > 0) texts.push(JSON.stringify(tools));
  const last = list[list.length - 1];
  const results = blocks(last).filter((b) => b.type === "tool_result").map((b) => contentText(b.content));
  const choiceNone = isObject(body.tool_choice) && body.tool_choice.type === "none";
  const offered = choiceNone ? [] : tools.map((t) => String((t as { name: string }).name));
  const use = last.role === "user" && results.length === 0 ? toolUse(lastUserText, offered, texts) : null;
  if (use) return anthropicToolUse(ex, body, use);
  const reply = composeReply({ texts, maxTokens: body.max_tokens, label: ex.label, lastUserText, ...(results.length > 0 ? { toolResult: results.join("; ") } : {}) });
  const usage = reportedUsage(ex, reply);
  const id = `msg_${randomId(24)}`;
  const model = body.model;
  const stopReason = reply.truncated ? "max_tokens" : "end_turn";

  if (body.stream !== true) {
    await pause(ex, chunkDelay(ex));
    if (ex.gone) return;
    return sendJson(ex.res, "anthropic", 200, {
      id,
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "text", text: reply.words.join("") }],
      stop_reason: stopReason,
      stop_sequence: null,
      usage: { input_tokens: usage.input, output_tokens: usage.output },
    });
  }

  const event = (data: Record<string, unknown>) => `event: ${String(data.type)}\ndata: ${JSON.stringify(data)}\n\n`;
  const stream = new EventStream(ex);
  const frames = [
    event({
      type: "message_start",
      message: {
        id,
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: usage.input, output_tokens: 1 },
      },
    }),
    event({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
    event({ type: "ping" }),
    ...reply.words.map((w) => event({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: w } })),
    event({ type: "content_block_stop", index: 0 }),
    event({ type: "message_delta", delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage.output } }),
    event({ type: "message_stop" }),
  ];
  for (const frame of frames) if (!(await stream.send(frame))) return;
  stream.end();
}

/** The stand-in's tool call on Anthropic's wire: a tool_use block, or its content_block_start and input_json_delta events. */
async function anthropicToolUse(ex: Exchange, body: Record<string, unknown>, use: ToolUse): Promise<void> {
  const usage = ex.behavior.kind === "usage" ? { input: ex.behavior.input, output: ex.behavior.output } : { input: use.inputTokens, output: use.outputTokens };
  const id = `msg_${randomId(24)}`;
  const toolId = `toolu_${randomId(24)}`;
  const model = body.model;
  if (body.stream !== true) {
    await pause(ex, chunkDelay(ex));
    if (ex.gone) return;
    return sendJson(ex.res, "anthropic", 200, {
      id,
      type: "message",
      role: "assistant",
      model,
      content: [{ type: "tool_use", id: toolId, name: use.name, input: use.input }],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: { input_tokens: usage.input, output_tokens: usage.output },
    });
  }
  const event = (data: Record<string, unknown>) => `event: ${String(data.type)}\ndata: ${JSON.stringify(data)}\n\n`;
  const stream = new EventStream(ex);
  const frames = [
    event({
      type: "message_start",
      message: { id, type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: usage.input, output_tokens: 1 } },
    }),
    event({ type: "content_block_start", index: 0, content_block: { type: "tool_use", id: toolId, name: use.name, input: {} } }),
    event({ type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: "" } }),
    ...fragments(use.arguments).map((f) => event({ type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: f } })),
    event({ type: "content_block_stop", index: 0 }),
    event({ type: "message_delta", delta: { stop_reason: "tool_use", stop_sequence: null }, usage: { output_tokens: usage.output } }),
    event({ type: "message_stop" }),
  ];
  for (const frame of frames) if (!(await stream.send(frame))) return;
  stream.end();
}

// --- Routing -----------------------------------------------------------------------------------

/** The route a request names, or null for a 404. `model` is set for the single-model routes. */
type Route = { endpoint: "models" | "model" | "chat" | "messages"; model?: string };

function route(wire: Wire, method: string, path: string): Route | null {
  const prefix = wire === "openai" ? "/openai/v1/" : "/anthropic/v1/";
  if (!path.startsWith(prefix)) return null;
  const rest = path.slice(prefix.length).replace(/\/+$/, "");
  if (method === "GET" && rest === "models") return { endpoint: "models" };
  if (method === "GET" && rest.startsWith("models/") && rest.length > "models/".length)
    return { endpoint: "model", model: decodeURIComponent(rest.slice("models/".length)) };
  if (method === "POST" && wire === "openai" && rest === "chat/completions") return { endpoint: "chat" };
  if (method === "POST" && wire === "anthropic" && rest === "messages") return { endpoint: "messages" };
  return null;
}

function header(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  if (Array.isArray(v)) return v[0] ?? null;
  return v ?? null;
}

/**
 * The API key the request sent on its wire: `Authorization: Bearer` for OpenAI; `x-api-key` for
 * Anthropic, or `Authorization: Bearer` there too, because @anthropic-ai/sdk 1.x sends its
 * `apiKey` that way (older SDKs and raw clients send x-api-key).
 */
function sentKey(req: IncomingMessage, wire: Wire): string | null {
  const auth = header(req, "authorization");
  const m = auth ? /^Bearer\s+(.*)$/i.exec(auth) : null;
  const bearer = m ? m[1].trim() : null;
  return wire === "anthropic" ? (header(req, "x-api-key") ?? bearer) : bearer;
}

/** Reads the whole body (up to MAX_BODY_BYTES; null beyond, after draining the rest). */
function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY_BYTES) chunks.push(c);
    });
    req.on("end", () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
    req.on("close", () => {
      if (!req.complete) reject(new Error("the client went away while sending the request"));
    });
  });
}

/** The parsed JSON body; `undefined` for an empty body, `PARSE_ERROR` when it is not JSON. */
const PARSE_ERROR = Symbol("parse error");
function parseJson(text: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return PARSE_ERROR;
  }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/** Starts the upstream and resolves once it listens. */
export async function startModelUpstream(options: ModelUpstreamOptions = {}): Promise<ModelUpstream> {
  const host = options.host ?? "127.0.0.1";
  const label = options.label ?? DEFAULT_LABEL;
  const keys = options.keys;
  const requests: UpstreamRequest[] = [];
  const stats: Stats = { streamsOpen: 0, streamsAborted: 0, chunksSent: 0 };
  let behavior: UpstreamBehavior = { kind: "reply" };
  const sockets = new Set<Socket>();

  const keyAccepted = (key: string | null) => key !== null && key !== "" && (keys === undefined || keys.has(key));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The behaviour in force when the request arrived applies to it, whatever behave() does later.
    const current = behavior;
    const method = req.method ?? "GET";
    const path = new URL(req.url ?? "/", "http://stand-in").pathname;
    // Outside both prefixes the request is told off in the shape of the wire its headers suggest.
    const wire: Wire =
      path === "/anthropic" || path.startsWith("/anthropic/")
        ? "anthropic"
        : path === "/openai" || path.startsWith("/openai/")
          ? "openai"
          : header(req, "x-api-key") !== null || header(req, "anthropic-version") !== null
            ? "anthropic"
            : "openai";
    const ex: Exchange = { res, wire, behavior: current, label, stats, gone: false };
    res.on("close", () => {
      ex.gone = !res.writableFinished;
    });

    const raw = await readBody(req);
    const parsed = raw === null ? undefined : parseJson(raw);
    if (options.record !== false) requests.push({
      wire,
      method,
      path,
      apiKey: sentKey(req, wire),
      body: parsed === PARSE_ERROR ? raw : (parsed ?? null),
      at: Date.now(),
    });

    // Network-level behaviours first: they happen whatever the request says.
    if (current.kind === "hang") return; // close() destroys the socket
    if (current.kind === "reset") {
      req.socket.destroy();
      return;
    }

    const r = route(wire, method, path);
    if (r === null) {
      return wire === "openai"
        ? sendError(res, wire, 404, `Invalid URL (${method} ${path})`)
        : sendError(res, wire, 404, `Not found: ${method} ${path}`);
    }
    if (!keyAccepted(sentKey(req, wire))) {
      return wire === "openai"
        ? sendError(res, wire, 401, "Incorrect API key provided.", { code: "invalid_api_key" })
        : sendError(res, wire, 401, "invalid x-api-key");
    }
    if (wire === "anthropic" && !header(req, "anthropic-version")) {
      return sendError(res, wire, 400, "anthropic-version: header is required");
    }
    if (current.kind === "status") {
      return sendError(res, wire, current.status, current.message ?? defaultErrorMessage(current.status));
    }
    if (raw === null) return sendError(res, wire, 413, "Request body too large.");

    switch (r.endpoint) {
      case "models":
        await pause(ex, chunkDelay(ex));
        if (ex.gone) return;
        return wire === "openai"
          ? sendJson(res, wire, 200, { object: "list", data: OPENAI_MODELS })
          : sendJson(res, wire, 200, {
              data: ANTHROPIC_MODELS,
              has_more: false,
              first_id: ANTHROPIC_MODELS[0].id,
              last_id: ANTHROPIC_MODELS[ANTHROPIC_MODELS.length - 1].id,
            });
      case "model": {
        await pause(ex, chunkDelay(ex));
        if (ex.gone) return;
        const found = (wire === "openai" ? OPENAI_MODELS : ANTHROPIC_MODELS).find((m) => m.id === r.model);
        if (!found)
          return wire === "openai"
            ? sendError(res, wire, 404, `The model '${r.model}' does not exist`, { code: "model_not_found" })
            : sendError(res, wire, 404, `model: ${r.model}`);
        return sendJson(res, wire, 200, found);
      }
      case "chat":
      case "messages":
        if (parsed === PARSE_ERROR)
          return wire === "openai"
            ? sendError(res, wire, 400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)")
            : sendError(res, wire, 400, "There was an error parsing the body of your request: it is not valid JSON.");
        return r.endpoint === "chat" ? openaiChatCompletions(ex, parsed) : anthropicMessages(ex, parsed);
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => {
      // A request that failed mid-way (the client went away while its body was read): nothing to answer.
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "stand-in internal error", type: "server_error", param: null, code: null } }));
      } else {
        res.destroy();
      }
    });
  };

  // noDelay: write each SSE chunk to the wire at once instead of letting Nagle batch them.
  const server: Server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, noDelay: true }, onRequest)
    : createHttpServer({ noDelay: true }, onRequest);
  // Track raw sockets (for HTTPS too: 'connection' sees the TCP socket under the TLS one) so that
  // close() can end hanging requests and open streams at once.
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  // A hanging request must be able to hang for as long as the test wants.
  server.requestTimeout = 0;

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  const { port } = server.address() as { port: number };
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const url = `${options.tls ? "https" : "http"}://${hostPart}:${port}`;

  let closing: Promise<void> | null = null;
  return {
    url,
    openaiBaseUrl: `${url}/openai/v1`,
    anthropicBaseUrl: `${url}/anthropic`,
    requests,
    stats,
    behave(next: UpstreamBehavior) {
      behavior = next;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}
