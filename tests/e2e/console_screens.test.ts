/**
 * Every screen of the console, at a desktop's width and a phone's (390 px): photographed into
 * .local/screenshots/ (console-<screen>-<width>.png), checked by axe (no serious or critical
 * finding), loaded under the console's strict CSP with nothing refused, and wider than the phone's
 * screen nowhere but inside a table's own scroll area. And
 * every screen as a viewer: no enabled input or button that writes (the only controls left are the
 * ones that read: sorting, filters, showing a transcript or a version, copying, exporting and
 * verifying the audit chain). What a viewer may do is the database's answer (my_permissions); the
 * database still refuses the rest (pgTAP 900, the isolation matrix).
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { accessibilityViolations, cspViolations, screenshot, signedInPage, suiteBrowser } from "../helpers/browser.ts";
import { ACME, ACME_AGENT, ACME_RUN } from "../helpers/fixtures.ts";
import { stack } from "../helpers/stack.ts";

const s = stack();
const browser = suiteBrowser();

/** Each screen: its path under /o/<Acme>/, and what shows once it has loaded. */
const SCREENS: [string, string, (page: Page) => Promise<void>][] = [
  ["approvals", "approvals", (p) => p.getByRole("table", { name: "Action requests" }).or(p.getByText(/No (pending )?requests/)).first().waitFor()],
  ["runs", "runs", (p) => p.getByRole("table", { name: "Runs" }).waitFor()],
  ["run", `runs/${ACME_RUN}`, (p) => p.getByRole("heading", { level: 1 }).waitFor()],
  ["agents", "agents", (p) => p.getByRole("table", { name: "Agents" }).waitFor()],
  ["agent", `agents/${ACME_AGENT}`, (p) => p.getByRole("heading", { name: "Versions" }).waitFor()],
  ["projects", "projects", (p) => p.getByRole("cell", { name: "Support bot" }).waitFor()],
  ["members", "members", (p) => p.getByRole("heading", { name: /^Members of/ }).waitFor()],
  ["connections", "connections", (p) => p.getByRole("heading", { level: 1 }).waitFor()],
  ["audit", "audit", (p) => p.getByRole("heading", { level: 1 }).waitFor()],
  ["limits", "limits", (p) => p.getByRole("table", { name: "Model usage" }).waitFor()],
  ["widgets", "widgets", (p) => p.getByRole("heading", { name: "Widget keys" }).waitFor()],
  ["webhooks", "webhooks", (p) => p.getByRole("table", { name: "Webhook subscriptions" }).waitFor()],
  ["tokens", "tokens", (p) => p.getByRole("heading", { name: "Tokens", exact: true }).waitFor()],
  ["billing", "billing", (p) => p.getByRole("heading", { level: 1 }).waitFor()],
  ["settings", "settings", (p) => p.getByRole("heading", { name: /^Settings of/ }).waitFor()],
];

/** Controls a viewer may have: they read, sort, filter, show, copy, export or verify; none writes. */
const READS = [
  /: sort (ascending|descending)$/, /^Try again$/, /^Refresh$/, /^Show the transcript$/, / on https?:\/\//, /^v\d+ · /,
  /^Copy/, /^(Pending|Decided|All|Going on|Ended)$/, /^Show (runs|requests)$/, /^(Export|Verify|Download)/i, /^Filter|^(From|Until|Action|Actor|Target)/i,
  // The audit log's: its filters and pages, an entry's payload, an export file to verify, and the
  // checkpoints and keys a person pins for themselves (their own, not the organization's).
  /^Show the payload of entry \d+$/, /^Older events$|^Newer events$/, /^Clear filters$/, /^(From|To) entry/, /^Open an export file$/,
  /^Pin (this checkpoint|this public key|key [0-9a-f]+)$/, /^Unpin/, /^Public key you hold/, /^Key id/, /^Show the /, /^Filter events$/, /^Until/,
];

/**
 * A screen's controls that are the person's own, not the organization's: on Access tokens, the
 * form that makes a token for themselves, offered only the reading scopes a viewer's role allows.
 */
const OWN: Record<string, RegExp[]> = {
  tokens: [/^Token name/, /^Project/, /^Expires in/, /^(runs|agents|audit):read /, /^Make the token$/],
};

async function settle(page: Page, path: string, loaded: (page: Page) => Promise<void>) {
  await page.goto(`${s.apiUrl}/o/${ACME}/${path}`);
  await loaded(page);
  await page.waitForLoadState("networkidle");
  await page.locator('[aria-busy="true"]').first().waitFor({ state: "detached", timeout: 5_000 }).catch(() => undefined);
}

describe("every screen", () => {
  for (const [width, label] of [[1280, "desktop"], [390, "phone"]] as const) {
    it(`is accessible and fits at ${label} width`, { timeout: 120_000 }, async () => {
      const page = await signedInPage(browser(), "ada@acme.test");
      await page.setViewportSize({ width, height: 900 });
      const problems: string[] = [];
      for (const [name, path, loaded] of SCREENS) {
        await settle(page, path, loaded);
        await screenshot(page, `console-${name}-${label}`);
        problems.push(...(await accessibilityViolations(page)).map((v) => `${name}: ${v}`));
        problems.push(...(await cspViolations(page)).map((v) => `${name}: CSP ${v}`));
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (overflow > 1) problems.push(`${name}: the page is ${overflow}px wider than the screen`);
      }
      expect(problems).toEqual([]);
      await page.context().close();
    });
  }

  it("shows a viewer no control that writes", { timeout: 120_000 }, async () => {
    const page = await signedInPage(browser(), "victor@acme.test");
    const writes: string[] = [];
    for (const [name, path, loaded] of SCREENS) {
      await settle(page, path, loaded);
      const controls = await page.locator("main").locator("button, input, select, textarea, [role=switch], [role=checkbox]").evaluateAll((nodes) =>
        nodes.filter((n) => !(n as HTMLButtonElement).disabled && (n as HTMLInputElement).type !== "hidden" && (n as HTMLElement).offsetParent !== null)
          .map((n) => {
            const el = n as HTMLElement;
            const labelled = el.getAttribute("aria-label") ?? (el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null);
            return (labelled ?? el.textContent ?? el.getAttribute("name") ?? el.tagName).trim();
          }));
      writes.push(...controls.filter((c) => ![...READS, ...(OWN[name] ?? [])].some((r) => r.test(c))).map((c) => `${name}: ${c}`));
    }
    await screenshot(page, "console-viewer-members");
    expect(writes).toEqual([]);
    await page.context().close();
  });
});
