/**
 * The platform terminates a workspace (docs/lifecycle.md): for a breach of the terms; by hand for
 * the billing sweep's reason (an ended subscription past its grace period, which the run worker's
 * sweep also starts by itself); or again for a customer's after a restore from a backup taken
 * before their purge. A tenant admin terminates their own from the console.
 *
 *   npm run purge -- <org-id> --reason breach|grace_expired|customer [--no-wait]
 *
 * Starting cuts every way in at once (members, tokens, widget keys, inbound webhooks, schedules,
 * queued runs), in one transaction, and records the termination in the organization's chain. The
 * run worker of the running stack then does the purge; this command waits for it (unless
 * --no-wait) and prints what was deleted. Run again, it reports where a purge is.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import postgres from "postgres";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// customer: a customer's termination run again, after a restore from a backup taken before it.
const REASONS = ["breach", "grace_expired", "customer"];

export interface PurgeState {
  step: string;
  counts: Record<string, number>;
  last_error: string | null;
  final_seq: string | null;
}

/** Starts the organization's termination (idempotent) and returns where its purge is. */
export async function startPurge(dbUrl: string, orgId: string, reason: string): Promise<PurgeState> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const [t] = await sql`select step, counts, last_error, final_seq from private.start_termination(${orgId}, ${reason})`;
    return t as PurgeState;
  } finally {
    await sql.end();
  }
}

/** Waits until the purge is done (the worker drives it), reporting each step it reaches. */
export async function waitForPurge(dbUrl: string, orgId: string, opts: { timeoutMs: number; log: (line: string) => void }): Promise<PurgeState> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const deadline = Date.now() + opts.timeoutMs;
  let seen = "";
  try {
    for (;;) {
      const [t] = await sql`select step, counts, last_error, final_seq from private.workspace_terminations where org_id = ${orgId}`;
      const state = t as PurgeState;
      const line = `${state.step}${state.last_error ? ` (last failure: ${state.last_error}; retrying)` : ""}`;
      if (line !== seen) opts.log(line);
      seen = line;
      if (state.step === "done" || Date.now() > deadline) return state;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await sql.end();
  }
}

async function main(): Promise<void> {
  const usage = "usage: npm run purge -- <org-id> --reason breach|grace_expired|customer [--no-wait]";
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { reason: { type: "string" }, "no-wait": { type: "boolean" } } });
  } catch {
    console.error(usage);
    process.exit(2);
  }
  const [orgId, ...extra] = parsed.positionals;
  const reason = parsed.values.reason ?? "";
  if (!orgId || extra.length > 0 || !UUID.test(orgId) || !REASONS.includes(reason)) {
    console.error(usage);
    process.exit(2);
  }
  const stackFile = join(root, ".local", "stack.json");
  if (!existsSync(stackFile)) {
    console.error("purge: no running stack (.local/stack.json): npm start first");
    process.exit(2);
  }
  const { dbUrl } = JSON.parse(readFileSync(stackFile, "utf8")) as { dbUrl: string };
  let started: PurgeState;
  try {
    started = await startPurge(dbUrl, orgId, reason);
  } catch (e) {
    const code = (() => {
      try {
        return JSON.parse((e as Error).message).code as string;
      } catch {
        return null;
      }
    })();
    console.error(code === "organization_not_found" ? `purge: no organization ${orgId} (and no termination of it)` : `purge: ${(e as Error).message}`);
    process.exit(1);
  }
  console.log(`purge: ${orgId} is terminating (${started.step === "external" ? "started; access is cut off" : started.step === "done" ? "it was purged before" : `started before, now at ${started.step}`})`);
  if (parsed.values["no-wait"]) return;
  const done = await waitForPurge(dbUrl, orgId, { timeoutMs: 10 * 60_000, log: (l) => console.log(`purge: ${l}`) });
  if (done.step !== "done") {
    console.error("purge: not done after 10 minutes; is the run worker running (npm start runs one)? Run this again to see where it is.");
    process.exit(1);
  }
  const deleted = Object.entries(done.counts).filter(([, n]) => n > 0).map(([t, n]) => `${t} ${n}`).join(", ");
  console.log(`purge: done; the chain ends with org.purged (entry ${done.final_seq}). Deleted: ${deleted}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`purge: ${(e as Error).message}`);
    process.exit(1);
  });
}
