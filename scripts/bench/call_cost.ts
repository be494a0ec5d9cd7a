/**
 * The database cost of one model call, measured straight against private.reserve_model_call and
 * private.settle_model_call (the two statements the gateway runs per call), side by side in one
 * run; part of `npm run bench -- gateway`:
 *
 *   1. `history ratio X`: the median reserve-plus-settle time on an organization with `history`
 *      prior calls (its model calls, their credit ledger debits, their sealed audit entries, all
 *      this month) over the same on an organization with none, interleaved call by call; for a
 *      prepaid and a postpaid organization, X being the larger (target ≤ 1.2);
 *   2. `one tenant: N calls/s`: reserve-plus-settle pairs admitted per second on one
 *      organization with `callers` concurrent callers, each on its own connection (target ≥ 1,000).
 *      While it runs, what the callers wait on is sampled from pg_stat_activity.
 */
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { median } from "./common.ts";

export interface CallCostOptions {
  /** Prior calls of the organization with history. */
  history: number;
  /** Interleaved calls timed on each organization. */
  rounds: number;
  /** Concurrent callers on one organization. */
  callers: number;
  /** Seconds the concurrent callers run. */
  seconds: number;
}

const PLAN_PRICE = "price_benchcallcost";

interface Tenant {
  org: string;
  run: string;
}

type Sql = postgres.Sql;

/** A fresh organization with one published agent and a running run, no limit in the way; prepaid ones hold ample credits. */
async function tenant(sql: Sql, mode: "prepaid" | "postpaid"): Promise<Tenant> {
  const org = randomUUID();
  const slug = `cost-${org.slice(0, 8)}`;
  await sql.begin(async (tx) => {
    await tx`insert into public.organizations (id, name, slug) values (${org}, ${slug}, ${slug})`;
    const [project] = await tx`insert into public.projects (org_id, name, slug) values (${org}, 'Bench', 'bench') returning id`;
    const [agent] = await tx`insert into public.agents (org_id, project_id, name) values (${org}, ${project.id}, 'Bench') returning id`;
    const [version] = await tx`insert into public.agent_versions (org_id, project_id, agent_id, version, published_at, published_by)
                               values (${org}, ${project.id}, ${agent.id}, 1, now(), ${randomUUID()}) returning id`;
    await tx`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
             values (${org}, ${project.id}, ${agent.id}, ${version.id})`;
    await tx`insert into public.model_limits (org_id, requests_per_minute, burst, monthly_budget_micro)
             values (${org}, 100000, 10000, 1000000000000000)`;
    if (mode === "prepaid") {
      await tx`insert into public.billing_accounts (org_id, mode) values (${org}, 'prepaid')`;
      await tx`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${org}, 'grant', 1000000000000, 'Bench credits')`;
    } else {
      // A live subscription to a plan whose ceiling is out of the way (the free tier's is $5).
      await tx`insert into public.billing_accounts (org_id, mode, stripe_customer_id, subscription_id, subscription_status, stripe_price_id, plan)
               values (${org}, 'postpaid', ${`cus_${org.replaceAll("-", "")}`}, ${`sub_${org.replaceAll("-", "")}`}, 'active', ${PLAN_PRICE}, 'benchcallcost')`;
    }
  });
  const [run] = await sql`select id from public.agent_runs where org_id = ${org}`;
  return { org, run: run.id };
}

/**
 * What `calls` settled calls leave behind, made in bulk: the model_calls rows (whose triggers
 * write the credit ledger's debits, the audit records and a postpaid organization's meter
 * events), the meters' spend, and the audit chain sealed.
 */
async function giveHistory(sql: Sql, t: Tenant, calls: number): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`insert into public.model_calls (org_id, project_id, agent_id, run_id, provider, model, key_source, stream, input_tokens,
                                            output_tokens, reserved_micro, cost_micro, latency_ms, outcome, started_at)
             select r.org_id, r.project_id, r.agent_id, r.id, 'openai', 'gpt-4o-mini', 'platform', false, 20, 16, 700, 11, 5,
                    'succeeded', now() - (n || ' ms')::interval
               from public.agent_runs r, generate_series(1, ${calls}) n
              where r.id = ${t.run}`;
    for (const scope of ["organization", "project", "agent"]) {
      const id = scope === "organization" ? t.org : scope === "project" ? sql`r.project_id` : sql`r.agent_id`;
      await tx`insert into private.model_meters (org_id, scope, scope_id, period, committed_micro, spent_micro)
               select r.org_id, ${scope}, ${id}, date_trunc('month', now())::date, ${calls * 11}, ${calls * 11}
                 from public.agent_runs r where r.id = ${t.run}`;
    }
  });
  while ((await sql`select audit.seal(${t.org}, 20000) as n`)[0].n > 0);
  await sql`vacuum analyze public.model_calls, public.credit_ledger, audit.records, audit.entries, private.stripe_meter_outbox`;
}

/** One call: reserve, then settle at a small actual usage. Returns the milliseconds both took. */
async function oneCall(sql: Sql, t: Tenant): Promise<number> {
  const started = performance.now();
  const [{ r }] = await sql`select private.reserve_model_call(${t.run}, null, null, 'gpt-4o-mini', 20, 16, false) as r`;
  if (!r.ok) throw new Error(`reserve refused: ${JSON.stringify(r)}`);
  await sql`select private.settle_model_call(${r.reservation_id}, 'succeeded', 20, 16, false, 5)`;
  return performance.now() - started;
}

/** The history ratio of one billing mode: interleaved calls on an organization with history and one without. */
async function historyRatio(sql: Sql, mode: "prepaid" | "postpaid", opts: CallCostOptions) {
  const fresh = await tenant(sql, mode);
  const old = await tenant(sql, mode);
  await giveHistory(sql, old, opts.history);
  for (let i = 0; i < 50; i++) {
    await oneCall(sql, fresh);
    await oneCall(sql, old);
  }
  const freshMs: number[] = [];
  const oldMs: number[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    if (i % 2) {
      freshMs.push(await oneCall(sql, fresh));
      oldMs.push(await oneCall(sql, old));
    } else {
      oldMs.push(await oneCall(sql, old));
      freshMs.push(await oneCall(sql, fresh));
    }
  }
  return { mode, fresh: median(freshMs), old: median(oldMs), ratio: median(oldMs) / median(freshMs) };
}

/** Calls per second on one organization with `callers` concurrent callers, and what they waited on. */
async function oneTenant(dbUrl: string, sql: Sql, mode: "prepaid" | "postpaid", opts: CallCostOptions) {
  const t = await tenant(sql, mode);
  const callers = postgres(dbUrl, { max: opts.callers, onnotice: () => {} });
  const waits = new Map<string, number>();
  let samples = 0;
  try {
    // Open every connection, and warm their plans.
    await Promise.all(Array.from({ length: opts.callers * 4 }, () => oneCall(callers, t)));
    let calls = 0;
    let running = true;
    const sampler = (async () => {
      while (running) {
        const rows = await sql`select coalesce(wait_event_type || ':' || wait_event, 'running') as w, count(*)::int as n
                                 from pg_stat_activity
                                where datname = current_database() and pid <> pg_backend_pid() and state = 'active'
                                  and (query ilike '%reserve_model_call%' or query ilike '%settle_model_call%')
                                group by 1`;
        for (const row of rows) waits.set(row.w, (waits.get(row.w) ?? 0) + row.n);
        samples++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const started = performance.now();
    const until = started + opts.seconds * 1000;
    await Promise.all(Array.from({ length: opts.callers }, async () => {
      while (performance.now() < until) {
        await oneCall(callers, t);
        calls++;
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    running = false;
    await sampler;
    const waited = [...waits.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4)
      .map(([w, n]) => `${w} ${((n / samples)).toFixed(1)}`).join(", ");
    return { mode, rate: calls / seconds, waited };
  } finally {
    await callers.end({ timeout: 2 });
  }
}

/** Prints `history ratio X` and `one tenant: N calls/s`; true when both are within target. */
export async function benchCallCost(dbUrl: string, opts: CallCostOptions): Promise<boolean> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`insert into private.billing_plans (plan, stripe_price_id, mode, credits_micro, monthly_ceiling_micro, offered)
              values ('benchcallcost', ${PLAN_PRICE}, 'postpaid', 0, 1000000000000000, false) on conflict do nothing`;
    const ratios = [await historyRatio(sql, "prepaid", opts), await historyRatio(sql, "postpaid", opts)];
    const worst = Math.max(...ratios.map((r) => r.ratio));
    console.log(`history ratio ${worst.toFixed(2)} (reserve + settle, median of ${opts.rounds}, with ${opts.history} prior calls ÷ with none: ` +
      ratios.map((r) => `${r.mode} ${r.old.toFixed(2)} ms ÷ ${r.fresh.toFixed(2)} ms = ${r.ratio.toFixed(2)}`).join(", ") + "; target ≤ 1.2)");
    const tenants = [await oneTenant(dbUrl, sql, "postpaid", opts), await oneTenant(dbUrl, sql, "prepaid", opts)];
    console.log(`one tenant: ${tenants[0].rate.toFixed(0)} calls/s (${opts.callers} concurrent callers of one postpaid organization, ` +
      `reserve + settle, ${opts.seconds} s; target ≥ 1000; a prepaid one: ${tenants[1].rate.toFixed(0)} calls/s)`);
    for (const t of tenants) console.log(`  ${t.mode} callers, on average: ${t.waited}`);
    return worst <= 1.2 && tenants[0].rate >= 1000;
  } finally {
    await sql.end({ timeout: 2 });
  }
}
