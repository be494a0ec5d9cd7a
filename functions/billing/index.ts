/**
 * The organization's way to Stripe, for its tenant admins (X-Org-Id):
 *   GET  /billing/plans                a plan's credits, mode and monthly ceiling (private.billing_plans)
 *   POST /billing/checkout             a Stripe Checkout Session URL: credits ({kind: "credits", amount_cents})
 *                                      or a plan ({kind: "subscription", plan})
 *   POST /billing/portal               a Stripe customer-portal URL (payment methods, invoices, plan changes, cancellation)
 *   POST /billing/meter-events/flush   (service role) sends queued postpaid usage to Stripe's billing meter
 * The organization's Stripe customer is created on first use (one per organization, even when two
 * admins start at once: Stripe's idempotency key and the database's link agree). Card details are
 * entered on Stripe's pages only: nothing of a card reaches this function or the database. What a
 * payment buys arrives through the webhook (functions/stripe-webhook), from metadata set here:
 * client_reference_id and metadata.org_id name the organization, metadata.gatehouse_credits a
 * top-up's credits (micro-units; 1 cent buys 10,000). A plan's credits, mode and ceiling are never
 * sent as metadata: the webhook reads them from the platform's plan of the price the
 * subscription or invoice names (private.billing_plans, the one list of plans).
 *
 * Postpaid usage reaches Stripe as billing meter events: each usage debit of a postpaid
 * organization with a live subscription is queued in its own transaction
 * (private.stripe_meter_outbox); the flush route sends what is queued, with the queue row's id as
 * Stripe's `identifier` (Stripe drops a second event with the same identifier), and marks it sent
 * in the transaction that holds its row locked, so concurrent flushes never send one twice.
 *
 * Configuration: functions/_shared/billing/stripe.ts (STRIPE_SECRET_KEY and the rest).
 */
import { createRoute, z } from "@hono/zod-openapi";
import Stripe from "stripe";
import { stripeConfig as config } from "../_shared/billing/stripe.ts";
import { egressFailureOf } from "../_shared/egress/fetch.ts";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf, type UserCaller } from "../_shared/http/caller.ts";
import { asMember, asService, db, serviceDb } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const Checkout = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("credits"), amount_cents: z.number().int().min(500).max(1_000_000).describe("What to pay, in US cents ($5 to $10,000)") }),
  z.strictObject({ kind: z.literal("subscription"), plan: z.string().min(1).max(41) }),
]);
const Url = z.object({ url: z.url() });
const PlanView = z.object({ plan: z.string(), credits_micro: z.number(), mode: z.string(), monthly_ceiling_micro: z.number() });

const app = functionApp({
  name: "billing",
  version: "1.0.0",
  description: "Stripe Checkout and the customer portal for an organization's tenant admins.",
});

app.use(jsonBody(4 * 1024));

app.openapi(createRoute({
  method: "get", path: "/plans", summary: "The plans on offer",
  request: { headers: OrgHeader },
  responses: {
    200: { description: "Plans", content: jsonContent(z.object({ plans: z.array(PlanView) })) },
    ...refusals(401, 403, 503),
  },
}), async (c) => {
  await tenantAdmin(c.req.raw);
  const plans = await offeredPlans();
  return c.json({ plans: plans.map(({ plan, credits_micro, mode, monthly_ceiling_micro }) => ({ plan, credits_micro, mode, monthly_ceiling_micro })) }, 200);
});

app.openapi(createRoute({
  method: "post", path: "/checkout", summary: "Start a Stripe Checkout for credits or a plan (tenant admin)",
  request: { headers: OrgHeader, ...jsonRequest(Checkout) },
  responses: { 201: { description: "The Checkout Session's URL", content: jsonContent(Url) }, ...refusals(400, 401, 403, 409, 413, 415, 502, 503) },
}), async (c) => {
  const { orgId } = await tenantAdmin(c.req.raw);
  const { stripe, consoleUrl } = config();
  const input = c.req.valid("json");
  const customer = await customerOf(orgId);
  const [account] = await serviceDb()`select subscription_status from public.billing_accounts where org_id = ${orgId}`;
  const live = ["active", "trialing", "past_due", "unpaid", "incomplete", "paused"].includes(account?.subscription_status ?? "");
  const back = `${consoleUrl}/o/${orgId}/billing`;
  const common = { customer, client_reference_id: orgId, success_url: `${back}?checkout=done`, cancel_url: `${back}?checkout=canceled` };
  const plan = input.kind === "subscription" ? (await offeredPlans()).find((p) => p.plan === input.plan) : undefined;
  const session = await stripeCall(() => {
    if (input.kind === "credits") {
      const credits = String(input.amount_cents * 10_000);
      return stripe.checkout.sessions.create({
        ...common,
        mode: "payment",
        line_items: [{ quantity: 1, price_data: { currency: "usd", unit_amount: input.amount_cents, product_data: { name: "Gatehouse credits" } } }],
        metadata: { org_id: orgId, gatehouse_credits: credits },
        payment_intent_data: { metadata: { org_id: orgId, gatehouse_credits: credits } },
      });
    }
    if (!plan) throw refuse("unknown_plan");
    // One live subscription per organization: a second would be billed beside the first.
    if (live) throw refuse("subscription_exists");
    // The organization only: what the plan grants is read from its price when Stripe reports it.
    const metadata = { org_id: orgId };
    return stripe.checkout.sessions.create({
      ...common, mode: "subscription", line_items: [{ price: plan.stripe_price_id, quantity: 1 }], metadata, subscription_data: { metadata },
    });
  });
  if (!session.url) throw refuse("stripe_refused", "Stripe answered a session without a URL");
  return c.json({ url: session.url }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/portal", summary: "Open Stripe's customer portal (tenant admin)",
  request: { headers: OrgHeader },
  responses: { 201: { description: "The portal session's URL", content: jsonContent(Url) }, ...refusals(401, 403, 502, 503) },
}), async (c) => {
  const { orgId } = await tenantAdmin(c.req.raw);
  const { stripe, consoleUrl } = config();
  const customer = await customerOf(orgId);
  const session = await stripeCall(() => stripe.billingPortal.sessions.create({ customer, return_url: `${consoleUrl}/o/${orgId}/billing` }));
  return c.json({ url: session.url }, 201);
});

app.openapi(createRoute({
  method: "post", path: "/meter-events/flush", summary: "Send queued postpaid usage to Stripe's billing meter (service role)",
  request: {},
  responses: {
    200: { description: "How many meter events Stripe now has", content: jsonContent(z.object({ sent: z.number().int() })) },
    ...refusals(401, 403, 502, 503),
  },
}), async (c) => {
  if (callerOf(c.req.raw).kind !== "service") throw refuse("runtime_only", "the platform's scheduler flushes meter events with the service role");
  const { stripe, meterEvent } = config();
  let sent = 0;
  for (;;) {
    const batch = await db().begin(async (tx) => {
      await asService(tx);
      const rows = await tx<{ id: string; stripe_customer_id: string; value_micro: string; occurred_at: Date }[]>`
        select id, stripe_customer_id, value_micro::text, occurred_at from private.claim_meter_events(100)`;
      for (const row of rows) {
        await stripeCall(() => stripe.billing.meterEvents.create({
          event_name: meterEvent,
          payload: { stripe_customer_id: row.stripe_customer_id, value: row.value_micro },
          identifier: row.id,
          timestamp: Math.floor(row.occurred_at.getTime() / 1000),
        }, { idempotencyKey: `gatehouse-meter-${row.id}` }));
      }
      if (rows.length > 0) await tx`select private.mark_meter_events_sent(${rows.map((r) => r.id)}::uuid[])`;
      return rows.length;
    });
    sent += batch;
    if (batch < 100) break;
  }
  return c.json({ sent }, 200);
});

/** The plans on offer: the platform's (private.billing_plans). */
async function offeredPlans(): Promise<{ plan: string; stripe_price_id: string; mode: string; credits_micro: number; monthly_ceiling_micro: number }[]> {
  const rows = await serviceDb()`select plan, stripe_price_id, mode::text, credits_micro, monthly_ceiling_micro from private.offered_plans()`;
  return rows.map((r) => ({
    plan: r.plan, stripe_price_id: r.stripe_price_id, mode: r.mode, credits_micro: Number(r.credits_micro), monthly_ceiling_micro: Number(r.monthly_ceiling_micro),
  }));
}

/** The caller, a tenant admin of the organization in X-Org-Id (and billing configured). */
async function tenantAdmin(req: Request): Promise<{ caller: UserCaller; orgId: string }> {
  const caller = callerOf(req);
  if (caller.kind !== "user") throw refuse("sign_in_required", "a tenant admin manages billing from the console");
  const orgId = orgIdOf(req);
  await db().begin((tx) => asMember(tx, caller, orgId, { atLeast: "tenant_admin" }));
  config();
  return { caller, orgId };
}

/** The organization's Stripe customer, created on first use. */
async function customerOf(orgId: string): Promise<string> {
  const [account] = await serviceDb()`select stripe_customer_id from public.billing_accounts where org_id = ${orgId}`;
  if (account?.stripe_customer_id) return account.stripe_customer_id;
  const [org] = await serviceDb()`select name from public.organizations where id = ${orgId}`;
  const made = await stripeCall(() => config().stripe.customers.create(
    { name: org.name, metadata: { org_id: orgId } },
    { idempotencyKey: `gatehouse-customer-${orgId}` },
  ));
  const [{ linked }] = await serviceDb()`select private.link_stripe_customer(${orgId}, ${made.id}) as linked`;
  return linked;
}

/** A Stripe API call, its failures as our refusals (never Stripe's message, which may quote the request). */
async function stripeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    if (e instanceof Error && e.name === "HttpError") throw e;
    if (egressFailureOf(e) || e instanceof Stripe.errors.StripeConnectionError) throw refuse("stripe_unavailable");
    if (e instanceof Stripe.errors.StripeError) throw refuse("stripe_refused", `Stripe refused the request (${e.type})`);
    throw e;
  }
}

Deno.serve(app.fetch);
