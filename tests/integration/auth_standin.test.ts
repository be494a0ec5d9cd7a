/**
 * The local auth stand-in (scripts/stack/auth.ts) as the console uses it, through supabase-js
 * unchanged: admin users, invitations and password recovery through the LOCAL ONLY mailbox,
 * signup and magic links, MFA (enroll, challenge, verify, aal2, unenroll), and the session
 * time-box and inactivity timeout. Cases that need another configuration (shortened timeouts,
 * signup enabled) build a second handler over the same database, as the stack's auth role, and
 * serve it on an ephemeral port.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import ws from "ws";
import { createAuthHandler } from "../../scripts/stack/auth.ts";
import { type AuthConfig, localAuthConfig, readProjectConfig } from "../../scripts/stack/config.ts";
import { createMailbox, type Mailbox, type MailMessage } from "../../scripts/stack/mail.ts";
import { enrollTotp, stepUp, totpCode } from "../helpers/mfa.ts";
import { anonClient, stack, superuser } from "../helpers/stack.ts";

const s = stack();
const sql = superuser();
const handlers: Handler[] = [];
afterAll(async () => {
  for (const h of handlers) await h.close();
  await sql.end();
});

function client(url: string, key: string): SupabaseClient {
  return createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws as unknown as typeof WebSocket },
  });
}

const admin = client(s.apiUrl, s.serviceRoleKey).auth.admin;
const address = (tag: string) => `${tag}-${randomUUID().slice(0, 12)}@standin.test`;
const password = () => `pw-${randomUUID()}`;

function claims(token: string) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

/** The stack's mailbox for `to`, newest first. */
async function mailTo(to: string): Promise<MailMessage[]> {
  const res = await fetch(`${s.apiUrl}/_mail/api/messages?to=${encodeURIComponent(to)}`);
  expect(res.status).toBe(200);
  return (await res.json()) as MailMessage[];
}

/** The token hash in a message's console link. */
function tokenHash(message: MailMessage): string {
  return /token_hash=([0-9a-f]+)/.exec(message.html)![1];
}

/** A confirmed user with a password, made through auth.admin.createUser. */
async function confirmedUser() {
  const email = address("user");
  const pw = password();
  const { data, error } = await admin.createUser({ email, password: pw, email_confirm: true });
  if (error) throw error;
  return { id: data.user!.id, email, password: pw };
}

async function signIn(email: string, pw: string, api = anonClient() as unknown as SupabaseClient) {
  const { data, error } = await api.auth.signInWithPassword({ email, password: pw });
  if (error) throw error;
  return { api, session: data.session! };
}

interface Handler {
  url: string;
  mailbox: Mailbox;
  client(): SupabaseClient;
  close(): Promise<void>;
}

/**
 * A second auth stand-in with config.toml's [auth] changed by `change`, on the stack's database
 * as supabase_auth_admin (StackInfo.authDbUrl), served at http://127.0.0.1:<port>/auth/v1.
 */
async function secondHandler(change: (base: AuthConfig) => AuthConfig): Promise<Handler> {
  const config = change(readProjectConfig(process.cwd()).auth);
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-auth-standin-"));
  const db = postgres(s.authDbUrl, { max: 2, onnotice: () => {} });
  const mailbox = createMailbox(join(dir, "mail"));
  let handle: ReturnType<typeof createAuthHandler> | undefined;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const m = /^\/auth\/v1(\/.*)?$/.exec(url.pathname);
    if (!m || !handle) return void res.writeHead(404).end();
    void handle(req, res, m[1] ?? "/", url.searchParams);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  handle = createAuthHandler({ sql: db, jwtSecret: s.jwtSecret, issuer: `${url}/auth/v1`, config, mailbox, logFile: join(dir, "auth.log") });
  const h: Handler = {
    url,
    mailbox,
    client: () => client(url, s.anonKey),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await db.end({ timeout: 2 });
    },
  };
  handlers.push(h);
  return h;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("admin users (auth.admin)", () => {
  it("creates a confirmed user who then signs in with their password, as aal1 by password", async () => {
    const email = address("created");
    const pw = password();
    const created = await admin.createUser({ email, password: pw, email_confirm: true, user_metadata: { name: "Created" }, app_metadata: { tier: "test" } });
    expect(created.error).toBeNull();
    expect(created.data.user).toMatchObject({ email, user_metadata: { name: "Created" }, app_metadata: { provider: "email", providers: ["email"], tier: "test" } });
    expect(created.data.user!.email_confirmed_at).toBeTruthy();

    const { session } = await signIn(email, pw);
    const c = claims(session.access_token);
    expect(c).toMatchObject({ sub: created.data.user!.id, aal: "aal1", session_id: expect.any(String) });
    expect(c.amr).toEqual([{ method: "password", timestamp: expect.any(Number) }]);
    expect((await admin.getUserById(created.data.user!.id)).data.user?.email).toBe(email);
  });

  it("bans and unbans with ban_duration, and deletes", async () => {
    const u = await confirmedUser();
    expect((await admin.updateUserById(u.id, { ban_duration: "24h" })).data.user?.banned_until).toBeTruthy();
    const banned = await anonClient().auth.signInWithPassword({ email: u.email, password: u.password });
    expect(banned.error?.code).toBe("user_banned");
    expect((await admin.updateUserById(u.id, { ban_duration: "none" })).error).toBeNull();
    await signIn(u.email, u.password);

    expect((await admin.deleteUser(u.id)).error).toBeNull();
    expect((await admin.getUserById(u.id)).error?.code).toBe("user_not_found");
    expect((await anonClient().auth.signInWithPassword({ email: u.email, password: u.password })).error?.code).toBe("invalid_credentials");
  });

  it("soft-deletes: the row stays, marked deleted, and its sessions end", async () => {
    const u = await confirmedUser();
    const { session } = await signIn(u.email, u.password);
    expect((await admin.deleteUser(u.id, true)).error).toBeNull();
    const [row] = await sql`select deleted_at, email from auth.users where id = ${u.id}`;
    expect(row.deleted_at).toBeTruthy();
    expect(row.email).not.toBe(u.email);
    expect(await sql`select 1 from auth.sessions where id = ${claims(session.access_token).session_id}`).toHaveLength(0);
  });

  it("refuses a second user with the same address (email_exists) and bad input with 4xx codes", async () => {
    const u = await confirmedUser();
    expect((await admin.createUser({ email: u.email.toUpperCase(), password: password() })).error).toMatchObject({ status: 422, code: "email_exists" });
    expect((await admin.createUser({ email: address("short"), password: "short" })).error).toMatchObject({ status: 422, code: "weak_password" });
    expect((await admin.updateUserById(u.id, { ban_duration: "forever" })).error).toMatchObject({ status: 400, code: "validation_failed" });
    expect((await admin.getUserById(randomUUID())).error).toMatchObject({ status: 404, code: "user_not_found" });
  });

  it("refuses the admin API to a user's token and to the anon key (not_admin)", async () => {
    const u = await confirmedUser();
    const { session } = await signIn(u.email, u.password);
    for (const bearer of [session.access_token, s.anonKey]) {
      const res = await fetch(`${s.apiUrl}/auth/v1/admin/users`, { method: "POST", headers: { apikey: s.anonKey, authorization: `Bearer ${bearer}`, "content-type": "application/json" }, body: JSON.stringify({ email: address("nope") }) });
      expect(res.status).toBe(403);
      expect((await res.json()).error_code).toBe("not_admin");
    }
  });
});

describe("invitations", () => {
  it("mail an invite link whose token hash signs the invitee in once and confirms the address", async () => {
    const email = address("invitee");
    const next = `${s.apiUrl}/console/invitations/accept?token=abc&x=1`;
    const invited = await admin.inviteUserByEmail(email, { redirectTo: next, data: { invited_by: "tests" } });
    expect(invited.error).toBeNull();
    expect(invited.data.user).toMatchObject({ email, email_confirmed_at: null, user_metadata: { invited_by: "tests" } });
    expect(invited.data.user!.invited_at).toBeTruthy();

    const [mail] = await mailTo(email);
    expect(mail.subject).toBe("You have been invited to Gatehouse");
    // The token-hash link to the console server, with next= percent-encoded (and &-separated as &amp;).
    expect(mail.html).toContain(`href="${localAuthConfig(readProjectConfig(process.cwd()), stack().apiUrl).site_url}/console/auth/confirm?token_hash=${tokenHash(mail)}&amp;type=invite&amp;next=${encodeURIComponent(next)}"`);
    expect(mail.text).toContain(`&next=${encodeURIComponent(next)}`);
    const [stored] = await sql`select token_hash from auth.one_time_tokens where user_id = ${invited.data.user!.id}`;
    expect(stored.token_hash).not.toBe(tokenHash(mail));

    const api = anonClient();
    const verified = await api.auth.verifyOtp({ type: "invite", token_hash: tokenHash(mail) });
    expect(verified.error).toBeNull();
    expect(verified.data.user?.email_confirmed_at).toBeTruthy();
    expect(claims(verified.data.session!.access_token).amr[0].method).toBe("otp");

    // Used once.
    const again = await anonClient().auth.verifyOtp({ type: "invite", token_hash: tokenHash(mail) });
    expect(again.error).toMatchObject({ status: 403, code: "otp_expired" });

    // The invitee chooses a password and signs in with it.
    const pw = password();
    expect((await api.auth.updateUser({ password: pw })).error).toBeNull();
    await signIn(email, pw);
    // A confirmed user is not invited again.
    expect((await admin.inviteUserByEmail(email)).error).toMatchObject({ status: 422, code: "email_exists" });
  });

  it("send a redirect_to that neither site_url nor additional_redirect_urls allows to site_url, as GoTrue does", async () => {
    // The stack's own site_url: config.toml's, on the port this stack really got.
    const site = localAuthConfig(readProjectConfig(process.cwd()), stack().apiUrl).site_url;
    for (const redirectTo of ["https://evil.example/console", "/invitations/accept?token=abc"]) {
      const email = address("redirect");
      expect((await admin.inviteUserByEmail(email, { redirectTo })).error).toBeNull();
      const [mail] = await mailTo(email);
      expect(mail.html).toContain(`&amp;next=${encodeURIComponent(site)}"`);
    }
  });
});

describe("password recovery", () => {
  it("mails a recovery link; after it the new password works and the old one no longer does", async () => {
    const u = await confirmedUser();
    const reset = await anonClient().auth.resetPasswordForEmail(u.email, { redirectTo: `${s.apiUrl}/console/account` });
    expect(reset.error).toBeNull();
    const [mail] = await mailTo(u.email);
    expect(mail.html).toContain("type=recovery");

    const api = anonClient();
    const verified = await api.auth.verifyOtp({ type: "recovery", token_hash: tokenHash(mail) });
    expect(verified.error).toBeNull();
    const pw = password();
    const updated = await api.auth.updateUser({ password: pw });
    expect(updated.error).toBeNull();
    expect(new Date(updated.data.user!.updated_at!).getTime()).toBeGreaterThan(Date.now() - 10_000);

    await signIn(u.email, pw);
    expect((await anonClient().auth.signInWithPassword({ email: u.email, password: u.password })).error?.code).toBe("invalid_credentials");
    expect((await api.auth.updateUser({ password: pw })).error?.code).toBe("same_password");
  });

  it("answers an unknown address exactly as a known one, and mails nobody", async () => {
    const u = await confirmedUser();
    const unknown = address("nobody");
    const recover = (email: string) => fetch(`${s.apiUrl}/auth/v1/recover`, { method: "POST", headers: { apikey: s.anonKey, "content-type": "application/json" }, body: JSON.stringify({ email }) })
      .then(async (r) => ({ status: r.status, body: await r.text() }));
    const known = await recover(u.email);
    expect(known).toEqual({ status: 200, body: "{}" });
    expect(await recover(unknown)).toEqual(known);
    expect(await mailTo(unknown)).toEqual([]);
    expect(await mailTo(u.email)).toHaveLength(1);
  });

  it("refuses a link older than otp_expiry", async () => {
    const u = await confirmedUser();
    await anonClient().auth.resetPasswordForEmail(u.email);
    const [mail] = await mailTo(u.email);
    await sql`update auth.one_time_tokens set created_at = now() - interval '2 hours' where user_id = ${u.id}`;
    expect((await anonClient().auth.verifyOtp({ type: "recovery", token_hash: tokenHash(mail) })).error).toMatchObject({ status: 403, code: "otp_expired" });
  });
});

describe("signup and magic links", () => {
  it("refuses signup while enable_signup is false (signup_disabled)", async () => {
    const email = address("signup");
    const { data, error } = await anonClient().auth.signUp({ email, password: password() });
    expect(error).toMatchObject({ status: 422, code: "signup_disabled" });
    expect(data.user).toBeNull();
    expect(await sql`select 1 from auth.users where email = ${email}`).toHaveLength(0);
  });

  it("mails a magic link to an existing user, and creates nobody when create_user is false", async () => {
    const stranger = address("stranger");
    const refused = await anonClient().auth.signInWithOtp({ email: stranger, options: { shouldCreateUser: false } });
    expect(refused.error).toMatchObject({ status: 422, code: "otp_disabled" });
    expect(await sql`select 1 from auth.users where email = ${stranger}`).toHaveLength(0);
    expect(await mailTo(stranger)).toEqual([]);

    const u = await confirmedUser();
    expect((await anonClient().auth.signInWithOtp({ email: u.email, options: { shouldCreateUser: false } })).error).toBeNull();
    const [mail] = await mailTo(u.email);
    expect(mail.html).toContain("type=magiclink");
    const signedIn = await anonClient().auth.verifyOtp({ type: "magiclink", token_hash: tokenHash(mail) });
    expect(signedIn.error).toBeNull();
    expect(signedIn.data.user?.id).toBe(u.id);
  });

  it("signs up when a handler is built with signup enabled: a confirmation mail first, or a session at once", async () => {
    const confirming = await secondHandler((c) => ({ ...c, enable_signup: true, email: { ...c.email, enable_confirmations: true } }));
    const email = address("signup");
    const pending = await confirming.client().auth.signUp({ email, password: password(), options: { data: { name: "New" } } });
    expect(pending.error).toBeNull();
    expect(pending.data.session).toBeNull();
    expect(pending.data.user).toMatchObject({ email, email_confirmed_at: null, user_metadata: { name: "New" } });
    const [mail] = confirming.mailbox.list(email);
    expect(mail.html).toContain("type=signup");
    const confirmed = await confirming.client().auth.verifyOtp({ type: "signup", token_hash: tokenHash(mail) });
    expect(confirmed.error).toBeNull();
    expect(confirmed.data.user?.email_confirmed_at).toBeTruthy();

    const immediate = await secondHandler((c) => ({ ...c, enable_signup: true, email: { ...c.email, enable_confirmations: false } }));
    const direct = await immediate.client().auth.signUp({ email: address("signup"), password: password() });
    expect(direct.error).toBeNull();
    expect(claims(direct.data.session!.access_token).aal).toBe("aal1");
    const settings = await (await fetch(`${immediate.url}/auth/v1/settings`)).json();
    expect(settings).toMatchObject({ disable_signup: false, mailer_autoconfirm: true });
  });
});

describe("MFA (auth.mfa)", () => {
  it("enrolls, challenges and verifies a TOTP factor: aal2 in the token, the session and getAuthenticatorAssuranceLevel", async () => {
    const u = await confirmedUser();
    const { api, session } = await signIn(u.email, u.password);
    const signedInAt = claims(session.access_token).amr[0].timestamp;

    const enrolled = await api.auth.mfa.enroll({ factorType: "totp", friendlyName: "phone app" });
    expect(enrolled.error).toBeNull();
    expect(enrolled.data).toMatchObject({ type: "totp", friendly_name: "phone app", totp: { secret: expect.any(String), uri: expect.stringMatching(/^otpauth:\/\/totp\//) } });
    expect(enrolled.data!.totp.qr_code).toMatch(/^data:image\/svg\+xml;utf-8,<svg /);
    // A real QR code (path data), usable as the data URL supabase-js makes of it (no "#" to cut it).
    expect(enrolled.data!.totp.qr_code).toMatch(/<path [^>]*d="M/);
    expect(enrolled.data!.totp.qr_code).not.toContain("#");
    const factorId = enrolled.data!.id;
    const secret = enrolled.data!.totp.secret;
    expect((await api.auth.mfa.getAuthenticatorAssuranceLevel()).data).toMatchObject({ currentLevel: "aal1", nextLevel: "aal1" });

    const challenge = await api.auth.mfa.challenge({ factorId });
    expect(challenge.error).toBeNull();
    expect(challenge.data!.expires_at).toBeGreaterThan(Date.now() / 1000 + 290);
    const wrong = String((Number(totpCode(secret)) + 500_000) % 1_000_000).padStart(6, "0");
    expect((await api.auth.mfa.verify({ factorId, challengeId: challenge.data!.id, code: wrong })).error).toMatchObject({ status: 422, code: "mfa_verification_failed" });

    const verified = await api.auth.mfa.verify({ factorId, challengeId: challenge.data!.id, code: totpCode(secret) });
    expect(verified.error).toBeNull();
    const stepped = claims(verified.data!.access_token);
    expect(stepped).toMatchObject({ aal: "aal2", session_id: claims(session.access_token).session_id });
    expect(stepped.amr.map((a: { method: string }) => a.method)).toEqual(["totp", "password"]);
    expect(stepped.amr[1].timestamp).toBe(signedInAt);
    const [row] = await sql`select aal, factor_id from auth.sessions where id = ${stepped.session_id}`;
    expect(row).toEqual({ aal: "aal2", factor_id: factorId });
    expect((await api.auth.mfa.getAuthenticatorAssuranceLevel()).data).toMatchObject({ currentLevel: "aal2", nextLevel: "aal2" });

    // A refresh keeps aal2 and the times each method was performed.
    const refreshed = await api.auth.refreshSession();
    expect(refreshed.error).toBeNull();
    expect(claims(refreshed.data.session!.access_token)).toMatchObject({ aal: "aal2", amr: stepped.amr });
    expect((await api.auth.mfa.getAuthenticatorAssuranceLevel()).data).toMatchObject({ currentLevel: "aal2", nextLevel: "aal2" });

    // A challenge verifies once.
    expect((await api.auth.mfa.verify({ factorId, challengeId: challenge.data!.id, code: totpCode(secret) })).error).toMatchObject({ status: 422, code: "mfa_ip_address_mismatch" });
    const factors = await api.auth.mfa.listFactors();
    expect(factors.data?.totp.map((f) => f.id)).toEqual([factorId]);
  });

  it("needs aal2 to unenroll a verified factor, and unenrolling drops the session back to aal1", async () => {
    const u = await confirmedUser();
    const first = await signIn(u.email, u.password);
    const { factorId, secret } = await enrollTotp(first.api);
    // A new sign-in starts at aal1; the factor makes aal2 the next level.
    const { api } = await signIn(u.email, u.password);
    expect((await api.auth.mfa.getAuthenticatorAssuranceLevel()).data).toMatchObject({ currentLevel: "aal1", nextLevel: "aal2" });
    expect((await api.auth.mfa.unenroll({ factorId })).error).toMatchObject({ status: 422, code: "insufficient_aal" });
    expect((await api.auth.updateUser({ password: password() })).error).toMatchObject({ status: 401, code: "insufficient_aal" });

    await stepUp(api, factorId, secret);
    const sessionId = claims((await api.auth.getSession()).data.session!.access_token).session_id;
    expect((await api.auth.mfa.unenroll({ factorId })).error).toBeNull();
    const [row] = await sql`select aal, factor_id from auth.sessions where id = ${sessionId}`;
    expect(row).toEqual({ aal: "aal1", factor_id: null });
    expect((await api.auth.getUser()).data.user?.factors ?? []).toEqual([]);
  });

  it("refuses an expired challenge, an unknown factor and a factor beyond max_enrolled_factors", async () => {
    const u = await confirmedUser();
    const { api } = await signIn(u.email, u.password);
    const enrolled = await api.auth.mfa.enroll({ factorType: "totp", friendlyName: "first" });
    const factorId = enrolled.data!.id;
    const challenge = await api.auth.mfa.challenge({ factorId });
    await sql`update auth.mfa_challenges set created_at = now() - interval '6 minutes' where id = ${challenge.data!.id}`;
    const late = await api.auth.mfa.verify({ factorId, challengeId: challenge.data!.id, code: totpCode(enrolled.data!.totp.secret) });
    expect(late.error).toMatchObject({ status: 422, code: "mfa_challenge_expired" });
    expect((await api.auth.mfa.challenge({ factorId: randomUUID() })).error).toMatchObject({ status: 404, code: "mfa_factor_not_found" });
    expect((await api.auth.mfa.enroll({ factorType: "totp", friendlyName: "first" })).error).toMatchObject({ status: 422, code: "mfa_factor_name_conflict" });

    const limited = await secondHandler((c) => ({ ...c, mfa: { ...c.mfa, max_enrolled_factors: 1 } }));
    const { api: other } = await signIn(u.email, u.password, limited.client());
    expect((await other.auth.mfa.enroll({ factorType: "totp", friendlyName: "second" })).error).toMatchObject({ status: 422, code: "too_many_enrolled_mfa_factors" });
  });
});

describe("session time-box and inactivity timeout (a second handler: timebox 3s, inactivity_timeout 2s)", () => {
  let h: Handler;
  beforeAll(async () => {
    h = await secondHandler((c) => ({ ...c, sessions: { timebox: "3s", inactivity_timeout: "2s" } }));
  });

  it("refuses a refresh after 2 s idle with session_expired, and the session row is gone", async () => {
    const u = await confirmedUser();
    const { api, session } = await signIn(u.email, u.password, h.client());
    const sessionId = claims(session.access_token).session_id;
    await sleep(2300);
    const refreshed = await api.auth.refreshSession();
    expect(refreshed.error).toMatchObject({ status: 400, code: "session_expired", message: "Invalid Refresh Token: Session Expired (Inactivity)" });
    expect(await sql`select 1 from auth.sessions where id = ${sessionId}`).toHaveLength(0);
  });

  it("refuses a session past its time-box although it was refreshed in between, and sets not_after", async () => {
    const u = await confirmedUser();
    const { api, session } = await signIn(u.email, u.password, h.client());
    const sessionId = claims(session.access_token).session_id;
    const [row] = await sql`select extract(epoch from not_after - created_at)::float8 as seconds from auth.sessions where id = ${sessionId}`;
    expect(row.seconds).toBeCloseTo(3, 3);
    // The access token does not outlive the session either.
    expect(claims(session.access_token).exp).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 3);

    for (let i = 0; i < 2; i++) {
      await sleep(1200);
      expect((await api.auth.refreshSession()).error).toBeNull();
    }
    await sleep(1000);
    const late = await api.auth.refreshSession();
    expect(late.error).toMatchObject({ status: 400, code: "session_expired", message: "Invalid Refresh Token: Session Expired" });
    expect(await sql`select 1 from auth.sessions where id = ${sessionId}`).toHaveLength(0);
  });

  it("refuses an idle session on an endpoint that takes the access token too", async () => {
    // Without a time-box here, so that the access token itself is still unexpired.
    const idle = await secondHandler((c) => ({ ...c, sessions: { inactivity_timeout: "2s" } }));
    const u = await confirmedUser();
    const { session } = await signIn(u.email, u.password, idle.client());
    await sleep(2300);
    const res = await fetch(`${idle.url}/auth/v1/user`, { headers: { apikey: s.anonKey, authorization: `Bearer ${session.access_token}` } });
    expect(res.status).toBe(403);
    expect((await res.json()).error_code).toBe("session_expired");
    expect(await sql`select 1 from auth.sessions where id = ${claims(session.access_token).session_id}`).toHaveLength(0);
  });
});

describe("the LOCAL ONLY mailbox", () => {
  it("lists messages newest first on a page that says it is local only, shows one, and is read-only", async () => {
    const email = address("mailbox");
    await admin.inviteUserByEmail(email);
    await admin.inviteUserByEmail(email);
    const messages = await mailTo(email);
    expect(messages).toHaveLength(2);
    expect(messages[0].created_at >= messages[1].created_at).toBe(true);
    expect(tokenHash(messages[0])).not.toBe(tokenHash(messages[1]));
    // Only the newest invite link works: GoTrue keeps one live token per user and type.
    expect((await anonClient().auth.verifyOtp({ type: "invite", token_hash: tokenHash(messages[1]) })).error?.code).toBe("otp_expired");

    const page = await fetch(`${s.apiUrl}/_mail`);
    expect(page.headers.get("content-type")).toContain("text/html");
    const html = await page.text();
    expect(html).toContain("LOCAL ONLY mailbox");
    expect(html.indexOf(messages[0].id)).toBeLessThan(html.indexOf(messages[1].id));
    expect(await (await fetch(`${s.apiUrl}/_mail/${messages[0].id}`)).text()).toContain(email);
    const post = await fetch(`${s.apiUrl}/_mail/api/messages`, { method: "POST" });
    expect(post.status).toBe(405);
    expect((await post.json()).error.code).toBe("method_not_allowed");
  });
});
