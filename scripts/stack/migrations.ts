/** Migrations and seed, applied with the Supabase CLI itself (`supabase db push`), as on hosted Supabase. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { StackError } from "./errors.ts";
import { binary } from "./processes.ts";

const run = promisify(execFile);

/** Applies every migration under supabase/migrations (and, with `withSeed`, supabase/seed.sql) to `dbUrl`. */
export async function pushMigrations(root: string, dbUrl: string, withSeed: boolean): Promise<void> {
  const cli = binary(root, "supabase", "dist/supabase.js");
  const args = [cli, "db", "push", `--remote=${dbUrl}`, "--yes", "--include-all", ...(withSeed ? ["--include-seed"] : [])];
  try {
    await run(process.execPath, args, {
      cwd: root,
      env: { ...process.env, PGSSLMODE: "disable", SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (e) {
    const out = `${(e as { stdout?: string }).stdout ?? ""}\n${(e as { stderr?: string }).stderr ?? ""}`;
    const detail = out.split("\n").filter((l) => /error|failed|ERROR/.test(l)).slice(-4).join(" | ");
    throw new StackError(`supabase db push failed: ${detail || (e as Error).message}`.replaceAll(dbUrl, "<db-url>"));
  }
}
