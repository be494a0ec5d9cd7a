/**
 * POST /functions/v1/stripe-webhook: Stripe's events, applied exactly once. Public (verify_jwt is
 * false): the Stripe-Signature header over the raw body is the authentication, checked with the
 * `stripe` library (constructEventAsync, SubtleCrypto, the default 300 s tolerance) against each
 * signing secret of STRIPE_WEBHOOK_SECRETS (comma-separated, so that a secret can be rotated: the
 * new and the previous one both verify during the overlap). An event whose `livemode` is not the
 * mode of STRIPE_SECRET_KEY (sk_live_/rk_live_ is live, sk_test_/rk_test_ is not) is refused
 * (400 webhook_livemode_mismatch): a test-mode event never moves a live organization's credits.
 *
 * A verified event goes to private.apply_stripe_event, which records its id in the same
 * transaction as its effect: a replay, a concurrent duplicate or a retry after a crash applies
 * nothing twice. Answers 200 with the outcome (applied, pending: a refund or dispute kept until the
 * payment it reverses is credited, duplicate, stale, ignored, unmatched);
 * a refusal is a 4xx with a stable code. Stripe retries anything but a 2xx for days, which is safe:
 * whatever it delivers again applies at most once.
 */
import { createRoute, z } from "@hono/zod-openapi";
import Stripe from "stripe";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { configuration } from "../_shared/http/config.ts";
import { serviceDb } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, refusals } from "../_shared/http/schemas.ts";

/** Stripe's events are small; this is well above the largest. */
const MAX_BODY = 512 * 1024;

const config = configuration((get) => {
  const secrets = (get("STRIPE_WEBHOOK_SECRETS") ?? get("STRIPE_WEBHOOK_SECRET") ?? "")
    .split(",").map((s) => s.trim()).filter(Boolean);
  if (secrets.length === 0 || secrets.some((s) => !/^whsec_[A-Za-z0-9+/=_-]{8,}$/.test(s))) throw new Error("no signing secret");
  const mode = /^(sk|rk)_(test|live)_[A-Za-z0-9]+$/.exec(get("STRIPE_SECRET_KEY") ?? "");
  if (!mode) throw new Error("no secret key");
  return { secrets, livemode: mode[2] === "live" };
}, "billing_not_configured");

const crypto = Stripe.createSubtleCryptoProvider();

const Received = z.object({
  received: z.literal(true),
  outcome: z.enum(["applied", "pending", "duplicate", "stale", "ignored", "unmatched"]),
});

const app = functionApp({
  name: "stripe-webhook",
  version: "1.0.0",
  description: "Receives Stripe's events, verifies their signature and applies each exactly once.",
});

app.use(jsonBody(MAX_BODY));

app.openapi(createRoute({
  method: "post", path: "/", summary: "A Stripe event (Stripe-Signature is the authentication)",
  security: [],
  request: { headers: z.object({ "stripe-signature": z.string().optional() }) },
  responses: {
    200: { description: "Verified; applied once, or already applied, stale or not ours", content: jsonContent(Received) },
    ...refusals(400, 413, 415, 503),
  },
}), async (c) => {
  const { secrets, livemode } = config();
  const signature = c.req.header("stripe-signature");
  if (!signature) throw refuse("webhook_signature_missing");
  // The bytes as they came: the signature is over them, not over a re-serialisation.
  const raw = new TextDecoder().decode(await c.req.arrayBuffer());
  const event = await verified(raw, signature, secrets);
  if (event.livemode !== livemode) {
    throw refuse("webhook_livemode_mismatch", `the event is ${event.livemode ? "live" : "test"}-mode and this deployment's key is ${livemode ? "live" : "test"}-mode`);
  }
  const [{ outcome }] = await serviceDb()`select private.apply_stripe_event(${serviceDb().json(event as never)}) as outcome`;
  return c.json({ received: true as const, outcome }, 200);
});

/** The event, if one of `secrets` signed `raw` within the tolerance; otherwise the refusal. */
async function verified(raw: string, signature: string, secrets: string[]): Promise<Stripe.Event> {
  let stale = false;
  for (const secret of secrets) {
    try {
      return await Stripe.webhooks.constructEventAsync(raw, signature, secret, undefined, crypto);
    } catch (e) {
      if (!(e instanceof Stripe.errors.StripeSignatureVerificationError)) throw refuse("invalid_json");
      stale ||= /tolerance/i.test(e.message);
    }
  }
  throw refuse(stale ? "webhook_timestamp_stale" : "webhook_signature_invalid");
}

Deno.serve(app.fetch);
