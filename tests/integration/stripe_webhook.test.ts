/**
 * The Stripe webhook, through the gateway, with events signed by `stripe`'s own test-header helper
 * with the signing secrets npm test gives the throwaway stack (the current one and the previous
 * one, as during a rotation): a valid event applies once, 1,000 concurrent deliveries of it apply
 * once, a crash before commit leaves nothing and the retry applies once, an older subscription
 * update changes nothing, a tampered body, a wrong secret and a stale timestamp are refused, card
 * fields are not stored beyond brand, last4 and expiry, and the balance is the sum of a concurrent
 * mix of grants and debits; and a prepaid organization whose credits can't cover a model call is
 * refused by the model gateway before any vendor is called, until a paid top-up arrives. And the
 * platform's prices (issue 23): a plan change in the customer portal grants the new plan's credits
 * on renewal (downgrade and upgrade), a refund or dispute delivered before its payment takes
 * effect when the payment arrives, an event of the other mode than the key's is refused, and an
 * organization without a subscription is held to the free tier's ceiling whatever budget it set
 * itself. Each test uses an organization of its own.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import Stripe from "stripe";
import { afterAll, describe, expect, it } from "vitest";
import { stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

function secrets(): [string, string] {
  const file = process.env.GATEHOUSE_TEST_PROVIDERS_FILE;
  if (!file) throw new Error("the Stripe webhook tests run under npm test, which gives the stack its signing secrets (GATEHOUSE_TEST_PROVIDERS_FILE is unset)");
  return JSON.parse(readFileSync(file, "utf8")).stripeWebhookSecrets;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

/** An organization with a Stripe customer of its own. */
async function billedOrg(): Promise<{ org: string; customer: string }> {
  const org = randomUUID();
  const customer = id("cus");
  await sql`insert into public.organizations (id, name, slug) values (${org}, 'Billed', ${`billed-${org.slice(0, 8)}`})`;
  await sql`insert into public.billing_accounts (org_id, stripe_customer_id) values (${org}, ${customer})`;
  return { org, customer };
}

/** A Stripe event as Stripe sends it (the fields we read, and more). */
function event(type: string, object: Record<string, unknown>, created = Math.floor(Date.now() / 1000)) {
  return { id: id("evt"), object: "event", api_version: "2025-10-29.clover", created, livemode: false, pending_webhooks: 1, type, data: { object } };
}

/** Delivers `payload` (its exact bytes) signed with `secret` at `timestamp`. */
async function deliver(payload: string, opts: { secret?: string; timestamp?: number; signature?: string | null } = {}) {
  const signature = opts.signature === undefined
    ? Stripe.webhooks.generateTestHeaderString({ payload, secret: opts.secret ?? secrets()[0], timestamp: opts.timestamp })
    : opts.signature;
  const res = await fetch(`${stack().functionsUrl}/stripe-webhook`, {
    method: "POST",
    headers: { "content-type": "application/json; charset=utf-8", "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)", ...(signature === null ? {} : { "stripe-signature": signature }) },
    body: payload,
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) };
}

async function balance(org: string): Promise<number> {
  const [row] = await sql`select coalesce(sum(amount_micro), 0)::bigint as b from public.credit_ledger where org_id = ${org}`;
  return Number(row.b);
}

/** A plan of the platform's (private.billing_plans), with a price of its own. */
async function platformPlan(credits: number, mode: "prepaid" | "postpaid" = "prepaid"): Promise<{ plan: string; price: string }> {
  const price = id("price").replace("_", "_T");
  const plan = `p${randomBytes(6).toString("hex")}`;
  const [{ exists }] = await sql`select to_regclass('private.billing_plans') is not null as exists`;
  if (exists) {
    await sql`insert into private.billing_plans (plan, stripe_price_id, mode, credits_micro, monthly_ceiling_micro)
              values (${plan}, ${price}, ${mode}::public.billing_mode, ${credits}, 1000000000)`;
  }
  return { plan, price };
}

function topUp(org: string, credits: number, intent = id("pi")) {
  return event("checkout.session.completed", {
    id: id("cs_test"), object: "checkout.session", mode: "payment", payment_status: "paid", client_reference_id: org,
    payment_intent: intent, metadata: { gatehouse_credits: String(credits) },
  });
}

describe("the Stripe webhook", () => {
  it("applies a valid event once, and answers a replay as a duplicate", async () => {
    const { org } = await billedOrg();
    const payload = JSON.stringify(topUp(org, 5_000_000));
    expect(await deliver(payload)).toEqual({ status: 200, body: { received: true, outcome: "applied" } });
    expect(await deliver(payload)).toEqual({ status: 200, body: { received: true, outcome: "duplicate" } });
    expect(await balance(org)).toBe(5_000_000);
    const [audit] = await sql`select count(*)::int as n from audit.records where org_id = ${org} and action = 'billing.checkout.session.completed'`;
    expect(audit.n).toBe(1);
  });

  it("applies the same event delivered 1,000 times at once exactly once", async () => {
    const { org } = await billedOrg();
    const payload = JSON.stringify(topUp(org, 1_000_000));
    const answers = await Promise.all(Array.from({ length: 1000 }, () => deliver(payload)));
    const outcomes = answers.map((a) => `${a.status} ${a.body.outcome ?? a.body.error?.code}`);
    expect(outcomes.filter((o) => o === "200 applied")).toHaveLength(1);
    expect(outcomes.filter((o) => o === "200 duplicate")).toHaveLength(999);
    expect(await balance(org)).toBe(1_000_000);
  }, 120_000);

  it("leaves nothing applied after a crash before commit, and applies the retry once", async () => {
    const { org } = await billedOrg();
    const evt = topUp(org, 3_000_000);
    await expect(sql.begin(async (tx) => {
      await tx`select private.apply_stripe_event(${tx.json(evt as never)})`;
      throw new Error("the process died before the commit");
    })).rejects.toThrow("died");
    expect(await balance(org)).toBe(0);
    const [seen] = await sql`select count(*)::int as n from private.stripe_events where event_id = ${evt.id}`;
    expect(seen.n).toBe(0);
    expect((await deliver(JSON.stringify(evt))).body.outcome).toBe("applied");
    expect((await deliver(JSON.stringify(evt))).body.outcome).toBe("duplicate");
    expect(await balance(org)).toBe(3_000_000);
  });

  it("lets an older subscription update that arrives after a newer one change nothing", async () => {
    const { org, customer } = await billedOrg();
    const sub = id("sub");
    const now = Math.floor(Date.now() / 1000);
    const [pro, starter] = [await platformPlan(2_000), await platformPlan(1_000)];
    const items = (price: string) => ({ data: [{ price: { id: price } }] });
    const newer = event("customer.subscription.updated", { id: sub, object: "subscription", customer, status: "past_due", cancel_at_period_end: true, items: items(pro.price) }, now);
    const older = event("customer.subscription.updated", { id: sub, object: "subscription", customer, status: "active", cancel_at_period_end: false, items: items(starter.price) }, now - 60);
    expect((await deliver(JSON.stringify(newer))).body.outcome).toBe("applied");
    expect((await deliver(JSON.stringify(older))).body.outcome).toBe("stale");
    const [account] = await sql`select subscription_status, plan, cancel_at_period_end from public.billing_accounts where org_id = ${org}`;
    expect(account).toEqual({ subscription_status: "past_due", plan: pro.plan, cancel_at_period_end: true });
  });

  it("verifies with the current and the previous signing secret during a rotation", async () => {
    const { org } = await billedOrg();
    const [current, previous] = secrets();
    expect((await deliver(JSON.stringify(topUp(org, 1)), { secret: current })).body.outcome).toBe("applied");
    expect((await deliver(JSON.stringify(topUp(org, 1)), { secret: previous })).body.outcome).toBe("applied");
    expect(await balance(org)).toBe(2);
  });

  it("refuses a tampered body, a wrong secret, a stale timestamp and a missing signature, applying nothing", async () => {
    const { org } = await billedOrg();
    const payload = JSON.stringify(topUp(org, 9_000_000));
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: secrets()[0] });
    const refusals = [
      await deliver(payload.replace("9000000", "9000001"), { signature }),
      await deliver(payload, { secret: `whsec_${randomBytes(24).toString("hex")}` }),
      await deliver(payload, { timestamp: Math.floor(Date.now() / 1000) - 301 }),
      await deliver(payload, { signature: null }),
      await deliver(payload, { signature: "t=1,v1=abc" }),
      await deliver("{not json", { signature: Stripe.webhooks.generateTestHeaderString({ payload: "{not json", secret: secrets()[0] }) }),
    ];
    expect(refusals.map((r) => [r.status, r.body.error.code])).toEqual([
      [400, "webhook_signature_invalid"], [400, "webhook_signature_invalid"], [400, "webhook_timestamp_stale"],
      [400, "webhook_signature_missing"], [400, "webhook_signature_invalid"], [400, "invalid_json"],
    ]);
    expect(await balance(org)).toBe(0);
  });

  it("answers a verified event with NUL characters, an unknown type or a stranger's object without applying anything", async () => {
    const { org } = await billedOrg();
    const nul = JSON.stringify(topUp(org, 5)).replace('"paid"', '"pa\\u0000id"');
    expect((await deliver(nul)).body.error.code).toBe("invalid_text");
    expect((await deliver(JSON.stringify(event("customer.created", { id: id("cus") })))).body.outcome).toBe("ignored");
    expect((await deliver(JSON.stringify(event("invoice.paid", { id: id("in"), customer: id("cus") })))).body.outcome).toBe("unmatched");
    const malformed = { ...topUp(org, 5), id: "not-an-event-id" };
    expect((await deliver(JSON.stringify(malformed))).body.error.code).toBe("invalid_event");
    expect(await balance(org)).toBe(0);
  });

  it("keeps of a card its brand, last4 and expiry, and nothing else of the event", async () => {
    const { org, customer } = await billedOrg();
    const fingerprint = `Fp${randomBytes(8).toString("hex")}`;
    const pm = event("payment_method.attached", {
      id: id("pm"), object: "payment_method", type: "card", customer,
      card: { brand: "visa", last4: "4242", exp_month: 4, exp_year: 2031, fingerprint, funding: "credit", country: "US", checks: { cvc_check: "pass" } },
      billing_details: { name: `Jane ${fingerprint}`, email: `${fingerprint}@example.test` },
    });
    expect((await deliver(JSON.stringify(pm))).body.outcome).toBe("applied");
    const [account] = await sql`select card_brand, card_last4, card_exp_month, card_exp_year from public.billing_accounts where org_id = ${org}`;
    expect(account).toEqual({ card_brand: "visa", card_last4: "4242", card_exp_month: 4, card_exp_year: 2031 });
    // Nowhere in the database: not in a table, not in the audit chain.
    const tables = await sql<{ name: string }[]>`
      select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind = 'r' and n.nspname in ('public', 'private', 'audit')`;
    const hits = await sql.unsafe(tables.map((t) => `select '${t.name}' as t from ${t.name} x where x::text like '%${fingerprint}%'`).join(" union all "));
    expect(hits).toEqual([]);
  });

  it("keeps the balance the sum of its entries under a concurrent mix of grants and debits", async () => {
    const { org, customer } = await billedOrg();
    const [admin] = await sql`insert into auth.users (id, email) values (gen_random_uuid(), ${`admin-${org}@billed.test`}) returning id`;
    await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${admin.id}, 'tenant_admin')`;
    const plans = await Promise.all(Array.from({ length: 40 }, (_, i) => platformPlan(1000 + i)));
    const grants = plans.map(({ price }) => event("invoice.paid", {
      id: id("in"), object: "invoice", customer, billing_reason: "subscription_cycle", amount_paid: 2000,
      lines: { data: [{ pricing: { price_details: { price } } }] },
    }));
    const debit = (i: number) => sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: admin.id, role: "authenticated" })}, true), set_config('role', 'authenticated', true)`;
      await tx`select private.set_context(${org})`;
      await tx`select public.adjust_credits(${-(500 + i)}, 'concurrent debit')`;
    });
    await Promise.all([...grants.map((g) => deliver(JSON.stringify(g))), ...Array.from({ length: 40 }, (_, i) => debit(i))]);
    const granted = grants.reduce((n, _, i) => n + 1000 + i, 0);
    const debited = Array.from({ length: 40 }, (_, i) => 500 + i).reduce((a, b) => a + b, 0);
    expect(await balance(org)).toBe(granted - debited);
    const [view] = await sql`select balance_micro, entries from public.credit_balances where org_id = ${org}`;
    expect({ balance: Number(view.balance_micro), entries: Number(view.entries) }).toEqual({ balance: granted - debited, entries: 80 });
  }, 60_000);
});

describe("prepaid credits", () => {
  it("refuse a model call the balance can't cover, at reservation, until a paid top-up arrives", async () => {
    const { org } = await billedOrg();
    await sql`update public.billing_accounts set mode = 'prepaid' where org_id = ${org}`;
    const [project, agent] = [randomUUID(), randomUUID()];
    await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Prepaid', 'prepaid')`;
    await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Metered')`;
    const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                                values (${org}, ${project}, ${agent}, '{"model": "gpt-4o-mini"}') returning id`;
    const [run] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                            values (${org}, ${project}, ${agent}, ${version.id}) returning id`;
    const chat = () => fetch(`${stack().functionsUrl}/model-gateway/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack().serviceRoleKey}`, "x-run-id": run.id, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 50 }),
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

    const refused = await chat();
    expect(refused.status).toBe(402);
    expect(refused.body.error.code).toBe("credits_exhausted");
    const [calls] = await sql`select count(*)::int as n from public.model_calls where org_id = ${org}`;
    expect(calls.n).toBe(0);

    expect((await deliver(JSON.stringify(topUp(org, 1_000_000)))).body.outcome).toBe("applied");
    const admitted = await chat();
    // Admitted now: whatever the vendor answers here, the refusal is no longer the credits'.
    expect(admitted.body.error?.code).not.toBe("credits_exhausted");
  });
});

describe("the platform's plans and prices", () => {
  it("grants the cheaper plan's credits after a downgrade in the customer portal, and the dearer one's after an upgrade", async () => {
    const { org, customer } = await billedOrg();
    const [pro, basic] = [await platformPlan(30_000_000), await platformPlan(5_000_000)];
    const sub = id("sub");
    // What Checkout wrote once, when the organization subscribed to pro: it never changes after.
    const metadata = { org_id: org, plan: pro.plan, gatehouse_credits: "30000000", gatehouse_mode: "prepaid" };
    const t = Math.floor(Date.now() / 1000) - 600;
    const subscription = (price: string, at: number) => event("customer.subscription.updated", {
      id: sub, object: "subscription", customer, status: "active", cancel_at_period_end: false, metadata,
      items: { object: "list", data: [{ id: id("si"), object: "subscription_item", price: { id: price, object: "price" }, current_period_end: at + 2_592_000 }] },
    }, at);
    const invoice = (price: string, reason: string, at: number) => event("invoice.paid", {
      id: id("in"), object: "invoice", customer, billing_reason: reason, amount_paid: 4900, payment_intent: id("pi"),
      lines: { object: "list", data: [{ id: id("il"), object: "line_item", pricing: { type: "price_details", price_details: { price, product: id("prod") } },
                                         parent: { type: "subscription_item_details", subscription_item_details: { proration: false, subscription: sub } } }] },
      parent: { type: "subscription_details", subscription_details: { metadata, subscription: sub } },
    }, at);
    const plan = async () => (await sql`select plan from public.billing_accounts where org_id = ${org}`)[0].plan;

    for (const e of [subscription(pro.price, t), invoice(pro.price, "subscription_create", t + 1)]) {
      expect((await deliver(JSON.stringify(e))).body.outcome).toBe("applied");
    }
    expect(await balance(org)).toBe(30_000_000);

    // The portal downgrades to basic: the subscription's price changes, its metadata doesn't.
    expect((await deliver(JSON.stringify(subscription(basic.price, t + 100)))).body.outcome).toBe("applied");
    expect(await plan()).toBe(basic.plan);
    expect((await deliver(JSON.stringify(invoice(basic.price, "subscription_cycle", t + 200)))).body.outcome).toBe("applied");
    expect(await balance(org)).toBe(30_000_000 + 5_000_000);

    // And back up to pro.
    expect((await deliver(JSON.stringify(subscription(pro.price, t + 300)))).body.outcome).toBe("applied");
    expect((await deliver(JSON.stringify(invoice(pro.price, "subscription_cycle", t + 400)))).body.outcome).toBe("applied");
    expect(await balance(org)).toBe(30_000_000 + 5_000_000 + 30_000_000);
    expect(await plan()).toBe(pro.plan);
  });

  it("applies a refund delivered before its payment when the payment arrives, as in Stripe's order", async () => {
    const { org, customer } = await billedOrg();
    const intent = id("pi");
    const refund = event("charge.refunded", { id: id("ch"), object: "charge", customer, payment_intent: intent, amount: 2000, amount_refunded: 500 });
    expect((await deliver(JSON.stringify(refund)))).toMatchObject({ status: 200, body: { received: true } });
    expect(await balance(org)).toBe(0);
    expect((await deliver(JSON.stringify(topUp(org, 8_000_000, intent)))).body.outcome).toBe("applied");
    // Stripe's order (payment, then the refund of a quarter of it) leaves 6,000,000.
    expect(await balance(org)).toBe(6_000_000);
    expect((await deliver(JSON.stringify(refund))).body.outcome).toBe("duplicate");
    expect(await balance(org)).toBe(6_000_000);
  });

  it("applies a dispute delivered before its payment when the payment arrives", async () => {
    const { org } = await billedOrg();
    const [disputed, kept] = [id("pi"), id("pi")];
    const dispute = event("charge.dispute.created", { id: id("dp"), object: "dispute", payment_intent: disputed, charge: id("ch"), amount: 3000, metadata: {} });
    expect((await deliver(JSON.stringify(dispute)))).toMatchObject({ status: 200, body: { received: true } });
    expect((await deliver(JSON.stringify(topUp(org, 3_000_000, disputed)))).body.outcome).toBe("applied");
    expect((await deliver(JSON.stringify(topUp(org, 1_000_000, kept)))).body.outcome).toBe("applied");
    expect(await balance(org)).toBe(1_000_000);
  });

  it("refuses an event whose livemode is not the mode of the deployment's key, applying nothing", async () => {
    const { org } = await billedOrg();
    const live = { ...topUp(org, 7_000_000), livemode: true };
    expect(await deliver(JSON.stringify(live))).toMatchObject({ status: 400, body: { error: { code: "webhook_livemode_mismatch" } } });
    expect(await balance(org)).toBe(0);
    const [seen] = await sql`select count(*)::int as n from private.stripe_events where event_id = ${live.id}`;
    expect(seen.n).toBe(0);
  });

  it("holds an organization without a subscription to the free tier's ceiling, whatever budget it set itself", async () => {
    const org = randomUUID();
    await sql`insert into public.organizations (id, name, slug) values (${org}, 'Free rider', ${`free-${org.slice(0, 8)}`})`;
    await sql`insert into public.model_limits (org_id, monthly_budget_micro) values (${org}, 1000000000000000)`;
    const [{ exists }] = await sql`select to_regclass('private.billing_plans') is not null as exists`;
    const ceiling = exists ? Number((await sql`select monthly_ceiling_micro from private.billing_plans where plan = 'free'`)[0].monthly_ceiling_micro) : 5_000_000;
    // Spent this month: all but 10 micro-units of the free tier (the call may cost about 35).
    await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${org}, 'usage_debit', ${-(ceiling - 10)}, 'Model call (gpt-4o-mini)')`;
    const [project, agent] = [randomUUID(), randomUUID()];
    await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Free', 'free')`;
    await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Spender')`;
    const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                                values (${org}, ${project}, ${agent}, '{"model": "gpt-4o-mini"}') returning id`;
    const [run] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                            values (${org}, ${project}, ${agent}, ${version.id}) returning id`;
    const res = await fetch(`${stack().functionsUrl}/model-gateway/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack().serviceRoleKey}`, "x-run-id": run.id, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 50 }),
    });
    expect({ status: res.status, code: (await res.json()).error?.code }).toEqual({ status: 402, code: "spend_ceiling_reached" });
    const [calls] = await sql`select count(*)::int as n from public.model_calls where org_id = ${org}`;
    expect(calls.n).toBe(0);
  });
});
