/**
 * The admin console in Chromium, screen by screen and flow by flow: sign-in with no token a page
 * script can read, deep links, an ended session sending you back with a reason, organizations,
 * projects, agents and versions, members with a mailed invitation, the approval queue with step-up,
 * and read-only screens for viewers. Every screen is checked with axe-core (no serious or critical
 * violation) and photographed into .local/screenshots/. The approvals, audit and connections
 * screens have their own flows in console_controls.test.ts.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, screenshot, signedInPage, signIn, suiteBrowser } from "../helpers/browser.ts";
import { createMember } from "../helpers/console.ts";
import { ACME, ACME_AGENT } from "../helpers/fixtures.ts";
import { totpCode } from "../helpers/mfa.ts";
import { stack, superuser } from "../helpers/stack.ts";

const s = stack();
const db = superuser();
const browser = suiteBrowser();
afterAll(() => db.end());

/** The messages the local mailbox holds for `to`, newest first. */
async function mailFor(to: string): Promise<{ subject: string; html: string }[]> {
  const res = await fetch(`${s.apiUrl}/_mail/api/messages?to=${encodeURIComponent(to)}`);
  return (await res.json()) as { subject: string; html: string }[];
}

/** The first link of a mail's HTML, entities decoded. */
function firstLink(html: string): string {
  const href = /href="([^"]+)"/.exec(html)?.[1] ?? "";
  return href.replaceAll("&amp;", "&");
}

describe("signing in", () => {
  it("keeps every token out of reach of the page's scripts", async () => {
    const m = await createMember(db, ACME);
    const page = await signedInPage(browser(), m.email, "/", m.password);
    const storage = await page.evaluate(() => ({
      local: JSON.stringify({ ...localStorage }),
      session: JSON.stringify({ ...sessionStorage }),
      cookie: document.cookie,
    }));
    expect(storage.cookie).toBe("");
    for (const text of Object.values(storage)) {
      expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]+\./);
      expect(text).not.toMatch(/refresh|access_token/i);
    }
    const cookies = await page.context().cookies();
    expect(cookies.length).toBeGreaterThan(0);
    for (const cookie of cookies) expect(cookie.httpOnly, cookie.name).toBe(true);
    await page.context().close();
  });

  it("explains a wrong password and is accessible", async () => {
    const page = await browser().newPage();
    await page.goto(s.apiUrl);
    await checkScreen(page, "sign-in");
    await page.getByLabel("Email").fill("ada@acme.test");
    await page.getByLabel("Password").fill("not-the-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").getByText("Wrong email or password.").waitFor();
    await page.getByRole("link", { name: "Forgot your password?" }).click();
    await page.getByRole("heading", { name: "Reset your password" }).waitFor();
    await checkScreen(page, "forgot-password");
    await page.close();
  });

  it("keeps your place on reload, through a deep link", async () => {
    const page = await signedInPage(browser(), "ada@acme.test", `/o/${ACME}/members`);
    await page.getByRole("heading", { name: "Members of Acme Robotics" }).waitFor();
    await page.reload();
    await page.getByRole("heading", { name: "Members of Acme Robotics" }).waitFor();
    expect(new URL(page.url()).pathname).toBe(`/o/${ACME}/members`);
    await page.context().close();
  });

  it("sends you back to sign-in with a reason once your session is revoked", { timeout: 90_000 }, async () => {
    const m = await createMember(db, ACME);
    const page = await signedInPage(browser(), m.email, `/o/${ACME}/projects`, m.password);
    const step = async (name: string, work: Promise<unknown>) => {
      await work.catch(async (e: Error) => {
        await screenshot(page, `debug-revoked-${name}`);
        throw new Error(`${name}: ${e.message.split("\n")[0]} (at ${page.url()}: ${(await page.locator("body").textContent())?.slice(0, 300)})`);
      });
    };
    await step("projects", page.getByRole("heading", { name: "Projects in Acme Robotics" }).waitFor({ timeout: 20_000 }));
    // Every request of the page done first: otherwise one still in flight meets the revocation
    // before the click does (and the page is back at sign-in already, which is right, but not this test).
    await step("settled", page.waitForLoadState("networkidle", { timeout: 20_000 }));
    await step("revoke", db.begin(async (tx) => {
      await tx`set local statement_timeout = '20s'`;
      await tx`delete from auth.sessions where user_id = ${m.userId}`;
    }).catch(async (e: Error) => {
      // What held the sessions, if anything did.
      const busy = await db`select state, wait_event_type, left(query, 120) as query from pg_stat_activity where state <> 'idle' and pid <> pg_backend_pid()`;
      throw new Error(`${e.message}; busy: ${JSON.stringify(busy)}`);
    }));
    await step("click", page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Agents" }).click({ timeout: 10_000 }));
    await step("sign-in", page.getByRole("button", { name: "Sign in" }).waitFor({ timeout: 20_000 }));
    const text = await page.locator("main").textContent();
    expect(text).toMatch(/Your session was ended/);
    expect(text).not.toMatch(/JWT/);
    await page.context().close();
  });
});

describe("organizations, projects and agents", () => {
  it("creates an organization, a project, an agent, and publishes a version that is read-only after", { timeout: 60_000 }, async () => {
    const m = await createMember(db, ACME);
    await db`delete from public.organization_members where user_id = ${m.userId}`;
    const page = await signedInPage(browser(), m.email, "/", m.password);
    await page.getByText("You belong to no organization yet").waitFor();
    await checkScreen(page, "organizations");
    const slug = `e2e-${randomUUID().slice(0, 8)}`;
    await page.getByLabel("Name").fill("E2E Labs");
    await page.getByLabel("Slug").fill(slug);
    await page.getByRole("button", { name: "Create organization" }).click();
    await page.getByRole("heading", { name: "Projects in E2E Labs" }).waitFor();
    await page.getByText("No projects yet.").waitFor();

    await page.getByLabel("Project name").fill("Support");
    await page.getByLabel("Project slug").fill("support");
    await page.getByRole("button", { name: "Create project" }).click();
    await page.getByRole("cell", { name: "Support", exact: true }).waitFor();
    await checkScreen(page, "projects");

    await page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Agents" }).click();
    await page.getByText("No agents yet.").waitFor();
    await page.getByLabel("Agent name").fill("Helper");
    await page.getByRole("button", { name: "Create agent" }).click();
    await page.getByRole("link", { name: "Helper" }).click();
    await page.getByRole("heading", { name: "Helper" }).waitFor();
    await page.getByRole("button", { name: "New draft version" }).click();
    const draft = page.getByRole("form", { name: "Configuration of draft v1" });
    // The model comes from the catalog, never typed.
    await draft.getByLabel("Model").locator("option", { hasText: "claude-haiku-4-5 (anthropic, $1.00 / $5.00 per million tokens in / out)" }).waitFor({ state: "attached" });
    await draft.getByLabel("Model").selectOption("gpt-4o-mini");
    await draft.getByLabel("Instructions").fill("Be brief.");
    await page.getByRole("button", { name: "Save draft" }).click();
    await page.getByRole("status").getByText("Draft v1 saved.").waitFor();
    await page.getByRole("button", { name: "Publish v1" }).click();
    await answerDialog(page, "Publish v1?", { confirm: "Publish v1" });
    await page.getByRole("status").getByText("v1 published; it can no longer change.").waitFor();
    // The version stays open, now read-only.
    await page.getByRole("button", { name: /v1 · published/, expanded: true }).waitFor();
    const published = page.getByLabel("Configuration of v1 (read-only)");
    expect(JSON.parse((await published.textContent()) ?? "")).toEqual({ model: "gpt-4o-mini", instructions: "Be brief." });
    expect(await page.getByRole("button", { name: "Save draft" }).count()).toBe(0);
    await checkScreen(page, "agent-versions");
    await page.context().close();
  });
});

describe("members", () => {
  it("invites by email, the invitee accepts through the mailed link, and ending their sessions stops their console", async () => {
    const admin = await createMember(db, ACME, "project_viewer", "admin");
    await db`delete from public.organization_members where user_id = ${admin.userId}`;
    const page = await signedInPage(browser(), admin.email, "/orgs", admin.password);
    await page.getByLabel("Name").fill("Invite Co");
    await page.getByLabel("Slug").fill(`invite-${randomUUID().slice(0, 8)}`);
    await page.getByRole("button", { name: "Create organization" }).click();
    await page.getByRole("heading", { name: "Projects in Invite Co" }).waitFor();
    await page.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Members" }).click();

    const invitee = `invitee-${randomUUID()}@example.test`;
    await page.getByLabel("Email to invite").fill(invitee);
    await page.getByLabel("Invited role").selectOption("project_contributor");
    await page.getByRole("button", { name: "Send invitation" }).click();
    await page.getByRole("status").getByText("Invitation sent by email.").waitFor();
    await page.getByRole("cell", { name: invitee, exact: true }).waitFor();
    // Resending mails a new link, and the earlier one's invitation token stops working.
    await page.getByRole("button", { name: `Resend the invitation to ${invitee}` }).click();
    await page.getByRole("status").getByText(`The invitation to ${invitee} was sent again`, { exact: false }).waitFor();
    const mails = await mailFor(invitee);
    expect(mails).toHaveLength(2);
    expect(firstLink(mails[0].html)).not.toBe(firstLink(mails[1].html));
    const domain = `e2e-${randomUUID().slice(0, 8)}.example`;
    await page.getByLabel("Domain to claim").fill(domain);
    await page.getByRole("button", { name: "Claim domain" }).click();
    await page.getByRole("row").filter({ hasText: domain }).getByText("waiting for verification").waitFor();
    await checkScreen(page, "members");
    // Releasing confirms in a dialog; Cancel keeps the domain.
    await page.getByRole("button", { name: `Release ${domain}` }).click();
    await answerDialog(page, `Release ${domain}?`);
    await page.getByRole("cell", { name: domain, exact: true }).waitFor();
    await page.getByRole("button", { name: `Release ${domain}` }).click();
    await answerDialog(page, `Release ${domain}?`, { confirm: "Release the domain" });
    await page.getByRole("cell", { name: domain, exact: true }).waitFor({ state: "detached" });

    const [mail] = await mailFor(invitee);
    expect(mail.subject).toMatch(/invit/i);
    // The email and the accept page say who invites them to what, as which role.
    expect(mail.html).toContain(`${admin.email} invited ${invitee} to join Invite Co as contributor`);
    const guest = await (await browser().newContext()).newPage();
    await guest.goto(firstLink(mail.html));
    await guest.getByRole("heading", { name: "Continue to accept your invitation" }).waitFor();
    await guest.getByRole("button", { name: "Continue" }).click();
    await guest.getByRole("heading", { name: "Accept your invitation" }).waitFor();
    await guest.getByText(`${admin.email} invited you to join Invite Co as Contributor`, { exact: false }).waitFor();
    await guest.getByRole("button", { name: "Accept the invitation" }).click();
    await guest.getByRole("heading", { name: "Approvals in Invite Co" }).waitFor();

    await page.reload();
    const row = page.getByRole("row").filter({ hasText: invitee });
    await row.getByRole("combobox", { name: `Role of ${invitee}` }).selectOption("project_viewer");
    await answerDialog(page, `Change the role of ${invitee}?`, { confirm: "Make them Viewer" });
    await page.getByRole("status").getByText("Role changed to Viewer.").waitFor();
    await row.getByRole("button", { name: `End sessions of ${invitee}` }).click();
    await answerDialog(page, `End every session of ${invitee}?`, { confirm: "End their sessions" });
    await page.getByRole("status").getByText(/session.* of .* ended/).waitFor();

    await guest.getByRole("navigation", { name: "Screens" }).getByRole("link", { name: "Agents" }).click();
    await guest.getByRole("button", { name: "Sign in" }).waitFor();
    expect(await guest.locator("main").textContent()).toMatch(/Your session was ended/);

    await row.getByRole("button", { name: `Remove ${invitee}` }).click();
    await answerDialog(page, `Remove ${invitee}?`, { confirm: "Remove them" });
    await page.getByRole("status").getByText(/was removed/).waitFor();
    await page.getByRole("cell", { name: invitee, exact: true }).waitFor({ state: "detached" });
    await guest.context().close();
    await page.context().close();
  });
});

describe("approvals with step-up", () => {
  it("refuses a high-risk approval at aal1, and takes it once the approver verifies a TOTP code", async () => {
    const approver = await createMember(db, ACME, "tenant_admin", "approver");
    const proposed = await fetch(`${s.restUrl}/rpc/propose_action`, {
      method: "POST",
      headers: { apikey: s.serviceRoleKey, authorization: `Bearer ${s.serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify({ p_run_id: "4a000000-0000-4000-8000-00000000000a", p_tool: "slack.post_message", p_payload: { text: `Refund ${randomUUID()}`, amount: 9000 }, p_risk: "high" }),
    });
    const request = (await proposed.json()) as { id: string; payload_sha256: string };
    expect(request.payload_sha256).toMatch(/^[0-9a-f]{64}$/);

    const page = await signedInPage(browser(), approver.email, `/o/${ACME}/approvals/${request.id}`, approver.password);
    await page.getByLabel("Payload SHA-256").getByText(request.payload_sha256).waitFor();
    await checkScreen(page, "approval");
    await page.getByRole("button", { name: "Approve" }).click();
    await page.getByRole("alert").getByText(/second factor/i).waitFor();
    const [{ count }] = await db`select count(*)::int from public.approval_decisions where request_id = ${request.id}`;
    expect(count).toBe(0);

    await page.getByRole("link", { name: /account|second factor|verify/i }).first().click();
    await page.getByRole("heading", { name: "Your account" }).waitFor();
    await page.getByRole("button", { name: "Add an authenticator" }).click();
    const secret = (await page.getByLabel("Authenticator secret").textContent())!.trim();
    await checkScreen(page, "account-mfa");
    await page.getByLabel("Six-digit code").fill(totpCode(secret));
    await page.getByRole("button", { name: "Activate" }).click();
    await page.waitForURL(new RegExp(`/approvals/${request.id}$`));
    await page.getByRole("button", { name: "Approve" }).click();
    await page.getByText(/Approvals: 1 of 2/).waitFor();
    const decided = await db`select approve from public.approval_decisions where request_id = ${request.id}`;
    expect(decided).toEqual([{ approve: true }]);
    await page.context().close();
    // Acme keeps its seeded tenant admins only (pgTAP counts on ada being the last one).
    await db`delete from public.organization_members where user_id = ${approver.userId}`;
  });
});

describe("viewers", () => {
  it("see read-only screens", async () => {
    const page = await signedInPage(browser(), "victor@acme.test", `/o/${ACME}/projects`);
    await page.getByText("these screens are read-only for you").waitFor();
    await page.getByRole("cell", { name: "Support bot" }).waitFor();
    expect(await page.getByRole("button", { name: "Create project" }).count()).toBe(0);
    await page.goto(`${s.apiUrl}/o/${ACME}/agents`);
    await page.getByRole("link", { name: "Returns assistant" }).waitFor();
    expect(await page.getByRole("button", { name: "Create agent" }).count()).toBe(0);
    await page.goto(`${s.apiUrl}/o/${ACME}/agents/${ACME_AGENT}`);
    await page.getByRole("heading", { name: "Returns assistant" }).waitFor();
    expect(await page.getByRole("button", { name: "New draft version" }).count()).toBe(0);
    await page.goto(`${s.apiUrl}/o/${ACME}/members`);
    await page.getByRole("heading", { name: "Members of Acme Robotics" }).waitFor();
    expect(await page.getByRole("heading", { name: "Invitations" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: /^End sessions/ }).count()).toBe(0);
    await checkScreen(page, "members-viewer");
    await page.context().close();
  });
});
