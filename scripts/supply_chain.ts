/**
 * The supply-chain checks (seeds 000 and 004: dependencies "pinned by lockfile and scanned by
 * automated tooling"; no secret committed), as CI runs them (npm test, and the GitHub workflow's
 * supply-chain job). `npm ci` against the committed lockfile comes first, in .ci/run and the
 * workflow: it fails when package.json and package-lock.json disagree.
 *   1. npm audit --audit-level=high: no high or critical advisory in any dependency;
 *   2. npm audit signatures: every package's registry signature and provenance attestation verify;
 *   3. the secret scan (scripts/secret_scan.ts) of every tracked file and of web/dist;
 *   4. a CycloneDX SBOM (npm sbom), written to .artifacts/sbom.cdx.json.
 * The audits need the registry's advisory and signing-key endpoints. Where those don't answer (a
 * registry mirror without them, as on the development machine), the check is reported as
 * "unavailable", never as passed; --strict (the GitHub workflow) fails on that too. The results go
 * to .artifacts/supply-chain.json, which the posture page reads. Exits 1 on a failure.
 *
 *   npm run supply-chain [-- --strict]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { scanSecrets } from "./secret_scan.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export type CheckStatus = "passed" | "failed" | "unavailable";
export interface SupplyChainCheck {
  check: "npm audit" | "npm audit signatures" | "secret scan" | "sbom";
  status: CheckStatus;
  detail: string;
}

function npm(args: string[]): { code: number; stdout: string; stderr: string } {
  const run = spawnSync("npm", [...args, "--fetch-retries=0", "--fetch-timeout=30000"], { cwd: root, encoding: "utf8", maxBuffer: 256 * 1024 * 1024, timeout: 120_000 });
  return { code: run.status ?? 1, stdout: run.stdout ?? "", stderr: run.stderr ?? "" };
}

function parse(text: string): Record<string, unknown> | null {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/**
 * Why the registry did not answer, from npm's JSON error (an HTTP status or a network error), or
 * null when npm failed for another reason (no lockfile, say), which is a failure, not unavailability.
 */
function unreachable(out: Record<string, unknown> | null): string | null {
  if (!out) return null;
  if (typeof out.statusCode === "number") return `the registry answered ${out.statusCode} (${String(out.message ?? "")})`;
  const error = out.error as { code?: string; summary?: string } | undefined;
  if (error && /^(ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|E[45]\d\d)$/.test(error.code ?? "")) {
    return `${error.code}: ${error.summary ?? ""}`;
  }
  return null;
}

/** A check that produced no report: unavailable when the registry could not answer, else failed. */
export function noReport(check: SupplyChainCheck["check"], out: Record<string, unknown> | null, stderr: string): SupplyChainCheck {
  const why = unreachable(out);
  if (why) return { check, status: "unavailable", detail: `no report: ${why}` };
  const error = (out?.error as { code?: string; summary?: string } | undefined);
  return { check, status: "failed", detail: `npm failed: ${error ? `${error.code}: ${error.summary}` : stderr.trim().split("\n")[0] || "no JSON"}` };
}

export function npmAudit(): SupplyChainCheck {
  const run = npm(["audit", "--audit-level=high", "--json"]);
  const out = parse(run.stdout);
  const meta = (out?.metadata as { vulnerabilities?: Record<string, number> } | undefined)?.vulnerabilities;
  if (!meta) return noReport("npm audit", out, run.stderr);
  const counts = ["critical", "high", "moderate", "low"].map((level) => `${meta[level] ?? 0} ${level}`).join(", ");
  const failing = (meta.critical ?? 0) + (meta.high ?? 0);
  return { check: "npm audit", status: failing === 0 ? "passed" : "failed", detail: `${counts} (fails on high or critical)` };
}

export function npmAuditSignatures(): SupplyChainCheck {
  const run = npm(["audit", "signatures", "--json"]);
  const out = parse(run.stdout);
  if (!out || !Array.isArray(out.invalid) || !Array.isArray(out.missing)) return noReport("npm audit signatures", out, run.stderr);
  const bad = out.invalid.length + out.missing.length;
  return {
    check: "npm audit signatures", status: bad === 0 ? "passed" : "failed",
    detail: `${out.invalid.length} invalid and ${out.missing.length} missing registry signatures`,
  };
}

export async function secretScan(): Promise<SupplyChainCheck> {
  const result = await scanSecrets(root, { withDist: true });
  if (!result.ok) console.error(result.output.trim());
  return { check: "secret scan", status: result.ok ? "passed" : "failed", detail: `${result.files} files scanned${result.ok ? ", no secret found" : ": secrets found (above, masked)"}` };
}

export function sbom(outFile: string): SupplyChainCheck {
  const run = npm(["sbom", "--sbom-format", "cyclonedx", "--sbom-type", "application"]);
  const doc = parse(run.stdout) as { bomFormat?: string; specVersion?: string; components?: unknown[] } | null;
  if (run.code !== 0 || doc?.bomFormat !== "CycloneDX" || !Array.isArray(doc.components)) {
    return { check: "sbom", status: "failed", detail: `npm sbom failed: ${run.stderr.trim().split("\n")[0] ?? ""}` };
  }
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, run.stdout);
  return { check: "sbom", status: "passed", detail: `CycloneDX ${doc.specVersion}, ${doc.components.length} components, written to ${outFile.slice(root.length + 1)}` };
}

/** Runs the four checks; with `strict`, an unavailable audit fails too. */
export async function supplyChain(opts: { strict?: boolean } = {}): Promise<{ ok: boolean; checks: SupplyChainCheck[] }> {
  const artifacts = join(root, ".artifacts");
  const checks = [npmAudit(), npmAuditSignatures(), await secretScan(), sbom(join(artifacts, "sbom.cdx.json"))];
  const ok = checks.every((c) => c.status === "passed" || (c.status === "unavailable" && !opts.strict));
  mkdirSync(artifacts, { recursive: true });
  writeFileSync(join(artifacts, "supply-chain.json"), JSON.stringify({ at: new Date().toISOString(), strict: !!opts.strict, ok, checks }, null, 2) + "\n");
  return { ok, checks };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { ok, checks } = await supplyChain({ strict: process.argv.includes("--strict") });
  for (const c of checks) console.log(`  ${c.check.padEnd(22)} ${c.status.toUpperCase().padEnd(12)} ${c.detail}`);
  console.log(ok ? "supply chain: passed" : "supply chain: FAILED");
  process.exit(ok ? 0 : 1);
}
