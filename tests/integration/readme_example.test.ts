/**
 * The README's supabase-js example works on Node 20 as printed: this takes the block between the
 * README's readme-example markers and runs it with node against the stack, as casey (who may
 * create agents in Acme).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

describe("the README's API example", () => {
  it("runs as printed and does what the README says", () => {
    const readme = readFileSync(join(process.cwd(), "README.md"), "utf8");
    const block = /<!-- readme-example:start -->\n```js\n([\s\S]*?)```\n<!-- readme-example:end -->/.exec(readme)?.[1];
    expect(block).toBeDefined();
    // Under node_modules, so that the example's bare imports resolve as they would in an app.
    const dir = mkdtempSync(join(process.cwd(), "node_modules", ".readme-example-"));
    try {
      writeFileSync(join(dir, "example.mjs"), block!);
      const casey = s.demoUsers.find((u) => u.email === "casey@both.test")!;
      const run = spawnSync(process.execPath, [join(dir, "example.mjs")], {
        env: { ...process.env, SUPABASE_URL: s.apiUrl, SUPABASE_ANON_KEY: s.anonKey, EMAIL: casey.email, PASSWORD: casey.password },
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(/^\d+ agents$/m);
      expect(run.stdout).toContain(`in ${ACME}`);
      expect(run.stdout).toContain("refused: invitation_not_found");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
