/**
 * The signing recipe of docs/webhooks.md and of the README, run as written: its openssl lines give
 * the signature the page prints, and so does the standardwebhooks package's sign(), which the
 * inbound function verifies with. If a page, openssl's use or the package disagree, this fails.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";

for (const file of ["docs/webhooks.md", "README.md"]) {
  const page = readFileSync(join(__dirname, "../..", file), "utf8");
  const recipe = /```sh\n((?:# An example key[^\n]*\n)?secret=[\s\S]*?)```/.exec(page)?.[1] ?? "";
  const printed = /^# (v1,\S+)$/m.exec(recipe)?.[1];
  const lines = recipe.split("\n").filter((l) => l && !l.startsWith("#")).join("\n");
  // The recipe's own values, as bash leaves them (the secret is made by its line, not written out).
  const values = (): Record<string, string> => {
    const shown = execFileSync("bash", ["-c", `${lines.replace(/^echo .*$/m, "")}\nprintf '%s\\0' "$secret" "$id" "$ts" "$body"`], { encoding: "utf8" });
    const [secret, id, ts, body] = shown.split("\0");
    return { secret, id, ts, body };
  };

  describe(`the signing recipe in ${file}`, () => {
    it("prints what its openssl lines compute", () => {
      expect(printed).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
      expect(execFileSync("bash", ["-c", lines], { encoding: "utf8" }).trim()).toBe(printed);
    });

    it("agrees with the standardwebhooks package's sign()", () => {
      const { secret, id, ts, body } = values();
      expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
      const signed = new Webhook(secret).sign(id, new Date(Number(ts) * 1000), body);
      expect(signed).toBe(printed);
    });
  });
}
