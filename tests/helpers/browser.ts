/**
 * Chromium for the e2e suites: the system browser (never a download), sign-in through the
 * console's form, screenshots under .local/screenshots/, and axe-core's accessibility check.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, expect } from "vitest";
import { stack } from "./stack.ts";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const shots = join(process.cwd(), ".local", "screenshots");

/** Chromium from Debian, headless. */
export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Chromium for the calling suite: launched before its tests, closed after; call the result for it. */
export function suiteBrowser(): () => Browser {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await launch();
  });
  afterAll(async () => {
    await browser?.close();
  });
  return () => {
    if (!browser) throw new Error("the suite's browser is not up yet");
    return browser;
  };
}

/** The demo user's password (stack.json). */
export function demoPassword(email: string): string {
  const user = stack().demoUsers.find((u) => u.email === email);
  if (!user) throw new Error(`no demo user ${email}`);
  return user.password;
}

/** Signs in through the console's form on a page at `path` (any path shows the form when signed out). */
export async function signIn(page: Page, email: string, password = demoPassword(email), path = "/"): Promise<void> {
  await page.goto(`${stack().apiUrl}${path}`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out", exact: true }).waitFor({ timeout: 15_000 }).catch(async (e: Error) => {
    throw new Error(`signing in as ${email}: ${e.message.split("\n")[0]} (the page says: ${(await page.locator("main").textContent().catch(() => ""))?.slice(0, 200)})`);
  });
}

/**
 * Records every Content-Security-Policy violation on the context's pages (cspViolations reads
 * them): an init script runs before the page's own, outside its CSP.
 */
export async function recordCspViolations(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { __cspViolations: string[] }).__cspViolations = seen;
    document.addEventListener("securitypolicyviolation", (e) => seen.push(`${e.effectiveDirective} refused ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`));
  });
}

/** The CSP violations on the page's current document since it loaded (recordCspViolations). */
export async function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { __cspViolations?: string[] }).__cspViolations ?? ["CSP violations were not recorded on this page"]);
}

/** A new page (own cookies) signed in as `email`, at `path`; CSP violations are recorded. */
export async function signedInPage(browser: Browser, email: string, path = "/", password?: string): Promise<Page> {
  const context = await browser.newContext();
  await recordCspViolations(context);
  const page = await context.newPage();
  await signIn(page, email, password, path);
  return page;
}

/** Saves a full-page screenshot as .local/screenshots/<name>.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** axe-core's serious and critical violations on the page (WCAG 2.x A and AA), as "rule: target" lines. */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  // Transitions first (a dialog fading in): axe measures contrast on what is painted at that moment.
  // (Finite ones only: a spinner's never finishes.)
  await page.evaluate(() => Promise.all(document.getAnimations()
    .filter((a) => Number.isFinite(a.effect?.getComputedTiming().endTime ?? Infinity))
    .map((a) => a.finished.catch(() => undefined))));
  // Evaluated, not added as a script tag: the console's CSP (rightly) refuses an inline script.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => n.target.join(" ")) }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${v.id}: ${v.targets.join(", ")}`);
}

/** Waits for the screen to settle, photographs it (console-<name>) and expects axe to find nothing serious, and the CSP to have refused nothing. */
export async function checkScreen(page: Page, name: string): Promise<void> {
  await page.waitForLoadState("networkidle");
  await screenshot(page, `console-${name}`);
  expect(await accessibilityViolations(page), `axe on ${name}`).toEqual([]);
  if (await page.evaluate(() => "__cspViolations" in window)) expect(await cspViolations(page), `CSP on ${name}`).toEqual([]);
}

/**
 * Answers the console's confirmation dialog titled `title` (confirm.tsx): with `confirm` (the
 * confirm button's label, after typing `typed` where the dialog asks for a name), or, without it,
 * with Cancel; then waits for the dialog to close.
 */
export async function answerDialog(page: Page, title: string | RegExp, answer: { confirm?: string; typed?: string } = {}): Promise<void> {
  const dialog = page.getByRole("dialog", { name: title });
  await dialog.waitFor();
  if (answer.typed !== undefined) await dialog.getByRole("textbox").fill(answer.typed);
  await dialog.getByRole("button", { name: answer.confirm ?? "Cancel", exact: true }).click();
  await dialog.waitFor({ state: "detached" });
}
