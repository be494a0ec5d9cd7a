/**
 * The run worker and its job engine in the local stack. graphile-worker keeps its jobs in its own
 * schema, which it installs and migrates itself; the migrations' enqueue functions call it, so it
 * is installed before them (installJobEngine). Then `npm start` runs one worker process
 * (functions/_worker/main.ts, Deno, the same shared code as the functions); the test runner and
 * the runs bench start theirs with startWorker.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Logger, runMigrations } from "graphile-worker";
import { StackError } from "./errors.ts";
import { binary, type ManagedChild, spawnLogged } from "./processes.ts";
import { waitFor } from "./wait.ts";

const quiet = new Logger(() => (level, message) => {
  if (level === "error") console.error(`job engine: ${message}`);
});

/** Installs (or migrates) graphile-worker's schema in the database at `dbUrl`. */
export async function installJobEngine(dbUrl: string): Promise<void> {
  await runMigrations({ connectionString: dbUrl, logger: quiet });
}

/** Starts a worker process with the functions' environment and waits until it takes jobs. */
export async function startWorker(opts: { root: string; env: NodeJS.ProcessEnv; logFile: string; name?: string }): Promise<ManagedChild> {
  const startedAt = existsSync(opts.logFile) ? readFileSync(opts.logFile, "utf8").length : 0;
  const worker = spawnLogged(
    opts.name ?? "run-worker",
    binary(opts.root, "deno", "deno"),
    // --allow-all: the sandbox's cgroups are under /sys, which Deno lets only a fully permitted process write.
    ["run", "--no-prompt", "--allow-all", "--config", join(opts.root, "deno.json"), join(opts.root, "functions/_worker/main.ts")],
    { cwd: opts.root, logFile: opts.logFile, env: { DENO_NO_UPDATE_CHECK: "1", ...opts.env } },
  );
  await waitFor(worker.name, 60_000, async () => {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) throw new StackError(`${worker.name} exited during startup; see ${opts.logFile}`);
    return existsSync(opts.logFile) && readFileSync(opts.logFile, "utf8").slice(startedAt).includes(" ready (");
  });
  return worker;
}
