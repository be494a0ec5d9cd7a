/**
 * The platform's Stripe client, one for every caller: the billing function (Checkout, the portal,
 * meter events) and the workspace purge (cancelling a subscription). The official `stripe` library,
 * its requests through the egress guard's fetch.
 *
 * Configuration: STRIPE_SECRET_KEY (without it, 503 billing_not_configured), STRIPE_METER_EVENT
 * (the meter's event name; default gatehouse_usage_micro), GATEHOUSE_CONSOLE_URL (where Stripe
 * sends people back; default SUPABASE_URL), STRIPE_API_BASE (tests only: the local fake).
 */
import { z } from "zod";
import Stripe from "stripe";
import { testAllowanceFrom } from "../egress/allowance.ts";
import { egressFetch } from "../egress/fetch.ts";
import { configuration } from "../http/config.ts";

export const stripeConfig = configuration((get) => {
  const secretKey = z.string().regex(/^(sk|rk)_(test|live)_[A-Za-z0-9]+$/).parse(get("STRIPE_SECRET_KEY"));
  const meterEvent = z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/).parse(get("STRIPE_METER_EVENT") ?? "gatehouse_usage_micro");
  const base = new URL(get("STRIPE_API_BASE") ?? "https://api.stripe.com");
  const consoleUrl = new URL(z.url().parse(get("GATEHOUSE_CONSOLE_URL") ?? get("SUPABASE_URL"))).origin;
  const testOnly = testAllowanceFrom(get);
  const stripe = new Stripe(secretKey, {
    httpClient: Stripe.createFetchHttpClient(egressFetch({ timeoutMs: 20_000, maxRedirects: 0, ...(testOnly ? { testOnly } : {}) })),
    host: base.hostname,
    port: Number(base.port || 443),
    protocol: base.protocol === "http:" ? "http" : "https",
    // Requests carry idempotency keys, so one retry of a lost answer is safe.
    maxNetworkRetries: 1,
    telemetry: false,
    appInfo: { name: "Gatehouse" },
  });
  return { stripe, meterEvent, consoleUrl };
}, "billing_not_configured");

/** Whether Stripe is configured at all (a local stack without it has no subscriptions to cancel). */
export function stripeConfigured(): boolean {
  return Boolean(Deno.env.get("STRIPE_SECRET_KEY"));
}
