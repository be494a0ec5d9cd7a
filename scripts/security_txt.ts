/**
 * /.well-known/security.txt (RFC 9116), rendered from web/security-txt.json into web/dist by the
 * web build, so that the gateway and the deployed console (web/server/main.ts) serve it as a file.
 * Its Expires is a committed review date, not "build time plus a year": a file that renews itself
 * would promise a contact nobody has checked. `checkSecurityTxt` fails within 30 days of it (and
 * when it is more than a year ahead, against RFC 9116's advice), and npm test runs that check
 * (tests/unit/security_txt.test.ts), so CI fails before the file lapses.
 *
 *   npx tsx scripts/security_txt.ts --check
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DAY_MS = 86_400_000;
/** CI fails when Expires is this close. */
export const EXPIRES_WARNING_DAYS = 30;

export interface SecurityTxtConfig {
  contact: string[];
  policy: string;
  preferredLanguages: string[];
  expires: string;
}

/** web/security-txt.json, with the contact and policy a deployment may set in the environment. */
export function securityTxtConfig(env: NodeJS.ProcessEnv = process.env): SecurityTxtConfig {
  const raw = JSON.parse(readFileSync(join(root, "web", "security-txt.json"), "utf8")) as SecurityTxtConfig;
  return {
    contact: env.GATEHOUSE_SECURITY_CONTACT ? env.GATEHOUSE_SECURITY_CONTACT.split(",").map((c) => c.trim()) : raw.contact,
    policy: env.GATEHOUSE_SECURITY_POLICY ?? raw.policy,
    preferredLanguages: raw.preferredLanguages,
    expires: raw.expires,
  };
}

/** What is wrong with the file `config` renders, at `now` (empty when nothing is). */
export function checkSecurityTxt(config: SecurityTxtConfig, now = new Date()): string[] {
  const problems: string[] = [];
  if (config.contact.length === 0) problems.push("security.txt needs at least one Contact");
  for (const c of config.contact) {
    if (!/^(mailto:[^\s@]+@[^\s@]+|tel:\+?[0-9-]+|https:\/\/\S+)$/.test(c)) problems.push(`Contact ${JSON.stringify(c)} is not a mailto:, tel: or https: URI`);
  }
  if (!/^https:\/\/\S+$/.test(config.policy)) problems.push(`Policy ${JSON.stringify(config.policy)} is not an https: URL`);
  const expires = new Date(config.expires);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(config.expires) || Number.isNaN(expires.getTime())) {
    problems.push(`Expires ${JSON.stringify(config.expires)} is not an RFC 3339 UTC time such as 2027-06-01T00:00:00Z`);
  } else {
    const days = Math.floor((expires.getTime() - now.getTime()) / DAY_MS);
    if (days < EXPIRES_WARNING_DAYS) {
      problems.push(`security.txt ${days < 0 ? "expired" : "expires"} on ${config.expires.slice(0, 10)}${days < 0 ? "" : `, in ${days} days`}: confirm the contact still answers, then move "expires" in web/security-txt.json forward (at most a year)`);
    }
    if (days > 366) problems.push(`Expires ${config.expires.slice(0, 10)} is more than a year ahead (RFC 9116, section 2.5.5, advises less)`);
  }
  return problems;
}

/** The file's text: one field per line, CRLF-free, ending in a newline. */
export function renderSecurityTxt(config: SecurityTxtConfig): string {
  return [
    "# Gatehouse: how to report a security problem (RFC 9116). The policy says what is in scope and promises safe harbour.",
    ...config.contact.map((c) => `Contact: ${c}`),
    `Expires: ${config.expires}`,
    `Policy: ${config.policy}`,
    `Preferred-Languages: ${config.preferredLanguages.join(", ")}`,
    "",
  ].join("\n");
}

/** Writes <dist>/.well-known/security.txt. */
export function writeSecurityTxt(dist: string, config = securityTxtConfig()): void {
  mkdirSync(join(dist, ".well-known"), { recursive: true });
  writeFileSync(join(dist, ".well-known", "security.txt"), renderSecurityTxt(config));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const problems = checkSecurityTxt(securityTxtConfig());
  for (const p of problems) console.error(`security.txt: ${p}`);
  if (problems.length === 0) console.log(`security.txt: fine until ${securityTxtConfig().expires.slice(0, 10)} (CI fails ${EXPIRES_WARNING_DAYS} days before)`);
  process.exit(problems.length === 0 ? 0 : 1);
}
