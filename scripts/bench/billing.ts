/**
 * `npm run bench -- billing`: the Stripe webhook on a throwaway stack, with events signed by
 * `stripe`'s test-header helper, side by side:
 *
 *   1. events per second applied through the webhook (the gateway, the function, signature
 *      verification, private.apply_stripe_event), `--concurrency` deliveries at a time, against
 *      the same number of events applied by private.apply_stripe_event alone, over SQL: the ratio
 *      is what the HTTP path and verification cost;
 *   2. a replay storm: `--deliveries` concurrent deliveries of `--distinct` events (each the same
 *      number of times), printing `effects N`: the ledger entries they made (target: exactly
 *      `--distinct`).
 *
 * Exits non-zero when the storm's effects are not exactly one per distinct event.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import Stripe from "stripe";
import { startOnFreePorts } from "../stack/index.ts";
import { pool } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface BillingBenchOptions {
  events: number;
  concurrency: number;
  deliveries: number;
  distinct: number;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

/** A signed-in organization's Checkout top-up of 1,000 credits, as Stripe sends it (a new event each call). */
export function topUp(org: string) {
  return {
    id: id("evt"), object: "event", created: Math.floor(Date.now() / 1000), livemode: false, type: "checkout.session.completed",
    data: { object: { id: id("cs_test"), object: "checkout.session", mode: "payment", payment_status: "paid", client_reference_id: org,
                      payment_intent: id("pi"), metadata: { gatehouse_credits: "1000" } } },
  };
}

export async function benchBilling(opts: BillingBenchOptions): Promise<boolean> {
  const secret = `whsec_bench${randomBytes(24).toString("hex")}`;
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, log: () => {}, functionsEnv: { STRIPE_WEBHOOK_SECRETS: secret, STRIPE_SECRET_KEY: `sk_test_${randomBytes(24).toString("hex")}` } });
  const sql = postgres(stack.info.dbUrl, { max: opts.concurrency, onnotice: () => {} });
  try {
    const org = randomUUID();
    await sql`insert into public.organizations (id, name, slug) values (${org}, 'Bench billing', ${`bench-${org.slice(0, 8)}`})`;
    const url = `${stack.info.functionsUrl}/stripe-webhook`;
    const deliver = async (payload: string) => {
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload, secret }) },
        body: payload,
      });
      const body = (await res.json()) as { outcome?: string; error?: { code: string } };
      if (res.status !== 200) throw new Error(`the webhook answered ${res.status} ${body.error?.code}`);
      return body.outcome!;
    };

    // Warm-up: the function's first call loads stripe and opens its pool.
    await deliver(JSON.stringify(topUp(org)));

    const viaWebhook = Array.from({ length: opts.events }, () => JSON.stringify(topUp(org)));
    let started = performance.now();
    await pool(viaWebhook, opts.concurrency, async (p) => void (await deliver(p)));
    const webhookSeconds = (performance.now() - started) / 1000;

    const direct = Array.from({ length: opts.events }, () => topUp(org));
    started = performance.now();
    await pool(direct, opts.concurrency, async (e) => void (await sql`select private.apply_stripe_event(${sql.json(e as never)})`));
    const directSeconds = (performance.now() - started) / 1000;

    const webhookRate = opts.events / webhookSeconds;
    const directRate = opts.events / directSeconds;
    console.log(`billing: ${webhookRate.toFixed(0)} events/s applied through the webhook, ${directRate.toFixed(0)} events/s by apply_stripe_event alone ` +
      `(ratio ${(directRate / webhookRate).toFixed(2)}; ${opts.events} events, ${opts.concurrency} at a time)`);

    // The storm: every distinct event delivered deliveries/distinct times, all at once.
    const storm = await (async () => {
      const stormOrg = randomUUID();
      await sql`insert into public.organizations (id, name, slug) values (${stormOrg}, 'Bench storm', ${`storm-${stormOrg.slice(0, 8)}`})`;
      const events = Array.from({ length: opts.distinct }, () => JSON.stringify(topUp(stormOrg)));
      const copies = Math.ceil(opts.deliveries / opts.distinct);
      const outcomes = await Promise.all(Array.from({ length: copies * opts.distinct }, (_, i) => deliver(events[i % opts.distinct])));
      const [{ n }] = await sql`select count(*)::int as n from public.credit_ledger where org_id = ${stormOrg}`;
      return { effects: n as number, applied: outcomes.filter((o) => o === "applied").length, deliveries: outcomes.length };
    })();
    console.log(`billing: replay storm of ${storm.deliveries} concurrent deliveries of ${opts.distinct} distinct events: ` +
      `effects ${storm.effects}, applied ${storm.applied}, duplicates ${storm.deliveries - storm.applied}`);
    return storm.effects === opts.distinct && storm.applied === opts.distinct;
  } finally {
    await sql.end({ timeout: 2 });
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
