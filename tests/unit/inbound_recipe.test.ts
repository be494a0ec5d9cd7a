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
  const recipe = /```sh\n(secret=[\s\S]*?)```/.exec(page)?.[1] ?? "";
  const printed = /^# (v1,\S+)$/m.exec(recipe)?.[1];
  const value = (name: string) => new RegExp(`^${name}='([^']*)'$`, "m").exec(recipe)?.[1] ?? "";

  describe(`the signing recipe in ${file}`, () => {
    it("prints what its openssl lines compute", () => {
      expect(printed).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
      const lines = recipe.split("\n").filter((l) => l && !l.startsWith("#")).join("\n");
      expect(execFileSync("bash", ["-c", lines], { encoding: "utf8" }).trim()).toBe(printed);
    });

    it("agrees with the standardwebhooks package's sign()", () => {
      const signed = new Webhook(value("secret")).sign(value("id"), new Date(Number(value("ts")) * 1000), value("body"));
      expect(signed).toBe(printed);
    });
  });
}
