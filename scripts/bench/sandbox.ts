/**
 * `npm run bench -- sandbox`: the code sandbox (functions/_shared/sandbox), side by side in one
 * Deno process:
 *
 *   1. the median and p95 cold start of a trivial JavaScript and a trivial Python execution: each
 *      a fresh sandbox (scratch, cgroup, bubblewrap, the runtime) from the call to its answer;
 *   2. executions per second with `--concurrency` at a time (default 2), mixed JavaScript and
 *      Python.
 *
 * Runs the self-test first, and exits non-zero when it fails or an execution does not answer 0.
 * The sandbox runs in Deno (as the worker does), so this spawns Deno with --allow-all (Deno opens
 * /sys to no narrower permission) and reads its last line.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { median, percentile } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface SandboxBenchOptions {
  runs: number;
  concurrency: number;
}

const SCRIPT = (runs: number, concurrency: number) => `
import { runUnchecked } from ${JSON.stringify(join(root, "functions/_shared/sandbox/run.ts"))};
import { selfTest } from ${JSON.stringify(join(root, "functions/_shared/sandbox/selftest.ts"))};
const test = await selfTest();
if (!test.ok) { console.log(JSON.stringify({ selfTest: test })); Deno.exit(0); }
const trivial = { javascript: "console.log(1 + 1)", python: "print(1 + 1)" } as const;
const timed = async (runtime: "javascript" | "python") => {
  const started = performance.now();
  const r = await runUnchecked({ runtime, code: trivial[runtime] });
  if (r.exitCode !== 0 || r.stdout.trim() !== "2") throw new Error(runtime + " answered " + r.exitCode + ": " + r.stderr.slice(0, 200));
  return performance.now() - started;
};
const cold: Record<string, number[]> = { javascript: [], python: [] };
for (let i = 0; i < ${runs}; i++) for (const runtime of ["javascript", "python"] as const) cold[runtime].push(await timed(runtime));
const jobs = Array.from({ length: ${runs} * 2 }, (_, i) => (i % 2 ? "python" : "javascript") as "javascript" | "python");
let next = 0;
const started = performance.now();
await Promise.all(Array.from({ length: ${concurrency} }, async () => { while (next < jobs.length) await timed(jobs[next++]); }));
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ selfTest: test, cold, parallel: { executions: jobs.length, seconds } }));
`;

export async function benchSandbox(opts: SandboxBenchOptions): Promise<boolean> {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-bench-sandbox-"));
  try {
    const file = join(dir, "bench.ts");
    writeFileSync(file, SCRIPT(opts.runs, opts.concurrency));
    const run = spawnSync(join(root, "node_modules/.bin/deno"), ["run", "--allow-all", "--config", join(root, "deno.json"), file], {
      encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, maxBuffer: 16 * 1024 * 1024,
    });
    if (run.status !== 0) {
      console.error(run.stderr.trim().split("\n").slice(-5).join("\n"));
      return false;
    }
    const result = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as {
      selfTest: { ok: boolean; layers: { layer: string; ok: boolean; detail: string }[] };
      cold?: Record<"javascript" | "python", number[]>;
      parallel?: { executions: number; seconds: number };
    };
    if (!result.selfTest.ok || !result.cold || !result.parallel) {
      console.log(`sandbox: the self-test failed: ${result.selfTest.layers.filter((l) => !l.ok).map((l) => `${l.layer}: ${l.detail}`).join("; ")}`);
      return false;
    }
    for (const runtime of ["javascript", "python"] as const) {
      const times = result.cold[runtime];
      console.log(`sandbox: cold start of a trivial ${runtime === "javascript" ? "JavaScript" : "Python"} execution: median ${median(times).toFixed(1)} ms, ` +
        `p95 ${percentile(times, 95).toFixed(1)} ms (${times.length} executions, one at a time)`);
    }
    const { executions, seconds } = result.parallel;
    console.log(`sandbox: ${(executions / seconds).toFixed(1)} executions/s with ${opts.concurrency} at a time (${executions} executions, JavaScript and Python alternating)`);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
