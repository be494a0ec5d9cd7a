/**
 * The console's automation screens in Chromium: access tokens (make one, shown once and then only
 * by its prefix; the scopes a viewer is offered; use it through the API; revoke it through the
 * confirmation, after which the API refuses it) and inbound webhooks (make a subscription, its
 * secret shown once; a delivery signed with it, as a sender would send it, shows up in the recent
 * deliveries with its run; rotate; turn it off through the confirmation). Each screen is checked
 * with axe-core and photographed into .local/screenshots/.
 */
import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { afterAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, signedInPage, suiteBrowser } from "../helpers/browser.ts";
import { ACME, ACME_AGENT, ACME_PROJECT } from "../helpers/fixtures.ts";
import { asMemberIn, stack, superuser } from "../helpers/stack.ts";

const s = stack();
const db = superuser();
const browser = suiteBrowser();
afterAll(() => db.end());

describe("access tokens", () => {
  it("are made with their scopes, shown once, used, and revoked through a confirmation", async () => {
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/tokens`);
    await page.getByRole("heading", { name: /^Access tokens in/ }).waitFor();
    const name = `CI ${randomUUID().slice(0, 8)}`;
    await page.getByLabel("Token name").fill(name);
    await page.getByRole("checkbox", { name: /^runs:read/ }).check();
    await page.getByLabel("Expires in").selectOption("30");
    await page.getByRole("button", { name: "Make the token" }).click();
    await page.getByRole("status").getByText(/Token made/).waitFor();
    const token = (await page.locator("code").filter({ hasText: /^gtp_/ }).first().textContent())!;
    expect(token).toMatch(/^gtp_[0-9A-Za-z]{36}$/);
    await checkScreen(page, "tokens");

    // The token works on the API, and the list shows its last use.
    const used = await fetch(`${s.restUrl}/agent_runs?select=id&limit=1`, { headers: { apikey: s.anonKey, authorization: `Bearer ${token}` } });
    expect(used.status).toBe(200);
    await page.reload();
    const row = page.getByRole("row").filter({ hasText: name });
    await row.getByText(token.slice(0, 8) + "…").waitFor();
    expect(await page.getByText(token).count()).toBe(0);

    // Cancel changes nothing; Revoke stops it.
    await row.getByRole("button", { name: `Revoke ${name} (${token.slice(0, 8)})` }).click();
    await answerDialog(page, `Revoke “${name}”?`);
    const [live] = await db`select revoked_at from public.personal_access_tokens where name = ${name}`;
    expect(live.revoked_at).toBeNull();
    await row.getByRole("button", { name: `Revoke ${name} (${token.slice(0, 8)})` }).click();
    await answerDialog(page, `Revoke “${name}”?`, { confirm: "Revoke the token" });
    await page.getByRole("status").getByText(`Token “${name}” revoked.`).waitFor();
    const refused = await fetch(`${s.restUrl}/agent_runs?select=id&limit=1`, { headers: { apikey: s.anonKey, authorization: `Bearer ${token}` } });
    expect(refused.status).toBe(401);
    await page.context().close();
  });

  it("offer a viewer only the reading scopes", async () => {
    const page = await signedInPage(browser(), "victor@acme.test", `/o/${ACME}/tokens`);
    await page.getByRole("button", { name: "Make the token" }).waitFor();
    const offered = await page.getByRole("checkbox").evaluateAll((boxes) => boxes.map((b) => (b as HTMLInputElement).value));
    expect(offered).toEqual(["runs:read", "agents:read", "audit:read"]);
    await page.context().close();
  });
});

describe("inbound webhooks", () => {
  it("are made with the secret shown once, show their deliveries and runs, rotate, and turn off through a confirmation", async () => {
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/webhooks`);
    await page.getByRole("heading", { name: /^Inbound webhooks in/ }).waitFor();
    const name = `Tickets ${randomUUID().slice(0, 8)}`;
    await page.getByLabel("Subscription name").fill(name);
    await page.getByLabel("Agent it starts").selectOption(ACME_AGENT);
    await page.getByRole("button", { name: "Make the subscription" }).click();
    await page.getByRole("status").getByText(/Subscription made/).waitFor();
    const secret = (await page.locator("code").filter({ hasText: /^whsec_/ }).first().textContent())!;
    const url = (await page.locator("code").filter({ hasText: /\/functions\/v1\/inbound\// }).first().textContent())!;
    expect(secret).toMatch(/^whsec_/);
    await checkScreen(page, "webhooks");

    // A sender delivers with a token bound to the project.
    const [{ made }] = await asMemberIn(db, "a0000000-0000-4000-8000-000000000001", ACME, (tx) =>
      tx`select public.create_personal_access_token('Sender', '{webhooks:ingest}', 1, ${ACME_PROJECT}) as made`);
    const body = JSON.stringify({ ticket: 77 });
    const id = `msg_${randomUUID()}`;
    const at = new Date();
    const delivered = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${(made as { token: string }).token}`, "content-type": "application/json", "webhook-id": id,
                 "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": new Webhook(secret).sign(id, at, body) },
      body,
    });
    expect(delivered.status).toBe(202);
    const { run_id } = await delivered.json();
    await db`select private.end_run(${run_id}, 'cancelled', 'cancelled')`;
    await page.reload();
    const deliveries = page.getByRole("table", { name: "Recent deliveries" });
    await deliveries.getByRole("row").filter({ hasText: id }).getByRole("link", { name: "Open the run" }).waitFor();

    // Rotate with an hour's grace: a new secret, shown once.
    await page.getByLabel("Subscription to rotate").selectOption({ label: `${name} (v1)` });
    await page.getByRole("button", { name: "Rotate", exact: true }).click();
    await answerDialog(page, `Rotate the signing secret of “${name}”?`, { confirm: "Rotate" });
    await page.getByRole("status").getByText(/Secret rotated/).waitFor();
    const rotated = (await page.locator("code").filter({ hasText: /^whsec_/ }).first().textContent())!;
    expect(rotated).not.toBe(secret);

    const row = page.getByRole("table", { name: "Webhook subscriptions" }).getByRole("row").filter({ hasText: name });
    await row.getByRole("button", { name: `Turn off ${name}` }).click();
    await answerDialog(page, `Turn “${name}” off?`, { confirm: "Turn off" });
    await page.getByRole("status").getByText(`“${name}” turned off.`).waitFor();
    await row.getByText("Off").waitFor();
    await page.context().close();
  });
});
