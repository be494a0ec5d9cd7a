/**
 * The invitations function: a tenant admin's invitation is created by the database and mailed by
 * Supabase Auth (the local stand-in's mailbox here) in one step, with the token only in the mail;
 * anyone else, and bad input, is refused with a code and leaves no invitation behind.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleBrowser, createMember } from "../helpers/console.ts";
import { ACME } from "../helpers/fixtures.ts";
import { accessToken, anonClient, signedIn, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

/** POST /functions/v1/invitations as `token` in Acme. */
async function invite(token: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack().functionsUrl}/invitations`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "x-org-id": ACME, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), retryAfter: res.headers.get("retry-after") };
}

async function mailFor(email: string): Promise<{ subject: string; html: string }[]> {
  return (await fetch(`${stack().apiUrl}/_mail/api/messages?to=${encodeURIComponent(email)}`)).json();
}

async function pending(email: string): Promise<number> {
  const [row] = await sql`select count(*)::int as n from public.invitations where org_id = ${ACME} and email = ${email} and accepted_at is null`;
  return row.n;
}

describe("inviting someone", () => {
  it("creates the invitation and has Supabase Auth mail the link, which alone carries the token", async () => {
    const admin = await accessToken(await signedIn("ada@acme.test"));
    const email = `new-${randomUUID()}@acme.test`;
    const sent = await invite(admin, { email, role: "project_viewer" });
    expect(sent.status).toBe(201);
    const body = JSON.parse(sent.text);
    expect(body).toMatchObject({ invitation: { email, role: "project_viewer" }, mailed: "invitation" });
    expect(await pending(email)).toBe(1);
    const [mail] = await mailFor(email);
    const next = decodeURIComponent(/next=([^"&]+)/.exec(mail.html)![1]);
    const token = new URL(next).searchParams.get("token")!;
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(sent.text).not.toContain(token);
    const [stored] = await sql`select token_hash = sha256(convert_to(${token}, 'UTF8')) as matches from public.invitations where org_id = ${ACME} and email = ${email}`;
    expect(stored.matches).toBe(true);
  });

  it("sends someone who already has an account a sign-in link instead", async () => {
    const admin = await accessToken(await signedIn("ada@acme.test"));
    const existing = await createMember(sql, ACME);
    await sql`delete from public.organization_members where user_id = ${existing.userId}`;
    const sent = await invite(admin, { email: existing.email, role: "project_contributor" });
    expect(sent.status).toBe(201);
    expect(JSON.parse(sent.text).mailed).toBe("sign_in_link");
    expect((await mailFor(existing.email)).length).toBe(1);
  });

  it("refuses anyone but a tenant admin, and keeps nothing", async () => {
    const viewer = await accessToken(await signedIn("victor@acme.test"));
    const email = `nope-${randomUUID()}@acme.test`;
    const sent = await invite(viewer, { email, role: "tenant_admin" });
    expect(sent.status).toBe(403);
    expect(JSON.parse(sent.text).error.code).toBe("forbidden");
    expect(await pending(email)).toBe(0);
    expect(await mailFor(email)).toEqual([]);
    const service = await invite(stack().serviceRoleKey, { email, role: "project_viewer" });
    expect(JSON.parse(service.text).error.code).toBe("sign_in_required");
  });

  it("refuses an inviter past their limit with 429 and Retry-After, and neither keeps nor mails anything", async () => {
    const member = await createMember(sql, ACME, "tenant_admin", "admin");
    const client = anonClient();
    const { error } = await client.auth.signInWithPassword({ email: member.email, password: member.password });
    expect(error).toBeNull();
    const admin = await accessToken(client);
    expect((await invite(admin, { email: `first-${randomUUID()}@acme.test`, role: "project_viewer" })).status).toBe(201);
    // Their burst used up, as 25 invitations in a row leave it (pgTAP 016 sends the 25).
    await sql`update private.invitation_rates set tat = now() + interval '1 day' where scope = 'inviter' and scope_id = ${member.userId}`;
    const email = `limited-${randomUUID()}@acme.test`;
    const sent = await invite(admin, { email, role: "project_viewer" });
    expect(sent.status).toBe(429);
    const body = JSON.parse(sent.text);
    expect(body.error).toMatchObject({ code: "invitations_rate_limited", type: "rate_limit_error", retry_after: expect.any(Number) });
    expect(body.error.message).toMatch(/^your invitations are used up for now: try again in \d+ seconds$/);
    expect(sent.retryAfter).toBe(String(body.error.retry_after));
    expect(body.error.retry_after).toBeGreaterThan(3600);
    expect(await pending(email)).toBe(0);
    expect(await mailFor(email)).toEqual([]);
    // Acme keeps one tenant admin (pgTAP 012 demotes the last one later, on this database).
    await sql`delete from public.organization_members where user_id = ${member.userId}`;
  });

  it("answers bad input with a code", async () => {
    const admin = await accessToken(await signedIn("ada@acme.test"));
    const cases: [unknown, Record<string, string>, string][] = [
      ["{not json", {}, "invalid_json"],
      [{ email: "not-an-email", role: "project_viewer" }, {}, "invalid_body"],
      [{ email: "a@acme.test", role: "owner" }, {}, "invalid_body"],
      [{ email: "a@acme.test", role: "project_viewer", extra: 1 }, {}, "invalid_body"],
      [{ email: "a\u0000@acme.test", role: "project_viewer" }, {}, "invalid_text"],
      [{ email: "a@acme.test", role: "project_viewer" }, { "x-org-id": "nope" }, "context_invalid_org_id"],
    ];
    for (const [body, headers, code] of cases) {
      const sent = await invite(admin, body, headers);
      expect(sent.status, code).toBeGreaterThanOrEqual(400);
      expect(sent.status, code).toBeLessThan(500);
      expect(JSON.parse(sent.text).error.code, JSON.stringify(body)).toBe(code);
    }
  });
});

describe("a new link for an open invitation", () => {
  /** POST /functions/v1/invitations/links with the anon key, as the console server calls it. */
  async function newLink(body: unknown) {
    const res = await fetch(`${stack().functionsUrl}/invitations/links`, {
      method: "POST",
      headers: { apikey: stack().anonKey, authorization: `Bearer ${stack().anonKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json(), retryAfter: res.headers.get("retry-after") };
  }

  it("mails the invited address a new link while the invitation is open, at most once a minute, and through the console server signed out", async () => {
    const admin = await accessToken(await signedIn("ada@acme.test"));
    const email = `relink-${randomUUID()}@acme.test`;
    expect((await invite(admin, { email, role: "project_viewer" })).status).toBe(201);
    const [first] = await mailFor(email);
    const token = new URL(decodeURIComponent(/next=([^"&]+)/.exec(first.html)![1])).searchParams.get("token")!;

    const sent = await newLink({ token });
    expect(sent.status).toBe(202);
    expect(sent.body).toMatchObject({ mailed: expect.any(String), expires_at: expect.any(String) });
    const mails = await mailFor(email);
    expect(mails.length).toBe(2);
    // The new link ends at the same invitation, and names who invites to what.
    expect(decodeURIComponent(/next=([^"&]+)/.exec(mails[mails.length - 1].html)![1])).toContain(`token=${token}`);

    const again = await newLink({ token });
    expect(again.status).toBe(429);
    expect(again.body.error.code).toBe("invitation_link_recent");
    expect(again.retryAfter).toBe("60");
    expect((await mailFor(email)).length).toBe(2);

    // A minute on, the console's confirm page asks for it without a session (CSRF and all).
    await sql`update public.invitations set link_sent_at = now() - interval '2 minutes' where email = ${email}`;
    const browser = new ConsoleBrowser();
    await browser.json("/console/session");
    const viaConsole = await browser.json("/console/auth/invitation-link", "POST", { token });
    expect(viaConsole.status).toBe(202);
    expect((await mailFor(email)).length).toBe(3);
    expect(viaConsole.text).not.toContain(email);

    await sql`update public.invitations set expires_at = now() - interval '1 second', link_sent_at = null where email = ${email}`;
    const expired = await newLink({ token });
    expect(expired.status).toBe(410);
    expect(expired.body.error.code).toBe("invitation_expired");
    expect((await mailFor(email)).length).toBe(3);
  });

  it("refuses a token no open invitation has, and one that isn't a token", async () => {
    expect((await newLink({ token: "0".repeat(64) })).body.error.code).toBe("invitation_not_found");
    const bad = await newLink({ token: "not a token" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid_body");
  });
});
