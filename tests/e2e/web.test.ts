import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, describe, expect, it } from "vitest";
import { ACME } from "../helpers/fixtures.ts";
import { signedInPage as signedInAt, suiteBrowser } from "../helpers/browser.ts";
import { stack, superuser } from "../helpers/stack.ts";

const s = stack();
const db = superuser();
const browser = suiteBrowser();
afterAll(() => db.end());

/** A new page with the demo user `email` signed in through the console's form, at the screen `screen` of Acme. */
async function signedInPage(email: string, screen = "approvals"): Promise<Page> {
  return signedInAt(browser(), email, `/o/${ACME}/${screen}`);
}

describe("the Models page (Chromium)", () => {
  it("shows a tenant admin the organization's usage, limits and keys, and never a key", async () => {
    const page = await signedInPage("ada@acme.test", "limits");
    const usage = page.getByRole("table", { name: "Model usage" });
    await usage.getByText("gpt-4o-mini").first().waitFor();
    expect(await usage.getByText("Ticket triage").count()).toBe(0);
    await page.getByRole("list", { name: "Provider keys" }).getByText("anthropic", { exact: true }).waitFor();
    expect(await page.getByLabel("Monthly budget ($)").inputValue()).toBe("5");
    expect(await page.getByLabel("API key").getAttribute("type")).toBe("password");
    // The seeded key's text is in Vault only; the page shows its hint.
    const [{ secret }] = await db`select s.decrypted_secret as secret from public.model_provider_keys k
                                   join vault.decrypted_secrets s on s.id = k.secret_id where k.org_id = ${ACME} and k.provider = 'anthropic'`;
    expect((await page.content()).includes(secret)).toBe(false);
    await page.close();
  });

  it("saves limits for a tenant admin, and shows a viewer the limits with no control to change them", async () => {
    const [{ rpm }] = await db`select requests_per_minute as rpm from public.model_limits where org_id = ${ACME}`;
    try {
      const admin = await signedInPage("ada@acme.test", "limits");
      await admin.getByLabel("Calls per minute").fill("321");
      await admin.getByRole("button", { name: "Save limits" }).click();
      await admin.getByRole("status").getByText("Limits saved.").waitFor();
      expect((await db`select requests_per_minute as rpm from public.model_limits where org_id = ${ACME}`)[0].rpm).toBe(321);
      await admin.close();

      // The viewer reads the limits; the database (my_permissions) offers no change, and would refuse one (pgTAP 060).
      const viewer = await signedInPage("victor@acme.test", "limits");
      await viewer.getByRole("region", { name: "Model limits" }).getByText("321 calls a minute", { exact: false }).waitFor();
      expect(await viewer.getByRole("button", { name: "Save limits" }).count()).toBe(0);
      expect(await viewer.getByLabel("Calls per minute").count()).toBe(0);
      expect(await viewer.getByRole("form", { name: "Save a provider key" }).count()).toBe(0);
      await viewer.close();
    } finally {
      await db`update public.model_limits set requests_per_minute = ${rpm} where org_id = ${ACME}`;
    }
  });
});

describe("the Widgets page (Chromium)", () => {
  it("shows a rotated key once, and keeps only its hash", async () => {
    const page = await signedInPage("casey@both.test", "widgets");
    const widget = page.getByRole("form", { name: "Widget of Returns assistant" });
    const version = async () => (await db`select version from public.widget_keys where org_id = ${ACME} and disabled_at is null`)[0].version;
    const before = await version();
    // Rotating stops live chats: the dialog says so, Cancel changes nothing, and confirming takes the agent's name.
    await widget.getByRole("button", { name: "Rotate key" }).click();
    const dialog = page.getByRole("dialog", { name: "Rotate the widget key?" });
    await dialog.getByText("stops every open chat on https://shop.acme.test", { exact: false }).waitFor();
    await dialog.getByRole("button", { name: "Cancel", exact: true }).click();
    await dialog.waitFor({ state: "detached" });
    expect(await version()).toBe(before);
    await widget.getByRole("button", { name: "Rotate key" }).click();
    expect(await dialog.getByRole("button", { name: "Rotate the key" }).isDisabled()).toBe(true);
    await dialog.getByLabel("Type Returns assistant to confirm").fill("Returns assistant");
    await dialog.getByRole("button", { name: "Rotate the key" }).click();
    const shown = (await page.getByLabel("New widget key").textContent()) ?? "";
    await page.getByText("you won't see it again", { exact: false }).waitFor();
    expect(shown).toMatch(/^ghw_[A-Za-z0-9_-]{32}_[0-9a-f]{6}$/);
    const [row] = await db`select key_sha256 = encode(sha256(convert_to(${shown}, 'UTF8')), 'hex') as hashed, version
                             from public.widget_keys where org_id = ${ACME} and disabled_at is null`;
    expect(row.hashed).toBe(true);
    await page.reload();
    await page.getByRole("form", { name: "Widget of Returns assistant" }).waitFor();
    expect((await page.content()).includes(shown)).toBe(false);
    await page.close();
  });

  it("lets a contributor take and resolve a review item, with its history, and shows the transcript", async () => {
    const [item] = await db`insert into public.review_items (org_id, project_id, agent_id, conversation_id, kind, summary)
                            values (${ACME}, '1a000000-0000-4000-8000-00000000000a', '2a000000-0000-4000-8000-00000000000a',
                                    '8a000000-0000-4000-8000-00000000000a', 'escalation', 'E2E: asked for a person.') returning id`;
    const page = await signedInPage("casey@both.test", "widgets");
    const entry = page.getByRole("listitem").filter({ hasText: "E2E: asked for a person." });
    await entry.getByRole("button", { name: "in review" }).click();
    await page.getByRole("status").getByText("Moved to in review.").waitFor();
    await entry.getByRole("button", { name: "resolved" }).click();
    await page.getByRole("status").getByText("Moved to resolved.").waitFor();
    const history = await db`select status from public.review_item_events where item_id = ${item.id} order by created_at`;
    expect(history.map((h) => h.status)).toEqual(["open", "in_review", "resolved"]);
    // The item links to its conversation's transcript.
    await entry.getByRole("button", { name: "Show the transcript" }).click();
    await page.getByRole("list", { name: "Transcript" }).getByText("Can I return shoes I wore once?").waitFor();
    await page.close();
  });

  it("shows a viewer the widgets and no write control", async () => {
    const page = await signedInPage("victor@acme.test", "widgets");
    const main = page.getByRole("main");
    await main.getByRole("region", { name: "Widget of Returns assistant" }).getByText("https://shop.acme.test", { exact: false }).waitFor();
    expect(await main.getByRole("textbox").count()).toBe(0);
    expect(await main.getByRole("checkbox").count()).toBe(0);
    expect(await main.getByRole("combobox").count()).toBe(0);
    const buttons = await main.getByRole("button").allTextContents();
    // What's left reads: a transcript, sorting the refusals, copying the snippet.
    expect(buttons.filter((b) => !/ on https?:\/\/|^Show the transcript$|^Copy$| [↕▲▼]$/.test(b))).toEqual([]);
    await page.close();
  });
});

describe("web bundle", () => {
  it("contains no privileged key or secret", () => {
    const assets = join(process.cwd(), "web", "dist", "assets");
    const text = readdirSync(assets).map((f) => readFileSync(join(assets, f), "utf8")).join("\n");
    expect(text.length).toBeGreaterThan(1000);
    // Booleans, so that a failure never prints the bundle (or the secret) into the CI log.
    const leaks = { serviceRoleKey: s.serviceRoleKey, jwtSecret: s.jwtSecret, dbUrl: s.dbUrl };
    for (const [name, secret] of Object.entries(leaks)) expect(text.includes(secret), `${name} is in the web bundle`).toBe(false);
  });
});
