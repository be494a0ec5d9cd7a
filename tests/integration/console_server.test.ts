/**
 * The console server (web/server/console.ts): sessions in HTTP-only cookies that no answer ever
 * spells out, CSRF refused by origin and by token, API calls proxied as the signed-in person, a
 * revoked session ending the console at the next request, bad input answered with JSON 4xx, and
 * the idle and absolute timeouts, each proven with a shortened configuration (a console server
 * built here, in front of the same stack).
 */
import { afterAll, describe, expect, it } from "vitest";
import { consoleApp } from "../../web/server/console.ts";
import { ConsoleBrowser, createMember } from "../helpers/console.ts";
import { ACME, GLOBEX } from "../helpers/fixtures.ts";
import { rest, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

const JWT = /eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+/;

/** The access token the console holds for the browser, read from its cookie as only a thief could. */
function tokenInJar(browser: ConsoleBrowser): string {
  const chunks = [...browser.cookies.values()].filter((c) => /^(__Host-)?gh-auth/.test(c.name)).sort((a, b) => a.name.localeCompare(b.name));
  const raw = chunks.map((c) => decodeURIComponent(c.value)).join("");
  const json = raw.startsWith("base64-") ? Buffer.from(raw.slice(7), "base64url").toString() : raw;
  return JSON.parse(json).access_token as string;
}

/** A console server with its own timeouts, in front of the running stack, driven in-process. */
function shortenedConsole(inactivityTimeout: number | null, timebox: number | null): ConsoleBrowser {
  const s = stack();
  const app = consoleApp({
    supabaseUrl: s.apiUrl, anonKey: s.anonKey, origin: "http://console.test", cookieSecret: "test-secret-test-secret-test-secret",
    secureCookies: true, inactivityTimeout, timebox,
  });
  return new ConsoleBrowser("http://console.test", async (req) => app.fetch(req), "http://console.test");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("the console server's sessions", () => {
  it("keeps the session in HTTP-only, SameSite=Lax cookies and never answers a token", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    const signedIn = await browser.signIn(m.email, m.password);
    expect(signedIn.status).toBe(200);
    expect(signedIn.body.user.email).toBe(m.email);
    expect(signedIn.text).not.toMatch(JWT);
    expect(signedIn.text).not.toMatch(/refresh_token|access_token/);
    const names = [...browser.cookies.keys()];
    expect(names.some((n) => n.startsWith("gh-auth"))).toBe(true);
    for (const cookie of browser.cookies.values()) {
      expect(cookie.attributes).toContain("HttpOnly");
      expect(cookie.attributes.map((a) => a.toLowerCase())).toContain("samesite=lax");
    }
    const me = await browser.json("/console/session");
    expect(me.status).toBe(200);
    expect(me.text).not.toMatch(JWT);
  });

  it("marks its cookies Secure and __Host- when it is served over HTTPS, and rotates the CSRF token at sign-in", async () => {
    const m = await createMember(sql, ACME);
    const browser = shortenedConsole(null, null);
    await browser.json("/console/session");
    const before = browser.csrf;
    expect((await browser.json("/console/session", "POST", { email: m.email, password: m.password })).status).toBe(200);
    expect(browser.csrf).not.toBe(before);
    expect(browser.cookies.get("__Host-gh-csrf")?.value).toBe(browser.csrf);
    for (const cookie of browser.cookies.values()) {
      expect(cookie.name).toMatch(/^__Host-gh-/);
      expect(cookie.attributes).toContain("Secure");
      expect(cookie.attributes).toContain("Path=/");
    }
  });

  it("ends the session it held at Supabase Auth when someone signs in over it", async () => {
    const first = await createMember(sql, ACME);
    const second = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.signIn(first.email, first.password);
    const token = tokenInJar(browser);
    await browser.json("/console/session", "POST", { email: second.email, password: second.password });
    expect((await browser.json("/console/session")).body.user.email).toBe(second.email);
    expect((await rest("organizations?select=id", { authorization: `Bearer ${token}` })).body.code).toBe("session_revoked");
  });

  it("proxies the API as the signed-in person, and only as them", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.signIn(m.email, m.password);
    const orgs = await browser.json("/console/api/rest/v1/organizations?select=id");
    expect(orgs.status).toBe(200);
    expect(orgs.body.map((o: { id: string }) => o.id)).toEqual([ACME]);
    // A caller-supplied Authorization is dropped, never forwarded in place of the session.
    const forged = await browser.request("/console/api/rest/v1/agents?select=id", { headers: { authorization: `Bearer ${stack().serviceRoleKey}`, "x-org-id": GLOBEX } });
    expect(forged.status).toBe(403);
    const signedOut = new ConsoleBrowser();
    expect((await signedOut.json("/console/api/rest/v1/organizations")).body.error.code).toBe("signed_out");
  });

  it("proxies only plainly spelled paths under /rest/v1 and /functions/v1, and follows no redirect", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.signIn(m.email, m.password);
    for (const path of [
      "/console/%61pi/rest/v1/organizations", "/console/ap%69/functions/v1/health", "/console/api/rest/v1/..%2f..%2fauth/v1/user",
      "/console/api/rest/v1/%2e%2e/%2e%2e/auth/v1/user", "/console/api/rest/v1//organizations", "/console/api/functions/v1/x%5c..%5cauth",
      "/console/api/auth/v1/user",
    ]) {
      const res = await browser.json(path);
      expect([res.status, res.body?.error?.code], path).toEqual([404, "not_found"]);
    }
    expect((await browser.json("/console/api/functions/v1/health")).status).toBe(200);
  });

  it("answers reads of its API to the console's own page only", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.signIn(m.email, m.password);
    const res = await browser.request("/console/api/rest/v1/organizations?select=id", { headers: { "sec-fetch-site": "cross-site" } });
    expect(res.status).toBe(403);
    expect((await res.json()).error.code).toBe("csrf_origin");
    const own = await browser.request("/console/api/rest/v1/organizations?select=id", { headers: { "sec-fetch-site": "same-origin" } });
    expect(own.status).toBe(200);
  });

  it("refuses a mutation from another origin, without an origin, or without the CSRF token", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.json("/console/session");
    const credentials = { email: m.email, password: m.password };
    expect((await browser.json("/console/session", "POST", credentials, { origin: "https://evil.example" })).body.error.code).toBe("csrf_origin");
    expect((await browser.json("/console/session", "POST", credentials, { origin: null })).body.error.code).toBe("csrf_origin");
    expect((await browser.json("/console/session", "POST", credentials, { csrf: null })).body.error.code).toBe("csrf_token");
    expect((await browser.json("/console/session", "POST", credentials, { csrf: "x".repeat(43) })).body.error.code).toBe("csrf_token");
    // As long in characters, not in bytes (UTF-8 "é", which Node reads as two latin1 characters): still a clean refusal.
    const wide = browser.csrf.slice(0, -2) + "\u00c3\u00a9";
    expect((await browser.json("/console/session", "POST", credentials, { csrf: wide })).body.error.code).toBe("csrf_token");
    expect((await browser.json("/console/session", "POST", credentials)).status).toBe(200);
    const rpc = await browser.json("/console/api/rest/v1/rpc/create_organization", "POST", { p_name: "CSRF", p_slug: "csrf-x" }, { origin: "https://evil.example" });
    expect(rpc).toMatchObject({ status: 403, body: { error: { code: "csrf_origin" } } });
  });

  it("ends the console at the next request once the session is revoked", async () => {
    const m = await createMember(sql, ACME);
    const browser = new ConsoleBrowser();
    await browser.signIn(m.email, m.password);
    expect((await browser.json("/console/api/rest/v1/organizations?select=id")).status).toBe(200);
    await sql`delete from auth.sessions where user_id = ${m.userId}`;
    const after = await browser.json("/console/api/rest/v1/organizations?select=id");
    expect(after.status).toBe(401);
    expect(after.body.code).toBe("session_revoked");
    expect([...browser.cookies.keys()].some((n) => n.startsWith("gh-auth"))).toBe(false);
  });

  it("answers bad input with JSON 4xx and a stable code", async () => {
    const browser = new ConsoleBrowser();
    await browser.json("/console/session");
    const raw = (body: string, type = "application/json") =>
      browser.request("/console/session", { method: "POST", headers: { "content-type": type }, body }).then(async (r) => [r.status, (await r.json()).error.code]);
    expect(await raw("{not json")).toEqual([400, "invalid_json"]);
    expect(await raw(JSON.stringify({ email: "a@b.co", password: 5 }))).toEqual([400, "invalid_body"]);
    expect(await raw(JSON.stringify({ email: "a@b.co", password: "x\u0000y" }))).toEqual([400, "invalid_text"]);
    expect(await raw('{"email": "a@b.co", "password": "\\ud800"}')).toEqual([400, "invalid_text"]);
    expect(await raw(`{"email": "a@b.co", "password": "x", "n": ${"[".repeat(70)}${"]".repeat(70)}}`)).toEqual([400, "json_too_deep"]);
    expect(await raw("email=a", "application/x-www-form-urlencoded")).toEqual([415, "unsupported_media_type"]);
    expect(await raw(JSON.stringify({ email: "a@b.co", password: "x".repeat(20_000) }))).toEqual([413, "body_too_large"]);
    expect(await raw(JSON.stringify({ email: "nobody@acme.test", password: "wrong" }))).toEqual([400, "invalid_credentials"]);
    expect((await browser.json("/console/nowhere")).body.error.code).toBe("not_found");
    expect((await browser.json("/console/auth/password", "PUT", { password: "short" })).body.error.code).toBe("invalid_body");
    expect((await browser.json("/console/auth/password", "PUT", { password: "long enough" })).body.error.code).toBe("signed_out");
    expect((await browser.json("/console/auth/confirm", "POST", { token_hash: "../../etc", type: "invite" })).body.error.code).toBe("invalid_body");
    expect((await browser.json("/console/auth/confirm", "POST", { token_hash: "a".repeat(40), type: "invite" })).body.error.code).toBe("link_invalid");
    expect((await browser.json("/console/mfa/verify", "POST", { factor_id: "x", code: "1" })).body.error.code).toBe("invalid_body");
    expect((await browser.json("/console/session?scope=everything", "DELETE")).status).toBe(400);
  });
});

describe("the console's timeouts, with a shortened configuration", () => {
  it("signs out a session idle longer than the inactivity timeout, at Supabase Auth too", async () => {
    const m = await createMember(sql, ACME);
    const browser = shortenedConsole(2, null);
    expect((await browser.signIn(m.email, m.password)).status).toBe(200);
    const token = tokenInJar(browser);
    await sleep(1000);
    expect((await browser.json("/console/api/rest/v1/organizations?select=id")).status).toBe(200);
    await sleep(1000);
    expect((await browser.json("/console/session")).status).toBe(200); // activity keeps it alive
    await sleep(3000);
    const idle = await browser.json("/console/api/rest/v1/organizations?select=id");
    expect(idle).toMatchObject({ status: 401, body: { error: { code: "session_expired" } } });
    // The session itself ended, so the token a thief might have copied stops at the database.
    expect((await rest("organizations?select=id", { authorization: `Bearer ${token}` })).body.code).toBe("session_revoked");
  });

  it("signs out a session past the absolute timeout, however active", async () => {
    const m = await createMember(sql, ACME);
    const browser = shortenedConsole(null, 3);
    await browser.signIn(m.email, m.password);
    for (let i = 0; i < 3; i++) {
      expect((await browser.json("/console/session")).status).toBe(200);
      await sleep(800);
    }
    await sleep(2000);
    expect((await browser.json("/console/session")).body.error.code).toBe("session_expired");
  });

  it("treats a missing or forged activity cookie as an ended session", async () => {
    const m = await createMember(sql, ACME);
    const browser = shortenedConsole(3600, 3600);
    await browser.signIn(m.email, m.password);
    const activity = browser.cookies.get("__Host-gh-activity")!;
    const [value] = activity.value.split(".");
    const forged = JSON.parse(Buffer.from(value, "base64url").toString());
    forged.started = Math.floor(Date.now() / 1000) + 10_000;
    const forgedValue = Buffer.from(JSON.stringify(forged)).toString("base64url");
    browser.cookies.set("__Host-gh-activity", { ...activity, value: `${forgedValue}.${activity.value.split(".")[1]}` });
    expect((await browser.json("/console/session")).body.error.code).toBe("session_expired");
  });
});

describe("framing", () => {
  it("forbids framing on every console answer: the console server's and the built pages the gateway serves", async () => {
    const s = stack();
    for (const url of [`${s.apiUrl}/console/session`, `${s.apiUrl}/console/nowhere`, `${s.apiUrl}/`, `${s.apiUrl}/approvals/deep-link`]) {
      const res = await fetch(url);
      await res.body?.cancel();
      expect(res.headers.get("content-security-policy"), url).toContain("frame-ancestors 'none'");
      expect(res.headers.get("x-frame-options"), url).toBe("DENY");
    }
    const hosted = consoleApp({
      supabaseUrl: s.apiUrl, anonKey: s.anonKey, origin: "http://console.test", cookieSecret: "test-secret-test-secret-test-secret",
      secureCookies: true, inactivityTimeout: null, timebox: null,
    });
    const res = await hosted.fetch(new Request("http://console.test/console/session"));
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
  });
});
