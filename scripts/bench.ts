/**
 * npm run bench -- <name>: benchmarks that print ratios measured side by side in one run, never
 * timed assertions. Each runs on a throwaway database and exits non-zero when a target is missed.
 *
 *   rls     RLS with the organization context vs service_role with an explicit filter (scripts/bench/rls.ts)
 *           options: --orgs 1000 --rows 1000 --iterations 500 --explain
 *   audit   chained appends vs plain inserts, the offline verifier vs JSON parsing alone, the export's rate (scripts/bench/audit.ts)
 *           options: --events 3000 --export-entries 100000 --rounds 5
 *   gateway the model gateway vs its upstream directly, database round trips per call, a budget
 *           race, and the database cost of a call as history grows and callers of one tenant
 *           multiply (scripts/bench/gateway.ts, scripts/bench/call_cost.ts)
 *           options: --iterations 200 --concurrency 200 --fits 50
 *   widget  messages per second through the widget, round trips per message, a visitor's burst
 *           against their limit (scripts/bench/widget.ts)
 *           options: --messages 400 --concurrency 8 --limit 10
 *   billing Stripe events applied per second through the webhook vs apply_stripe_event alone, and
 *           a replay storm's effects (scripts/bench/billing.ts)
 *           options: --events 500 --concurrency 8 --deliveries 1000 --distinct 10
 *   runs    three-step runs per second through the run worker, enqueue-to-pickup time, round trips
 *           per step, and an approval storm's resumes (scripts/bench/runs.ts)
 *           options: --runs 200 --idle 30 --storm 50 --concurrency 16
 *   inbound signed webhook deliveries per second through every check to a run's start vs
 *           accept_webhook_delivery alone, delivery-to-start time, a retry storm's runs (scripts/bench/inbound.ts)
 *           options: --deliveries 300 --concurrency 8 --storm 20 --distinct 10
 *   sandbox the code sandbox's cold start (JavaScript, Python; median, p95) and executions per second
 *           two at a time (scripts/bench/sandbox.ts; as root: bubblewrap and cgroups)
 *           options: --runs 20 --concurrency 2
 *   soak    minutes of mixed traffic at a fixed rate (REST, model calls, widget messages, approvals,
 *           Stripe events): 5xx count, each route's first and last minute, memory, nothing lost
 *           (scripts/bench/soak.ts)
 *           options: --minutes 5 --rate 20
 */
import { parseArgs } from "node:util";
import { benchAudit } from "./bench/audit.ts";
import { benchBilling } from "./bench/billing.ts";
import { benchGateway } from "./bench/gateway.ts";
import { benchInbound } from "./bench/inbound.ts";
import { benchWidget } from "./bench/widget.ts";
import { benchRls } from "./bench/rls.ts";
import { benchRuns } from "./bench/runs.ts";
import { benchSandbox } from "./bench/sandbox.ts";
import { benchSoak } from "./bench/soak.ts";

const USAGE = `usage: npm run bench -- rls [--orgs 1000] [--rows 1000] [--iterations 500] [--explain]
       npm run bench -- audit [--events 3000] [--export-entries 100000] [--rounds 5]
       npm run bench -- gateway [--iterations 200] [--concurrency 200] [--fits 50]
       npm run bench -- widget [--messages 400] [--concurrency 8] [--limit 10]
       npm run bench -- billing [--events 500] [--concurrency 8] [--deliveries 1000] [--distinct 10]
       npm run bench -- runs [--runs 200] [--idle 30] [--storm 50] [--concurrency 16]
       npm run bench -- inbound [--deliveries 300] [--concurrency 8] [--storm 20] [--distinct 10]
       npm run bench -- sandbox [--runs 20] [--concurrency 2]
       npm run bench -- soak [--minutes 5] [--rate 20]`;

function positive(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} must be a positive integer, got ${value}`);
  return n;
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      orgs: { type: "string" },
      rows: { type: "string" },
      iterations: { type: "string" },
      explain: { type: "boolean", default: false },
      events: { type: "string" },
      "export-entries": { type: "string" },
      rounds: { type: "string" },
      concurrency: { type: "string" },
      fits: { type: "string" },
      messages: { type: "string" },
      limit: { type: "string" },
      deliveries: { type: "string" },
      distinct: { type: "string" },
      runs: { type: "string" },
      idle: { type: "string" },
      storm: { type: "string" },
      minutes: { type: "string" },
      rate: { type: "string" },
    },
  });
  const [name] = positionals;
  if (name === "rls") {
    const met = await benchRls({
      orgs: positive(values.orgs, 1000, "orgs"),
      rows: positive(values.rows, 1000, "rows"),
      iterations: positive(values.iterations, 500, "iterations"),
      explain: values.explain ?? false,
    });
    console.log(met ? "rls: the tenant query is within target" : "rls: the tenant query is over target");
    return met ? 0 : 1;
  }
  if (name === "soak") {
    const met = await benchSoak({ minutes: positive(values.minutes, 5, "minutes"), rate: positive(values.rate, 20, "rate") });
    console.log(met ? "soak: every target met" : "soak: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "audit") {
    const met = await benchAudit({
      events: positive(values.events, 3000, "events"),
      exportEntries: positive(values["export-entries"], 100000, "export-entries"),
      rounds: positive(values.rounds, 5, "rounds"),
    });
    console.log(met ? "audit: every ratio within target" : "audit: a ratio is off target");
    return met ? 0 : 1;
  }
  if (name === "gateway") {
    const met = await benchGateway({
      iterations: positive(values.iterations, 200, "iterations"),
      concurrency: positive(values.concurrency, 200, "concurrency"),
      fits: positive(values.fits, 50, "fits"),
    });
    console.log(met ? "gateway: every target met" : "gateway: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "widget") {
    const met = await benchWidget({
      messages: positive(values.messages, 400, "messages"),
      concurrency: positive(values.concurrency, 8, "concurrency"),
      limit: positive(values.limit, 10, "limit"),
    });
    console.log(met ? "widget: every target met" : "widget: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "billing") {
    const met = await benchBilling({
      events: positive(values.events, 500, "events"),
      concurrency: positive(values.concurrency, 8, "concurrency"),
      deliveries: positive(values.deliveries, 1000, "deliveries"),
      distinct: positive(values.distinct, 10, "distinct"),
    });
    console.log(met ? "billing: every target met" : "billing: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "runs") {
    const met = await benchRuns({
      runs: positive(values.runs, 200, "runs"),
      idle: positive(values.idle, 30, "idle"),
      storm: positive(values.storm, 50, "storm"),
      concurrency: positive(values.concurrency, 16, "concurrency"),
    });
    console.log(met ? "runs: every run ended as expected, the storm resumed each once" : "runs: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "inbound") {
    const met = await benchInbound({
      deliveries: positive(values.deliveries, 300, "deliveries"),
      concurrency: positive(values.concurrency, 8, "concurrency"),
      storm: positive(values.storm, 20, "storm"),
      distinct: positive(values.distinct, 10, "distinct"),
    });
    console.log(met ? "inbound: every delivery accepted, the storm started each run once" : "inbound: a target is missed");
    return met ? 0 : 1;
  }
  if (name === "sandbox") {
    const met = await benchSandbox({
      runs: positive(values.runs, 20, "runs"),
      concurrency: positive(values.concurrency, 2, "concurrency"),
    });
    console.log(met ? "sandbox: the self-test passed and every execution answered" : "sandbox: a target is missed");
    return met ? 0 : 1;
  }
  console.error(USAGE);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
