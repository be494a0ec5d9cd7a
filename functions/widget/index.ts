/**
 * /functions/v1/widget: the public endpoints a widget embed talks to (no account, no JWT: the
 * publishable key and then a short-lived session). The route table below is the function's
 * OpenAPI document (GET /openapi.json).
 *
 *   POST /v1/sessions   {key, pow?, renew?}: a session for the Origin that asks, if the key allows it
 *   POST /v1/messages   {content, conversation_id?, stream?} with the session: the agent's answer
 *
 * The answer is the agent's published version (its model and instructions) through the model
 * gateway's metering (functions/_shared/models/): reserved against the organization's, the
 * agent's and the key's budgets before the call, settled after. Two statements per message
 * (private.widget_message_begin and _end). When the model fails, a budget is spent or a limit is
 * hit, the visitor gets a polite notice (200, `degraded`) and the team an escalation: never an
 * error page or a 5xx. Only protocol mistakes (a bad key or session, a wrong origin) are 4xx.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { cors } from "hono/cors";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { serviceDb } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, jsonRequest, refusals } from "../_shared/http/schemas.ts";
import { answer, type Begun, NOTICES, refusedReply } from "../_shared/widgets/answer.ts";
import { challenge, proofHolds, SESSION_SECONDS, signSession, verifySession, type WidgetSession } from "../_shared/widgets/session.ts";

const MAX_BODY = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------
const SessionBody = z.strictObject({
  key: z.string().min(1).max(100).describe("The agent's publishable widget key"),
  renew: z.string().min(1).max(2000).optional()
    .describe("The page's previous session (expired up to a day ago): the new one keeps its visitor, and so its conversations"),
  pow: z.strictObject({ challenge: z.string().min(1).max(2000), nonce: z.string().min(1).max(100) }).optional()
    .describe("The answer to a proof-of-work challenge, when the key asks for one"),
});
const Session = z.object({ session: z.string(), expires_in: z.number().int(), visitor_id: z.uuid() });
const MessageBody = z.strictObject({
  content: z.string().trim().min(1).max(4000),
  conversation_id: z.uuid().optional(),
  stream: z.boolean().optional(),
});
const Reply = z.object({
  conversation_id: z.uuid().nullable(),
  reply: z.object({ role: z.enum(["assistant", "notice"]), content: z.string() }),
  degraded: z.string().optional().describe("Why the reply is a notice: unavailable, busy"),
  code: z.string().optional().describe("With degraded: the refusal's own stable code (credits_exhausted, model_budget_exhausted, widget_rate_limited, …)"),
  held: z.boolean().optional().describe("The answer waits for the team's review (the key holds answers)"),
  retry_after: z.number().int().optional(),
});

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------
const app = functionApp({
  name: "widget",
  version: "1.0.0",
  description: "Public widget endpoints: origin-locked sessions for a publishable key, and the agent's answers.",
});
// Embeds call from customers' pages: answer the browser's preflight and let the page read the
// answers, refusals included. Messages: only for an origin a live key allows (never the request's
// own, reflected). Sessions: for any origin, because no credential rides on the request (the key
// is public, no cookie is sent) and the route itself refuses an origin the key doesn't allow, and
// notes that refusal for the key's owner: behind a failed preflight the request would never
// arrive, and the owner would never learn which site tried.
app.use(cors({
  origin: (origin, c) => (c.req.path.endsWith("/v1/sessions") && origin && origin !== "null" && origin.length <= 300 ? origin : allowedOrigin(origin)),
  allowMethods: ["POST", "OPTIONS"],
  allowHeaders: ["authorization", "content-type"],
  maxAge: 600,
}));
app.use(jsonBody(MAX_BODY));

app.openapi(createRoute({
  method: "post", path: "/v1/sessions", summary: "A session for the page's origin (Origin header), if the key is live and allows it",
  request: jsonRequest(SessionBody),
  responses: {
    201: { description: "A session token, for a few minutes", content: jsonContent(Session) },
    ...refusals(400, 401, 403, 413, 415, 428),
  },
}), async (c) => {
  const origin = originOf(c);
  const { key, pow, renew } = c.req.valid("json");
  const [found] = await serviceDb()`select * from private.widget_key_for(${key})`;
  const previous = renew ? await verifySession(renew, { renewal: true }) : null;
  if (!found) {
    // An unknown key; a page renewing a session of a key since rotated or turned off tells its owner.
    if (previous?.ok) await noteRefusal(previous.session.keyId, previous.session.keyVersion, "widget_renewal_refused", origin);
    throw refuse("widget_key_invalid");
  }
  if (!(found.allowed_origins as string[]).includes(origin)) {
    await noteRefusal(found.key_id, found.version, "widget_origin_not_allowed", origin);
    throw refuse("widget_origin_not_allowed");
  }
  // A session of this key and origin, renewed only at the key's version: a rotation ends the old
  // key's sessions for good (their visitor, and so their conversations, with them).
  const renewed = previous?.ok && previous.session.keyId === found.key_id && previous.session.origin === origin ? previous.session : null;
  if (renewed && renewed.keyVersion !== found.version) {
    await noteRefusal(found.key_id, renewed.keyVersion, "widget_renewal_refused", origin);
    throw refuse("widget_renewal_refused");
  }
  if (found.proof_of_work_bits > 0) {
    const expected = { keyId: found.key_id, origin, bits: found.proof_of_work_bits };
    if (!pow || !(await proofHolds(pow.challenge, pow.nonce, expected))) {
      throw refuse("proof_of_work_required", undefined, { fields: { challenge: await challenge(found.key_id, origin), bits: found.proof_of_work_bits } });
    }
  }
  const visitorId = renewed?.visitorId ?? crypto.randomUUID();
  const session = await signSession({ keyId: found.key_id, keyVersion: found.version, orgId: found.org_id, agentId: found.agent_id, origin, visitorId });
  return c.json({ session, expires_in: SESSION_SECONDS, visitor_id: visitorId }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/v1/messages", summary: "A visitor's message and the agent's answer (server-sent events with stream: true)",
  request: jsonRequest(MessageBody),
  responses: {
    200: {
      description: "The answer, or a polite notice when none can be given (degraded); with stream: true, `data: {delta}` events then `data: {done}`",
      content: { ...jsonContent(Reply), "text/event-stream": { schema: z.string() } },
    },
    ...refusals(400, 401, 403, 404, 413, 415),
  },
}), async (c) => {
  const session = await sessionOf(c);
  const { content, conversation_id, stream } = c.req.valid("json");
  const lead = /[^\s@<>()"',;:]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}/.exec(content)?.[0] ?? null;
  const wantsHuman = /\b(human|real person|a person|someone from|representative|talk to (an? )?(agent|human|person))\b/i.test(content);
  const [{ r }] = await serviceDb()`
    select private.widget_message_begin(${session.keyId}, ${session.keyVersion}, ${session.visitorId}, ${session.origin},
                                        ${conversation_id ?? null}, ${content}, ${wantsHuman}, ${lead}, ${NOTICES.unavailable}) as r`;
  const begun = r as Begun;
  if (!begun.ok) {
    if (begun.reason !== "widget_conversation_not_found") await noteRefusal(session.keyId, session.keyVersion, begun.reason, session.origin);
    if (begun.reason === "widget_session_expired") throw refuse("widget_session_expired");
    if (begun.reason === "widget_origin_not_allowed") throw refuse("widget_origin_not_allowed");
    if (begun.reason === "widget_conversation_not_found") throw refuse("widget_conversation_not_found");
    return c.json(refusedReply(begun), 200);
  }
  return await answer(c, begun, stream === true);
});

Deno.serve(app.fetch);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------
/** How long a worker remembers whether an origin is a live key's (for CORS), in milliseconds. */
const ORIGIN_CACHE_MS = 10_000;
const originCache = new Map<string, { allowed: boolean; until: number }>();

/**
 * The request's origin if a live key allows it (the CORS answer), else none: looked up once per
 * origin every ORIGIN_CACHE_MS, so that a message costs no extra statement.
 */
async function allowedOrigin(origin: string): Promise<string | null> {
  if (!origin || origin === "null" || origin.length > 300) return null;
  const now = Date.now();
  let known = originCache.get(origin);
  if (!known || known.until < now) {
    const [{ allowed }] = await serviceDb()`select private.widget_origin_allowed(${origin.toLowerCase()}) as allowed`;
    if (originCache.size >= 10_000) originCache.clear();
    known = { allowed: allowed === true, until: now + ORIGIN_CACHE_MS };
    originCache.set(origin, known);
  }
  return known.allowed ? origin : null;
}

/**
 * Notes a refusal for the key's site owner (private.note_widget_refusal: the Widgets screen shows
 * them; bounded there). Best effort: failing to note it never changes the visitor's answer.
 */
async function noteRefusal(keyId: string, keyVersion: number, reason: string, origin: string): Promise<void> {
  try {
    await serviceDb()`select private.note_widget_refusal(${keyId}, ${keyVersion}, ${reason}, ${origin})`;
  } catch (e) {
    console.error(JSON.stringify({ fn: "widget", msg: "refusal not noted", reason, error: (e as Error).message }));
  }
}

/** The page's origin, exactly as the browser sent it; a request without one gets no session. */
function originOf(c: Context): string {
  const origin = c.req.header("origin");
  if (!origin || origin === "null") throw refuse("widget_origin_required");
  return origin.toLowerCase();
}

/** The session of the request, used from the origin it was issued to. */
async function sessionOf(c: Context): Promise<WidgetSession> {
  const token = c.req.header("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) throw refuse("widget_session_required");
  const verified = await verifySession(token);
  if (!verified.ok) throw refuse(verified.reason === "expired" ? "widget_session_expired" : "widget_session_invalid");
  if (originOf(c) !== verified.session.origin) throw refuse("widget_origin_mismatch");
  return verified.session;
}
