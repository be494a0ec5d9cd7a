/**
 * The secret scan (seed 000: no secret is committed, "pre-commit hooks and CI scanners enforce"):
 * secretlint with its recommended preset and our own rule (scripts/secretlint-rule-gatehouse:
 * personal access tokens and widget keys whose checksum holds, webhook signing secrets, Stripe
 * keys), configured in .secretlintrc.json. It scans
 *   - every file git tracks (every file but node_modules, .git and .local outside a git checkout);
 *   - what the browser is served (web/dist), when it is built;
 *   - with --staged, what is staged for the next commit instead: the pre-commit hook (.githooks,
 *     installed by `npm run hooks:install`) runs that, so a commit with a secret in it is refused.
 * Findings are printed masked. A deliberate fixture is marked on its line with
 * `secretlint-disable-line -- <why>`. Exits 1 on a finding.
 *
 *   npm run scan:secrets [-- --staged]
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createEngine } from "@secretlint/node";

const here = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export interface SecretScanResult {
  ok: boolean;
  /** How many files were scanned. */
  files: number;
  /** secretlint's report (secrets masked), empty when nothing was found. */
  output: string;
}

function walk(dir: string, skip: Set<string>): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (skip.has(name)) return [];
    const path = join(dir, name);
    const stat = statSync(path);
    return stat.isDirectory() ? walk(path, skip) : stat.isFile() ? [path] : [];
  });
}

function git(root: string, args: string[]): Buffer {
  return execFileSync("git", args, { cwd: root, maxBuffer: 256 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] });
}

function isGitCheckout(root: string): boolean {
  try {
    return git(root, ["rev-parse", "--is-inside-work-tree"]).toString().trim() === "true";
  } catch {
    return false;
  }
}

/** The files of `root` to scan: what git tracks (and exists), or every file outside node_modules, .git and .local. */
export function trackedFiles(root: string): string[] {
  if (!isGitCheckout(root)) return walk(root, new Set(["node_modules", ".git", ".local"]));
  return git(root, ["ls-files", "-z"]).toString().split("\0").filter(Boolean)
    .map((f) => join(root, f)).filter((f) => existsSync(f) && statSync(f).isFile());
}

async function engine(root: string) {
  return createEngine({ cwd: root, configFilePath: join(here, ".secretlintrc.json"), formatter: "stylish", color: false, maskSecrets: true });
}

/** Scans `root`'s tracked files, and web/dist when `withDist` and it is built. */
export async function scanSecrets(root: string, opts: { withDist?: boolean } = {}): Promise<SecretScanResult> {
  const files = trackedFiles(root);
  const dist = join(root, "web", "dist");
  if (opts.withDist && existsSync(dist)) files.push(...walk(dist, new Set()));
  const { ok, output } = await (await engine(root)).executeOnFiles({ filePathList: files });
  return { ok, files: files.length, output: ok ? "" : output };
}

/** Scans what is staged in the git checkout at `root` (the index's content, not the working tree's). */
export async function scanStaged(root: string): Promise<SecretScanResult> {
  const names = git(root, ["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"]).toString().split("\0").filter(Boolean);
  const lint = await engine(root);
  const reports: string[] = [];
  for (const name of names) {
    const blob = git(root, ["show", `:${name}`]);
    if (blob.includes(0)) continue;  // binary
    const { ok, output } = await lint.executeOnContent({ content: blob.toString("utf8"), filePath: join(root, name) });
    if (!ok) reports.push(output);
  }
  return { ok: reports.length === 0, files: names.length, output: reports.join("\n") };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const staged = process.argv.includes("--staged");
  const root = staged ? git(process.cwd(), ["rev-parse", "--show-toplevel"]).toString().trim() : here;
  const result = staged ? await scanStaged(root) : await scanSecrets(root, { withDist: true });
  const what = staged ? "staged file(s)" : `file(s) (tracked${existsSync(join(root, "web", "dist")) ? " and web/dist" : ""})`;
  if (result.ok) console.log(`secret scan: ${result.files} ${what}, no secret found`);
  else {
    console.error(result.output.trim());
    console.error(`secret scan: a secret in ${relative(process.cwd(), root) || "."}: remove it${staged ? " from the commit" : ""}, and revoke it at its issuer if it was ever real`);
  }
  process.exit(result.ok ? 0 : 1);
}
