/**
 * The supabase-js example of docs/api.md works on Node 20 as printed: this takes the block between
 * the readme-example markers of docs/api.md, type-checks it with tsc --strict beside the generated
 * database.types.ts (a column that doesn't exist must be a type error, so the client is typed, not
 * any), and runs it with tsx against the stack, as casey (who may create agents in Acme).
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ACME } from "../helpers/fixtures.ts";
import { stack, superuser } from "../helpers/stack.ts";

const s = stack();
const sql = superuser();
afterAll(async () => {
  await sql`delete from public.agents where name like 'Docs agent %'`;
  await sql.end();
});

const TSC = join(process.cwd(), "node_modules", "typescript", "bin", "tsc");
const TSX = join(process.cwd(), "node_modules", "tsx", "dist", "cli.mjs");

describe("the API example of docs/api.md", () => {
  const readme = readFileSync(join(process.cwd(), "docs", "api.md"), "utf8");
  const block = /<!-- readme-example:start -->\n```ts\n([\s\S]*?)```\n<!-- readme-example:end -->/.exec(readme)?.[1];

  /** The example in a folder of its own under node_modules (so its bare imports resolve as in an app), beside database.types.ts. */
  function inFolder<T>(work: (dir: string) => T, extra = ""): T {
    const dir = mkdtempSync(join(process.cwd(), "node_modules", ".readme-example-"));
    try {
      copyFileSync(join(process.cwd(), "supabase", "database.types.ts"), join(dir, "database.types.ts"));
      // An ES module project, as docs/api.md says (top-level await).
      writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
      writeFileSync(join(dir, "example.ts"), block! + extra);
      return work(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it("type-checks as printed with tsc --strict, typed by the generated Database (no result is any)", () => {
    expect(block).toBeDefined();
    // Were the client untyped, every result would be any, and this line would be no error.
    const probe = "\n// @ts-expect-error: agents have no such column\nconsole.log(agents[0]?.no_such_column);\n";
    const checked = inFolder((dir) => spawnSync(process.execPath, [TSC, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
      "--moduleResolution", "nodenext", "--allowImportingTsExtensions", "--skipLibCheck", "--types", "node", join(dir, "example.ts")], { encoding: "utf8", timeout: 60_000 }), probe);
    expect(checked.stdout + checked.stderr).toBe("");
    expect(checked.status).toBe(0);
  }, 90_000);

  it("runs as printed and does what docs/api.md says", () => {
    const casey = s.demoUsers.find((u) => u.email === "casey@both.test")!;
    const run = inFolder((dir) => spawnSync(process.execPath, [TSX, join(dir, "example.ts")], {
      env: { ...process.env, SUPABASE_URL: s.apiUrl, SUPABASE_ANON_KEY: s.anonKey, EMAIL: casey.email, PASSWORD: casey.password },
      encoding: "utf8",
      timeout: 60_000,
    }));
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^\d+ agents: /m);
    expect(run.stdout).toContain(`in ${ACME}`);
    expect(run.stdout).toContain("refused: invitation_not_found");
  }, 90_000);
});
