/**
 * /functions/v1/inbound/{subscription}: signed webhooks that start runs (docs/webhooks.md;
 * supabase/migrations/…_inbound_webhooks.sql).
 *
 * A sender POSTs a JSON body with a personal access token that holds webhooks:ingest and is bound
 * to the subscription's project, and the Standard Webhooks headers. Every check comes before
 * anything is started, in this order, each refusal a 4xx with its own code:
 *
 *   1. the body's size                body_too_large (48 KiB; read, not parsed, as every function's is first)
 *   2. Authorization: Bearer gtp_…    missing_auth; token_invalid (a bad checksum: no lookup), token_revoked, token_expired
 *   3. the token and the subscription token_scope, inbound_subscription_not_found, inbound_token_project
 *   4. the headers                    inbound_headers_missing
 *   5. webhook-timestamp, ±5 minutes  inbound_timestamp_invalid, inbound_timestamp_too_old, inbound_timestamp_too_new
 *   6. webhook-signature              inbound_signature_invalid: v1 (HMAC-SHA256) through the standardwebhooks
 *                                     package, v1a (Ed25519) with Web Crypto; any signature in the header
 *                                     may match any secret (or key) that verifies now, so senders rotate
 *   7. the body is JSON               unsupported_media_type, invalid_json, invalid_text
 *   8. webhook-id is new              inbound_replayed (409, with the run the first delivery started)
 *
 * Then the delivery is recorded and a run of the subscription's agent started with the body as
 * input, in one transaction: 202 {delivery_id, run_id, status}. Refusals of a known subscription
 * are recorded, at most once a minute per reason (private.note_webhook_refusal).
 *
 * verify_jwt is off (a personal access token is not a JWT): the token is this route's credential.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { Webhook } from "standardwebhooks";
import { functionApp } from "../_shared/http/app.ts";
import { serviceDb } from "../_shared/http/db.ts";
import { HttpError, refuse, type RefusalCode } from "../_shared/http/errors.ts";
import { parseJsonBytes, readRawBody } from "../_shared/http/body.ts";
import { jsonContent, refusals } from "../_shared/http/schemas.ts";
import { patFormatValid } from "../_shared/pat/token.ts";

/** The largest body taken: a run's input (the body and the delivery's ids) is at most 64 KiB. */
export const MAX_BODY_BYTES = 48 * 1024;
/** How far webhook-timestamp may be from now, either way (Standard Webhooks' tolerance). */
export const TOLERANCE_SECONDS = 5 * 60;

const app = functionApp({
  name: "inbound",
  version: "1.0.0",
  description: "Inbound webhooks: a signed delivery with a personal access token starts a run of the subscription's agent.",
});

interface IngestContext {
  org_id: string;
  project_id: string;
  agent_id: string;
  user_id: string;
  scheme: "v1" | "v1a";
  secrets: string[];
  public_keys: string[];
}

const Accepted = z.object({
  delivery_id: z.uuid(),
  run_id: z.uuid().describe("The run the delivery started"),
  status: z.string().describe("The run's status (queued)"),
});

app.openapi(createRoute({
  method: "post", path: "/{subscription}",
  summary: "Deliver a signed webhook: starts a run of the subscription's agent with the body as input",
  request: {
    params: z.object({ subscription: z.uuid() }),
    headers: z.object({
      "webhook-id": z.string().optional().describe("The delivery's id: the replay guard and idempotency key"),
      "webhook-timestamp": z.string().optional().describe("Seconds since the epoch; within 5 minutes of now"),
      "webhook-signature": z.string().optional().describe("Space-separated v1,<base64 HMAC-SHA256> or v1a,<base64 Ed25519> of `${id}.${timestamp}.${body}`"),
    }),
  },
  security: [{ bearer: [] }],
  responses: {
    202: { description: "Accepted: the run it started", content: jsonContent(Accepted) },
    ...refusals(400, 401, 403, 404, 409, 413, 415, 503),
  },
}), async (c) => {
  const subscription = c.req.valid("param").subscription;
  // The size first, as every function's body: nothing larger is read, whoever sends it.
  const body = await readRawBody(c.req.raw, MAX_BODY_BYTES);
  const bearer = c.req.header("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!bearer) throw refuse("missing_auth", "send Authorization: Bearer <personal access token with webhooks:ingest>");
  // A bad checksum is refused before anything is asked of the database.
  if (!patFormatValid(bearer)) throw refuse("token_invalid", "inbound webhooks take a personal access token (gtp_…) whose checksum holds");
  const sql = serviceDb();
  const [{ context }] = await sql`select private.webhook_ingest_context(${bearer}, ${subscription}) as context`;
  const ctx = context as IngestContext & { refusal?: RefusalCode };
  try {
    if (ctx.refusal) throw refuse(ctx.refusal);
    const id = c.req.header("webhook-id");
    const timestamp = c.req.header("webhook-timestamp");
    const signature = c.req.header("webhook-signature");
    if (!id || !timestamp || !signature) throw refuse("inbound_headers_missing");
    if (id.length > 256 || !/^[\x21-\x7e]+$/.test(id)) throw refuse("inbound_headers_missing", "webhook-id is 1 to 256 printable ASCII characters");
    const sentAt = checkTimestamp(timestamp);
    if (!(await signatureHolds(ctx, { id, timestamp, signature }, body))) throw refuse("inbound_signature_invalid");
    const json = parseJsonBytes(c.req.header("content-type"), body);
    const digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", body)), (b) => b.toString(16).padStart(2, "0")).join("");
    const [{ accepted }] = await sql`select private.accept_webhook_delivery(${subscription}, ${ctx.user_id}, ${id}, ${sentAt.toISOString()},
                                      ${sql.json(json as never)}, ${body.byteLength}, ${digest}) as accepted`;
    const answer = accepted as { refusal?: "inbound_replayed"; run_id: string; delivery_id: string; status: string };
    if (answer.refusal) {
      throw refuse(answer.refusal, undefined, { fields: { run_id: answer.run_id, delivery_id: answer.delivery_id } });
    }
    return c.json({ delivery_id: answer.delivery_id, run_id: answer.run_id, status: answer.status }, 202);
  } catch (e) {
    const code = e instanceof HttpError ? e.code : undefined;
    if (code) await sql`select private.note_webhook_refusal(${subscription}, ${code})`.catch(() => {});
    throw e;
  }
});

/** webhook-timestamp as a date, within TOLERANCE_SECONDS of now. */
function checkTimestamp(raw: string): Date {
  if (!/^\d{1,12}$/.test(raw)) throw refuse("inbound_timestamp_invalid");
  const seconds = Number(raw);
  const now = Math.floor(Date.now() / 1000);
  if (now - seconds > TOLERANCE_SECONDS) throw refuse("inbound_timestamp_too_old");
  if (seconds - now > TOLERANCE_SECONDS) throw refuse("inbound_timestamp_too_new");
  return new Date(seconds * 1000);
}

/**
 * Whether any signature in the header verifies with any secret (v1) or public key (v1a) of the
 * subscription that verifies now, over the body's bytes as they came. v1 is the standardwebhooks
 * package's own check (which also holds the timestamp to its 5 minutes); v1a, which the package
 * does not implement, is Ed25519 over the same `${id}.${timestamp}.${body}` with Web Crypto.
 */
async function signatureHolds(ctx: IngestContext, headers: { id: string; timestamp: string; signature: string }, payload: Uint8Array): Promise<boolean> {
  const sent = { "webhook-id": headers.id, "webhook-timestamp": headers.timestamp, "webhook-signature": headers.signature };
  if (ctx.scheme === "v1") {
    for (const secret of ctx.secrets) {
      try {
        new Webhook(secret).verify(payload, sent, { jsonParse: false });
        return true;
      } catch {
        // Not this secret.
      }
    }
    return false;
  }
  const prefix = new TextEncoder().encode(`${headers.id}.${headers.timestamp}.`);
  const signed = new Uint8Array(prefix.byteLength + payload.byteLength);
  signed.set(prefix);
  signed.set(payload, prefix.byteLength);
  const signatures = headers.signature.split(" ").flatMap((s) => {
    const [version, value] = s.split(",");
    return version === "v1a" && value && /^[A-Za-z0-9+/]+={0,2}$/.test(value) ? [Uint8Array.from(atob(value), (ch) => ch.charCodeAt(0))] : [];
  });
  for (const publicKey of ctx.public_keys) {
    const raw = Uint8Array.from(atob(publicKey.slice("whpk_".length)), (ch) => ch.charCodeAt(0));
    const key = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    for (const sig of signatures) {
      if (sig.byteLength === 64 && await crypto.subtle.verify({ name: "Ed25519" }, key, sig, signed)) return true;
    }
  }
  return false;
}

Deno.serve(app.fetch);
