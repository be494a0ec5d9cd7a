/**
 * What hosted Supabase runs on a schedule, run here by the stack: the audit sealer and the
 * transcript purge (pg_cron there), and periodic audit checkpoints and domain checks (a scheduler
 * calling audit-checkpoint and domains/verify-pending there).
 */
import { appendFileSync } from "node:fs";
import postgres from "postgres";
import { StackError } from "./errors.ts";
import { DEFAULT_SEAL_INTERVAL_MS, startSealer, type Sealer } from "./sealer.ts";

/**
 * Calls `url` as the service role every `setting.env` seconds (default `defaultSeconds`; 0 turns it
 * off), and logs one line per call: the status and what `summary` makes of the answer.
 */
function scheduleServiceCall(
  url: string, serviceRoleKey: string, logFile: string,
  setting: { env: string; defaultSeconds: number; timeoutMs: number },
  summary: (body: Record<string, unknown>) => string,
): () => void {
  const raw = process.env[setting.env] ?? String(setting.defaultSeconds);
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) throw new StackError(`${setting.env}=${raw} is not a whole number of seconds`);
  if (seconds === 0) return () => {};
  const timer = setInterval(async () => {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${serviceRoleKey}`, apikey: serviceRoleKey, "content-type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(setting.timeoutMs),
      });
      appendFileSync(logFile, `${new Date().toISOString()} ${res.status} ${summary((await res.json()) as Record<string, unknown>)}\n`);
    } catch (e) {
      appendFileSync(logFile, `${new Date().toISOString()} failed: ${(e as Error).message}\n`);
    }
  }, seconds * 1000);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Every GATEHOUSE_CHECKPOINT_SECONDS (default 600; 0 turns it off), signs a checkpoint of every
 * chain that grew, through the audit-checkpoint function at `url`. Returns a stopper.
 */
export function scheduleCheckpoints(url: string, serviceRoleKey: string, logFile: string): () => void {
  return scheduleServiceCall(url, serviceRoleKey, logFile, { env: "GATEHOUSE_CHECKPOINT_SECONDS", defaultSeconds: 600, timeoutMs: 60_000 },
    (body) => `${(body.checkpoints as unknown[] | undefined)?.length ?? 0} checkpoint(s)`);
}

/**
 * The domain verifier's schedule (functions/domains: POST /verify-pending, as the service role)
 * every GATEHOUSE_DOMAIN_CHECK_SECONDS (default 300; 0 turns it off). Hosted, the same call is made
 * by pg_cron with pg_net, or any scheduler that holds the service-role key.
 */
export function scheduleDomainChecks(url: string, serviceRoleKey: string, logFile: string): () => void {
  return scheduleServiceCall(url, serviceRoleKey, logFile, { env: "GATEHOUSE_DOMAIN_CHECK_SECONDS", defaultSeconds: 300, timeoutMs: 120_000 },
    (body) => `checked ${body.checked ?? 0}, verified ${body.verified ?? 0}`);
}

/**
 * The audit sealer (sealer.ts), as pg_cron runs audit.seal_pending() on hosted Supabase: when a
 * call finds nothing to seal, the next one waits GATEHOUSE_SEAL_INTERVAL_MS (default 200).
 */
export function startAuditSealer(dbUrl: string, logFile: string): Sealer {
  const raw = process.env.GATEHOUSE_SEAL_INTERVAL_MS ?? String(DEFAULT_SEAL_INTERVAL_MS);
  const intervalMs = Number(raw);
  if (!Number.isInteger(intervalMs) || intervalMs < 1) {
    throw new StackError(`GATEHOUSE_SEAL_INTERVAL_MS=${raw} is not a whole number of milliseconds from 1 up`);
  }
  return startSealer(dbUrl, {
    intervalMs,
    onError: (e) => appendFileSync(logFile, `${new Date().toISOString()} sealing failed: ${e.message}\n`),
  });
}

/**
 * Every GATEHOUSE_PURGE_SECONDS (default 3600; 0 turns it off), deletes the widget and run
 * transcripts past their organization's retention (private.purge_transcripts and
 * private.purge_run_transcripts, which record each purge in the audit chain) and records the
 * expiry of the personal access tokens that expired since (private.record_expired_tokens), as
 * `select cron.schedule('purge-transcripts', '0 * * * *', 'select private.purge_transcripts(), private.purge_run_transcripts(), private.record_expired_tokens()')`
 * does on hosted Supabase. Returns a stopper.
 */
export function scheduleTranscriptPurge(dbUrl: string, logFile: string): () => Promise<void> {
  const raw = process.env.GATEHOUSE_PURGE_SECONDS ?? "3600";
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) throw new StackError(`GATEHOUSE_PURGE_SECONDS=${raw} is not a whole number of seconds`);
  if (seconds === 0) return async () => {};
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const timer = setInterval(async () => {
    try {
      const [{ purged, run_messages, expired }] = await sql`select private.purge_transcripts() as purged, private.purge_run_transcripts() as run_messages,
                                                                   private.record_expired_tokens() as expired`;
      appendFileSync(logFile, `${new Date().toISOString()} purged ${purged} conversation(s), ${run_messages} run transcript message(s); ${expired} token expiry(ies) recorded\n`);
    } catch (e) {
      appendFileSync(logFile, `${new Date().toISOString()} purge failed: ${(e as Error).message}\n`);
    }
  }, seconds * 1000);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await sql.end({ timeout: 2 });
  };
}
