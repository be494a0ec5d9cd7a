/**
 * The billing function against the local Stripe fake (tests/helpers/stripe_fake.ts), through the
 * gateway as a tenant admin: Checkout for credits creates the organization's Stripe customer once
 * and a session whose metadata the webhook then credits; the portal; nothing of a card in what is
 * sent; and the refusals (a viewer, bad input, an unknown plan); postpaid usage sent to Stripe's
 * billing meter exactly once, however many flushes run. Then the console's billing page in
 * Chromium (this file owns the Stripe fake's port, so the page's flow is tested here): balance and
 * ledger, buying credits through to Stripe's Checkout page, a tenant admin's adjustment. In an
 * organization of its own.
 */
import { randomUUID } from "node:crypto";
import bcrypt from "bcryptjs";
import Stripe from "stripe";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, signIn, suiteBrowser } from "../helpers/browser.ts";
import { type StripeFake, startStripeFake } from "../helpers/stripe_fake.ts";
import { accessToken, anonClient, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
let fake: StripeFake;
let org = "";
const tokens: Record<"admin" | "viewer", string> = { admin: "", viewer: "" };
const adminLogin = { email: "", password: "" };
const browser = suiteBrowser();

async function userOf(role: "tenant_admin" | "project_viewer"): Promise<string> {
  const email = `${role}-${randomUUID()}@billing.test`;
  const password = randomUUID();
  const [user] = await sql`insert into auth.users (id, email, email_confirmed_at, encrypted_password)
                           values (gen_random_uuid(), ${email}, now(), ${await bcrypt.hash(password, 4)}) returning id`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${user.id}, ${role}::public.member_role)`;
  const client = anonClient();
  const { error } = await client.auth.signInWithPassword({ email, password });
  if (error) throw error;
  if (role === "tenant_admin") Object.assign(adminLogin, { email, password });
  return accessToken(client);
}

beforeAll(async () => {
  fake = await startStripeFake();
  org = randomUUID();
  await sql`insert into public.organizations (id, name, slug) values (${org}, 'Paying Co', ${`paying-${org.slice(0, 8)}`})`;
  tokens.admin = await userOf("tenant_admin");
  tokens.viewer = await userOf("project_viewer");
});
afterAll(async () => {
  await fake?.close();
  await sql.end();
});

async function call(path: string, who: "admin" | "viewer", body?: unknown) {
  const res = await fetch(`${stack().functionsUrl}/billing/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${tokens[who]}`, "x-org-id": org, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

describe("the billing function", () => {
  it("creates the organization's Stripe customer once and a Checkout Session whose payment the webhook credits", async () => {
    const first = await call("checkout", "admin", { kind: "credits", amount_cents: 2500 });
    expect(first.status).toBe(201);
    expect(first.body.url).toMatch(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
    const second = await call("checkout", "admin", { kind: "credits", amount_cents: 500 });
    expect(second.status).toBe(201);

    const customers = fake.requests.filter((r) => r.path === "/v1/customers");
    expect(customers).toHaveLength(1);
    expect(customers[0]).toMatchObject({ idempotencyKey: `gatehouse-customer-${org}`, form: { "metadata[org_id]": org } });
    expect(customers[0].authorization).toBe(`Bearer ${fake.secretKey}`);
    const [account] = await sql`select stripe_customer_id from public.billing_accounts where org_id = ${org}`;
    const sessions = fake.requests.filter((r) => r.path === "/v1/checkout/sessions");
    expect(sessions).toHaveLength(2);
    expect(sessions[0].form).toMatchObject({
      mode: "payment", customer: account.stripe_customer_id, client_reference_id: org,
      "metadata[gatehouse_credits]": "25000000", "payment_intent_data[metadata][org_id]": org,
      "line_items[0][price_data][unit_amount]": "2500",
    });
    // Card details are entered on Stripe's page: nothing of a card is ever sent from here.
    for (const r of fake.requests) expect(Object.keys(r.form).filter((k) => /card|cvc|number|exp_/i.test(k))).toEqual([]);

    // Stripe tells the webhook the session was paid; the credits land once.
    const [secret] = JSON.parse(readFileSync(process.env.GATEHOUSE_TEST_PROVIDERS_FILE!, "utf8")).stripeWebhookSecrets;
    const paid = {
      id: `evt_${randomUUID().replaceAll("-", "")}`, object: "event", type: "checkout.session.completed", created: Math.floor(Date.now() / 1000), livemode: false,
      data: { object: { id: first.body.url.split("/").pop(), object: "checkout.session", mode: "payment", payment_status: "paid",
                        customer: account.stripe_customer_id, client_reference_id: org, payment_intent: "pi_paidTest1",
                        metadata: { org_id: org, gatehouse_credits: sessions[0].form["metadata[gatehouse_credits]"] } } },
    };
    const payload = JSON.stringify(paid);
    const delivered = await fetch(`${stack().functionsUrl}/stripe-webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload, secret }) },
      body: payload,
    });
    expect((await delivered.json()).outcome).toBe("applied");
    const [balance] = await sql`select balance_micro from public.credit_balances where org_id = ${org}`;
    expect(Number(balance.balance_micro)).toBe(25_000_000);
  });

  it("opens the customer portal for the organization's customer", async () => {
    const portal = await call("portal", "admin", {});
    expect(portal.status).toBe(201);
    expect(portal.body.url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\/bps_/);
    const [account] = await sql`select stripe_customer_id from public.billing_accounts where org_id = ${org}`;
    expect(fake.requests.at(-1)).toMatchObject({ path: "/v1/billing_portal/sessions", form: { customer: account.stripe_customer_id } });
    expect(fake.requests.at(-1)!.form.return_url).toMatch(new RegExp(`/o/${org}/billing$`));
  });

  it("refuses anyone but a tenant admin, bad input and an unknown plan", async () => {
    const before = fake.requests.length;
    expect(await call("checkout", "viewer", { kind: "credits", amount_cents: 2500 })).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
    expect(await call("portal", "viewer", {})).toMatchObject({ status: 403 });
    for (const [body, code] of [
      ["{not json", "invalid_json"], [{ kind: "credits", amount_cents: 1 }, "invalid_body"], [{ kind: "credits", amount_cents: "5" }, "invalid_body"],
      [{ kind: "gift" }, "invalid_body"], [{ kind: "credits", amount_cents: 500, card_number: "4242424242424242" }, "invalid_body"],
    ] as [unknown, string][]) {
      const refused = await call("checkout", "admin", body);
      expect([refused.status, refused.body.error.code], JSON.stringify(body)).toEqual([400, code]);
    }
    expect((await call("checkout", "admin", { kind: "subscription", plan: "platinum" })).body.error.code).toBe("unknown_plan");
    expect(fake.requests.length).toBe(before);
  });
});

describe("postpaid usage and Stripe's billing meter", () => {
  it("sends each usage debit of a postpaid organization to Stripe once, as a meter event, even when flushes run twice or at once", async () => {
    const metered = randomUUID();
    const customer = `cus_Meter${randomUUID().replaceAll("-", "").slice(0, 16)}`;
    await sql`insert into public.organizations (id, name, slug) values (${metered}, 'Metered Co', ${`metered-${metered.slice(0, 8)}`})`;
    await sql`insert into public.billing_accounts (org_id, mode, stripe_customer_id, subscription_id, subscription_status)
              values (${metered}, 'postpaid', ${customer}, ${`sub_Meter${metered.replaceAll("-", "").slice(0, 16)}`}, 'active')`;
    for (const micro of [1500, 2500, 4000]) {
      await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${metered}, 'usage_debit', ${-micro}, 'Connector call')`;
    }
    const flush = (token = stack().serviceRoleKey) => fetch(`${stack().functionsUrl}/billing/meter-events/flush`, {
      method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: "{}",
    }).then(async (r) => ({ status: r.status, body: await r.json() }));

    expect(await flush(tokens.admin)).toMatchObject({ status: 403, body: { error: { code: "runtime_only" } } });
    const answers = await Promise.all([flush(), flush()]);
    answers.push(await flush());
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);

    const sent = fake.requests.filter((r) => r.path === "/v1/billing/meter_events" && r.form["payload[stripe_customer_id]"] === customer);
    expect(sent).toHaveLength(3);
    const queued = await sql`select id, value_micro::int as v, sent_at from private.stripe_meter_outbox where org_id = ${metered} order by v`;
    expect(queued.map((q) => q.v)).toEqual([1500, 2500, 4000]);
    expect(queued.every((q) => q.sent_at !== null)).toBe(true);
    expect(sent.map((r) => r.form.identifier).sort()).toEqual(queued.map((q) => q.id).sort());
    for (const r of sent) {
      expect(r.form).toMatchObject({ event_name: "gatehouse_usage_micro", timestamp: expect.stringMatching(/^[0-9]+$/) });
      expect(r.authorization).toBe(`Bearer ${fake.secretKey}`);
    }
    const accepted = [...fake.meterEvents.values()].filter((e) => e.customer === customer);
    expect(accepted.map((e) => Number(e.value)).sort((a, b) => a - b)).toEqual([1500, 2500, 4000]);
  });
});

describe("the console's billing page (Chromium)", () => {
  it("shows the balance and ledger, takes a tenant admin to Stripe Checkout, and records an adjustment", async () => {
    const page = await (await browser().newContext()).newPage();
    // Stripe's hosted Checkout page is out of reach here: the browser's visit to it is answered locally.
    await page.route("https://checkout.stripe.com/**", (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>Stripe Checkout</title>" }));
    await signIn(page, adminLogin.email, adminLogin.password, `/o/${org}/billing`);
    await page.getByRole("heading", { name: "Billing of Paying Co" }).waitFor();
    await page.getByLabel("Credit balance").getByText("$25.00").waitFor();
    await page.getByRole("table", { name: "Credit ledger" }).getByRole("cell", { name: "Credits bought", exact: true }).waitFor();
    await checkScreen(page, "billing");

    const before = fake.requests.filter((r) => r.path === "/v1/checkout/sessions").length;
    await page.getByLabel("Credits to buy ($)").fill("30");
    await page.getByRole("button", { name: "Buy credits" }).click();
    await page.waitForURL(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
    const sessions = fake.requests.filter((r) => r.path === "/v1/checkout/sessions");
    expect(sessions).toHaveLength(before + 1);
    expect(sessions.at(-1)!.form).toMatchObject({ "metadata[gatehouse_credits]": "30000000", "line_items[0][price_data][unit_amount]": "3000" });

    await page.goto(`${stack().apiUrl}/o/${org}/billing?checkout=done`);
    await page.getByText(/the credits appear here as soon as Stripe confirms it/).waitFor();
    await page.getByLabel("Credits to take away ($)").fill("1.5");
    await page.getByLabel("Reason").fill("Goodwill correction");
    await page.getByRole("button", { name: "Take credits away" }).click();
    await answerDialog(page, "Take $1.50 of credits away?", { confirm: "Take the credits away" });
    await page.getByRole("status").getByText("Adjusted by −$1.50.").waitFor();
    await page.getByLabel("Credit balance").getByText("$23.50").waitFor();
    const [entry] = await sql`select kind, amount_micro, reason from public.credit_ledger where org_id = ${org} and kind = 'adjustment'`;
    expect({ ...entry, amount_micro: Number(entry.amount_micro) }).toEqual({ kind: "adjustment", amount_micro: -1_500_000, reason: "Goodwill correction" });
    await page.context().close();
  });
});
