/**
 * /functions/v1/model-gateway: the one path every model call in Gatehouse takes, OpenAI-compatible
 * so that an agent runtime points the official OpenAI SDK at `<api>/functions/v1/model-gateway/v1`
 * and works unchanged. The route table below is the function's OpenAPI document (GET /openapi.json).
 *
 *   POST /v1/chat/completions   a call, streamed (SSE) or not, served by the model's provider,
 *                               with function tools (tools, tool_choice, tool_calls, tool messages)
 *   POST /v1/messages           the same on Anthropic's Messages wire (models/messages.ts), for
 *                               @anthropic-ai/sdk pointed at the gateway, whatever the model's vendor
 *   GET  /v1/models             the models the caller may call
 *   POST /keys                  save the organization's own vendor key, verified live (tenant admin)
 *   POST /run-token/renew       swap a run token for a new one while its run is active
 *
 * Callers: a runtime with a run-scoped token (X-Run-Token, the anon key as Authorization) acts for
 * exactly that run; the service role names its run with X-Run-Id; either way the organization,
 * project and agent come from the run row. A member (the console playground) sends X-Org-Id and
 * X-Agent-Id, and must be project_contributor or above in the agent's project.
 *
 * Each call is reserved before it goes upstream (models/metering.ts), then made and settled by
 * the one model-call module (models/call.ts): a failure releases the reservation, a stream the
 * client cut off settles what was used. Every answer carries Server-Timing: the time spent in
 * Gatehouse, not counting the vendor. No prompt, output or key is logged or stored.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { asMember, asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { renewRunToken } from "../_shared/http/run_token.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";
import { type CallTiming, completeCall, type ModelCall, streamCall } from "../_shared/models/call.ts";
import { admitCall } from "../_shared/models/admit.ts";
import { allowedModels, type CallScope, scopeOf } from "../_shared/models/metering.ts";
import { modelEnvFrom, type Provider, upstreamFailure, upstreamFor } from "../_shared/models/upstream.ts";
import { chatRequestOf, MessagesRequest, messageOf, messagesStreamShape } from "../_shared/models/messages.ts";
import { ChatRequest, ToolCall } from "../_shared/models/wire.ts";

// Prompts may be long; 4 MiB of JSON is far past any model's context window.
const MAX_BODY = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------
const CallHeaders = z.object({
  "x-run-token": z.string().optional().describe("A run-scoped token (public.mint_run_token): the runtime of exactly that run"),
  "x-run-id": z.uuid().optional().describe("The agent runtime's run (service role)"),
  "x-org-id": z.string().optional().describe("The organization a member calls in"),
  "x-agent-id": z.uuid().optional().describe("The agent a member calls for"),
});
const Completion = z.object({
  id: z.string(),
  object: z.literal("chat.completion"),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    message: z.object({
      role: z.literal("assistant"),
      content: z.string().nullable().describe("null when the answer is only tool calls"),
      refusal: z.null(),
      tool_calls: z.array(ToolCall).optional(),
    }),
    logprobs: z.null(),
    finish_reason: z.enum(["stop", "length", "content_filter", "tool_calls"]),
  })),
  usage: z.object({ prompt_tokens: z.number().int(), completion_tokens: z.number().int(), total_tokens: z.number().int() }),
}).openapi("ChatCompletion");
const Message = z.object({
  id: z.string(),
  type: z.literal("message"),
  role: z.literal("assistant"),
  model: z.string(),
  content: z.array(z.union([
    z.object({ type: z.literal("text"), text: z.string() }),
    z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.record(z.string(), z.unknown()) }),
  ])),
  stop_reason: z.string(),
  stop_sequence: z.null(),
  usage: z.object({ input_tokens: z.number().int(), output_tokens: z.number().int() }),
}).openapi("Message");
const ModelList = z.object({
  object: z.literal("list"),
  data: z.array(z.object({ id: z.string(), object: z.literal("model"), created: z.number().int(), owned_by: z.string() })),
});
const SaveKeyBody = z.strictObject({
  provider: z.enum(["openai", "anthropic"]),
  api_key: z.string().min(8).max(4096).regex(/^[\x21-\x7e]+$/, "a key is printable ASCII without spaces"),
  base_url: z.url().max(500).optional().describe("An OpenAI-compatible endpoint of your own (Azure, self-hosted); default: the vendor's"),
});
const SavedKey = z.object({
  id: z.uuid(),
  org_id: z.uuid(),
  provider: z.enum(["openai", "anthropic"]),
  base_url: z.string().nullable(),
  key_hint: z.string(),
  verified_at: z.string(),
});

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------
const app = functionApp({
  name: "model-gateway",
  version: "1.0.0",
  description: "Every model call, metered and budgeted: OpenAI-compatible chat completions served by OpenAI-compatible or Anthropic upstreams.",
});
// Every answer says how long it spent in Gatehouse (admission, settle and our code), not counting
// the vendor's share, which the call reports (vendorTime). A stream's header is sent before its
// settlement, so a stream's figure is its admission and the code up to its first byte.
app.use(async (c, next) => {
  const started = performance.now();
  await next();
  const t = timingOf.get(c.req.raw);
  const ms = (v: number | undefined) => (v ?? 0).toFixed(2);
  c.res.headers.set("server-timing", [
    `gatehouse;dur=${ms(performance.now() - started - (t?.vendorMs ?? 0))};desc="admission, settle and our code"`,
    `admit;dur=${ms(t?.admitMs)}`, `settle;dur=${ms(t?.settleMs)}`, `vendor;dur=${ms(t?.vendorMs)}`,
  ].join(", "));
});
app.use(jsonBody(MAX_BODY));

app.openapi(createRoute({
  method: "post", path: "/v1/chat/completions", summary: "A chat completion, streamed as server-sent events with stream: true",
  request: { headers: CallHeaders, ...jsonRequest(ChatRequest) },
  responses: {
    200: {
      description: "The completion (JSON), or with stream: true its chunks (text/event-stream, ending with data: [DONE])",
      content: { ...jsonContent(Completion), "text/event-stream": { schema: z.string() } },
    },
    ...refusals(400, 401, 402, 403, 404, 409, 413, 415, 429, 502, 503, 504),
  },
}), async (c) => {
  const body = c.req.valid("json");
  const stream = body.stream === true;
  const call = await admit(c, body);
  if (!stream) {
    const answered = await completeCall(call);
    vendorTime(c, answered.timing);
    if (!answered.ok) throw answered.failure;
    return c.json({ ...answered.completion, model: body.model }, 200);
  }
  const includeUsage = body.stream_options?.include_usage === true;
  const streamed = await streamCall(call, {
    // Each upstream chunk as `data: <chunk>`, named as the caller named the model; the usage chunk
    // only when the caller asked for it (stream_options.include_usage).
    event: (chunk) => {
      if (chunk.choices.length === 0 && !includeUsage) return null;
      const { usage, ...rest } = chunk;
      return { ...rest, model: body.model, ...(includeUsage ? { usage: usage ?? null } : {}) };
    },
    end: () => ["[DONE]"],
    fail: (failure) => [{ error: { code: failure.code, message: failure.message, type: "api_error" } }],
  });
  vendorTime(c, streamed.timing);
  if (!streamed.ok) throw streamed.failure;
  return streamed.response;
});

app.openapi(createRoute({
  method: "post", path: "/v1/messages", summary: "Anthropic's Messages wire: a message, streamed as named server-sent events with stream: true",
  request: { headers: CallHeaders, ...jsonRequest(MessagesRequest) },
  responses: {
    200: {
      description: "The message (JSON), or with stream: true its events (text/event-stream: message_start, content_block_start, content_block_delta, content_block_stop, message_delta, message_stop)",
      content: { ...jsonContent(Message), "text/event-stream": { schema: z.string() } },
    },
    ...refusals(400, 401, 402, 403, 404, 409, 413, 415, 429, 502, 503, 504),
  },
}), async (c) => {
  const translated = chatRequestOf(c.req.valid("json"));
  if (!translated.ok) throw refuse("invalid_body", translated.message);
  const body = translated.request;
  const call = await admit(c, body);
  if (body.stream !== true) {
    const answered = await completeCall(call);
    vendorTime(c, answered.timing);
    if (!answered.ok) throw answered.failure;
    return c.json(messageOf(answered.completion, body.model), 200);
  }
  const streamed = await streamCall(call, messagesStreamShape(body.model));
  vendorTime(c, streamed.timing);
  if (!streamed.ok) throw streamed.failure;
  return streamed.response;
});

app.openapi(createRoute({
  method: "get", path: "/v1/models", summary: "The models the caller may call (the organization's and the agent's allowlists)",
  request: { headers: CallHeaders },
  responses: { 200: { description: "OpenAI's model list", content: jsonContent(ModelList) }, ...refusals(400, 401, 403, 404) },
}), async (c) => {
  const scope = scopeFor(c);
  if (scope.kind === "member") await assertMember(scope);
  const models = await allowedModels(scope);
  return c.json({
    object: "list" as const,
    data: models.map((m) => ({ id: m.model, object: "model" as const, created: 0, owned_by: m.provider })),
  }, 200);
});

app.openapi(createRoute({
  method: "post", path: "/keys", summary: "Save the organization's own key for a provider, after a live check (tenant admin)",
  request: { headers: OrgHeader, ...jsonRequest(SaveKeyBody) },
  responses: {
    201: { description: "The saved key, without the key", content: jsonContent(z.object({ key: SavedKey })) },
    ...refusals(400, 401, 403, 413, 415, 422, 502, 504),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  if (caller.kind !== "user") throw refuse("sign_in_required", "a tenant admin saves keys from the console");
  const orgId = orgIdOf(c.req.raw);
  const { provider, api_key } = c.req.valid("json");
  const baseUrl = endpointUrl(c.req.valid("json").base_url);
  await db().begin((tx) => asMember(tx, caller, orgId, { atLeast: "tenant_admin" }));
  await verifyKey(provider, { apiKey: api_key, baseUrl });
  const [key] = await db().begin(async (tx) => {
    // Still a tenant admin after the live check (which may take a while), then the one writer.
    await asMember(tx, caller, orgId, { atLeast: "tenant_admin" });
    await asService(tx, { actingFor: caller });
    return tx`select id, org_id, provider, base_url, key_hint, verified_at
                from public.save_model_provider_key(${orgId}, ${provider}::public.model_provider, ${api_key}, ${baseUrl})`;
  });
  return c.json({ key: { ...key, verified_at: new Date(key.verified_at).toISOString() } as z.infer<typeof SavedKey> }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/run-token/renew", summary: "Swap a valid run token (X-Run-Token) for a new one, while its run is active",
  request: { headers: z.object({ "x-run-token": z.string().describe("The token to renew") }) },
  responses: {
    200: {
      description: "The new token (15 minutes); the old one is revoked",
      content: jsonContent(z.object({ token: z.string(), run_id: z.uuid(), expires_at: z.string() })),
    },
    ...refusals(400, 401),
  },
}), async (c) => c.json(await renewRunToken(c.req.raw), 200));

Deno.serve(app.fetch);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------
const modelEnv = configuration(modelEnvFrom, "model_gateway_misconfigured");

/** Where each request's time went (admission, the call's settlement and vendor share), for its Server-Timing header. */
const timingOf = new WeakMap<Request, Partial<CallTiming> & { admitMs?: number }>();

function vendorTime(c: Context, timing: CallTiming): void {
  timingOf.set(c.req.raw, { ...timingOf.get(c.req.raw), ...timing });
}

/**
 * Who the call is for: a run token's run (X-Run-Token: the runtime of exactly that run), the
 * service role's X-Run-Id, or a member's X-Org-Id and X-Agent-Id.
 */
function scopeFor(c: Context): CallScope {
  const header = (name: string) => c.req.header(name) ?? null;
  const uuid = (name: string) => {
    const value = header(name);
    if (value !== null && !z.uuid().safeParse(value).success) throw refuse("invalid_body", `${name} must be a uuid`);
    return value;
  };
  // The token is checked by the database in the reservation's own statement, not in one more.
  const token = header("x-run-token");
  if (token !== null) return { kind: "token", token, namedRunId: uuid("x-run-id") };
  return scopeOf(callerOf(c.req.raw), { runId: uuid("x-run-id"), orgId: () => orgIdOf(c.req.raw), agentId: uuid("x-agent-id") });
}

/** Admits a call on either wire (models/admit.ts), noting the admission's time for Server-Timing. */
async function admit(c: Context, body: ChatRequest): Promise<ModelCall> {
  const { call, admitMs } = await admitCall(scopeFor(c), modelEnv(), body, c.req.raw.signal);
  timingOf.set(c.req.raw, { admitMs });
  return call;
}

/** A member naming an organization they are not in is refused (403) before anything is read. */
async function assertMember(scope: Extract<CallScope, { kind: "member" }>): Promise<void> {
  await db().begin((tx) => asMember(tx, scope.user, scope.orgId));
}

/**
 * An organization's own endpoint, normalized (`new URL().href`, no trailing slash), or null. Only
 * https, and nothing that could carry a secret where members would read it: no user name or
 * password, query or fragment.
 */
function endpointUrl(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const url = new URL(raw);
  if (url.protocol !== "https:" && !(url.protocol === "http:" && modelEnv().egress.testOnly?.http)) {
    throw refuse("invalid_body", "base_url must be an https URL");
  }
  if (url.username || url.password || url.search || url.hash) {
    throw refuse("invalid_body", "base_url may not hold a user name, password, query or fragment (a key goes in api_key)");
  }
  return url.href.replace(/\/+$/, "");
}

/** The live check of a key: the provider's models list, through the egress guard. */
async function verifyKey(provider: Provider, key: { apiKey: string; baseUrl: string | null }): Promise<void> {
  try {
    await upstreamFor(modelEnv(), provider, key).listModels(AbortSignal.timeout(modelEnv().timeoutMs));
  } catch (e) {
    const failure = upstreamFailure(e);
    if (failure.code === "model_upstream_refused" || failure.code === "model_request_rejected") {
      throw refuse("model_key_rejected", `the ${provider} API refused the key (${failure.message})`);
    }
    throw failure;
  }
}
