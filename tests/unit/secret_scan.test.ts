/**
 * The secret scan (scripts/secret_scan.ts, .secretlintrc.json, scripts/secretlint-rule-gatehouse)
 * and its pre-commit hook (.githooks/pre-commit): live-looking secrets planted in a throwaway git
 * repository are found, in the files and in a commit, which the hook refuses; look-alikes whose
 * checksum fails are not; and this repository itself holds none. Every planted secret is made
 * here at run time, so that none sits in a committed file.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes, randomInt } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { patChecksum, patFormatValid } from "../../functions/_shared/pat/token.ts";
import { scanSecrets, scanStaged } from "../../scripts/secret_scan.ts";
// @ts-expect-error: plain JavaScript, without types
import { patChecksumHolds, widgetKeyChecksumHolds } from "secretlint-rule-gatehouse";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const base62 = (n: number) => Array.from({ length: n }, () => BASE62[randomInt(62)]).join("");

/** A token as private.new_personal_access_token makes one. */
const pat = () => {
  const body = base62(30);
  return `gtp_${body}${patChecksum(body)}`;
};
/** A widget key as private.new_widget_key makes one. */
const widgetKey = () => {
  const body = `ghw_${randomBytes(24).toString("base64url")}`;
  return `${body}_${createHash("sha256").update(body).digest("hex").slice(0, 6)}`;
};

/** What each planted secret is, and the rule that must find it. */
const planted = () => [
  { file: "config/pat.ts", text: `export const token = "${pat()}";\n`, rule: "GATEHOUSE_PAT" },
  { file: "web/embed.html", text: `<script data-key="${widgetKey()}"></script>\n`, rule: "GATEHOUSE_WIDGET_KEY" },
  { file: "deploy/webhook.env", text: `INBOUND_SECRET=whsec_${randomBytes(32).toString("base64")}\n`, rule: "WEBHOOK_SECRET" },
  { file: "billing.json", text: JSON.stringify({ stripe: `sk_live_${base62(24)}` }) + "\n", rule: "STRIPE_KEY" },
  { file: "aws.txt", text: `aws_access_key_id = AKIA${base62(16).toUpperCase().replace(/[^A-Z0-9]/g, "Q")}\naws_secret_access_key = ${randomBytes(30).toString("base64")}\n`, rule: "AWS" },
  {
    file: "keys/id.pem",
    text: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    rule: "PrivateKey",
  },
];

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function repo(): string {
  const dir = mkdtempSync(join(tmpdir(), "secret-scan-"));
  dirs.push(dir);
  const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, stdio: "pipe" });
  git("init", "-q", "-b", "main");
  git("config", "user.email", "dev@example.com");
  git("config", "user.name", "Dev");
  git("config", "core.hooksPath", join(root, ".githooks"));
  return dir;
}

function put(dir: string, file: string, text: string): void {
  execFileSync("mkdir", ["-p", dirname(join(dir, file))]);
  writeFileSync(join(dir, file), text);
}

describe("the secret scan", () => {
  it("finds each kind of live-looking secret planted in a repository, masked", async () => {
    const dir = repo();
    const secrets = planted();
    for (const s of secrets) put(dir, s.file, s.text);
    put(dir, "README.md", "# nothing secret here\n");
    execFileSync("git", ["add", "-A"], { cwd: dir });
    const result = await scanSecrets(dir);
    expect(result.ok).toBe(false);
    expect(result.files).toBe(secrets.length + 1);
    for (const s of secrets) {
      expect(result.output, `${s.rule} in ${s.file}`).toContain(s.file);
      expect(result.output).toMatch(new RegExp(`\\[${s.rule}[A-Za-z_]*\\]`));
    }
    // Masked: no secret is printed.
    for (const s of secrets.slice(0, 4)) expect(result.output).not.toContain(s.text.match(/(gtp|ghw|whsec|sk_live)_[^"\s<]+/)![0]);
  });

  it("does not report look-alikes whose checksum fails, or a marked fixture", async () => {
    const dir = repo();
    const token = pat();
    const key = widgetKey();
    put(dir, "docs.md", [
      `A token looks like ${token.slice(0, -6)}${token.endsWith("AAAAAA") ? "BBBBBB" : "AAAAAA"}.`,
      `A widget key looks like ${key.slice(0, -6)}${key.endsWith("000000") ? "111111" : "000000"}.`,
      `const canary = "sk_live_${base62(24)}"; // secretlint-disable-line -- a fixture, never a real key`,
    ].join("\n") + "\n");
    execFileSync("git", ["add", "-A"], { cwd: dir });
    const result = await scanSecrets(dir);
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
  });

  it("mirrors the token code: a token's and a widget key's checksums hold exactly when the service's do", () => {
    for (let i = 0; i < 200; i++) {
      const good = pat();
      const bad = good.slice(0, 10) + (good[10] === "a" ? "b" : "a") + good.slice(11);
      expect(patChecksumHolds(good)).toBe(true);
      expect(patChecksumHolds(bad)).toBe(patFormatValid(bad));
      expect(widgetKeyChecksumHolds(widgetKey())).toBe(true);
    }
  });

  it("refuses a commit with a secret staged (the pre-commit hook), and lets a clean one through", async () => {
    const dir = repo();
    const [leak] = planted();
    put(dir, leak.file, leak.text);
    execFileSync("git", ["add", "-A"], { cwd: dir });
    expect((await scanStaged(dir)).ok).toBe(false);
    const refused = spawnSync("git", ["commit", "-q", "-m", "add a config"], { cwd: dir, encoding: "utf8" });
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain("[GATEHOUSE_PAT]");
    expect(refused.stderr).toContain("secret scan: a secret in");
    expect(spawnSync("git", ["rev-parse", "HEAD"], { cwd: dir }).status).not.toBe(0);  // nothing was committed

    // The staged content is what counts: the secret removed from the working tree only is still refused.
    put(dir, leak.file, "export const token = process.env.TOKEN;\n");
    expect(spawnSync("git", ["commit", "-q", "-m", "add a config"], { cwd: dir }).status).not.toBe(0);
    execFileSync("git", ["add", "-A"], { cwd: dir });
    const clean = spawnSync("git", ["commit", "-q", "-m", "add a config"], { cwd: dir, encoding: "utf8" });
    expect(clean.stderr).toContain("secret scan: 1 staged file(s), no secret found");  // git shows a hook's output on stderr
    expect(clean.status).toBe(0);
  });

  it("finds no secret in this repository's tracked files", async () => {
    const result = await scanSecrets(root);
    expect(result.output).toBe("");
    expect(result.ok).toBe(true);
    expect(result.files).toBeGreaterThan(300);
  });
});
