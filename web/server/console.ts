/**
 * The console server: the admin console's only way to Supabase. It holds each person's Supabase
 * session in HTTP-only cookies (@supabase/ssr), refreshes it, enforces the idle and absolute
 * timeouts, and proxies the console's API calls with the access token attached, so that no page
 * script ever sees an access or refresh token. It holds no privilege of its own: the anon key and
 * the person's own session, nothing more; every rule stays in the database.
 *
 * Routes (under /console):
 *   GET    /session               who is signed in (user, aal, factors, deadlines) and the CSRF token
 *   POST   /session               sign in with email and password
 *   DELETE /session?scope=        sign out: this session (local), every other one (others), all (global)
 *   GET    /auth/confirm          an emailed link lands here and is sent on to the console's confirm page
 *   POST   /auth/confirm          spends the link's token_hash (verifyOtp) and signs in
 *   POST   /auth/recover          mails a password-recovery link
 *   POST   /auth/invitation-link  mails a new link for an open invitation (by the token from its email)
 *   PUT    /auth/password         sets a new password (signed in, e.g. through a recovery link)
 *   GET    /mfa/factors           your factors
 *   POST   /mfa/enroll            starts a TOTP enrolment (secret and QR code, shown once)
 *   POST   /mfa/verify            challenges and verifies a factor: the session becomes aal2
 *   DELETE /mfa/factors/:id       removes a factor
 *   *      /api/rest/v1/*         PostgREST, as the signed-in person
 *   *      /api/functions/v1/*    the edge functions, as the signed-in person
 *
 * CSRF: every request that is not GET or HEAD must come from the console's own origin (Origin,
 * or Sec-Fetch-Site: same-origin when a browser sends no Origin) and carry the session's CSRF
 * token in X-CSRF-Token (double submit against an HTTP-only cookie). An HTML form can do neither,
 * so no other site can post here, not even the sign-in (login CSRF).
 *
 * Timeouts: a signed activity cookie records when the session started and was last used. Past
 * the idle timeout or the absolute one, the session is signed out at Supabase Auth (so its tokens
 * stop at the database at once) and the request is answered 401 session_expired.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { getRequestListener } from "@hono/node-server";
import { createServerClient } from "@supabase/ssr";
import type { Session, SupabaseClient } from "@supabase/supabase-js";
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { getCookie, setCookie, deleteCookie } from "hono/cookie";
import { HTTPException } from "hono/http-exception";
import { API_CSP } from "./security_headers.ts";
import { decodeJwt } from "jose";
import { unsafeJsonText } from "../../functions/_shared/json/text.ts";
import ws from "ws";
import { z } from "zod";

/** How the console server reaches Supabase and keeps its cookies. */
export interface ConsoleOptions {
  /** Where the server reaches Supabase (the project URL). */
  supabaseUrl: string;
  /** The project's anon key (public by design). */
  anonKey: string;
  /** The console's public origin (scheme, host, port): the only origin allowed to mutate. */
  origin: string;
  /** The key of the activity cookie's HMAC: 32 or more random bytes, kept on the server. */
  cookieSecret: string;
  /** Secure cookies (always, except over plain HTTP on a developer's machine). */
  secureCookies: boolean;
  /** [auth.sessions] inactivity_timeout, in seconds (null: none). */
  inactivityTimeout: number | null;
  /** [auth.sessions] timebox, in seconds (null: none). */
  timebox: number | null;
}

const MAX_JSON_BYTES = 16 * 1024;
const MAX_PROXY_BYTES = 1024 * 1024;

/** Request headers the proxy passes on; everything else (cookies first) stays here. */
const FORWARDED_REQUEST_HEADERS = [
  "accept", "accept-profile", "content-profile", "content-type", "prefer", "range",
  "x-org-id", "x-project-id", "x-agent-id", "x-client-info",
];
/** Response headers that never come back through the proxy. */
const DROPPED_RESPONSE_HEADERS = new Set([
  "set-cookie", "connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length",
]);

const SignIn = z.object({ email: z.email().max(255), password: z.string().min(1).max(1024) });
const Confirm = z.object({
  token_hash: z.string().min(8).max(256).regex(/^[A-Za-z0-9_-]+$/),
  type: z.enum(["invite", "recovery", "magiclink", "signup", "email"]),
});
const Recover = z.object({ email: z.email().max(255) });
const InvitationLink = z.object({ token: z.string().regex(/^[0-9a-f]{64}$/) });
const Password = z.object({ password: z.string().min(8, "use at least 8 characters").max(72) });
const Enroll = z.object({ friendly_name: z.string().trim().min(1).max(64) });
const Verify = z.object({ factor_id: z.uuid(), code: z.string().regex(/^\d{6}$/, "the code is six digits") });
const SignOutScope = z.enum(["local", "others", "global"]).default("local");

interface Activity {
  sid: string;
  started: number;
  seen: number;
}

type Status = 400 | 401 | 403 | 404 | 410 | 413 | 415 | 422 | 429 | 502 | 503;

/** An expected refusal: answered as `{error: {code, message}}` with the cookies the request set. */
class ConsoleError extends Error {
  constructor(readonly status: Status, readonly code: string, message: string) {
    super(message);
  }
}

/**
 * The headers that keep the console out of other sites' frames (clickjacking): on every answer of
 * the console server and on its pages, wherever they are served (web/server/main.ts, and the local
 * gateway's web/dist). The console server answers data, never a page, so its CSP lets an answer
 * load nothing (API_CSP); the pages replace it with the console's own (CONSOLE_CSP), which
 * forbids framing as well.
 */
export const CONSOLE_FRAMING_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": API_CSP,
  "x-frame-options": "DENY",
};

/** Hono middleware: CONSOLE_FRAMING_HEADERS on every answer, refusals and proxied answers included. */
export const framingHeaders: MiddlewareHandler = async (c, next) => {
  await next();
  const framed = new Response(c.res.body, c.res);
  for (const [name, value] of Object.entries(CONSOLE_FRAMING_HEADERS)) framed.headers.set(name, value);
  c.res = framed;
};

function refuse(status: Status, code: string, message: string): never {
  throw new ConsoleError(status, code, message);
}

/** The Hono app of the console server, mounted at /console. */
export function consoleApp(opts: ConsoleOptions): Hono {
  const app = new Hono().basePath("/console");
  const origin = new URL(opts.origin).origin;
  const upstream = new URL(opts.supabaseUrl);
  // Over HTTPS the names carry __Host-: host-only, Secure, path /, so no sibling subdomain can plant them.
  const prefix = opts.secureCookies ? "__Host-" : "";
  const AUTH_COOKIE = `${prefix}gh-auth`;
  const CSRF_COOKIE = `${prefix}gh-csrf`;
  const ACTIVITY_COOKIE = `${prefix}gh-activity`;
  const cookieBase = { httpOnly: true, secure: opts.secureCookies, sameSite: "Lax" as const, path: "/" };

  /** A per-request @supabase/ssr client whose session lives in this request's cookies. */
  function supabaseFor(c: Context): SupabaseClient {
    return createServerClient(opts.supabaseUrl, opts.anonKey, {
      cookieOptions: { name: AUTH_COOKIE, httpOnly: true, secure: opts.secureCookies, sameSite: "lax", path: "/" },
      cookies: {
        getAll: () => Object.entries(getCookie(c)).map(([name, value]) => ({ name, value })),
        setAll: (cookies) => {
          for (const { name, value, options } of cookies) {
            setCookie(c, name, value, { ...options, ...cookieBase, sameSite: "Lax" });
          }
        },
      },
      auth: { flowType: "pkce", detectSessionInUrl: false },
      // Node 20 has no global WebSocket, which supabase-js's realtime client wants at construction.
      realtime: { transport: ws as unknown as typeof WebSocket },
      global: { headers: { "x-client-info": "gatehouse-console-server" } },
    });
  }

  function sign(value: string): string {
    return createHmac("sha256", opts.cookieSecret).update(value).digest("base64url");
  }

  function writeActivity(c: Context, activity: Activity): void {
    const value = Buffer.from(JSON.stringify(activity)).toString("base64url");
    setCookie(c, ACTIVITY_COOKIE, `${value}.${sign(value)}`, cookieBase);
  }

  function readActivity(c: Context): Activity | null {
    const [value, mac] = (getCookie(c, ACTIVITY_COOKIE) ?? "").split(".");
    if (!value || !mac) return null;
    const expected = Buffer.from(sign(value));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return null;
    try {
      const parsed = JSON.parse(Buffer.from(value, "base64url").toString("utf8")) as Activity;
      return typeof parsed.sid === "string" && Number.isFinite(parsed.started) && Number.isFinite(parsed.seen) ? parsed : null;
    } catch {
      return null;
    }
  }

  function sessionIdOf(session: Session): string | null {
    try {
      const sid = decodeJwt(session.access_token).session_id;
      return typeof sid === "string" ? sid : null;
    } catch {
      return null;
    }
  }

  /** Starts the activity clock of a session just signed in. */
  function started(c: Context, session: Session | null): Activity {
    const sid = session && sessionIdOf(session);
    if (!sid) refuse(502, "auth_unavailable", "Supabase Auth answered without a session.");
    const now = Math.floor(Date.now() / 1000);
    const activity = { sid, started: now, seen: now };
    writeActivity(c, activity);
    return activity;
  }

  function clearSession(c: Context): void {
    for (const name of Object.keys(getCookie(c))) {
      if (name === ACTIVITY_COOKIE || name === AUTH_COOKIE || name.startsWith(`${AUTH_COOKIE}.`) || name.startsWith(`${AUTH_COOKIE}-`)) {
        deleteCookie(c, name, cookieBase);
      }
    }
  }

  /**
   * The signed-in session of this request, refreshed if its access token ran out and still
   * within its timeouts; otherwise the session is ended and the request refused with 401.
   */
  async function requireSession(c: Context): Promise<{ sb: SupabaseClient; session: Session; activity: Activity }> {
    const sb = supabaseFor(c);
    const { data } = await sb.auth.getSession();
    const session = data.session;
    if (!session) {
      clearSession(c);
      refuse(401, "signed_out", "You are signed out; sign in to continue.");
    }
    const activity = readActivity(c);
    const now = Math.floor(Date.now() / 1000);
    const expired =
      !activity || activity.sid !== sessionIdOf(session)
        ? "Your session could not be confirmed; sign in again."
        : opts.timebox !== null && now - activity.started > opts.timebox
          ? "Your session reached its maximum length; sign in again."
          : opts.inactivityTimeout !== null && now - activity.seen > opts.inactivityTimeout
            ? "You were signed out after a period of inactivity; sign in again."
            : null;
    if (expired) {
      // Ending it at Supabase Auth is what stops its access token at the database right away.
      await sb.auth.signOut({ scope: "local" });
      clearSession(c);
      refuse(401, "session_expired", expired);
    }
    const seen = { ...activity!, seen: now };
    writeActivity(c, seen);
    return { sb, session, activity: seen };
  }

  async function jsonBody<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
    if (!/^application\/json\b/i.test(c.req.header("content-type") ?? "")) {
      refuse(415, "unsupported_media_type", "Send Content-Type: application/json.");
    }
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await c.req.arrayBuffer()));
    } catch {
      refuse(400, "invalid_json", "The body is not UTF-8 JSON.");
    }
    // The same text rules as the functions' JSON boundary: no NUL, no unpaired surrogate, bounded depth.
    const unsafe = unsafeJsonText(raw);
    if (unsafe) refuse(400, unsafe.reason, `${unsafe.path}: NUL characters, unpaired surrogates and deep nesting are refused`);
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      refuse(400, "invalid_body", parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "));
    }
    return parsed.data;
  }

  /** What the console may know about the signed-in person: never a token. */
  async function whoAmI(c: Context, sb: SupabaseClient, session: Session, activity: Activity) {
    const { data, error } = await sb.auth.getUser();
    if (error || !data.user) {
      await sb.auth.signOut({ scope: "local" });
      clearSession(c);
      refuse(401, "session_expired", "Your session has ended; sign in again.");
    }
    const claims = decodeJwt(session.access_token);
    const factors = (data.user.factors ?? []).map((f) => ({ id: f.id, friendly_name: f.friendly_name ?? "", factor_type: f.factor_type, status: f.status, created_at: f.created_at }));
    return {
      user: { id: data.user.id, email: data.user.email ?? "" },
      // Public: where the API (and so a widget embed's requests) goes.
      api_url: opts.supabaseUrl,
      aal: claims.aal === "aal2" ? "aal2" : "aal1",
      factors,
      session: {
        started_at: new Date(activity.started * 1000).toISOString(),
        idle_timeout_seconds: opts.inactivityTimeout,
        absolute_deadline: opts.timebox !== null ? new Date((activity.started + opts.timebox) * 1000).toISOString() : null,
      },
    };
  }

  /** The CSRF token of this browser (a new one when it has none, or when `fresh`, as at sign-in). */
  function csrfToken(c: Context, fresh = false): string {
    let token = getCookie(c, CSRF_COOKIE);
    if (fresh || !token || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
      token = randomBytes(32).toString("base64url");
      setCookie(c, CSRF_COOKIE, token, cookieBase);
    }
    return token;
  }

  /** Ends the session this browser already holds, if any, at Supabase Auth, before another replaces it. */
  async function endPrevious(sb: SupabaseClient): Promise<void> {
    const { data } = await sb.auth.getSession();
    if (data.session) await sb.auth.signOut({ scope: "local" });
  }

  // -- Middleware -------------------------------------------------------------------------------
  app.use("*", framingHeaders);
  app.use("*", async (c, next) => {
    c.header("cache-control", "no-store");
    if (c.req.method === "GET" || c.req.method === "HEAD") {
      // The API answers the console's own page only, reads included (a cross-site navigation says so).
      const site = c.req.header("sec-fetch-site");
      if (c.req.path.startsWith("/console/api/") && site && site !== "same-origin" && site !== "none") {
        refuse(403, "csrf_origin", "The console's API answers the console's own page only.");
      }
      return next();
    }
    const from = c.req.header("origin");
    const sameOrigin = from ? from === origin : c.req.header("sec-fetch-site") === "same-origin";
    if (!sameOrigin) refuse(403, "csrf_origin", "Requests that change anything must come from the console's own page.");
    const cookie = Buffer.from(getCookie(c, CSRF_COOKIE) ?? "");
    const header = Buffer.from(c.req.header("x-csrf-token") ?? "");
    if (cookie.length === 0 || cookie.length !== header.length || !timingSafeEqual(cookie, header)) {
      refuse(403, "csrf_token", "The request lacks this session's CSRF token; reload the console.");
    }
    return next();
  });
  const jsonLimit = bodyLimit({ maxSize: MAX_JSON_BYTES, onError: () => refuse(413, "body_too_large", "The body is too large.") });

  // -- Sessions ---------------------------------------------------------------------------------
  app.get("/session", async (c) => {
    // Signed out or not, the page gets its CSRF token here, which the sign-in needs.
    const csrf = csrfToken(c);
    try {
      const { sb, session, activity } = await requireSession(c);
      return c.json({ ...(await whoAmI(c, sb, session, activity)), csrf });
    } catch (e) {
      if (e instanceof ConsoleError) return c.json({ error: { code: e.code, message: e.message }, csrf }, e.status);
      throw e;
    }
  });

  app.post("/session", jsonLimit, async (c) => {
    const input = await jsonBody(c, SignIn);
    const sb = supabaseFor(c);
    await endPrevious(sb);
    const { data, error } = await sb.auth.signInWithPassword(input);
    if (error) refuse(error.status === 429 ? 429 : 400, "invalid_credentials", "Wrong email or password.");
    const activity = started(c, data.session);
    return c.json({ ...(await whoAmI(c, sb, data.session!, activity)), csrf: csrfToken(c, true) });
  });

  app.delete("/session", async (c) => {
    const scope = SignOutScope.safeParse(c.req.query("scope") ?? undefined);
    if (!scope.success) refuse(400, "invalid_query", "scope is local, others or global.");
    const sb = supabaseFor(c);
    const { data } = await sb.auth.getSession();
    if (data.session) await sb.auth.signOut({ scope: scope.data });
    if (scope.data !== "others") clearSession(c);
    return c.json({ signed_out: scope.data });
  });

  // -- Emailed links, recovery and passwords ------------------------------------------------------
  app.get("/auth/confirm", (c) => {
    // A GET never spends the link: mail scanners open links. The console's page asks for a click
    // and posts the token back (with the CSRF token), so the link signs in only its reader.
    const params = new URLSearchParams();
    for (const key of ["token_hash", "type", "next"]) {
      const value = c.req.query(key);
      if (value) params.set(key, value);
    }
    return c.redirect(`/auth/confirm?${params}`, 303);
  });

  app.post("/auth/confirm", jsonLimit, async (c) => {
    const input = await jsonBody(c, Confirm);
    const sb = supabaseFor(c);
    await endPrevious(sb);
    const { data, error } = await sb.auth.verifyOtp({ token_hash: input.token_hash, type: input.type });
    if (error || !data.session) refuse(400, "link_invalid", "This link is invalid, used or expired; ask for a new one.");
    const activity = started(c, data.session);
    return c.json({ ...(await whoAmI(c, sb, data.session, activity)), csrf: csrfToken(c, true) });
  });

  app.post("/auth/recover", jsonLimit, async (c) => {
    const { email } = await jsonBody(c, Recover);
    const { error } = await supabaseFor(c).auth.resetPasswordForEmail(email, { redirectTo: `${origin}/account` });
    if (error?.status === 429) refuse(429, "rate_limited", "Too many recovery emails; wait a minute.");
    // The same answer whether or not the address has an account.
    return c.json({ sent: true });
  });

  // A new link for an open invitation, by the token from its email (the invitations function's
  // POST /links, with the anon key: the person has no session yet). Its answer is passed on.
  app.post("/auth/invitation-link", jsonLimit, async (c) => {
    const { token } = await jsonBody(c, InvitationLink);
    let answer: Response;
    try {
      answer = await fetch(new URL(`${upstream.pathname.replace(/\/+$/, "")}/functions/v1/invitations/links`, upstream), {
        method: "POST",
        headers: { apikey: opts.anonKey, authorization: `Bearer ${opts.anonKey}`, "content-type": "application/json" },
        body: JSON.stringify({ token }),
        redirect: "manual",
      });
    } catch {
      refuse(502, "upstream_unavailable", "Supabase is not answering.");
    }
    const body = await answer.json().catch(() => null) as { error?: { code?: string; message?: string } } | null;
    if (!answer.ok) refuse(answer.status as Status, body?.error?.code ?? "upstream_error", body?.error?.message ?? "The invitation link could not be sent.");
    return c.json(body as object, 202);
  });

  app.put("/auth/password", jsonLimit, async (c) => {
    const { password } = await jsonBody(c, Password);
    const { sb } = await requireSession(c);
    const { error } = await sb.auth.updateUser({ password });
    if (error) refuse(422, "password_rejected", error.message);
    return c.json({ updated: true });
  });

  // -- Second factors -----------------------------------------------------------------------------
  app.get("/mfa/factors", async (c) => {
    const { sb, session, activity } = await requireSession(c);
    return c.json({ factors: (await whoAmI(c, sb, session, activity)).factors });
  });

  app.post("/mfa/enroll", jsonLimit, async (c) => {
    const { friendly_name } = await jsonBody(c, Enroll);
    const { sb } = await requireSession(c);
    const { data, error } = await sb.auth.mfa.enroll({ factorType: "totp", friendlyName: friendly_name, issuer: "Gatehouse" });
    if (error) refuse(422, "mfa_enroll_refused", error.message);
    return c.json({ id: data.id, friendly_name, qr_code: data.totp.qr_code, secret: data.totp.secret, uri: data.totp.uri });
  });

  app.post("/mfa/verify", jsonLimit, async (c) => {
    const { factor_id, code } = await jsonBody(c, Verify);
    const { sb, activity } = await requireSession(c);
    const { error } = await sb.auth.mfa.challengeAndVerify({ factorId: factor_id, code });
    if (error) refuse(422, "mfa_code_rejected", "That code is wrong or expired; use the current one from your app.");
    const { data } = await sb.auth.getSession();
    return c.json({ ...(await whoAmI(c, sb, data.session!, activity)), csrf: csrfToken(c) });
  });

  app.delete("/mfa/factors/:id", async (c) => {
    const id = z.uuid().safeParse(c.req.param("id"));
    if (!id.success) refuse(404, "factor_not_found", "No such factor.");
    const { sb } = await requireSession(c);
    const { error } = await sb.auth.mfa.unenroll({ factorId: id.data });
    if (error) refuse(error.status === 403 ? 403 : 422, "mfa_unenroll_refused", error.message);
    return c.json({ removed: id.data });
  });

  // -- The API, as the signed-in person -----------------------------------------------------------
  app.all("/api/:service{rest|functions}/v1/*", bodyLimit({ maxSize: MAX_PROXY_BYTES, onError: () => refuse(413, "body_too_large", "The body is too large.") }), async (c) => {
    const { session } = await requireSession(c);
    const target = proxyTarget(new URL(c.req.url), upstream);
    if (!target) refuse(404, "not_found", "No such API path.");
    const headers = new Headers({ apikey: opts.anonKey, authorization: `Bearer ${session.access_token}` });
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = c.req.header(name);
      if (value !== undefined) headers.set(name, value);
    }
    const hasBody = c.req.method !== "GET" && c.req.method !== "HEAD";
    let answer: Response;
    try {
      // Redirects are answered, not followed: a followed one would carry the token along.
      answer = await fetch(target, { method: c.req.method, headers, body: hasBody ? await c.req.arrayBuffer() : undefined, signal: c.req.raw.signal, redirect: "manual" });
    } catch {
      refuse(502, "upstream_unavailable", "Supabase is not answering.");
    }
    const out = new Headers();
    answer.headers.forEach((value, name) => {
      if (!DROPPED_RESPONSE_HEADERS.has(name) && !name.startsWith("access-control-")) out.set(name, value);
    });
    if (answer.status === 401) clearSession(c);
    return c.newResponse(answer.body, answer.status as 200, Object.fromEntries(out));
  });

  app.notFound((c) => c.json({ error: { code: "not_found", message: "No such console route." } }, 404));
  // The one place errors become answers; c.json keeps the cookies the request set (a cleared session).
  app.onError((err, c) => {
    if (err instanceof ConsoleError) return c.json({ error: { code: err.code, message: err.message } }, err.status);
    if (err instanceof HTTPException) return c.json({ error: { code: "bad_request", message: err.message } }, err.status);
    console.error(`console server: unexpected ${err.name}`, process.env.CONSOLE_DEBUG ? err : "");
    return c.json({ error: { code: "console_error", message: "The console server failed unexpectedly." } }, 500);
  });
  return app;
}

/**
 * Where a proxied request goes: the project's /rest/v1 or /functions/v1 and the same path below
 * it, or null. The path is taken as the client sent it, so it must spell its prefix plainly and
 * hold no encoded separator or dot and no empty segment: what the route matched (decoded) and what
 * is sent (raw) can then never differ, and no path climbs out of the two APIs.
 */
function proxyTarget(url: URL, upstream: URL): URL | null {
  const raw = url.pathname;
  const prefix = /^\/console\/api\/(rest|functions)\/v1\//.exec(raw);
  if (!prefix) return null;
  const rest = raw.slice(prefix[0].length);
  if (/%(2f|5c|2e)/i.test(rest) || /(^|\/)\.{1,2}(\/|$)/.test(rest) || rest.startsWith("/") || rest.includes("//") || rest.includes("\\")) return null;
  const target = new URL(`${upstream.pathname.replace(/\/+$/, "")}/${prefix[1]}/v1/${rest}${url.search}`, upstream);
  return target.origin === upstream.origin ? target : null;
}

/** The console server as a Node request listener (the local gateway mounts it at /console). */
export function consoleListener(opts: ConsoleOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const listener = getRequestListener(consoleApp(opts).fetch);
  return async (req, res) => {
    await listener(req, res);
  };
}
