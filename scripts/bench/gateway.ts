/**
 * `npm run bench -- gateway`: the model gateway against the local stand-in upstream (instant,
 * deterministic), on a throwaway stack, all measured in one run:
 *
 *   1. added latency: the same non-streamed call with the official OpenAI SDK, straight to the
 *      upstream and through the gateway, interleaved; medians, as a ratio and in ms (target ≤ 3 ms
 *      added); and the time each gateway answer says it spent in Gatehouse (its Server-Timing
 *      `gatehouse` metric: admission, settle and our code, not the vendor), as
 *      `in the function: median X ms, p99 Y ms` (targets ≤ 1.5 ms and ≤ 5 ms);
 *   2. database round trips per call, counted by pg_stat_statements (every statement the
 *      database ran for the calls, BEGIN and COMMIT included); target ≤ 2 (reserve, settle);
 *   3. a budget race: 200 concurrent calls against a monthly budget that fits 50 at their maximum
 *      cost, each using exactly its maximum, printing `admitted N, overspend X` (target N = 50, X = 0);
 *   4. the database cost of a call (scripts/bench/call_cost.ts): `history ratio X` (with 100,000 prior
 *      calls ÷ with none, target ≤ 1.2) and `one tenant: N calls/s` (8 concurrent callers, target ≥ 1,000).
 *
 * Exits non-zero when a target is missed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import postgres from "postgres";
import { inputTokenBound } from "../../functions/_shared/models/wire.ts";
import { startOnFreePorts } from "../stack/index.ts";
import { benchCallCost } from "./call_cost.ts";
import { median, percentile } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ACME = "0a000000-0000-4000-8000-00000000000a";
const MESSAGES = [{ role: "user" as const, content: "Where is my parcel?" }];
// gpt-4o-mini's list price, micro-units per million tokens (the catalog's).
const PRICE = { input: 150000, output: 600000 };

export interface GatewayBenchOptions {
  iterations: number;
  concurrency: number;
  fits: number;
}

export async function benchGateway(opts: GatewayBenchOptions): Promise<boolean> {
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, log: () => {} });
  const sql = postgres(stack.info.dbUrl, { max: 2, onnotice: () => {} });
  try {
    const standIn = stack.modelStandIn!;
    const { apiKey } = stack.info.modelStandIn!;
    await sql`create extension if not exists pg_stat_statements with schema extensions`;
    // Acme's limits out of the way of the latency runs; a fresh run of its agent.
    await sql`update public.model_limits set allowed_models = null, monthly_budget_micro = 1000000000000, requests_per_minute = 100000,
                     burst = 10000 where org_id = ${ACME}`;
    await sql`delete from public.model_caps where org_id = ${ACME}`;
    const [run] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                            select org_id, project_id, agent_id, id from public.agent_versions
                             where org_id = ${ACME} and published_at is not null limit 1 returning id`;
    const gateway = new OpenAI({
      baseURL: `${stack.info.functionsUrl}/model-gateway/v1`, apiKey: stack.info.serviceRoleKey, defaultHeaders: { "x-run-id": run.id }, maxRetries: 0,
    });
    const direct = new OpenAI({ baseURL: standIn.openaiBaseUrl, apiKey, maxRetries: 0 });
    const call = (client: OpenAI, maxTokens = 16) => client.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES, max_tokens: maxTokens });

    // 1. Latency, interleaved after a warm-up; and the gateway's own account of its time.
    for (let i = 0; i < 20; i++) await Promise.all([call(direct), call(gateway)]);
    const directMs: number[] = [];
    const gatewayMs: number[] = [];
    const inFunctionMs: number[] = [];
    const admitMs: number[] = [];
    const settleMs: number[] = [];
    const vendorMs: number[] = [];
    for (let i = 0; i < opts.iterations; i++) {
      for (const [client, times] of (i % 2 ? [[direct, directMs], [gateway, gatewayMs]] : [[gateway, gatewayMs], [direct, directMs]]) as [OpenAI, number[]][]) {
        const t = performance.now();
        const { response } = await call(client).withResponse();
        times.push(performance.now() - t);
        if (client === gateway) {
          const metrics = serverTiming(response.headers.get("server-timing"));
          inFunctionMs.push(metrics.gatehouse);
          admitMs.push(metrics.admit);
          settleMs.push(metrics.settle);
          vendorMs.push(metrics.vendor);
        }
      }
    }
    const d = median(directMs);
    const g = median(gatewayMs);
    console.log(`added latency (median of ${opts.iterations} non-streamed calls): gateway ${g.toFixed(2)} ms vs upstream directly ${d.toFixed(2)} ms: ratio ${(g / d).toFixed(2)}, +${(g - d).toFixed(2)} ms (target ≤ 3 ms)`);
    const fMedian = median(inFunctionMs);
    const fP99 = percentile(inFunctionMs, 99);
    console.log(`in the function: median ${fMedian.toFixed(2)} ms, p99 ${fP99.toFixed(2)} ms (Server-Timing of ${inFunctionMs.length} answers; targets ≤ 1.5 ms, ≤ 5 ms)`);
    console.log(`  of it, medians: admission ${median(admitMs).toFixed(2)} ms, settle ${median(settleMs).toFixed(2)} ms, our code ${(fMedian - median(admitMs) - median(settleMs)).toFixed(2)} ms; beside it, the vendor's share ${median(vendorMs).toFixed(2)} ms`);

    // 2. Round trips: every statement the database runs while the gateway serves N calls.
    const counted = 50;
    await sql`select extensions.pg_stat_statements_reset()`;
    for (let i = 0; i < counted; i++) await call(gateway);
    const [{ statements, by_gateway }] = await sql`
      select coalesce(sum(s.calls), 0)::int as statements,
             coalesce(sum(s.calls) filter (where s.userid = 'service_role'::regrole), 0)::int as by_gateway
        from extensions.pg_stat_statements s
       where s.dbid = (select oid from pg_database where datname = current_database())
         -- This bench's own statements, and the stack's background audit sealer.
         and s.query not ilike '%pg_stat_statements%' and s.query not ilike '%seal_pending%'`;
    const perCall = statements / counted;
    console.log(`db round trips per call: ${perCall.toFixed(2)} (${statements} statements for ${counted} calls, ${by_gateway} of them by the gateway's service-role sessions; target ≤ 2)`);
    const timings = await sql`
      select case when s.query ilike '%reserve_model_call%' then 'reserve' else 'settle' end as step, avg(s.mean_exec_time)::float8 as ms
        from extensions.pg_stat_statements s
       where s.query ilike '%reserve_model_call%' or s.query ilike '%settle_model_call%'
       group by 1 order by 1 desc`;
    console.log(`  of the added latency, time in the database: ${timings.map((t) => `${t.step} ${Number(t.ms).toFixed(2)} ms`).join(", ")} (mean execution)`);

    // 3. The budget race: every call uses exactly its maximum, so the budget fits `fits` calls whatever the timing.
    const maxTokens = 1000;
    const bound = inputTokenBound(MESSAGES);
    const each = Math.ceil((bound * PRICE.input + maxTokens * PRICE.output) / 1e6);
    const [before] = await sql`select coalesce((select committed_micro from private.model_meters where org_id = ${ACME} and scope = 'organization'
                                 and scope_id = ${ACME} and period = date_trunc('month', now())::date), 0)::bigint as committed`;
    const budget = Number(before.committed) + opts.fits * each;
    await sql`update public.model_limits set monthly_budget_micro = ${budget}, soft_budget_micro = null where org_id = ${ACME}`;
    standIn.behave({ kind: "usage", input: bound, output: maxTokens });
    const outcomes = await Promise.allSettled(Array.from({ length: opts.concurrency }, () => call(gateway, maxTokens)));
    standIn.behave({ kind: "reply" });
    const admitted = outcomes.filter((o) => o.status === "fulfilled").length;
    const refusals = new Set(outcomes.flatMap((o) => (o.status === "rejected" ? [(o.reason as { code?: string }).code ?? String(o.reason)] : [])));
    const [after] = await sql`select committed_micro::bigint as committed, spent_micro::bigint as spent from private.model_meters
                               where org_id = ${ACME} and scope = 'organization' and scope_id = ${ACME} and period = date_trunc('month', now())::date`;
    const overspend = Math.max(0, Number(after.committed) - budget);
    console.log(`budget race: admitted ${admitted}, overspend ${overspend} (${opts.concurrency} concurrent calls, a budget that fits ${opts.fits}; refusals: ${[...refusals].join(", ") || "none"})`);

    // 4. What a call costs the database, as history grows and callers of one tenant multiply.
    const costMet = await benchCallCost(stack.info.dbUrl, { history: 100000, rounds: 500, callers: 8, seconds: 5 });

    const latency = { added: g - d <= 3, inFunction: fMedian <= 1.5 && fP99 <= 5 };
    if (!latency.added) console.log("target missed: added latency through the local stack above 3 ms");
    if (!latency.inFunction) console.log("target missed: time in the function above a median of 1.5 ms or a p99 of 5 ms");
    const met = perCall <= 2 && admitted === opts.fits && overspend === 0 && latency.added && latency.inFunction && costMet;
    return met;
  } finally {
    await sql.end();
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** The durations of a Server-Timing header's metrics, in ms, by name (NaN for one it lacks). */
function serverTiming(header: string | null): Record<"gatehouse" | "admit" | "settle" | "vendor", number> {
  const metrics = new Map((header ?? "").split(",").map((m) => {
    const [name, ...params] = m.trim().split(";");
    const dur = params.find((p) => p.startsWith("dur="));
    return [name, dur ? Number(dur.slice(4)) : Number.NaN] as const;
  }));
  const get = (name: string) => metrics.get(name) ?? Number.NaN;
  return { gatehouse: get("gatehouse"), admit: get("admit"), settle: get("settle"), vendor: get("vendor") };
}
