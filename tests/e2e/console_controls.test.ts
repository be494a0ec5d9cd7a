/**
 * The console's control screens in Chromium: the approval queue (list, exact payload and hash,
 * dual-control progress, the refusals explained), the audit log (browse, export, verify the
 * export in the browser against a pinned checkpoint, and catch a tampered one), connections
 * (live verification refused and explained, disable with confirmation), models and limits,
 * widgets, and your account (password recovery through the mailed link). Each screen is checked
 * with axe-core and photographed into .local/screenshots/.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, signedInPage, signIn, suiteBrowser } from "../helpers/browser.ts";
import { createMember } from "../helpers/console.ts";
import { ACME, ACME_RUN } from "../helpers/fixtures.ts";
import { stack, superuser } from "../helpers/stack.ts";

const s = stack();
const db = superuser();
const browser = suiteBrowser();
afterAll(() => db.end());

/** The agent runtime proposes an action of Acme's seeded run (service role). */
async function propose(payload: Record<string, unknown>, risk = "medium"): Promise<{ id: string; payload_sha256: string; approval_sha256: string; canonical_payload: string }> {
  const res = await fetch(`${s.restUrl}/rpc/propose_action`, {
    method: "POST",
    headers: { apikey: s.serviceRoleKey, authorization: `Bearer ${s.serviceRoleKey}`, "content-type": "application/json" },
    body: JSON.stringify({ p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: payload, p_risk: risk }),
  });
  expect(res.status).toBe(200);
  return res.json();
}

describe("the approval queue", () => {
  it("lists a pending request, shows its exact canonical payload and hash, and takes the decision bound to it", async () => {
    const request = await propose({ text: `Refund ${randomUUID()}`, channel: "#returns", amount: 1.50 });
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/approvals`);
    await page.getByRole("table", { name: "Action requests" }).waitFor();
    await checkScreen(page, "approvals");
    await page.goto(`${s.apiUrl}/o/${ACME}/approvals/${request.id}`);
    await page.getByLabel("Payload SHA-256").getByText(request.payload_sha256).waitFor();
    expect(await page.getByText(request.canonical_payload, { exact: true }).count()).toBe(1);
    await page.getByText(/Hash matches: the SHA-256 of the canonical text/).waitFor();
    // Where it goes, as the database pinned it, and the approval hash checked in the browser.
    await page.getByLabel("Destination").getByText(/^127\.0\.0\.1:\d+$|^hooks\.slack\.com$/).waitFor();
    await page.getByLabel("Approval SHA-256").getByText(request.approval_sha256).waitFor();
    await page.getByText(/Hash matches: it covers the payload hash above and this target/).waitFor();
    await page.getByLabel("Comment (optional)").fill("Checked with the customer.");
    await page.getByRole("button", { name: "Approve" }).click();
    await page.getByRole("status").getByText(/Approved: the action may now run/).waitFor();
    const [decision] = await db`select approval_sha256, comment from public.approval_decisions where request_id = ${request.id}`;
    expect(decision).toEqual({ approval_sha256: request.approval_sha256, comment: "Checked with the customer." });
    await page.context().close();
  });

  it("explains a decision sent with a hash that is not the request's", async () => {
    const request = await propose({ text: `Close ticket ${randomUUID()}` });
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/approvals/${request.id}`);
    await page.getByLabel("Payload SHA-256").getByText(request.payload_sha256).waitFor();
    // The page's decision leaves with another hash than the request's, as a page showing an old
    // payload would send: the database refuses it.
    await page.route("**/console/api/rest/v1/rpc/decide_action", async (route) => {
      const body = JSON.parse(route.request().postData() ?? "{}");
      await route.continue({ postData: JSON.stringify({ ...body, p_approval_sha256: "0".repeat(64) }) });
    });
    // A rejection asks first; Cancel sends nothing.
    await page.getByRole("button", { name: "Reject" }).click();
    await answerDialog(page, "Reject this action?");
    expect((await db`select count(*)::int as n from public.approval_decisions where request_id = ${request.id}`)[0].n).toBe(0);
    await page.getByRole("button", { name: "Reject" }).click();
    await answerDialog(page, "Reject this action?", { confirm: "Reject" });
    await page.getByRole("alert").getByText(/not the one you were shown|changed|stale/i).waitFor();
    await page.getByRole("button", { name: "Reload the request" }).waitFor();
    expect((await db`select count(*)::int as n from public.approval_decisions where request_id = ${request.id}`)[0].n).toBe(0);
    await page.context().close();
  });

  it("shows a viewer the request without the means to decide it", async () => {
    const request = await propose({ text: `Viewer check ${randomUUID()}` });
    const page = await signedInPage(browser(), "victor@acme.test", `/o/${ACME}/approvals/${request.id}`);
    await page.getByText(/you can review this request but not decide it/).waitFor();
    expect(await page.getByRole("button", { name: "Approve" }).count()).toBe(0);
    await checkScreen(page, "approval-viewer");
    await page.context().close();
  });
});

describe("the audit log", () => {
  it("exports the chain, keeps the pinned checkpoint across a reload, verifies the export against it in the browser, and catches a tampered entry", async () => {
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/audit`);
    await page.getByRole("table", { name: "Audit events" }).waitFor();
    await page.getByRole("button", { name: "Export audit log" }).click();
    await page.getByRole("status").getByText(/Exported \d+ entries/).waitFor();
    await page.getByRole("button", { name: "Pin this checkpoint" }).click();
    const pinned = page.getByRole("status", { name: "Pinned key and checkpoint" });
    await pinned.getByText(/size \d+, head/).waitFor();
    // The pin is the person's own, kept in the database: a reload keeps it.
    await page.reload();
    await pinned.getByText(/size \d+, head/).waitFor();
    await page.getByRole("button", { name: "Export audit log" }).click();
    await page.getByRole("status").getByText(/Exported \d+ entries/).waitFor();
    await page.getByRole("button", { name: "Verify export" }).click();
    await page.getByText(/Verified: \d+ entries/).waitFor();
    await checkScreen(page, "audit");

    const box = page.getByLabel("Export to verify (JSON Lines)");
    const lines = (await box.inputValue()).split("\n");
    const index = lines.findIndex((l) => l.includes('"type":"entry"') && l.includes('"payload":"'));
    expect(index).toBeGreaterThan(0);
    const entry = JSON.parse(lines[index]);
    entry.payload = entry.payload.replace(/}$/, ',"tampered":true}');
    lines[index] = JSON.stringify(entry);
    await box.fill(lines.join("\n"));
    await page.getByRole("button", { name: "Verify export" }).click();
    await page.getByRole("alert").getByText(new RegExp(`Verification failed at entry ${entry.seq}`)).waitFor();
    await page.context().close();
  });
});

describe("connections", () => {
  it("explains a live verification that fails, and disables a connection after a confirmation", async () => {
    const name = `E2E hook ${randomUUID().slice(0, 8)}`;
    await db`select public.save_connection(${ACME}, 'https_webhook', ${name}, '{}', '{"url":"https://hooks.example.test/e2e"}')`;
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/connections`);
    await page.getByRole("table", { name: "Connections" }).getByText(name).waitFor();
    await checkScreen(page, "connections");

    // A customer endpoint that does not resolve: the live check refuses it, and the page says why.
    const form = page.getByRole("form", { name: "Connect a webhook or token" });
    await form.getByRole("combobox").selectOption("https_webhook");
    await form.getByLabel("Display name").fill(`Unreachable ${randomUUID().slice(0, 8)}`);
    await form.getByLabel("Webhook URL").fill("https://unreachable.example.invalid/hook");
    await form.getByRole("button", { name: "Verify and connect" }).click();
    // Where the action was taken (the toast says it too).
    const refusal = page.getByRole("region", { name: "Connect a webhook or token" }).getByRole("alert").filter({ hasText: /resolve|reach|address|egress/i });
    await refusal.waitFor();
    expect(await refusal.textContent()).not.toMatch(/\b5\d\d\b|internal/i);

    await page.getByRole("button", { name: `Disable ${name}` }).click();
    await answerDialog(page, `Disable ${name}?`, { confirm: `Yes, disable ${name}` });
    await page.getByRole("status").getByText(new RegExp(`Disabled ${name}`)).waitFor();
    const [row] = await db`select status from public.connections where org_id = ${ACME} and display_name = ${name}`;
    expect(row.status).toBe("disabled");
    await page.context().close();
  });
});

describe("security rules", () => {
  it("requires two-factor authentication of an organization, after which a member without a factor changes nothing", async () => {
    const [org] = await db`insert into public.organizations (name, slug) values (${"Security " + randomUUID().slice(0, 8)}, ${"sec-" + randomUUID().slice(0, 8)}) returning id`;
    await db`insert into public.organization_members (org_id, user_id, role) select ${org.id}, id, 'tenant_admin' from auth.users where email = 'ada@acme.test'`;
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${org.id}/settings`);
    const rules = page.getByRole("form", { name: "Security rules" });
    await rules.waitFor();
    await checkScreen(page, "settings-security");

    await rules.getByLabel(/Require two-factor authentication/).check();
    await rules.getByRole("button", { name: "Save security rules" }).click();
    await answerDialog(page, /^Require two-factor authentication/, { confirm: "Require it" });
    await page.getByRole("status").getByText("Security rules saved.").waitFor();
    expect((await db`select require_two_factor from public.organizations where id = ${org.id}`)[0].require_two_factor).toBe(true);

    // Ada has no second factor: the organization now refuses her privileged changes, this one included.
    await rules.getByLabel(/Require two-factor authentication/).uncheck();
    await rules.getByRole("button", { name: "Save security rules" }).click();
    await page.getByRole("alert").getByText(/two-factor authentication/).waitFor();
    expect((await db`select require_two_factor from public.organizations where id = ${org.id}`)[0].require_two_factor).toBe(true);
    await page.context().close();
    await db`delete from public.organizations where id = ${org.id}`.catch(() => {});
  });
});

describe("models, limits and widgets", () => {
  it("are accessible", async () => {
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/limits`);
    await page.getByRole("table", { name: "Model usage" }).waitFor();
    await checkScreen(page, "limits");
    await page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Widgets" }).click();
    await page.getByRole("form", { name: "Widget of Returns assistant" }).waitFor();
    await checkScreen(page, "widgets");
    await page.context().close();
  });
});

describe("your account", () => {
  it("recovers a forgotten password through the mailed link", async () => {
    const m = await createMember(db, ACME);
    const page = await (await browser().newContext()).newPage();
    await page.goto(`${s.apiUrl}/forgot`);
    await page.getByLabel("Email").fill(m.email);
    await page.getByRole("button", { name: "Send the recovery link" }).click();
    await page.getByRole("status").getByText(/recovery link is on its way/).waitFor();
    const [mail] = (await (await fetch(`${s.apiUrl}/_mail/api/messages?to=${encodeURIComponent(m.email)}`)).json()) as { html: string }[];
    const link = (/href="([^"]+)"/.exec(mail.html)?.[1] ?? "").replaceAll("&amp;", "&");
    await page.goto(link);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("heading", { name: "Your account" }).waitFor();
    await page.getByText(/signed in through your recovery link/).waitFor();
    await checkScreen(page, "account");
    const fresh = `new-${randomUUID()}`;
    await page.getByLabel("New password").fill(fresh);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByRole("status").getByText("Password changed.").waitFor();
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await signIn(page, m.email, fresh);
    await page.context().close();
  });
});
