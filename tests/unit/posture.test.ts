/**
 * The posture page's generator (scripts/posture.ts): every check a claim names exists (npm test
 * fails otherwise), a claim is "in place" only when every one of its checks passed in the run, and
 * one whose check failed or did not run is listed among the gaps, as are the seeds' promises we
 * don't cover.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadClaims, missingChecks, posture, renderHtml, renderMarkdown } from "../../scripts/posture.ts";

const dir = mkdtempSync(join(tmpdir(), "posture-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(path: string, text: string) {
  mkdirSync(join(dir, path, ".."), { recursive: true });
  writeFileSync(join(dir, path), text);
}

describe("the posture page", () => {
  it("names only checks that exist, in this repository", () => {
    expect(missingChecks(loadClaims())).toEqual([]);
  });

  it("refuses a claim that names a file, a test, a benchmark line or a kind that does not exist", () => {
    write("tests/unit/a.test.ts", 'it("does the thing", () => {});\n');
    write("scripts/bench/fast.ts", 'console.log("ratio 1.0");\n');
    write("supabase/tests/database/010-x.test.sql", "select 1;\n");
    const claims = {
      claims: [{
        id: "c", seed: "000", claim: "A claim.",
        checks: [
          { vitest: "tests/unit/a.test.ts", name: "does the thing" }, { vitest: "tests/unit/a.test.ts", name: "does another thing" },
          { vitest: "tests/unit/gone.test.ts" }, { pgtap: "010-x" }, { pgtap: "011-y" }, { deno: "tests/deno/none.test.mts" },
          { bench: "fast", line: "ratio" }, { bench: "fast", line: "speedup" }, { bench: "slow", line: "ratio" }, { supply: "npm audit" },
        ],
      }],
      gaps: [],
    } as unknown as Parameters<typeof missingChecks>[0];
    expect(missingChecks(claims, dir)).toEqual([
      'c: no test named "does another thing" in tests/unit/a.test.ts',
      "c: no vitest file tests/unit/gone.test.ts",
      "c: no pgTAP file 011-y.test.sql",
      "c: no Deno test file tests/deno/none.test.mts",
      'c: benchmark fast prints no "speedup"',
      "c: no benchmark slow",
    ]);
  });

  it("puts a claim in place only when every check passed in this run; a failed or missing one is a gap", () => {
    write("posture/claims.json", JSON.stringify({
      claims: [
        { id: "ok", seed: "000", claim: "Holds.", checks: [{ vitest: "tests/unit/a.test.ts" }, { pgtap: "010-x" }, { bench: "fast", line: "ratio" }] },
        { id: "failed", seed: "001", claim: "Broke.", checks: [{ vitest: "tests/unit/b.test.ts" }] },
        { id: "unrun", seed: "002", claim: "Never ran.", checks: [{ deno: "tests/deno/c.test.mts" }] },
        { id: "benched", seed: "003", claim: "Only measured.", checks: [{ bench: "fast", line: "ratio" }] },
      ],
      gaps: [{ promise: "SSO", why: "not built", hosted: "SAML on paid plans" }],
    }));
    write(".artifacts/test-results/vitest-0.json", JSON.stringify({
      startTime: Date.parse("2026-12-06T10:00:00Z"),
      testResults: [
        { name: join(dir, "tests/unit/a.test.ts"), assertionResults: [{ fullName: "does the thing", status: "passed" }] },
        { name: join(dir, "tests/unit/b.test.ts"), assertionResults: [{ fullName: "one", status: "passed" }, { fullName: "two", status: "failed" }] },
      ],
    }));
    write(".artifacts/test-results/pgtap.txt", `${dir}/supabase/tests/database/010-x.test.sql .......... ok\nAll tests successful.\n`);
    const p = posture(dir);
    expect(p.at).toBe("2026-12-06T10:00:00.000Z");
    expect(p.inPlace.map((c) => c.claim.id)).toEqual(["ok"]);
    expect(p.gaps.map((c) => c.claim.id)).toEqual(["failed", "unrun", "benched"]);
    expect(p.gaps[0].results[0]).toMatchObject({ status: "failed", detail: "1 of 2 passed" });
    expect(p.gaps[1].results[0]).toMatchObject({ status: "not run" });
    const md = renderMarkdown(p);
    expect(md).toMatch(/## In place\n\n### Holds\.[\s\S]*## Honest gaps[\s\S]*### Broke\.\n\n- vitest tests\/unit\/b\.test\.ts: FAILED \(1 of 2 passed\)/);
    expect(md).toContain("| SSO | not built | SAML on paid plans |");
    const html = renderHtml(p);
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain("<h3>Holds.</h3>");
  });
});
