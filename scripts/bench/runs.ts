/**
 * `npm run bench -- runs`: agent runs through the run worker (functions/_worker/main.ts, the real
 * process) on the job engine, on a throwaway stack with the local stand-in model, all measured in
 * one run:
 *
 *   1. runs per second for N three-step runs (model → allowed tool → model): the tool is an HTTPS
 *      webhook tool of Acme's agent with an allow policy, delivering to a local HTTP server that
 *      the egress guard is told to allow (as the tests' provider fakes are); every run is started
 *      through start_agent_run at once, and the clock stops when the last one has ended;
 *   2. the median and p95 time from enqueue to a worker's pickup (the job's run_at to its
 *      handler's start, as the worker records it), for runs started one at a time, and beside it
 *      for the burst of (1), where jobs queue behind the worker's concurrency;
 *   3. database round trips per run step (a model turn and its tool calls): the statements the
 *      worker sent (it counts them with GATEHOUSE_COUNT_ROUND_TRIPS=1), and beside them the job
 *      engine's own (taking and completing jobs), from pg_stat_statements;
 *   4. an approval storm: M runs wait for approval, all decided at once by a tenant admin, and each
 *      must resume exactly once: `resumed M of M, duplicates D` (D counts deliveries and tool
 *      results past one per run; target D = 0, every run resumed).
 *
 * Exits non-zero when a run does not end as expected or the storm's target is missed.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { startOnFreePorts } from "../stack/index.ts";
import { type ManagedChild, stopChild } from "../stack/processes.ts";
import { startWorker } from "../stack/worker.ts";
import { median, percentile } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_PROJECT = "1a000000-0000-4000-8000-00000000000a";
const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
const ADA = "a0000000-0000-4000-8000-000000000001";

export interface RunsBenchOptions {
  runs: number;
  /** Runs started one at a time, for the pickup time of an idle worker. */
  idle: number;
  storm: number;
  concurrency: number;
}

interface WorkerStats {
  jobs: number;
  steps: number;
  outcomes: Record<string, number>;
  statements: number;
  pickupMs: number[];
}

/** A webhook receiver: counts the deliveries of each run's payload (its `n`). */
function receiver(): Promise<{ server: Server; port: number; deliveries: Map<string, number> }> {
  const deliveries = new Map<string, number>();
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      try {
        const n = String((JSON.parse(body) as { n?: unknown }).n ?? "verification");
        deliveries.set(n, (deliveries.get(n) ?? 0) + 1);
      } catch {
        // not a delivery
      }
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r({ server, port: (server.address() as { port: number }).port, deliveries })));
}

export async function benchRuns(opts: RunsBenchOptions): Promise<boolean> {
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, log: () => {}, worker: false });
  const sql = postgres(stack.info.dbUrl, { max: 10, onnotice: () => {} });
  const hook = await receiver();
  const statsFile = join(stateDir, "worker-stats.json");
  let ok = true;
  let worker: ManagedChild | null = null;
  try {
    await sql`create extension if not exists pg_stat_statements with schema extensions`;
    // Acme, out of its limits' way; a webhook tool that needs no approval.
    await sql`update public.model_limits set allowed_models = null, monthly_budget_micro = 1000000000000, requests_per_minute = 100000,
                     burst = 10000 where org_id = ${ACME}`;
    await sql`delete from public.model_caps where org_id = ${ACME}`;
    await sql`insert into public.connector_limits (org_id, calls_per_minute, monthly_budget_units) values (${ACME}, 100000, 1000000000)
              on conflict (org_id) do update set calls_per_minute = 100000, monthly_budget_units = 1000000000`;
    await sql`insert into private.run_limits (org_id, max_concurrent_runs, max_steps, max_seconds) values (${ACME}, 1000, 20, 900)`;
    const [connection] = await sql`
      insert into public.connections (org_id, provider, display_name, scopes, secret_id, verified_at)
      values (${ACME}, 'https_webhook', 'Bench receiver', '{}',
              vault.create_secret(${JSON.stringify({ url: `http://127.0.0.1:${hook.port}/hooks/bench` })}, null, 'connection credential'), now())
      returning id`;
    await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
              values (${ACME}, ${ACME_PROJECT}, ${ACME_AGENT}, 'notify', 'https_webhook', ${connection.id})`;
    const [policy] = await sql`insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
                               values (${ACME}, ${ACME_PROJECT}, ${ACME_AGENT}, 'notify', 'allow', ${connection.id}) returning id`;

    const standIn = new URL(stack.info.modelStandIn!.url).host;
    worker = await startWorker({
      root,
      env: {
        ...stack.info.workerEnv,
        GATEHOUSE_EGRESS_TEST_ALLOWANCE: JSON.stringify({ endpoints: [standIn, `127.0.0.1:${hook.port}`], http: true }),
        GATEHOUSE_WORKER_CONCURRENCY: String(opts.concurrency),
        GATEHOUSE_WORKER_STATS: statsFile,
        GATEHOUSE_COUNT_ROUND_TRIPS: "1",
      },
      logFile: join(stateDir, "worker.log"),
    });
    // The worker writes its counts every 250 ms: read them once it has caught up.
    const stats = async (): Promise<WorkerStats> => {
      await new Promise((r) => setTimeout(r, 400));
      return JSON.parse(readFileSync(statsFile, "utf8"));
    };
    const start = async (n: string) => {
      const [run] = await sql.begin(async (tx) => {
        await tx`select set_config('role', 'service_role', true)`;
        return await tx`select id from public.start_agent_run(${ACME_AGENT}, ${tx.json({ prompt: `use notify with {"n": "${n}"}` })})`;
      });
      return run.id as string;
    };
    const settled = async (ids: string[], statuses: string[], timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [{ n }] = await sql`select count(*)::int as n from public.agent_runs where id = any(${ids}::uuid[]) and status::text = any(${statuses}::text[])`;
        if (n === ids.length || Date.now() > deadline) return n as number;
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    // Warm-up: a few runs, so that connections and caches are as they are when busy.
    const warm = await Promise.all(Array.from({ length: 8 }, (_, i) => start(`warm-${i}`)));
    if (await settled(warm, ["succeeded"], 60_000) !== warm.length) {
      const runs = await sql`select r.status, r.end_code, s.step, s.attempt, s.answer_seq, s.finished_at is not null as finished
                               from public.agent_runs r left join private.run_steps s on s.run_id = r.id where r.id = any(${warm}::uuid[])`;
      throw new Error(`the warm-up runs did not succeed: ${JSON.stringify(runs)}`);
    }

    // 1–3. N three-step runs at once.
    await sql`select extensions.pg_stat_statements_reset()`;
    const before = await stats();
    const t0 = performance.now();
    const ids = await Promise.all(Array.from({ length: opts.runs }, (_, i) => start(`run-${i}`)));
    const done = await settled(ids, ["succeeded", "failed", "budget_exhausted", "steps_exhausted", "timed_out"], 300_000);
    const seconds = (performance.now() - t0) / 1000;
    const after = await stats();
    const [{ succeeded }] = await sql`select count(*)::int as succeeded from public.agent_runs where id = any(${ids}::uuid[]) and status = 'succeeded'`;
    const [{ engine }] = await sql`
      select coalesce(sum(s.calls), 0)::int as engine from extensions.pg_stat_statements s
       where s.dbid = (select oid from pg_database where datname = current_database()) and s.query ilike '%graphile_worker%'
         and s.query not ilike '%add_job%'`;
    const steps = after.steps - before.steps;
    const ours = after.statements - before.statements;
    const pickups = after.pickupMs.slice(before.pickupMs.length);

    // 2. Pickup when the worker is idle: one run at a time.
    const idleBefore = await stats();
    for (let i = 0; i < opts.idle; i++) {
      const id = await start(`idle-${i}`);
      await settled([id], ["succeeded"], 30_000);
    }
    const idlePickups = (await stats()).pickupMs.slice(idleBefore.pickupMs.length);
    console.log(`runs: ${succeeded} of ${opts.runs} three-step runs (model → allowed tool → model) succeeded in ${seconds.toFixed(2)} s: ${(opts.runs / seconds).toFixed(1)} runs/s (${done} ended; 1 worker, ${opts.concurrency} at once)`);
    console.log(`enqueue → pickup: median ${median(idlePickups).toFixed(1)} ms, p95 ${percentile(idlePickups, 95).toFixed(1)} ms (${idlePickups.length} jobs, one run at a time); under the burst of ${opts.runs}: median ${median(pickups).toFixed(1)} ms, p95 ${percentile(pickups, 95).toFixed(1)} ms (${pickups.length} jobs queued behind ${opts.concurrency} at once)`);
    console.log(`db round trips per step: ${((ours + engine) / steps).toFixed(2)} (${steps} steps, ${(steps / opts.runs).toFixed(1)} per run: the worker's ${(ours / steps).toFixed(2)} per step — claim, the model call's reserve and settle, keep its answer, propose, the execution's gate and delivery record, keep the result, finish — and the job engine's ${(engine / steps).toFixed(2)}, taking and completing jobs)`);
    if (succeeded !== opts.runs) ok = false;
    const delivered = ids.length === opts.runs && [...Array(opts.runs).keys()].every((i) => hook.deliveries.get(`run-${i}`) === 1);
    if (!delivered) {
      console.log("  some run's tool was not delivered exactly once");
      ok = false;
    }

    // 4. The approval storm: M runs waiting, decided at once.
    await sql`delete from public.approval_policies where id = ${policy.id}`;
    const storm = await Promise.all(Array.from({ length: opts.storm }, (_, i) => start(`storm-${i}`)));
    const waiting = await settled(storm, ["waiting_approval"], 60_000);
    const requests = await sql`select id, approval_sha256 from public.action_requests where run_id = any(${storm}::uuid[]) and status = 'pending'`;
    const admin = postgres(stack.info.dbUrl, { max: Math.min(opts.storm, 20), onnotice: () => {} });
    try {
      await Promise.all(requests.map((r) => admin.begin(async (tx) => {
        await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: ADA, role: "authenticated", aal: "aal1" })}, true),
                        set_config('role', 'authenticated', true)`;
        await tx`select private.set_context(${ACME})`;
        await tx`select public.decide_action(${r.id}, ${r.approval_sha256}, true)`;
      })));
    } finally {
      await admin.end();
    }
    const resumed = await settled(storm, ["succeeded"], 120_000);
    const [{ extra_results }] = await sql`
      select coalesce(sum(n - 1), 0)::int as extra_results from (
        select count(*) as n from public.agent_run_messages where run_id = any(${storm}::uuid[]) and role = 'tool' group by run_id) t`;
    const extraDeliveries = storm.reduce((sum, _, i) => sum + Math.max(0, (hook.deliveries.get(`storm-${i}`) ?? 0) - 1), 0);
    const duplicates = extra_results + extraDeliveries;
    console.log(`approval storm: ${waiting} runs waiting, ${requests.length} decided at once; resumed ${resumed} of ${opts.storm}, duplicates ${duplicates}`);
    if (resumed !== opts.storm || duplicates !== 0) ok = false;
  } catch (e) {
    // The worker's log says why a run did not go as expected (codes only; it logs no content).
    try {
      console.error(readFileSync(join(stateDir, "worker.log"), "utf8").split("\n").slice(-20).join("\n"));
    } catch {
      // no log
    }
    throw e;
  } finally {
    if (worker) await stopChild(worker);
    await sql.end();
    hook.server.close();
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
  return ok;
}
