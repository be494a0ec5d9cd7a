import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const info = JSON.parse(readFileSync("/work/main/.local/stack.json", "utf8"));
const [email, scheme, ...paths] = process.argv.slice(2);
const pw = info.demoUsers.find((u) => u.email === email).password;
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
const ctx = await browser.newContext({ colorScheme: scheme });
const page = await ctx.newPage();
await page.goto(info.apiUrl + "/");
await page.getByLabel("Email").fill(email);
await page.getByLabel("Password").fill(pw);
await page.getByRole("button", { name: "Sign in" }).click();
await page.getByRole("button", { name: "Sign out", exact: true }).waitFor({ timeout: 15000 });
for (const path of paths) {
  await page.goto(info.apiUrl + path);
  await page.waitForTimeout(1200);
  await page.addScriptTag({ content: axeSource });
  const v = await page.evaluate(async () => (await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } })).violations.filter((x) => x.impact === "serious" || x.impact === "critical").map((x) => `${x.id}: ${x.nodes.map((n) => n.target.join(" ")).slice(0,4).join(", ")}`));
  console.log(path, JSON.stringify(v));
}
await browser.close();
