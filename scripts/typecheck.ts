/**
 * Typechecks both runtimes: the Node side (scripts, tests, web) with tsc, and the Deno side (edge
 * functions and the local edge router) with `deno check`, then `deno lint` over the same files
 * (deno.json's lint settings). Exits non-zero on any error.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function denoEntrypoints(): string[] {
  const files: string[] = [join(root, "scripts/stack/edge_router.ts")];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts")) files.push(path);
    }
  };
  walk(join(root, "functions"));
  return files;
}

/** Runs both typechecks; returns true when both pass. */
export function typecheck(): boolean {
  const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json")], { stdio: "inherit" });
  const deno = spawnSync(join(root, "node_modules/.bin/deno"), ["check", "--quiet", "--config", join(root, "deno.json"), ...denoEntrypoints()], {
    stdio: "inherit",
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" },
  });
  const lint = spawnSync(join(root, "node_modules/.bin/deno"), ["lint", "--quiet", "--config", join(root, "deno.json")], {
    stdio: "inherit",
    env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" },
  });
  const ok = tsc.status === 0 && deno.status === 0 && lint.status === 0;
  console.log(`typecheck: node ${tsc.status === 0 ? "ok" : "FAILED"}, deno ${deno.status === 0 ? "ok" : "FAILED"}, deno lint ${lint.status === 0 ? "ok" : "FAILED"}`);
  return ok;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exit(typecheck() ? 0 : 1);
}
