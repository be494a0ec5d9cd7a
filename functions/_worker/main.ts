/**
 * The run worker: takes agent runs' steps from the job engine (graphile-worker, on the same
 * Postgres) and runs each through functions/_shared/runs/step.ts, with the same model-call,
 * connector and egress code as the edge functions. Any number of workers may run side by side,
 * here or beside hosted Supabase (docs/runs.md: deploying workers); a step is leased to one.
 *
 *   deno run --allow-all --config deno.json functions/_worker/main.ts
 *
 * The worker also runs the code of agents' code.run tools, in the sandbox on its host
 * (functions/_shared/sandbox/, docs/sandbox.md): it self-tests the sandbox at start-up and logs each
 * layer, and where a layer is missing (no user namespaces, no writable cgroup, not root) it refuses
 * to run code, holding code actions back with their approvals unused. That is why it runs with
 * --allow-all: Deno lets only a fully permitted process write /sys (each execution's cgroup) and
 * start the sandbox's processes; the sandbox, not Deno's permissions, is what confines the code.
 *
 * Environment: SUPABASE_DB_URL (required), the functions' model and connector settings
 * (OPENAI_API_KEY, ANTHROPIC_API_KEY, …), and
 *   GATEHOUSE_WORKER_CONCURRENCY   steps at once in this process (default 8)
 *   GATEHOUSE_RUN_LEASE_SECONDS    a step's lease; renewed every third of it while the step runs (default 60)
 *   GATEHOUSE_RUN_SWEEP_SECONDS    how often this worker sweeps (deadlines, expired approvals, stopped steps; default 5)
 *   GATEHOUSE_PURGE_LEASE_SECONDS  how long a workspace purge stays with a worker that stopped (default 300)
 *   GATEHOUSE_WORKER_STATS         a file to keep this worker's counts in (the runs bench reads it)
 *
 * A job names a run, and nothing else in its payload is read: the organization, project and agent
 * come from the run row, which the claim reads (seed 004: background workers re-derive tenant_id
 * from the agent_runs row; tenancy/row_scope.ts is the same rule for other rows).
 * Each sweep also drives workspace purges (functions/_shared/lifecycle/purge.ts): it starts those
 * whose subscription's grace period is over, and takes the oldest unfinished one (leased, so that
 * a purge whose worker stopped is taken up by the next).
 *
 * SIGTERM or SIGINT stops taking jobs, lets the steps under way finish (a purge's too, which then
 * hands its lease back, so another worker goes on at once), and exits.
 */
import { Logger, run, type Runner } from "graphile-worker";
import { connectorEnvFrom } from "../_shared/connectors/providers.ts";
import { db, serviceDb, statementsSent } from "../_shared/http/db.ts";
import { purgeDue } from "../_shared/lifecycle/purge.ts";
import { modelEnvFrom } from "../_shared/models/upstream.ts";
import { RetryStep, runStep, type StepContext } from "../_shared/runs/step.ts";
import { bubblewrapBackend } from "../_shared/sandbox/bubblewrap.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function numberSetting(name: string, fallback: number, min: number, max: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    console.error(`worker: ${name} must be a whole number from ${min} to ${max}`);
    Deno.exit(2);
  }
  return value;
}

const dbUrl = Deno.env.get("SUPABASE_DB_URL");
if (!dbUrl) {
  console.error("worker: set SUPABASE_DB_URL (the database the runs and the job engine live in)");
  Deno.exit(2);
}
const concurrency = numberSetting("GATEHOUSE_WORKER_CONCURRENCY", 8, 1, 100);
const leaseSeconds = numberSetting("GATEHOUSE_RUN_LEASE_SECONDS", 60, 2, 3600);
const sweepSeconds = numberSetting("GATEHOUSE_RUN_SWEEP_SECONDS", 5, 1, 3600);
const purgeLeaseSeconds = numberSetting("GATEHOUSE_PURGE_LEASE_SECONDS", 300, 1, 86400);
const statsFile = Deno.env.get("GATEHOUSE_WORKER_STATS") ?? null;
const get = (name: string) => Deno.env.get(name);
let ctx: StepContext;
try {
  ctx = {
    sql: serviceDb(),
    executionSql: db(),
    modelEnv: modelEnvFrom(get),
    connectorEnv: { ...connectorEnvFrom(get), sandbox: bubblewrapBackend },
    workerId: `worker-${Deno.hostname()}-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`,
    leaseSeconds,
  };
} catch {
  console.error("worker: the model or connector settings do not parse (see docs/runs.md)");
  Deno.exit(2);
}

// What this worker did: steps by outcome, statements sent, and how long jobs waited to be picked up.
const stats = { jobs: 0, steps: 0, outcomes: {} as Record<string, number>, statements: 0, pickupMs: [] as number[] };
let statsDirty = false;
function count(kind: string): void {
  stats.outcomes[kind] = (stats.outcomes[kind] ?? 0) + 1;
  statsDirty = true;
}
async function writeStats(): Promise<void> {
  if (!statsFile || !statsDirty) return;
  statsDirty = false;
  stats.statements = statementsSent.count;
  await Deno.writeTextFile(statsFile, JSON.stringify(stats));
}

// The job engine's own lines: warnings and errors only (a line per job would drown the log).
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`job engine ${level}: ${message}`);
});

const runner: Runner = await run({
  connectionString: dbUrl,
  concurrency,
  noHandleSignals: true,
  pollInterval: 2_000,
  crontab: "",
  logger,
  taskList: {
    run_step: async (payload, helpers) => {
      stats.jobs++;
      stats.pickupMs.push(Math.max(0, Date.now() - helpers.job.run_at.getTime()));
      const job = (payload ?? {}) as { run_id?: unknown };
      if (typeof job.run_id !== "string" || !UUID.test(job.run_id)) {
        console.error(`worker: job ${helpers.job.id} names no run; dropped`);
        count("invalid_job");
        return;
      }
      const outcome = await runStep(ctx, job.run_id).catch((e) => {
        count(e instanceof RetryStep ? "retry" : "error");
        // The engine tries the job again later; the step was released (RetryStep) or its lease runs out.
        console.error(`worker: run ${job.run_id}: ${e instanceof RetryStep ? e.message : `step failed (${(e as Error)?.name})`}`);
        throw e;
      });
      if (outcome.kind !== "idle") stats.steps++;
      count(outcome.kind === "idle" ? `idle:${outcome.reason}` : outcome.kind);
    },
  },
});
console.log(`worker ${ctx.workerId} ready (${concurrency} at once, lease ${leaseSeconds} s)`);

// The sandbox's self-test, once, beside the first jobs (each code action waits for its result).
void bubblewrapBackend.selfTest().then((test) => {
  const layers = test.layers.map((l) => `${l.layer} ${l.ok ? "ok" : "MISSING"}`).join(", ");
  if (test.ok) console.log(`worker: sandbox ready (bubblewrap: ${layers})`);
  else {
    const missing = test.layers.filter((l) => !l.ok).map((l) => `${l.layer}: ${l.detail}`).join("; ");
    console.error(`worker: sandbox refuses to run code, a layer is missing (${missing}); code actions wait, unused, for a worker whose sandbox passes`);
  }
});

// The sweep: deadlines, approvals that expired while a run waited, steps whose worker stopped;
// and workspace purges, one at a time.
let purging: Promise<void> | null = null;
const sweeping = setInterval(() => {
  serviceDb()`select private.sweep_runs()`.catch((e) => console.error(`worker: sweep failed (${(e as Error)?.name})`));
  purging ??= purgeDue({ sql: serviceDb(), connectorEnv: ctx.connectorEnv, workerId: ctx.workerId, leaseSeconds: purgeLeaseSeconds, stopping: () => stopping })
    .then((done) => {
      if (done?.step === "done") console.log(`worker: workspace ${done.orgId} purged`);
    })
    .catch((e) => console.error(`worker: a workspace purge stopped (${(e as Error)?.name}); it is tried again from its last step`))
    .finally(() => (purging = null));
}, sweepSeconds * 1000);
const flushing = setInterval(() => void writeStats().catch((e) => console.error(`worker: stats not written (${(e as Error)?.name})`)), 250);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(sweeping);
  clearInterval(flushing);
  // A purge under way stops after its current step and hands its lease back (purge.ts).
  await Promise.all([runner.stop(), purging]);
  statsDirty = true;
  await writeStats().catch(() => {});
  Deno.exit(0);
}
Deno.addSignalListener("SIGTERM", () => void stop());
Deno.addSignalListener("SIGINT", () => void stop());
await runner.promise;
