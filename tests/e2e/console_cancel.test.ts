/**
 * Every destructive action of the console asks first, in a dialog that says what will happen, and
 * Cancel changes nothing (issue 25). On an organization of the test's own (so that no other suite
 * changes the rows meanwhile), as its tenant admin: each action's button opens its dialog, Cancel
 * closes it, and the database holds exactly what it held before. Rotating a key and turning an
 * agent off can't be undone, so their confirm button stays disabled until the name is typed.
 * Last, terminating the workspace (Settings): cancelled, then confirmed with its slug typed, which
 * ends everyone's access at once (the purge itself is tests/runs/purge.test.ts's).
 */
import { randomUUID } from "node:crypto";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerDialog, signedInPage, suiteBrowser } from "../helpers/browser.ts";
import { createMember } from "../helpers/console.ts";
import { stack, superuser } from "../helpers/stack.ts";
import { createWidgetOrg, type WidgetOrg } from "../helpers/widget_org.ts";

const s = stack();
const sql = superuser();
const browser = suiteBrowser();
let shop: WidgetOrg;
let admin: { email: string; password: string };
let viewer: { email: string; userId: string };
const invited = `invited-${randomUUID().slice(0, 8)}@cancel.test`;
const domain = `cancel-${randomUUID().slice(0, 8)}.test`;

beforeAll(async () => {
  // The model endpoint is never called here: the organization only needs its rows.
  shop = await createWidgetOrg(sql, { name: "Cancelco", origins: ["https://shop.cancel.test"], vendorBaseUrl: "https://vendor.cancel.test/v1", vendorKey: "sk-never-used" });
  admin = await createMember(sql, shop.org, "tenant_admin", "cancel-admin");
  viewer = await createMember(sql, shop.org, "project_viewer", "cancel-viewer");
  await sql`insert into public.invitations (org_id, email, role, token_hash) values (${shop.org}, ${invited}, 'project_viewer', sha256(${randomUUID()}::bytea))`;
  await sql`insert into public.organization_domains (org_id, domain) values (${shop.org}, ${domain})`;
  // A draft to publish (v2), beside the published v1.
  await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
            select org_id, project_id, id, '{"model": "gpt-4o-mini"}' from public.agents where id = ${shop.agent}`;
});
afterAll(async () => {
  await sql`delete from public.organizations where id = ${shop.org}`.catch(() => undefined);
  await sql.end();
});

/** Everything the dialogs below could change, as one comparable value. */
async function state() {
  return await sql`
    select (select json_agg(json_build_object('v', k.version, 'off', k.disabled_at) order by k.id) from public.widget_keys k where k.org_id = ${shop.org}) as keys,
           (select json_agg(json_build_object('u', m.user_id, 'r', m.role) order by m.user_id) from public.organization_members m where m.org_id = ${shop.org}) as members,
           (select count(*) from public.invitations i where i.org_id = ${shop.org} and i.accepted_at is null) as invitations,
           (select count(*) from public.organization_domains d where d.org_id = ${shop.org}) as domains,
           (select count(*) from public.model_provider_keys p where p.org_id = ${shop.org}) as provider_keys,
           (select json_agg(json_build_object('off', a.disabled_at)) from public.agents a where a.org_id = ${shop.org}) as agents,
           (select json_agg(json_build_object('v', v.version, 'p', v.published_at) order by v.version) from public.agent_versions v where v.org_id = ${shop.org}) as versions,
           (select count(*) from auth.sessions x where x.user_id = ${viewer.userId}) as viewer_sessions`;
}

/** Clicks `button`, expects the dialog `title` to say `says`, and cancels it. */
async function cancel(page: Page, button: { name: string | RegExp }, title: string, says: RegExp) {
  await page.getByRole("button", button).click();
  const dialog = page.getByRole("dialog", { name: title });
  await dialog.getByText(says).waitFor();
  await answerDialog(page, title);
}

describe("destructive actions", () => {
  it("each open a dialog that says what will happen, and Cancel changes nothing", { timeout: 120_000 }, async () => {
    const before = await state();
    const page = await signedInPage(browser(), admin.email, `/o/${shop.org}/widgets`, admin.password);

    // Widgets: rotating needs the agent's name typed; turning off says the chats end.
    await page.getByRole("button", { name: "Rotate key" }).click();
    const rotate = page.getByRole("dialog", { name: "Rotate the widget key?" });
    await rotate.getByText(/stops every open chat on https:\/\/shop\.cancel\.test at once/).waitFor();
    expect(await rotate.getByRole("button", { name: "Rotate the key" }).isDisabled()).toBe(true);
    await rotate.getByRole("textbox").fill("Shop assistan");
    expect(await rotate.getByRole("button", { name: "Rotate the key" }).isDisabled()).toBe(true);
    await answerDialog(page, "Rotate the widget key?");
    await cancel(page, { name: "Turn off" }, "Turn the widget off?", /every open conversation ends/);

    // Members: a role change, ending sessions, removing, revoking an invitation, releasing a domain.
    await page.goto(`${s.apiUrl}/o/${shop.org}/members`);
    await page.getByLabel(`Role of ${viewer.email}`).selectOption({ label: "Project admin" });
    await answerDialog(page, `Change the role of ${viewer.email}?`);
    expect(await page.getByLabel(`Role of ${viewer.email}`).inputValue()).toBe("project_viewer");
    await cancel(page, { name: `End sessions of ${viewer.email}` }, `End every session of ${viewer.email}?`, /signed out everywhere/);
    await cancel(page, { name: `Remove ${viewer.email}` }, `Remove ${viewer.email}?`, /loses access to Cancelco at once/);
    await cancel(page, { name: `Revoke the invitation to ${invited}` }, `Revoke the invitation to ${invited}?`, /stops working at once/);
    await cancel(page, { name: `Release ${domain}` }, `Release ${domain}?`, /verification token go/);

    // Models: removing the organization's own vendor key.
    await page.goto(`${s.apiUrl}/o/${shop.org}/limits`);
    await cancel(page, { name: "Remove openai key" }, "Remove the openai key?", /deleted from Vault/);

    // The agent: publishing a draft, and turning the agent off (its name typed).
    await page.goto(`${s.apiUrl}/o/${shop.org}/agents/${shop.agent}`);
    await page.getByRole("button", { name: /^v2 · draft/ }).click();
    await cancel(page, { name: "Publish v2" }, "Publish v2?", /can never change again/);
    await page.getByRole("button", { name: "Turn off Shop assistant" }).click();
    const off = page.getByRole("dialog", { name: "Turn off Shop assistant?" });
    await off.getByText(/Its runs stop/).waitFor();
    expect(await off.getByRole("button", { name: "Turn off" }).isDisabled()).toBe(true);
    await answerDialog(page, "Turn off Shop assistant?");

    // Settings: terminating the workspace needs its slug typed.
    await page.goto(`${s.apiUrl}/o/${shop.org}/settings`);
    await page.getByRole("button", { name: "Terminate the workspace…" }).click();
    const terminate = page.getByRole("dialog", { name: "Terminate Cancelco?" });
    await terminate.getByText(/Nobody can open it from now on/).waitFor();
    expect(await terminate.getByRole("button", { name: "Terminate the workspace" }).isDisabled()).toBe(true);
    await answerDialog(page, "Terminate Cancelco?");

    expect(await state()).toEqual(before);
    await page.context().close();
  });

  it("terminating the workspace, its slug typed, ends everyone's access at once", { timeout: 120_000 }, async () => {
    const [{ slug }] = await sql`select slug from public.organizations where id = ${shop.org}`;
    const page = await signedInPage(browser(), admin.email, `/o/${shop.org}/settings`, admin.password);
    await page.getByRole("button", { name: "Terminate the workspace…" }).click();
    await answerDialog(page, "Terminate Cancelco?", { typed: slug, confirm: "Terminate the workspace" });
    await page.getByText("Cancelco is terminated: access has ended, and its content is being purged.").first().waitFor();
    await page.waitForURL((u) => u.pathname === "/orgs");
    const [t] = await sql`select reason, requested_by, step from private.workspace_terminations where org_id = ${shop.org}`;
    expect(t).toEqual({ reason: "customer", requested_by: await userId(admin.email), step: "external" });
    expect(await sql`select 1 from public.organization_members where org_id = ${shop.org}`).toHaveLength(0);
    // The workspace is gone from the console: its pages answer as for any organization one isn't in.
    await page.goto(`${s.apiUrl}/o/${shop.org}/settings`);
    await page.getByText(/not a member|no such organization|not found/i).first().waitFor();
    await page.context().close();
  });
});

async function userId(email: string): Promise<string> {
  const [u] = await sql`select id from auth.users where email = ${email}`;
  return u.id as string;
}
