/**
 * The security posture page, generated from checks that ran (seed 004 hand-writes one; ours can't
 * drift from the truth). posture/claims.json lists our claims, each with the checks that prove it:
 * vitest files or tests, pgTAP files, Deno test files, the supply-chain checks, benchmark lines.
 * npm test keeps this run's results in .artifacts/test-results/ (and the supply chain's in
 * .artifacts/supply-chain.json); this reads them and writes
 *   - docs/posture.md, and web/public/security.html, which the console serves at /security;
 *   - two sections: "In place" (each claim whose checks all passed in this run, with the results)
 *     and "Honest gaps" (claims with a check that failed or did not run, and the promises of the
 *     seeds we don't cover, each with why and what a hosted deployment provides).
 * A claim that names a check that does not exist (a file, a test name, a benchmark) fails it;
 * npm test runs that check (--check) so that CI fails too.
 *
 *   npm run posture                    from the last npm test's results
 *   npm run posture -- --check         only the names: exits 1 on a check that does not exist
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

type Check =
  | { vitest: string; name?: string }
  | { pgtap: string }
  | { deno: string }
  | { supply: "npm audit" | "npm audit signatures" | "secret scan" | "sbom" }
  | { bench: string; line: string };
interface Claim { id: string; seed: string; claim: string; checks: Check[] }
interface Gap { promise: string; why: string; hosted: string }
interface Claims { claims: Claim[]; gaps: Gap[] }

type Status = "passed" | "failed" | "not run" | "benchmark";
interface Result { check: string; status: Status; detail: string }

export function loadClaims(dir = root): Claims {
  return JSON.parse(readFileSync(join(dir, "posture", "claims.json"), "utf8")) as Claims;
}

const SUPPLY = new Set(["npm audit", "npm audit signatures", "secret scan", "sbom"]);

/** The checks that name something that does not exist: a file, a test, a benchmark or its line. */
export function missingChecks(claims: Claims, dir = root): string[] {
  const problems: string[] = [];
  for (const c of claims.claims) {
    if (c.checks.length === 0) problems.push(`${c.id}: names no check`);
    for (const check of c.checks) {
      if ("vitest" in check) {
        const file = join(dir, check.vitest);
        if (!existsSync(file)) problems.push(`${c.id}: no vitest file ${check.vitest}`);
        else if (check.name && !readFileSync(file, "utf8").includes(check.name)) problems.push(`${c.id}: no test named "${check.name}" in ${check.vitest}`);
      } else if ("pgtap" in check) {
        if (!existsSync(join(dir, "supabase/tests/database", `${check.pgtap}.test.sql`))) problems.push(`${c.id}: no pgTAP file ${check.pgtap}.test.sql`);
      } else if ("deno" in check) {
        if (!existsSync(join(dir, check.deno))) problems.push(`${c.id}: no Deno test file ${check.deno}`);
      } else if ("supply" in check) {
        if (!SUPPLY.has(check.supply)) problems.push(`${c.id}: no supply-chain check "${check.supply}"`);
      } else if ("bench" in check) {
        const file = join(dir, "scripts/bench", `${check.bench}.ts`);
        if (!existsSync(file)) problems.push(`${c.id}: no benchmark ${check.bench}`);
        else if (!readFileSync(file, "utf8").includes(check.line)) problems.push(`${c.id}: benchmark ${check.bench} prints no "${check.line}"`);
      } else {
        problems.push(`${c.id}: a check of no known kind: ${JSON.stringify(check)}`);
      }
    }
  }
  return problems;
}

interface RunResults {
  at: string | null;
  vitest: { file: string; name: string; status: string }[];
  pgtap: Map<string, string> | null;
  deno: Map<string, string> | null;
  supply: Map<string, { status: string; detail: string }> | null;
}

/** What the last npm test left in .artifacts. */
export function readResults(dir = root): RunResults {
  const results = join(dir, ".artifacts", "test-results");
  const vitest: RunResults["vitest"] = [];
  let at: string | null = null;
  if (existsSync(results)) {
    for (const f of readdirSync(results).filter((f) => /^vitest-\d+\.json$/.test(f))) {
      const report = JSON.parse(readFileSync(join(results, f), "utf8")) as { startTime?: number; testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[] };
      if (report.startTime && (!at || new Date(report.startTime).toISOString() < at)) at = new Date(report.startTime).toISOString();
      for (const t of report.testResults) {
        for (const a of t.assertionResults) vitest.push({ file: relative(dir, t.name), name: a.fullName, status: a.status });
      }
    }
  }
  const pgtapFile = join(results, "pgtap.txt");
  const pgtap = existsSync(pgtapFile) ? new Map<string, string>() : null;
  if (pgtap) {
    // pg_prove's per-file lines: "<path>/NNN-name.test.sql .. ok", or a failure report for it.
    const text = readFileSync(pgtapFile, "utf8");
    for (const m of text.matchAll(/([\w-]+)\.test\.sql \.*\s*(ok|Failed|Dubious|skipped)/g)) pgtap.set(m[1], m[2] === "ok" ? "passed" : "failed");
    for (const m of text.matchAll(/([\w-]+)\.test\.sql\s+\(Wstat/g)) pgtap.set(m[1], "failed");
  }
  const denoFile = join(results, "deno.txt");
  const deno = existsSync(denoFile) ? new Map<string, string>() : null;
  if (deno) {
    let current: string | null = null;
    for (const line of readFileSync(denoFile, "utf8").split("\n")) {
      const header = /^running \d+ tests? from \.\/(.+)$/.exec(line);
      if (header) {
        current = header[1];
        deno.set(current, "passed");
      } else if (current && /\.\.\. FAILED/.test(line)) deno.set(current, "failed");
    }
  }
  const supplyFile = join(dir, ".artifacts", "supply-chain.json");
  const supply = existsSync(supplyFile)
    ? new Map((JSON.parse(readFileSync(supplyFile, "utf8")) as { checks: { check: string; status: string; detail: string }[] }).checks.map((c) => [c.check, c]))
    : null;
  return { at, vitest, pgtap, deno, supply };
}

function resultOf(check: Check, run: RunResults): Result {
  if ("vitest" in check) {
    const tests = run.vitest.filter((t) => t.file === check.vitest && (!check.name || t.name.includes(check.name)));
    const label = `vitest ${check.vitest}${check.name ? `: "${check.name}…"` : ""}`;
    if (tests.length === 0) return { check: label, status: "not run", detail: "no result in this run" };
    const passed = tests.filter((t) => t.status === "passed").length;
    return { check: label, status: passed === tests.length ? "passed" : "failed", detail: `${passed} of ${tests.length} passed` };
  }
  if ("pgtap" in check) {
    const status = run.pgtap?.get(check.pgtap);
    return { check: `pgTAP ${check.pgtap}`, status: (status as Status | undefined) ?? "not run", detail: status ? `the file ${status}` : "no result in this run" };
  }
  if ("deno" in check) {
    const status = run.deno?.get(check.deno);
    return { check: `Deno ${check.deno}`, status: (status as Status | undefined) ?? "not run", detail: status ? `the file ${status}` : "no result in this run" };
  }
  if ("supply" in check) {
    const r = run.supply?.get(check.supply);
    if (!r) return { check: check.supply, status: "not run", detail: "no result in this run" };
    return { check: check.supply, status: r.status === "passed" ? "passed" : r.status === "failed" ? "failed" : "not run", detail: `${r.status}: ${r.detail}` };
  }
  return { check: `benchmark ${check.bench}`, status: "benchmark", detail: `prints its "${check.line}" line: npm run bench -- ${check.bench} (not part of npm test)` };
}

function gitCommit(dir: string): string {
  try {
    return execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: dir, encoding: "utf8" }).trim();
  } catch {
    return "unknown";
  }
}

export interface Posture {
  at: string | null;
  commit: string;
  inPlace: { claim: Claim; results: Result[] }[];
  gaps: { claim: Claim; results: Result[] }[];
  notCovered: Gap[];
}

export function posture(dir = root): Posture {
  const claims = loadClaims(dir);
  const run = readResults(dir);
  const judged = claims.claims.map((claim) => ({ claim, results: claim.checks.map((c) => resultOf(c, run)) }));
  const holds = (r: Result[]) => r.some((x) => x.status === "passed") && r.every((x) => x.status === "passed" || x.status === "benchmark");
  return {
    at: run.at, commit: gitCommit(dir),
    inPlace: judged.filter((j) => holds(j.results)),
    gaps: judged.filter((j) => !holds(j.results)),
    notCovered: claims.gaps,
  };
}

const mark: Record<Status, string> = { passed: "passed", failed: "FAILED", "not run": "did not run", benchmark: "benchmark" };

export function renderMarkdown(p: Posture): string {
  const out = [
    "# Security posture",
    "",
    `Generated by \`npm run posture\` from the checks of the test run of ${p.at ?? "(no run found)"}, at commit ${p.commit}.`,
    "Each claim below names the tests that prove it (`posture/claims.json`); a claim is in place only",
    "when every one of its checks passed in that run. Benchmarks are listed with the line they print;",
    "they run on their own (`npm run bench`), not in the test run.",
    "",
    "## In place",
    "",
  ];
  for (const { claim, results } of p.inPlace) {
    out.push(`### ${claim.claim}`, "", `Seed ${claim.seed}.`, "");
    for (const r of results) out.push(`- ${r.check}: ${mark[r.status]} (${r.detail})`);
    out.push("");
  }
  out.push("## Honest gaps", "");
  if (p.gaps.length > 0) {
    out.push("Claims whose checks did not all pass in this run, or that only a benchmark measures (benchmarks run on their own):", "");
    for (const { claim, results } of p.gaps) {
      out.push(`### ${claim.claim}`, "");
      for (const r of results) out.push(`- ${r.check}: ${mark[r.status]} (${r.detail})`);
      out.push("");
    }
  }
  out.push("Promises of the seeds we don't cover:", "", "| promise | why | what a hosted deployment provides |", "|---|---|---|");
  for (const g of p.notCovered) out.push(`| ${g.promise} | ${g.why} | ${g.hosted || "nothing"} |`);
  out.push("");
  return out.join("\n");
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** The same page as HTML with no script, for /security (the console's CSP applies). */
export function renderHtml(p: Posture): string {
  const section = (items: { claim: Claim; results: Result[] }[]) => items.map(({ claim, results }) =>
    `<section><h3>${esc(claim.claim)}</h3><ul>${results.map((r) => `<li><strong>${esc(mark[r.status])}</strong> ${esc(r.check)} <small>(${esc(r.detail)})</small></li>`).join("")}</ul></section>`).join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatehouse security posture</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}h3{font-size:1rem;margin:1.2rem 0 .3rem}small{color:#555}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}</style>
</head><body><main>
<h1>Security posture</h1>
<p>Generated from the checks of the test run of ${esc(p.at ?? "(no run found)")}, at commit ${esc(p.commit)}. A claim is in place only when every one of its checks passed in that run. How to report a problem: <a href="/.well-known/security.txt">security.txt</a>.</p>
<h2>In place</h2>
${section(p.inPlace)}
<h2>Honest gaps</h2>
${p.gaps.length ? `<p>Claims whose checks did not all pass in this run, or that only a benchmark measures (benchmarks run on their own):</p>${section(p.gaps)}` : ""}
<p>Promises of the seeds we don't cover:</p>
<table><thead><tr><th>promise</th><th>why</th><th>what a hosted deployment provides</th></tr></thead><tbody>
${p.notCovered.map((g) => `<tr><td>${esc(g.promise)}</td><td>${esc(g.why)}</td><td>${esc(g.hosted || "nothing")}</td></tr>`).join("\n")}
</tbody></table>
</main></body></html>
`;
}

/** Writes the page (markdown and HTML) from the last run's results. */
export function writePosture(dir = root, out = { markdown: join(root, "docs", "posture.md"), html: join(root, "web", "public", "security.html") }): Posture {
  const p = posture(dir);
  mkdirSync(dirname(out.markdown), { recursive: true });
  mkdirSync(dirname(out.html), { recursive: true });
  writeFileSync(out.markdown, renderMarkdown(p));
  writeFileSync(out.html, renderHtml(p));
  return p;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const problems = missingChecks(loadClaims());
  for (const p of problems) console.error(`posture: ${p}`);
  if (problems.length > 0) process.exit(1);
  if (process.argv.includes("--check")) {
    console.log(`posture: every check the ${loadClaims().claims.length} claims name exists`);
    process.exit(0);
  }
  const p = writePosture();
  console.log(`posture: ${p.inPlace.length} claims in place, ${p.gaps.length} with a check that did not pass, ${p.notCovered.length} promises not covered; wrote docs/posture.md and web/public/security.html (run ${p.at ?? "none"})`);
}
