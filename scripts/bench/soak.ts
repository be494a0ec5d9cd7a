/**
 * The soak (issue 29, seed 002: load held): `--minutes` (default 5) of mixed traffic at a fixed
 * `--rate` (requests per second, default 20) through the gateway of a stack as npm start runs it:
 *   REST reads and writes (a member, under RLS), model calls (the model gateway, to the local
 *   stand-in), widget messages (visitors' sessions), approvals (proposed by the runtime, decided by
 *   a member) and Stripe events (signed top-ups to the webhook).
 * Each request is sent on its schedule whether or not the ones before have answered (an open
 * model: a slowing stack shows as latency, not as a lower rate). It prints four things:
 *   1. the requests sent and the 5xx answers among them (target 0);
 *   2. each route's p50 and p99 in the first minute and the last (target: the last ≤ 1.2× the first);
 *   3. each process's memory (RSS) at the start and the end;
 *   4. that nothing was lost: every audit chain verifies, and the credit ledger's sums equal the
 *      running totals, with every Stripe event applied once.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import Stripe from "stripe";
import { startOnFreePorts } from "../stack/index.ts";
import { topUp } from "./billing.ts";
import { percentile } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_PROJECT = "1a000000-0000-4000-8000-00000000000a";
const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
const ACME_RUN = "4a000000-0000-4000-8000-00000000000a";
const CASEY = "c0000000-0000-4000-8000-000000000001";
const ORIGIN = "https://soak.shop.test";

export interface SoakOptions {
  minutes: number;
  rate: number;
}

interface Sample { route: string; at: number; ms: number; status: number }

/** The RSS of every process under this one, by kind (postgres, postgrest, deno, node), in MiB. */
function memoryByProcess(): Record<string, number> {
  const parents = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const [, ppid] = stat.slice(close + 2).split(" ");
      parents.set(Number(entry), Number(ppid));
      names.set(Number(entry), stat.slice(stat.indexOf("(") + 1, close));
    } catch {
      // gone already
    }
  }
  const mine = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 20; p = parents.get(p) ?? 0, hops++) if (p === process.pid) return true;
    return false;
  };
  const totals: Record<string, number> = {};
  for (const [pid, name] of names) {
    if (!mine(pid)) continue;
    try {
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
      if (!rss) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const kind = pid === process.pid ? "node: gateway, auth, console, this bench"
        : name === "postgres" ? "postgres: every backend (shared memory counted in each)"
        : name === "postgrest" ? "PostgREST"
        : name === "deno" ? (cmdline.includes("_worker") ? "deno: the run worker" : "deno: the edge functions")
        : name === "bwrap" || name === "python3" || name === "esbuild" ? `${name} (short-lived: a sandbox or a build)` : name;
      totals[kind] = (totals[kind] ?? 0) + Number(rss) / 1024;
    } catch {
      // gone already
    }
  }
  return totals;
}

export async function benchSoak(opts: SoakOptions): Promise<boolean> {
  const stripeSecret = `whsec_${randomBytes(24).toString("base64")}`;
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-soak-"));
  const stack = await startOnFreePorts({
    root, stateDir, log: () => {},
    functionsEnv: { STRIPE_WEBHOOK_SECRETS: stripeSecret, STRIPE_SECRET_KEY: `sk_test_${randomBytes(24).toString("hex")}` },
  });
  const sql = postgres(stack.info.dbUrl, { max: 4, onnotice: () => {} });
  const { apiUrl, functionsUrl, anonKey, serviceRoleKey } = stack.info;
  try {
    // Acme's limits out of the way (the soak measures load, not refusals), a widget key for its agent.
    await sql`update public.model_limits set allowed_models = null, monthly_budget_micro = 1000000000000, soft_budget_micro = null,
                     requests_per_minute = 100000, burst = 10000 where org_id = ${ACME}`;
    await sql`delete from public.model_caps where org_id = ${ACME}`;
    await sql`update public.widget_keys set disabled_at = now() where org_id = ${ACME} and disabled_at is null`;
    const [{ v: key }] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: CASEY, role: "authenticated" })}, true), set_config('role', 'authenticated', true)`;
      await tx`select private.set_context(${ACME})`;
      return tx`select public.create_widget_key(${ACME_AGENT}, ${tx.array([ORIGIN])}) as v`;
    });
    await sql`update public.widget_keys set requests_per_minute = 100000, visitor_requests_per_minute = 10000, monthly_budget_micro = 1000000000000 where id = ${key.id}`;
    const stripeOrg = randomUUID();
    await sql`insert into public.organizations (id, name, slug) values (${stripeOrg}, 'Soak billing', ${`soak-${stripeOrg.slice(0, 8)}`})`;

    const ada = stack.info.demoUsers.find((u) => u.email === "ada@acme.test")!;
    const signIn = await fetch(`${apiUrl}/auth/v1/token?grant_type=password`, {
      method: "POST", headers: { apikey: anonKey, "content-type": "application/json" }, body: JSON.stringify({ email: ada.email, password: ada.password }),
    });
    const token = ((await signIn.json()) as { access_token: string }).access_token;
    const member = { apikey: anonKey, authorization: `Bearer ${token}`, "x-org-id": ACME, "content-type": "application/json" };
    const widgetSession = async () => {
      const res = await fetch(`${functionsUrl}/widget/v1/sessions`, { method: "POST", headers: { "content-type": "application/json", origin: ORIGIN }, body: JSON.stringify({ key: key.key }) });
      return ((await res.json()) as { session: string }).session;
    };
    const visitors = await Promise.all(Array.from({ length: 8 }, widgetSession));
    let n = 0;
    let stripeEvents = 0;

    /** Each route: its share of the traffic, and one request. */
    const routes: [string, number, () => Promise<Response>][] = [
      ["REST read", 4, () => fetch(`${apiUrl}/rest/v1/agents?select=id,name&limit=50`, { headers: member })],
      ["REST write", 2, () => fetch(`${apiUrl}/rest/v1/agents`, {
        method: "POST", headers: { ...member, prefer: "return=minimal" },
        body: JSON.stringify({ project_id: ACME_PROJECT, name: `soak ${n++} ${randomUUID().slice(0, 8)}`, description: "made by the soak" }),
      })],
      ["model call", 3, () => fetch(`${functionsUrl}/model-gateway/v1/chat/completions`, {
        method: "POST", headers: { ...member, "x-agent-id": ACME_AGENT },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Say hello in five words." }], max_tokens: 16 }),
      })],
      ["widget message", 3, () => fetch(`${functionsUrl}/widget/v1/messages`, {
        method: "POST", headers: { "content-type": "application/json", origin: ORIGIN, authorization: `Bearer ${visitors[n++ % visitors.length]}` },
        body: JSON.stringify({ content: "Do you ship to Norway?" }),
      })],
      ["approval", 2, async () => {
        const proposed = await fetch(`${apiUrl}/rest/v1/rpc/propose_action`, {
          method: "POST", headers: { apikey: anonKey, authorization: `Bearer ${serviceRoleKey}`, "content-type": "application/json" },
          body: JSON.stringify({ p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: { channel: "#soak", text: `soak ${n++}` }, p_risk: "low" }),
        });
        if (proposed.status !== 200) return proposed;
        const request = (await proposed.json()) as { id: string; approval_sha256: string; status: string };
        if (request.status !== "pending") return new Response(null, { status: 200 });
        return fetch(`${apiUrl}/rest/v1/rpc/decide_action`, {
          method: "POST", headers: member, body: JSON.stringify({ p_request_id: request.id, p_approval_sha256: request.approval_sha256, p_approve: true }),
        });
      }],
      ["Stripe event", 1, () => {
        stripeEvents++;
        const payload = JSON.stringify(topUp(stripeOrg));
        return fetch(`${functionsUrl}/stripe-webhook`, {
          method: "POST", headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload, secret: stripeSecret }) }, body: payload,
        });
      }],
    ];
    const schedule = routes.flatMap(([name, weight, send]) => Array.from({ length: weight }, () => [name, send] as const));

    // Warm up every route once (workers' first calls load their modules), then measure.
    for (const [name, , send] of routes) {
      const res = await send();
      if (res.status >= 400) console.log(`soak: warm-up of ${name} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      else await res.body?.cancel();
    }
    const memoryBefore = memoryByProcess();
    const samples: Sample[] = [];
    const failures = new Map<string, number>();
    const total = Math.round(opts.minutes * 60 * opts.rate);
    const started = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = started + (i * 1000) / opts.rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const [route, send] = schedule[i % schedule.length];
      const sent = performance.now();
      inFlight.push(send().then(async (res) => {
        await res.body?.cancel();
        samples.push({ route, at: sent - started, ms: performance.now() - sent, status: res.status });
      }, (e: Error) => {
        failures.set(`${route}: ${e.message}`, (failures.get(`${route}: ${e.message}`) ?? 0) + 1);
        samples.push({ route, at: sent - started, ms: performance.now() - sent, status: 0 });
      }));
    }
    await Promise.all(inFlight);
    const seconds = (performance.now() - started) / 1000;
    const memoryAfter = memoryByProcess();

    // 1. Requests and 5xx.
    const errors = samples.filter((s) => s.status >= 500 || s.status === 0);
    const refusals = samples.filter((s) => s.status >= 400 && s.status < 500);
    console.log(`soak: ${samples.length} requests in ${seconds.toFixed(0)} s (${(samples.length / seconds).toFixed(1)}/s, target ${opts.rate}/s); 5xx or no answer: ${errors.length} (target 0); 4xx: ${refusals.length}`);
    for (const [what, count] of failures) console.log(`  no answer: ${what} (${count})`);
    const byStatus = new Map<string, number>();
    for (const s of [...errors, ...refusals]) byStatus.set(`${s.route} ${s.status}`, (byStatus.get(`${s.route} ${s.status}`) ?? 0) + 1);
    for (const [what, count] of byStatus) console.log(`  ${what}: ${count}`);

    // 2. Latency per route, first minute against last.
    const minute = 60_000;
    const end = opts.minutes * minute;
    let latencyHeld = true;
    console.log("soak: latency per route, first minute → last minute (p50, p99 in ms; target: last ≤ 1.2× first)");
    for (const [route] of routes) {
      const first = samples.filter((s) => s.route === route && s.at < minute).map((s) => s.ms);
      const last = samples.filter((s) => s.route === route && s.at >= end - minute).map((s) => s.ms);
      if (first.length === 0 || last.length === 0) continue;
      const [f50, f99, l50, l99] = [percentile(first, 50), percentile(first, 99), percentile(last, 50), percentile(last, 99)];
      const ratio = Math.max(l50 / f50, l99 / f99);
      if (ratio > 1.2) latencyHeld = false;
      console.log(`  ${route.padEnd(15)} p50 ${f50.toFixed(1)} → ${l50.toFixed(1)}, p99 ${f99.toFixed(1)} → ${l99.toFixed(1)} (×${ratio.toFixed(2)}; ${first.length} and ${last.length} requests)`);
    }

    // 3. Memory.
    console.log("soak: memory (RSS, MiB) at the start → the end");
    for (const kind of Object.keys({ ...memoryBefore, ...memoryAfter }).sort()) {
      console.log(`  ${kind.padEnd(58)} ${(memoryBefore[kind] ?? 0).toFixed(0)} → ${(memoryAfter[kind] ?? 0).toFixed(0)}`);
    }

    // 4. Nothing lost: the chains (once the sealer has caught up), the ledger, the Stripe events.
    const deadline = Date.now() + 30_000;
    while (Number((await sql`select count(*)::int as n from audit.pending`)[0].n) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const chains = await sql`select h.org_id, v.ok, v.reason from audit.heads h cross join lateral audit.verify_chain(h.org_id) v`;
    const broken = chains.filter((c) => !c.ok);
    const [ledger] = await sql`
      select count(*) filter (where l.sum is distinct from t.balance_micro)::int as unbalanced, count(*)::int as orgs
        from private.credit_totals t
        left join lateral (select sum(amount_micro)::bigint as sum from public.credit_ledger c where c.org_id = t.org_id) l on true`;
    const [{ applied }] = await sql`select count(*)::int as applied from public.credit_ledger where org_id = ${stripeOrg}`;
    const stripeOk = applied === stripeEvents;
    console.log(`soak: audit chains verified ${chains.length - broken.length} of ${chains.length}${broken.length ? ` (broken: ${broken.map((b) => `${b.org_id}: ${b.reason}`).join("; ")})` : ""}; ` +
      `ledger balanced in ${ledger.orgs - ledger.unbalanced} of ${ledger.orgs} organizations; Stripe events applied ${applied} of ${stripeEvents} sent`);

    return errors.length === 0 && latencyHeld && broken.length === 0 && ledger.unbalanced === 0 && stripeOk;
  } finally {
    await sql.end({ timeout: 2 });
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
