/**
 * Health (seed 002: "health monitoring endpoints and structured failure handling — a failing
 * dependency degrades gracefully"). Public (verify_jwt = false in config.toml). It shows states,
 * ages and counts, never a secret, an address or an error's text.
 *
 *   GET /functions/v1/health/live   liveness: the function runtime answers. 200, always; it asks
 *                                   nothing of the database, so a restart is never decided by it.
 *   GET /functions/v1/health        readiness, each dependency on its own:
 *     database        answers a query, and how fast;
 *     vault           a round trip: a canary secret decrypts to the value whose hash was kept;
 *     sealer          the oldest recorded action not yet in the chain (degraded past 60 s);
 *     checkpoints     the oldest chain entry no signed checkpoint covers (degraded past 2 h);
 *     run_queue       jobs ready to run and the oldest one's wait (degraded past 60 s);
 *     purges          workspace purges not done and the oldest one's age (degraded past 15 min:
 *                     a terminated workspace's content is still there);
 *     model_providers whether the platform's OpenAI and Anthropic keys are configured;
 *     stripe          whether Stripe's key and webhook secret are configured.
 *   status is "ok" when all are; "degraded" (still 200: it serves) when the database answers but
 *   another check fails; "down" (503, Retry-After) when the database does not answer.
 *   The checks are gathered at most every 5 s (checks_as_of); the database answers a `select 1` on
 *   every request, so an outage shows at once.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { asService, db } from "../_shared/http/db.ts";
import { jsonContent } from "../_shared/http/schemas.ts";
import { DATABASE_RETRY_AFTER_SECONDS } from "../_shared/http/unavailable.ts";

const FUNCTION_VERSION = "2.1.0";

/** Past these, a lag makes the report degraded. */
const LIMITS = { unsealedSeconds: 60, uncheckpointedSeconds: 2 * 3600, queuedSeconds: 60, purgeSeconds: 15 * 60 };
/** A health check that takes longer than this counts as the database not answering. */
const PROBE_TIMEOUT_MS = 3_000;

const Check = z.enum(["ok", "degraded", "down", "unknown"]);
const Configured = z.enum(["configured", "not_configured"]);
const Health = z.object({
  status: z.enum(["ok", "degraded", "down"]),
  function: z.object({ name: z.string(), version: z.string(), runtime: z.string() }),
  database: z.object({ status: z.enum(["up", "down"]), version: z.string().optional(), latency_ms: z.number().optional() }),
  checks_as_of: z.string().nullable().describe("When the checks below were gathered (at most every 5 s); the database itself is asked on every request"),
  checks: z.object({
    vault: z.object({ status: Check }),
    sealer: z.object({ status: Check, unsealed: z.number().nullable(), oldest_unsealed_seconds: z.number().nullable() }),
    checkpoints: z.object({ status: Check, oldest_uncheckpointed_seconds: z.number().nullable() }),
    run_queue: z.object({ status: Check, depth: z.number().nullable(), oldest_queued_seconds: z.number().nullable() }),
    purges: z.object({ status: Check, pending: z.number().nullable(), oldest_pending_seconds: z.number().nullable() }),
    model_providers: z.object({ openai: Configured, anthropic: Configured }),
    stripe: Configured,
  }),
});
type Health = z.infer<typeof Health>;

interface Report {
  version: string;
  latencyMs: number;
  vault_round_trip: boolean;
  unsealed: number;
  oldest_unsealed_seconds: number | null;
  oldest_uncheckpointed_seconds: number | null;
  run_queue_depth: number;
  oldest_queued_seconds: number | null;
  purges_pending: number;
  oldest_purge_seconds: number | null;
}

/** The promise, or null once `PROBE_TIMEOUT_MS` has passed (or it failed): the database not answering. */
function withinProbeTime<T>(work: Promise<T>): Promise<T | null> {
  const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), PROBE_TIMEOUT_MS));
  return Promise.race([work.catch(() => null), timeout]);
}

/**
 * The full report is gathered at most once every REPORT_TTL_MS, however often the (public) route is
 * called: it reads across every chain and the job queue, which an anonymous caller must not be able
 * to make the database do at will. Between two, a request costs one `select 1`, so that a database
 * gone down shows at once.
 */
const REPORT_TTL_MS = 5_000;
let kept: { report: Report; at: number; asOf: string } | null = null;
let gathering: Promise<Report | null> | null = null;

async function probe(): Promise<{ report: Report; asOf: string } | null> {
  const started = performance.now();
  if (kept && Date.now() - kept.at < REPORT_TTL_MS) {
    const alive = await withinProbeTime(db()`select 1`);
    if (!alive) return null;
    return { report: { ...kept.report, latencyMs: Math.round(performance.now() - started) }, asOf: kept.asOf };
  }
  gathering ??= withinProbeTime(db().begin(async (tx) => {
    await asService(tx);
    const [row] = await tx`select current_setting('server_version') as version, private.health_report() as report`;
    return { version: String(row.version), latencyMs: Math.round(performance.now() - started), ...row.report } as Report;
  })).finally(() => {
    gathering = null;
  });
  const report = await gathering;
  if (!report) return null;
  kept = { report, at: Date.now(), asOf: new Date().toISOString() };
  return { report, asOf: kept.asOf };
}

const configured = (...names: string[]) => names.every((n) => !!Deno.env.get(n)) ? "configured" as const : "not_configured" as const;
const lag = (seconds: number | null, limit: number) => (seconds === null || seconds <= limit ? "ok" as const : "degraded" as const);
const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));

function health(probed: { report: Report; asOf: string } | null): Health {
  const report = probed?.report ?? null;
  const unknown = { status: "unknown" as const };
  const checks: Health["checks"] = report
    ? {
      vault: { status: report.vault_round_trip ? "ok" : "down" },
      sealer: { status: lag(num(report.oldest_unsealed_seconds), LIMITS.unsealedSeconds), unsealed: num(report.unsealed), oldest_unsealed_seconds: num(report.oldest_unsealed_seconds) },
      checkpoints: { status: lag(num(report.oldest_uncheckpointed_seconds), LIMITS.uncheckpointedSeconds), oldest_uncheckpointed_seconds: num(report.oldest_uncheckpointed_seconds) },
      run_queue: { status: lag(num(report.oldest_queued_seconds), LIMITS.queuedSeconds), depth: num(report.run_queue_depth), oldest_queued_seconds: num(report.oldest_queued_seconds) },
      purges: { status: lag(num(report.oldest_purge_seconds), LIMITS.purgeSeconds), pending: num(report.purges_pending), oldest_pending_seconds: num(report.oldest_purge_seconds) },
      model_providers: { openai: configured("OPENAI_API_KEY"), anthropic: configured("ANTHROPIC_API_KEY") },
      stripe: configured("STRIPE_SECRET_KEY", Deno.env.get("STRIPE_WEBHOOK_SECRETS") ? "STRIPE_WEBHOOK_SECRETS" : "STRIPE_WEBHOOK_SECRET"),
    }
    : {
      vault: unknown,
      sealer: { ...unknown, unsealed: null, oldest_unsealed_seconds: null },
      checkpoints: { ...unknown, oldest_uncheckpointed_seconds: null },
      run_queue: { ...unknown, depth: null, oldest_queued_seconds: null },
      purges: { ...unknown, pending: null, oldest_pending_seconds: null },
      model_providers: { openai: configured("OPENAI_API_KEY"), anthropic: configured("ANTHROPIC_API_KEY") },
      stripe: configured("STRIPE_SECRET_KEY", Deno.env.get("STRIPE_WEBHOOK_SECRETS") ? "STRIPE_WEBHOOK_SECRETS" : "STRIPE_WEBHOOK_SECRET"),
    };
  const degraded = [checks.vault, checks.sealer, checks.checkpoints, checks.run_queue, checks.purges].some((c) => c.status !== "ok");
  return {
    status: !report ? "down" : degraded ? "degraded" : "ok",
    function: { name: "health", version: FUNCTION_VERSION, runtime: `deno ${Deno.version.deno}` },
    database: report ? { status: "up", version: report.version, latency_ms: report.latencyMs } : { status: "down" },
    checks_as_of: probed?.asOf ?? null,
    checks,
  };
}

const app = functionApp({ name: "health", version: FUNCTION_VERSION, description: "Liveness, and readiness with each dependency's state." });

app.openapi(createRoute({
  method: "get", path: "/live", summary: "Liveness: the function runtime answers (asks nothing of the database)", security: [],
  responses: { 200: { description: "Live", content: jsonContent(z.object({ status: z.literal("live"), function: Health.shape.function })) } },
}), (c) => c.json({ status: "live" as const, function: { name: "health", version: FUNCTION_VERSION, runtime: `deno ${Deno.version.deno}` } }, 200));

app.openapi(createRoute({
  method: "get", path: "/", summary: "Readiness: each dependency's state; 503 when the database does not answer", security: [],
  responses: {
    200: { description: "Serving: ok, or degraded (a dependency other than the database fails)", content: jsonContent(Health) },
    503: { description: "The database does not answer (Retry-After)", content: jsonContent(Health) },
  },
}), async (c) => {
  const body = health(await probe());
  if (body.status === "down") return c.json(body, 503, { "retry-after": String(DATABASE_RETRY_AFTER_SECONDS) });
  return c.json(body, 200);
});

Deno.serve(app.fetch);
