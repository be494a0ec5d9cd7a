/**
 * The bundle lint (seed 004: the service role never appears in the browser bundle): scans what
 * the browser is served (web/dist: the console and the widget embed, source maps included) for
 *   - the running stack's own secrets, when given (its service-role key and JWT secret);
 *   - any JWT whose payload says `"role": "service_role"` (a service-role key of any project);
 *   - the service-role client pattern: the names a service-role client is made from
 *     (SUPABASE_SERVICE_ROLE_KEY, serviceRoleKey, service_role_key).
 * npm test runs it with the throwaway stack's secrets; `npm run lint:bundle` (and
 * .github/workflows/lint.yml) runs it on a fresh build without a stack. Exits non-zero on a finding.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

export interface BundleFinding {
  file: string;
  what: string;
}

const CLIENT_PATTERN = /SUPABASE_SERVICE_ROLE_KEY|serviceRoleKey|service_role_key/;
const JWT = /eyJ[A-Za-z0-9_-]{8,}\.(eyJ[A-Za-z0-9_-]{8,})\.[A-Za-z0-9_-]{16,}/g;

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

/** What in `dist` should never reach a browser; the secrets themselves are never printed. */
export function lintBundle(dist: string, secrets: Record<string, string> = {}): BundleFinding[] {
  const findings: BundleFinding[] = [];
  for (const path of files(dist)) {
    const text = readFileSync(path, "utf8");
    const file = relative(dist, path);
    for (const [name, secret] of Object.entries(secrets)) {
      if (secret && text.includes(secret)) findings.push({ file, what: `the stack's ${name}` });
    }
    for (const match of text.matchAll(JWT)) {
      try {
        const payload = JSON.parse(Buffer.from(match[1], "base64url").toString("utf8")) as { role?: unknown };
        if (payload.role === "service_role") findings.push({ file, what: "a service-role JWT" });
      } catch {
        // Not a JWT after all.
      }
    }
    if (CLIENT_PATTERN.test(text)) findings.push({ file, what: `a service-role client pattern (${CLIENT_PATTERN.exec(text)![0]})` });
  }
  return findings;
}

if (process.argv[1]?.endsWith("bundle_lint.ts")) {
  const dist = join(process.cwd(), "web", "dist");
  const findings = lintBundle(dist);
  for (const f of findings) console.error(`bundle lint: ${f.file}: ${f.what}`);
  console.log(findings.length === 0 ? "bundle lint: web/dist holds no service-role key, secret or client pattern" : `bundle lint: ${findings.length} finding(s)`);
  process.exit(findings.length === 0 ? 0 : 1);
}
