/**
 * `npm run bench -- inbound`: inbound webhooks on a throwaway stack (no run worker: this measures
 * ingress), with deliveries signed by the standardwebhooks package's own sign(), side by side:
 *
 *   1. accepted deliveries per second through the whole check chain (the gateway, the personal
 *      access token, the subscription, the headers and timestamp, the signature, the replay guard,
 *      and the run's start), `--concurrency` at a time, against the same number of runs started by
 *      private.accept_webhook_delivery alone over SQL: the ratio is what the HTTP path and the checks
 *      cost;
 *   2. the median and p95 time from sending a delivery to its run's start (the 202 answers once the
 *      run is committed, queued);
 *   3. a retry storm: `--storm` concurrent copies of each of `--distinct` deliveries, printing the
 *      runs they started (target: exactly `--distinct`).
 *
 * Exits non-zero when a delivery is refused or the storm starts any run twice.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { Webhook } from "standardwebhooks";
import { startOnFreePorts } from "../stack/index.ts";
import { median, percentile, pool } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface InboundBenchOptions {
  deliveries: number;
  concurrency: number;
  storm: number;
  distinct: number;
}

export async function benchInbound(opts: InboundBenchOptions): Promise<boolean> {
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, log: () => {}, worker: false, modelStandIn: false });
  const sql = postgres(stack.info.dbUrl, { max: opts.concurrency, onnotice: () => {} });
  try {
    // An organization of the bench's own: an admin, a project, a published agent, room for the runs.
    const [org, project, agent, admin] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await sql`insert into public.organizations (id, name, slug) values (${org}, 'Bench inbound', ${`bench-${org.slice(0, 8)}`})`;
    await sql`insert into auth.users (id, email) values (${admin}, ${`admin@bench-${org.slice(0, 8)}.test`})`;
    await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${admin}, 'tenant_admin')`;
    await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Support', 'support')`;
    await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Ticket agent')`;
    const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                                values (${org}, ${project}, ${agent}, ${sql.json({ model: "gpt-4o-mini" })}) returning id`;
    await sql`update public.agent_versions set published_at = now(), published_by = ${admin} where id = ${version.id}`;
    await sql`insert into private.run_limits (org_id, max_concurrent_runs, max_steps, max_seconds) values (${org}, 1000, 20, 900)`;
    const { secret, subscription, token } = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: admin, role: "authenticated" })}, true),
                      set_config('role', 'authenticated', true), private.set_context(${org})`;
      const [{ sub }] = await tx`select public.create_webhook_subscription(${agent}, 'Bench') as sub`;
      const [{ pat }] = await tx`select public.create_personal_access_token('Bench', '{webhooks:ingest}', 1, ${project}) as pat`;
      return { secret: (sub as { secret: string }).secret, subscription: (sub as { id: string }).id, token: (pat as { token: string }).token };
    });
    const signer = new Webhook(secret);
    const url = `${stack.info.functionsUrl}/inbound/${subscription}`;
    const deliver = async (body: string, id = `msg_${randomUUID()}`): Promise<{ status: number; ms: number }> => {
      const at = new Date();
      const sent = performance.now();
      const res = await fetch(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`, "content-type": "application/json",
          "webhook-id": id, "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": signer.sign(id, at, body),
        },
        body,
      });
      await res.arrayBuffer();
      return { status: res.status, ms: performance.now() - sent };
    };
    const ticket = (i: number) => JSON.stringify({ ticket: i, subject: "Where is my order?", body: "It has been a week.".repeat(20) });

    // Warm-up: the function's first call loads its modules and opens its pool.
    for (let i = 0; i < 5; i++) await deliver(ticket(-i));

    const latencies: number[] = [];
    let refused = 0;
    let started = performance.now();
    await pool(Array.from({ length: opts.deliveries }, (_, i) => i), opts.concurrency, async (i) => {
      const { status, ms } = await deliver(ticket(i));
      if (status === 202) latencies.push(ms);
      else refused++;
    });
    const viaHttpSeconds = (performance.now() - started) / 1000;

    started = performance.now();
    await pool(Array.from({ length: opts.deliveries }, (_, i) => i), opts.concurrency, async (i) => {
      const body = JSON.parse(ticket(i));
      await sql`select private.accept_webhook_delivery(${subscription}, ${admin}, ${`direct_${randomUUID()}`}, now(), ${sql.json(body)}, 0, null)`;
    });
    const directSeconds = (performance.now() - started) / 1000;
    const httpRate = latencies.length / viaHttpSeconds;
    const directRate = opts.deliveries / directSeconds;
    console.log(`inbound: ${httpRate.toFixed(0)} accepted deliveries/s through the whole check chain, ${directRate.toFixed(0)} runs/s started by ` +
      `accept_webhook_delivery alone (ratio ${(directRate / httpRate).toFixed(2)}; ${latencies.length} accepted, ${refused} refused, ${opts.concurrency} at a time)`);
    console.log(`inbound: delivery → run started: median ${median(latencies).toFixed(1)} ms, p95 ${percentile(latencies, 95).toFixed(1)} ms ` +
      `(${latencies.length} deliveries, ${opts.concurrency} at a time)`);

    // The retry storm: every delivery sent `storm` times at once.
    const ids = Array.from({ length: opts.distinct }, () => `storm_${randomUUID()}`);
    const answers = await Promise.all(ids.flatMap((id, i) => Array.from({ length: opts.storm }, () => deliver(ticket(10_000 + i), id))));
    const [{ n }] = await sql`select count(*)::int as n from public.agent_runs where org_id = ${org} and input -> 'webhook' ->> 'webhook_id' like 'storm_%'`;
    const accepted = answers.filter((a) => a.status === 202).length;
    console.log(`inbound: retry storm of ${answers.length} concurrent deliveries of ${opts.distinct} webhook-ids: runs started ${n}, ` +
      `accepted ${accepted}, replays refused ${answers.filter((a) => a.status === 409).length}`);
    return refused === 0 && n === opts.distinct && accepted === opts.distinct;
  } finally {
    await sql.end({ timeout: 2 });
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
