/**
 * LOCAL-ONLY stand-in for Supabase Auth (GoTrue). Hosted deployments use Supabase Auth itself;
 * this exists because GoTrue can't run here without Docker.
 *
 * It implements the part of GoTrue's HTTP API that @supabase/supabase-js (auth, auth.mfa and
 * auth.admin) and the console use, with GoTrue's request and response shapes:
 *   POST /token?grant_type=password        email + password against bcrypt hashes in auth.users
 *   POST /token?grant_type=refresh_token   rotates the refresh token; reuse revokes the session
 *   POST /signup                           only with enable_signup: a confirmation mail, or a session
 *   POST /otp                              an email magic link (create_user false creates nobody)
 *   POST /recover                          a recovery mail; 200 {} whether or not the email exists
 *   POST /verify                           { type, token_hash } (or email + token) -> a session, once
 *   GET  /user, PUT /user                  the signed-in user (with factors); password, data
 *   POST /logout?scope=local|global|others ends sessions
 *   POST /factors                          enrolls a TOTP factor
 *   POST /factors/:id/challenge            a challenge: verifiable once, for 5 minutes
 *   POST /factors/:id/verify               the code: the same session becomes aal2 (new tokens)
 *   DELETE /factors/:id                    unenrolls (a verified factor needs an aal2 session)
 *   admin, with a service_role JWT:
 *   POST /invite                           an unconfirmed user without a password, and the invite mail
 *   GET|POST /admin/users, GET|PUT|DELETE /admin/users/:id
 *   GET /admin/users/:id/factors, DELETE /admin/users/:id/factors/:factor_id
 *   POST /admin/generate_link              an email link, returned instead of mailed
 *   GET  /health, GET /settings
 * Configuration is config.toml's [auth] (config.ts): site_url and additional_redirect_urls (where
 * email links may lead), enable_signup, jwt_expiry, [auth.sessions] timebox and
 * inactivity_timeout, [auth.email] (confirmations, otp_expiry, templates), [auth.mfa].
 *
 * Sessions (auth.sessions): with a timebox a session gets not_after = created_at + timebox (the
 * database refuses its tokens after that too); a refresh, and every endpoint that takes a user's
 * token, refuses and deletes a session past its timebox or idle (since its last refresh, else its
 * creation) for longer than inactivity_timeout, with GoTrue's session_expired. Access tokens are
 * HS256 JWTs with GoTrue's claims: aal from the session, amr as the methods with the time each was
 * performed (newest first, kept across refreshes), session_id.
 * Email links are one-time tokens (auth.one_time_tokens, only hashes stored) mailed to the LOCAL
 * ONLY mailbox (mail.ts) with the configured templates.
 * Errors use GoTrue's body shape ({ code, error_code, msg }) because supabase-js parses it; bad
 * input is a 4xx with a stable error_code. One line per request goes to its log (time, method,
 * path, status, ms; never a token, an email address or a body).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, randomInt, randomUUID } from "node:crypto";
import { appendFile, existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import bcrypt from "bcryptjs";
import QRCode from "qrcode";
import { jwtVerify, SignJWT } from "jose";
import { Secret, TOTP } from "otpauth";
import postgres, { type Sql, type TransactionSql } from "postgres";
import { DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable } from "../../functions/_shared/http/unavailable.ts";
import { z } from "zod";
import { type AuthConfig, parseDuration, type TemplateKind } from "./config.ts";
import { StackError } from "./errors.ts";
import { type Mailbox, renderSubject, renderTemplate, type TemplateValues } from "./mail.ts";

const MAX_BODY_BYTES = 16 * 1024;
/** GoTrue's MFA challenge lifetime. */
const CHALLENGE_SECONDS = 300;
/** GoTrue deletes unverified factors this old that were never challenged. */
const UNVERIFIED_FACTOR_SECONDS = 300;

interface AuthOptions {
  sql: Sql;
  jwtSecret: string;
  /** This API's public URL (…/auth/v1): the JWTs' iss, and GoTrue's ConfirmationURL. */
  issuer: string;
  /** config.toml's [auth], validated (config.ts). */
  config: AuthConfig;
  /** Where email goes (LOCAL ONLY, mail.ts). */
  mailbox: Mailbox;
  /** Where the per-request lines go. */
  logFile: string;
}

interface UserRow {
  id: string;
  aud: string;
  role: string;
  email: string | null;
  phone: string | null;
  encrypted_password: string | null;
  email_confirmed_at: Date | null;
  invited_at: Date | null;
  confirmation_sent_at: Date | null;
  recovery_sent_at: Date | null;
  last_sign_in_at: Date | null;
  raw_app_meta_data: Record<string, unknown>;
  raw_user_meta_data: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  banned_until: Date | null;
  deleted_at: Date | null;
  is_anonymous: boolean;
}

interface FactorRow {
  id: string;
  friendly_name: string | null;
  factor_type: string;
  status: "verified" | "unverified";
  created_at: Date;
  updated_at: Date;
  last_challenged_at: Date | null;
}

/** A user with their MFA factors, as GoTrue returns users. */
type User = UserRow & { factors: FactorRow[] };

interface SessionRow {
  id: string;
  user_id: string;
  created_at: Date;
  updated_at: Date;
  refreshed_at: Date | null;
  not_after: Date | null;
  aal: string;
  factor_id: string | null;
}

/** Who called, once their token and session are checked. */
interface Caller {
  user: User;
  session: SessionRow;
}

type Db = Sql | TransactionSql;

class AuthError extends Error {
  constructor(readonly status: number, readonly errorCode: string, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NO_CONTENT = Symbol("no content");

// ---------------------------------------------------------------------------------------------
// Request bodies (unknown keys, such as supabase-js's gotrue_meta_security, are ignored)
// ---------------------------------------------------------------------------------------------
/** Text that Postgres can store: no NUL, no unpaired surrogate. */
const STORABLE = (s: string) => !/\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
const Text = (max: number) => z.string().max(max).refine(STORABLE, "contains characters that cannot be stored");
const Email = z.string().trim().toLowerCase().pipe(z.email().max(255));
const Password = z.string().max(1024);
const Metadata = z.record(z.string(), z.unknown()).refine((v) => storableJson(v, 0) && JSON.stringify(v).length <= 8 * 1024, "must be JSON of at most 8 KiB whose strings Postgres can store");
const Pkce = { code_challenge: z.string().nullish(), code_challenge_method: z.string().nullish() };

const PasswordGrant = z.object({ email: z.email().max(255), password: z.string().min(1).max(1024) });
const RefreshGrant = z.object({ refresh_token: z.string().min(1).max(256) });
const SignupBody = z.object({ email: Email.optional(), phone: z.string().optional(), password: Password.optional(), data: Metadata.nullish(), ...Pkce });
const OtpBody = z.object({ email: Email.optional(), phone: z.string().optional(), data: Metadata.nullish(), create_user: z.boolean().default(true), ...Pkce });
const RecoverBody = z.object({ email: Email, ...Pkce });
const VerifyBody = z.object({
  type: z.enum(["signup", "invite", "magiclink", "recovery", "email", "email_change", "sms", "phone_change"]),
  token_hash: z.string().min(1).max(256).optional(),
  token: z.string().min(1).max(256).optional(),
  email: Email.optional(),
  phone: z.string().optional(),
});
const UpdateUserBody = z.object({
  email: Email.optional(),
  phone: z.string().max(64).optional(),
  password: Password.optional(),
  data: Metadata.nullish(),
  app_metadata: Metadata.nullish(),
  nonce: z.string().max(64).optional(),
  ...Pkce,
});
const EnrollBody = z.object({ factor_type: z.string().max(32), friendly_name: Text(255).optional(), issuer: Text(255).optional(), phone: z.string().optional() });
const VerifyFactorBody = z.object({ challenge_id: z.string().max(64), code: z.string().max(64).optional() });
const InviteBody = z.object({ email: Email, data: Metadata.nullish() });
const BanDuration = z.string().max(64).refine((s) => s === "none" || parseDuration(s) !== null, "ban_duration must be a duration such as \"24h\", or \"none\"");
const AdminUserBody = z.object({
  email: Email.optional(),
  phone: z.string().max(64).optional(),
  password: Password.optional(),
  email_confirm: z.boolean().optional(),
  user_metadata: Metadata.nullish(),
  app_metadata: Metadata.nullish(),
  ban_duration: BanDuration.optional(),
});
const AdminDeleteBody = z.object({ should_soft_delete: z.boolean().default(false) });
const GenerateLinkBody = z.object({
  type: z.enum(["signup", "invite", "magiclink", "recovery"]),
  email: Email,
  password: Password.optional(),
  data: Metadata.nullish(),
  redirect_to: z.string().max(2048).optional(),
  redirectTo: z.string().max(2048).optional(),
});

/** A JSON value whose strings (and keys) Postgres can store, nested at most 8 deep. */
function storableJson(v: unknown, depth: number): boolean {
  if (depth > 8) return false;
  if (typeof v === "string") return STORABLE(v);
  if (Array.isArray(v)) return v.every((x) => storableJson(x, depth + 1));
  if (v && typeof v === "object") return Object.entries(v).every(([k, x]) => STORABLE(k) && storableJson(x, depth + 1));
  return true;
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new AuthError(400, "validation_failed", `${issue.path.join(".") || "body"}: ${issue.message}`);
}

/** Where email templates come from when config.toml names none (GoTrue's defaults). */
const DEFAULT_TEMPLATES: Record<TemplateKind, { subject: string; body: string }> = {
  invite: { subject: "You have been invited", body: '<h2>You have been invited</h2><p>You have been invited to create a user on {{ .SiteURL }}. Follow this link to accept the invite:</p><p><a href="{{ .ConfirmationURL }}">Accept the invite</a></p>' },
  confirmation: { subject: "Confirm Your Signup", body: '<h2>Confirm your signup</h2><p>Follow this link to confirm your user:</p><p><a href="{{ .ConfirmationURL }}">Confirm your mail</a></p>' },
  recovery: { subject: "Reset Your Password", body: '<h2>Reset Password</h2><p>Follow this link to reset the password for your user:</p><p><a href="{{ .ConfirmationURL }}">Reset Password</a></p>' },
  magic_link: { subject: "Your Magic Link", body: '<h2>Magic Link</h2><p>Follow this link to login:</p><p><a href="{{ .ConfirmationURL }}">Log In</a></p>' },
};

/** A request handler for everything under /auth/v1 (the prefix already stripped from `path`). */
export function createAuthHandler(opts: AuthOptions) {
  const key = new TextEncoder().encode(opts.jwtSecret);
  const { sql, config } = opts;
  // Durations of 0 mean no limit, as in GoTrue.
  const timeboxMs = config.sessions.timebox ? parseDuration(config.sessions.timebox) || null : null;
  const inactivityMs = config.sessions.inactivity_timeout ? parseDuration(config.sessions.inactivity_timeout) || null : null;
  const confirmations = config.email.enable_confirmations;
  // TOTP secrets are stored sealed under a key of their own, derived from the JWT secret.
  const factorKey = Buffer.from(hkdfSync("sha256", opts.jwtSecret, "", "gatehouse-local-auth/totp-secret", 32));
  for (const [kind, t] of Object.entries(config.email.template)) {
    if (t?.content_path && !existsSync(t.content_path)) throw new StackError(`config.toml [auth.email.template.${kind}] content_path ${t.content_path} does not exist`);
  }

  // -------------------------------------------------------------------------------------------
  // Users and tokens
  // -------------------------------------------------------------------------------------------
  async function loadUser(db: Db, id: string): Promise<User | null> {
    const [u] = await db<UserRow[]>`select * from auth.users where id = ${id}`;
    return u ? (await withFactors(db, [u]))[0] : null;
  }

  async function withFactors(db: Db, users: UserRow[]): Promise<User[]> {
    const factors = await db<(FactorRow & { user_id: string })[]>`
      select id, user_id, friendly_name, factor_type, status, created_at, updated_at, last_challenged_at
        from auth.mfa_factors where user_id = any(${users.map((u) => u.id)}::uuid[]) order by created_at`;
    return users.map((u) => ({ ...u, factors: factors.filter((f) => f.user_id === u.id) }));
  }

  async function userByEmail(db: Db, email: string, lock = false): Promise<UserRow | undefined> {
    const [u] = lock
      ? await db<UserRow[]>`select * from auth.users where lower(email) = ${email} and deleted_at is null for update`
      : await db<UserRow[]>`select * from auth.users where lower(email) = ${email} and deleted_at is null`;
    return u;
  }

  function userJson(u: User) {
    return {
      id: u.id,
      aud: u.aud,
      role: u.role,
      email: u.email ?? "",
      email_confirmed_at: u.email_confirmed_at,
      phone: u.phone ?? "",
      ...present({ confirmation_sent_at: u.confirmation_sent_at }),
      confirmed_at: u.email_confirmed_at,
      ...present({ recovery_sent_at: u.recovery_sent_at, invited_at: u.invited_at, last_sign_in_at: u.last_sign_in_at }),
      app_metadata: u.raw_app_meta_data,
      user_metadata: u.raw_user_meta_data,
      identities: [],
      created_at: u.created_at,
      updated_at: u.updated_at,
      is_anonymous: u.is_anonymous,
      ...(u.factors.length ? { factors: u.factors.map(factorJson) } : {}),
      ...present({ banned_until: u.banned_until, deleted_at: u.deleted_at }),
    };
  }

  /**
   * A new refresh token for the session and an access token carrying the session's aal and amr.
   * The access token never outlives the session's not_after.
   */
  async function issueTokens(db: Db, userId: string, sessionId: string, parentHash: string | null) {
    const refresh = randomBytes(32).toString("base64url");
    await db`
      insert into auth.refresh_tokens (token_hash, user_id, session_id, parent)
      values (${sha256(refresh)}, ${userId}, ${sessionId}, ${parentHash})`;
    const [session] = await db<SessionRow[]>`select * from auth.sessions where id = ${sessionId}`;
    const user = (await loadUser(db, userId))!;
    const claims = await db<{ method: string; at: string }[]>`
      select authentication_method as method, extract(epoch from updated_at)::bigint as at
        from auth.mfa_amr_claims where session_id = ${sessionId} order by updated_at desc, authentication_method`;
    const amr = claims.length
      ? claims.map((c) => ({ method: c.method, timestamp: Number(c.at) }))
      : [{ method: "password", timestamp: Math.floor(session.created_at.getTime() / 1000) }];
    const now = Math.floor(Date.now() / 1000);
    let expiresAt = now + config.jwt_expiry;
    if (session.not_after) expiresAt = Math.max(now + 1, Math.min(expiresAt, Math.floor(session.not_after.getTime() / 1000)));
    const accessToken = await new SignJWT({
      email: user.email ?? "",
      phone: user.phone ?? "",
      app_metadata: user.raw_app_meta_data,
      user_metadata: user.raw_user_meta_data,
      role: user.role,
      aal: session.aal,
      amr,
      session_id: sessionId,
      is_anonymous: user.is_anonymous,
    })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setIssuer(opts.issuer)
      .setSubject(user.id)
      .setAudience(user.aud)
      .setIssuedAt(now)
      .setExpirationTime(expiresAt)
      .sign(key);
    return {
      access_token: accessToken,
      token_type: "bearer",
      expires_in: expiresAt - now,
      expires_at: expiresAt,
      refresh_token: refresh,
      user: userJson(user),
    };
  }

  /** A new aal1 session signed in by `method` (the amr claim), with not_after under a timebox. */
  async function startSession(db: Db, req: IncomingMessage, userId: string, method: string): Promise<string> {
    const timeboxSeconds = timeboxMs === null ? null : timeboxMs / 1000;
    const [session] = await db<{ id: string }[]>`
      insert into auth.sessions (user_id, not_after, user_agent, ip)
      values (${userId},
              case when ${timeboxSeconds}::float8 is null then null else now() + make_interval(secs => ${timeboxSeconds}::float8) end,
              ${userAgentOf(req)}, ${ipOf(req)}::inet)
      returning id`;
    await db`insert into auth.mfa_amr_claims (session_id, authentication_method) values (${session.id}, ${method})`;
    await db`update auth.users set last_sign_in_at = now(), updated_at = now() where id = ${userId}`;
    return session.id;
  }

  /** Why the session is over ("timebox" also covers a not_after in the past), or null. */
  function sessionEnded(s: SessionRow): "timebox" | "inactivity" | null {
    const now = Date.now();
    if (s.not_after && now > s.not_after.getTime()) return "timebox";
    if (timeboxMs !== null && now > s.created_at.getTime() + timeboxMs) return "timebox";
    if (inactivityMs !== null && now > (s.refreshed_at ?? s.created_at).getTime() + inactivityMs) return "inactivity";
    return null;
  }

  function usable(u: UserRow | undefined | null): u is UserRow {
    return !!u && !u.deleted_at && !banned(u);
  }

  function checkPassword(password: string): void {
    if (password.length < config.minimum_password_length) {
      throw new AuthError(422, "weak_password", `Password should be at least ${config.minimum_password_length} characters.`, { weak_password: { reasons: ["length"] } });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Email links
  // -------------------------------------------------------------------------------------------
  /**
   * Where an email link may send its reader: redirect_to (or the Referer) when site_url's origin
   * or one of additional_redirect_urls allows it, else site_url (GoTrue's rule: a relative path
   * is not allowed either).
   */
  function redirectFor(req: IncomingMessage, asked: string | null): string {
    for (const candidate of [asked, headerOf(req, "referer")]) if (candidate && redirectAllowed(config, candidate)) return candidate;
    return config.site_url;
  }

  /**
   * Replaces the user's live token of `tokenType` with a new one (GoTrue keeps one per user and
   * type): a 6-digit code, and GoTrue's token hash sha224(email + code) for links. Only a SHA-256
   * of the token hash is stored.
   */
  async function newEmailToken(db: Db, user: UserRow, tokenType: "confirmation_token" | "recovery_token") {
    const token = String(randomInt(0, 1_000_000)).padStart(6, "0");
    const tokenHash = emailTokenHash(user.email!, token);
    await db`
      insert into auth.one_time_tokens (user_id, token_type, token_hash, relates_to)
      values (${user.id}, ${tokenType}, ${sha256(tokenHash)}, ${user.email!.toLowerCase()})
      on conflict (user_id, token_type) do update
        set token_hash = excluded.token_hash, relates_to = excluded.relates_to, created_at = now(), updated_at = now()`;
    const sentColumn = tokenType === "confirmation_token" ? "confirmation_sent_at" : "recovery_sent_at";
    await db`update auth.users set ${db(sentColumn)} = now() where id = ${user.id}`;
    return { token, tokenHash };
  }

  function mail(kind: TemplateKind, user: UserRow, link: { token: string; tokenHash: string }, verifyType: string, redirectTo: string): void {
    const configured = config.email.template[kind];
    const source = configured?.content_path ? readFileSync(configured.content_path, "utf8") : DEFAULT_TEMPLATES[kind].body;
    const values: TemplateValues = {
      SiteURL: config.site_url,
      TokenHash: link.tokenHash,
      Token: link.token,
      RedirectTo: redirectTo,
      Email: user.email ?? "",
      ConfirmationURL: `${opts.issuer}/verify?token=${link.tokenHash}&type=${verifyType}&redirect_to=${encodeURIComponent(redirectTo)}`,
      Data: user.raw_user_meta_data,
    };
    opts.mailbox.send({
      to: user.email!,
      subject: renderSubject(configured?.subject ?? DEFAULT_TEMPLATES[kind].subject, values),
      html: renderTemplate(source, values),
    });
  }

  /** A user who may not sign in yet (no password, email unconfirmed), as invite and otp create them. */
  async function insertUser(db: Db, email: string, fields: { password?: string | null; data?: Record<string, unknown> | null; confirmed?: boolean; invited?: boolean }) {
    const hash = fields.password ? await bcrypt.hash(fields.password, 10) : null;
    const [u] = await db<UserRow[]>`
      insert into auth.users (email, encrypted_password, raw_user_meta_data, email_confirmed_at, invited_at)
      values (${email}, ${hash}, ${db.json((fields.data ?? {}) as postgres.JSONValue)},
              ${fields.confirmed ? db`now()` : null}, ${fields.invited ? db`now()` : null})
      returning *`;
    return u;
  }

  // -------------------------------------------------------------------------------------------
  // Who is calling
  // -------------------------------------------------------------------------------------------
  async function bearerClaims(req: IncomingMessage) {
    const token = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (!token) throw new AuthError(401, "no_authorization", "This endpoint requires a Bearer token");
    try {
      return (await jwtVerify(token, key, { algorithms: ["HS256"] })).payload;
    } catch {
      throw new AuthError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature");
    }
  }

  /** The signed-in user and their session; a session past its time is deleted and refused. */
  async function authenticate(req: IncomingMessage): Promise<Caller> {
    const claims = await bearerClaims(req);
    const sessionId = typeof claims.session_id === "string" ? claims.session_id : null;
    if (!claims.sub || !sessionId) throw new AuthError(403, "bad_jwt", "JWT is not a user session token");
    // Validly signed, but no session of ours: sub and session_id are always uuids.
    if (!UUID.test(claims.sub) || !UUID.test(sessionId)) throw new AuthError(401, "bad_jwt", "JWT sub and session_id must be uuids");
    const [session] = await sql<SessionRow[]>`select * from auth.sessions where id = ${sessionId} and user_id = ${claims.sub}`;
    if (!session) throw new AuthError(403, "session_not_found", "Session from session_id claim in JWT does not exist");
    const ended = sessionEnded(session);
    if (ended) {
      await sql`delete from auth.sessions where id = ${session.id}`;
      throw new AuthError(403, "session_expired", ended === "inactivity" ? "Session Expired (Inactivity)" : "Session Expired");
    }
    const user = await loadUser(sql, claims.sub);
    if (!user || user.deleted_at) throw new AuthError(404, "user_not_found", "User from sub claim in JWT does not exist");
    if (banned(user)) throw new AuthError(403, "user_banned", "User is banned");
    return { user, session };
  }

  /** Admin endpoints take a JWT whose role is service_role (or supabase_admin), as GoTrue's. */
  async function requireAdmin(req: IncomingMessage): Promise<void> {
    const claims = await bearerClaims(req);
    if (claims.role !== "service_role" && claims.role !== "supabase_admin") throw new AuthError(403, "not_admin", "User not allowed");
  }

  async function factorOf(db: Db, userId: string, factorId: string) {
    const [f] = UUID.test(factorId)
      ? await db<(FactorRow & { secret: string | null })[]>`select * from auth.mfa_factors where id = ${factorId} and user_id = ${userId}`
      : [];
    if (!f) throw new AuthError(404, "mfa_factor_not_found", "Factor not found");
    return f;
  }

  async function adminTarget(db: Db, id: string): Promise<User> {
    if (!UUID.test(id)) throw new AuthError(400, "validation_failed", "user_id must be an UUID");
    const user = await loadUser(db, id);
    if (!user) throw new AuthError(404, "user_not_found", "User not found");
    return user;
  }

  /** Removes a factor; sessions it raised to aal2 fall back to aal1 (GoTrue's DowngradeSessionsToAAL1). */
  async function removeFactor(db: Db, factor: FactorRow) {
    await db`delete from auth.mfa_amr_claims c using auth.sessions s
              where c.session_id = s.id and s.factor_id = ${factor.id} and c.authentication_method = ${factor.factor_type}`;
    await db`update auth.sessions set aal = 'aal1', factor_id = null, updated_at = now() where factor_id = ${factor.id}`;
    await db`delete from auth.mfa_factors where id = ${factor.id}`;
  }

  // -------------------------------------------------------------------------------------------
  // Endpoints
  // -------------------------------------------------------------------------------------------
  async function passwordGrant(req: IncomingMessage, body: unknown) {
    const input = PasswordGrant.safeParse(body);
    if (!input.success) throw new AuthError(400, "validation_failed", "email and password are required");
    const user = await userByEmail(sql, input.data.email.toLowerCase());
    // Compare against a dummy hash when the user is unknown, so timing doesn't reveal which emails exist.
    const ok = await bcrypt.compare(input.data.password, user?.encrypted_password ?? DUMMY_HASH);
    if (!ok || !user?.encrypted_password) throw new AuthError(400, "invalid_credentials", "Invalid login credentials");
    if (banned(user)) throw new AuthError(400, "user_banned", "User is banned");
    if (!user.email_confirmed_at) throw new AuthError(400, "email_not_confirmed", "Email not confirmed");
    return sql.begin(async (tx) => issueTokens(tx, user.id, await startSession(tx, req, user.id, "password"), null));
  }

  async function refreshGrant(req: IncomingMessage, body: unknown) {
    const input = RefreshGrant.safeParse(body);
    if (!input.success) throw new AuthError(400, "validation_failed", "refresh_token is required");
    const tokenHash = sha256(input.data.refresh_token);
    const outcome = await sql.begin(async (tx) => {
      const [row] = await tx<{ id: string; revoked: boolean; session_id: string; user_id: string }[]>`
        select id, revoked, session_id, user_id from auth.refresh_tokens where token_hash = ${tokenHash} for update`;
      if (!row) throw new AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found");
      const [session] = await tx<SessionRow[]>`select * from auth.sessions where id = ${row.session_id} for update`;
      if (!session) throw new AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found");
      // Ending a session commits (the refusal is returned, not thrown).
      const ended = sessionEnded(session);
      if (ended) {
        await tx`delete from auth.sessions where id = ${session.id}`;
        return { refused: ended } as const;
      }
      if (row.revoked) {
        // A rotated-out token presented again means it leaked: end the whole session.
        await tx`delete from auth.sessions where id = ${row.session_id}`;
        return { refused: "reused" } as const;
      }
      const [user] = await tx<UserRow[]>`select * from auth.users where id = ${row.user_id}`;
      if (!usable(user)) throw new AuthError(400, "user_banned", "Invalid Refresh Token: User Banned");
      await tx`update auth.refresh_tokens set revoked = true, updated_at = now() where id = ${row.id}`;
      await tx`update auth.sessions set refreshed_at = now(), updated_at = now(), user_agent = ${userAgentOf(req)}, ip = ${ipOf(req)}::inet
               where id = ${session.id}`;
      return { tokens: await issueTokens(tx, user.id, session.id, tokenHash) };
    });
    if ("tokens" in outcome) return outcome.tokens;
    if (outcome.refused === "reused") throw new AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used");
    throw new AuthError(400, "session_expired", outcome.refused === "inactivity" ? "Invalid Refresh Token: Session Expired (Inactivity)" : "Invalid Refresh Token: Session Expired");
  }

  async function signup(req: IncomingMessage, body: unknown, query: URLSearchParams) {
    if (!config.enable_signup) throw new AuthError(422, "signup_disabled", "Signups not allowed for this instance");
    const input = parse(SignupBody, body);
    if (!input.email) throw phoneOrEmail(input.phone);
    if (!input.password) throw new AuthError(422, "validation_failed", "Signup requires a valid password");
    checkPassword(input.password);
    const email = input.email;
    const password = input.password;
    const redirectTo = redirectFor(req, query.get("redirect_to"));
    return sql.begin(async (tx) => {
      let user = await userByEmail(tx, email, true);
      if (user?.email_confirmed_at) {
        // With confirmations GoTrue answers as for a new address, so that signup reveals no account.
        if (confirmations) return obfuscatedUser(email);
        throw new AuthError(422, "user_already_exists", "User already registered");
      }
      if (user) {
        [user] = await tx<UserRow[]>`
          update auth.users set encrypted_password = ${await bcrypt.hash(password, 10)},
                 raw_user_meta_data = ${tx.json((input.data ?? {}) as postgres.JSONValue)}, updated_at = now()
           where id = ${user.id} returning *`;
      } else {
        user = await insertUser(tx, email, { password, data: input.data, confirmed: !confirmations });
      }
      if (confirmations) {
        mail("confirmation", user, await newEmailToken(tx, user, "confirmation_token"), "signup", redirectTo);
        return userJson((await loadUser(tx, user.id))!);
      }
      await tx`update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()) where id = ${user.id}`;
      return issueTokens(tx, user.id, await startSession(tx, req, user.id, "password"), null);
    });
  }

  async function otp(req: IncomingMessage, body: unknown, query: URLSearchParams) {
    const input = parse(OtpBody, body);
    if (!input.email) throw phoneOrEmail(input.phone);
    const email = input.email;
    const redirectTo = redirectFor(req, query.get("redirect_to"));
    await sql.begin(async (tx) => {
      let user = await userByEmail(tx, email, true);
      if (!user?.email_confirmed_at) {
        // A new (or never confirmed) address signs up first, as GoTrue's /otp does.
        if (!input.create_user) throw new AuthError(422, "otp_disabled", "Signups not allowed for otp");
        if (!config.enable_signup) throw new AuthError(422, "signup_disabled", "Signups not allowed for this instance");
        user ??= await insertUser(tx, email, { data: input.data });
        if (confirmations) {
          mail("confirmation", user, await newEmailToken(tx, user, "confirmation_token"), "signup", redirectTo);
          return;
        }
        [user] = await tx<UserRow[]>`update auth.users set email_confirmed_at = now() where id = ${user.id} returning *`;
      }
      mail("magic_link", user, await newEmailToken(tx, user, "recovery_token"), "magiclink", redirectTo);
    });
    return {};
  }

  async function recover(req: IncomingMessage, body: unknown, query: URLSearchParams) {
    const input = parse(RecoverBody, body);
    const redirectTo = redirectFor(req, query.get("redirect_to"));
    await sql.begin(async (tx) => {
      const user = await userByEmail(tx, input.email, true);
      // Unknown addresses get the same answer, and no mail.
      if (user) mail("recovery", user, await newEmailToken(tx, user, "recovery_token"), "recovery", redirectTo);
    });
    return {};
  }

  async function verify(req: IncomingMessage, body: unknown) {
    const input = parse(VerifyBody, body);
    if (input.type === "sms" || input.type === "phone_change" || input.type === "email_change") {
      throw new AuthError(400, "validation_failed", `Verify type ${input.type} is not supported by the local auth stand-in`);
    }
    let tokenHash: string;
    if (input.token_hash) tokenHash = input.token_hash;
    else if (input.token && input.email) tokenHash = emailTokenHash(input.email, input.token);
    else throw new AuthError(400, "validation_failed", "Verify requires a token_hash, or an email and a token");
    const types = input.type === "signup" || input.type === "invite" ? ["confirmation_token"]
      : input.type === "email" ? ["confirmation_token", "recovery_token"] : ["recovery_token"];
    const invalid = () => new AuthError(403, "otp_expired", "Email link is invalid or has expired");
    return sql.begin(async (tx) => {
      // Used once: the token row goes in the same statement that finds it.
      const [row] = await tx<{ user_id: string; created_at: Date; relates_to: string }[]>`
        delete from auth.one_time_tokens
         where token_hash = ${sha256(tokenHash)} and token_type = any(${types})
        returning user_id, created_at, relates_to`;
      if (!row || (input.email && row.relates_to !== input.email)) throw invalid();
      if (Date.now() > row.created_at.getTime() + config.email.otp_expiry * 1000) throw invalid();
      const [user] = await tx<UserRow[]>`select * from auth.users where id = ${row.user_id} for update`;
      if (!user || user.deleted_at) throw invalid();
      if (banned(user)) throw new AuthError(403, "user_banned", "User is banned");
      // Following any of these links proves the address: it is confirmed now if it was not.
      await tx`update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()), updated_at = now() where id = ${user.id}`;
      return issueTokens(tx, user.id, await startSession(tx, req, user.id, "otp"), null);
    });
  }

  async function updateUser(req: IncomingMessage, body: unknown) {
    const { user, session } = await authenticate(req);
    const input = parse(UpdateUserBody, body);
    if (input.app_metadata) throw new AuthError(403, "not_admin", "Updating app_metadata requires admin privileges");
    if (input.email && input.email !== user.email?.toLowerCase()) {
      throw new AuthError(422, "validation_failed", "Changing the email address is not supported by the local auth stand-in");
    }
    if (input.phone) throw new AuthError(422, "validation_failed", "Phone numbers are not supported by the local auth stand-in");
    const password = input.password;
    if (password !== undefined) {
      if (user.factors.some((f) => f.status === "verified") && session.aal !== "aal2") {
        throw new AuthError(401, "insufficient_aal", "AAL2 session is required to update email or password when MFA is enabled.");
      }
      checkPassword(password);
      if (user.encrypted_password && (await bcrypt.compare(password, user.encrypted_password))) {
        throw new AuthError(422, "same_password", "New password should be different from the old password.");
      }
    }
    const hash = password === undefined ? null : await bcrypt.hash(password, 10);
    return sql.begin(async (tx) => {
      if (hash) {
        await tx`update auth.users set encrypted_password = ${hash} where id = ${user.id}`;
        // As GoTrue: a new password ends the user's other sessions and voids pending email links.
        await tx`delete from auth.sessions where user_id = ${user.id} and id <> ${session.id}`;
        await tx`delete from auth.one_time_tokens where user_id = ${user.id}`;
      }
      if (input.data) {
        await tx`update auth.users set raw_user_meta_data = ${tx.json(mergeMetadata(user.raw_user_meta_data, input.data) as postgres.JSONValue)} where id = ${user.id}`;
      }
      await tx`update auth.users set updated_at = now() where id = ${user.id}`;
      return userJson((await loadUser(tx, user.id))!);
    });
  }

  async function logout(req: IncomingMessage, query: URLSearchParams) {
    const { user, session } = await authenticate(req);
    const scope = query.get("scope") ?? "global";
    if (scope === "local") await sql`delete from auth.sessions where id = ${session.id}`;
    else if (scope === "others") await sql`delete from auth.sessions where user_id = ${user.id} and id <> ${session.id}`;
    else if (scope === "global") await sql`delete from auth.sessions where user_id = ${user.id}`;
    else throw new AuthError(400, "validation_failed", "scope must be global, local or others");
    return NO_CONTENT;
  }

  async function enroll(req: IncomingMessage, body: unknown) {
    const { user, session } = await authenticate(req);
    const input = parse(EnrollBody, body);
    if (input.factor_type === "phone") throw new AuthError(422, "mfa_phone_enroll_not_enabled", "MFA enroll is disabled for Phone");
    if (input.factor_type === "webauthn") throw new AuthError(422, "mfa_webauthn_enroll_not_enabled", "MFA enroll is disabled for WebAuthn");
    if (input.factor_type !== "totp") throw new AuthError(400, "validation_failed", "factor_type needs to be totp, phone, or webauthn");
    if (!config.mfa.totp.enroll_enabled) throw new AuthError(422, "mfa_totp_enroll_not_enabled", "MFA enroll is disabled for TOTP");
    const friendlyName = input.friendly_name ?? "";
    const issuer = input.issuer || new URL(config.site_url).host;
    return sql.begin(async (tx) => {
      // One enrollment at a time per user, so that the limit holds.
      await tx`select 1 from auth.users where id = ${user.id} for update`;
      await tx`delete from auth.mfa_factors f
                where f.user_id = ${user.id} and f.status = 'unverified'
                  and f.created_at < now() - make_interval(secs => ${UNVERIFIED_FACTOR_SECONDS})
                  and not exists (select 1 from auth.mfa_challenges c where c.factor_id = f.id)`;
      const factors = await tx<FactorRow[]>`select * from auth.mfa_factors where user_id = ${user.id}`;
      if (friendlyName.trim() && factors.some((f) => f.friendly_name === friendlyName)) {
        throw new AuthError(422, "mfa_factor_name_conflict", `A factor with the friendly name "${friendlyName}" for this user already exists`);
      }
      if (factors.length >= config.mfa.max_enrolled_factors) {
        throw new AuthError(422, "too_many_enrolled_mfa_factors", "Maximum number of verified factors reached, unenroll to continue");
      }
      if (factors.some((f) => f.status === "verified") && session.aal !== "aal2") {
        throw new AuthError(403, "insufficient_aal", "AAL2 required to enroll a new factor");
      }
      const secret = new Secret({ size: 20 });
      const totp = new TOTP({ issuer, label: user.email ?? "", algorithm: "SHA1", digits: 6, period: 30, secret });
      const id = randomUUID();
      await tx`insert into auth.mfa_factors (id, user_id, friendly_name, factor_type, status, secret)
               values (${id}, ${user.id}, ${friendlyName || null}, 'totp', 'unverified', ${seal(factorKey, id, secret.base32)})`;
      const uri = totp.toString();
      // An SVG QR code of the otpauth URI, as GoTrue returns. supabase-js puts it in a data URL
      // unencoded, where a "#" would end it, so the colours are named.
      const qr = (await QRCode.toString(uri, { type: "svg", errorCorrectionLevel: "M", margin: 2 }))
        .replaceAll('"#ffffff"', '"white"').replaceAll('"#000000"', '"black"');
      return { id, type: "totp", friendly_name: friendlyName, totp: { qr_code: qr, secret: secret.base32, uri } };
    });
  }

  async function challenge(req: IncomingMessage, factorId: string) {
    const { user } = await authenticate(req);
    const factor = await factorOf(sql, user.id, factorId);
    if (!config.mfa.totp.verify_enabled) throw new AuthError(422, "mfa_totp_verify_not_enabled", "MFA verification is disabled for TOTP");
    return sql.begin(async (tx) => {
      const [c] = await tx<{ id: string; created_at: Date }[]>`
        insert into auth.mfa_challenges (factor_id, ip_address) values (${factor.id}, ${ipOf(req)}::inet) returning id, created_at`;
      await tx`update auth.mfa_factors set last_challenged_at = now() where id = ${factor.id}`;
      return { id: c.id, type: factor.factor_type, expires_at: Math.floor(c.created_at.getTime() / 1000) + CHALLENGE_SECONDS };
    });
  }

  async function verifyFactor(req: IncomingMessage, factorId: string, body: unknown) {
    const { user, session } = await authenticate(req);
    const factor = await factorOf(sql, user.id, factorId);
    const input = parse(VerifyFactorBody, body);
    if (!input.code) throw new AuthError(400, "validation_failed", "Code needs to be non-empty");
    if (!UUID.test(input.challenge_id)) throw new AuthError(400, "validation_failed", "challenge_id must be a UUID");
    if (!config.mfa.totp.verify_enabled) throw new AuthError(422, "mfa_totp_verify_not_enabled", "MFA verification is disabled for TOTP");
    const code = input.code;
    const outcome = await sql.begin(async (tx) => {
      const [c] = await tx<{ id: string; created_at: Date; verified_at: Date | null; same_ip: boolean }[]>`
        select id, created_at, verified_at, ip_address = ${ipOf(req)}::inet as same_ip
          from auth.mfa_challenges where id = ${input.challenge_id} and factor_id = ${factor.id} for update`;
      if (!c) throw new AuthError(422, "mfa_factor_not_found", "MFA factor with the provided challenge ID not found");
      // GoTrue answers a used challenge with the same code as one from another address.
      if (c.verified_at || !c.same_ip) throw new AuthError(422, "mfa_ip_address_mismatch", "Challenge and verify IP addresses mismatch.");
      if (Date.now() > c.created_at.getTime() + CHALLENGE_SECONDS * 1000) {
        await tx`delete from auth.mfa_challenges where id = ${c.id}`;
        return { expired: c.id };
      }
      const secret = Secret.fromBase32(open(factorKey, factor.id, factor.secret ?? ""));
      if (TOTP.validate({ token: code, secret, algorithm: "SHA1", digits: 6, period: 30, window: 1 }) === null) {
        throw new AuthError(422, "mfa_verification_failed", "Invalid TOTP code entered");
      }
      await tx`update auth.mfa_challenges set verified_at = now() where id = ${c.id}`;
      await tx`update auth.mfa_factors set status = 'verified', updated_at = now() where id = ${factor.id}`;
      await tx`update auth.sessions set aal = 'aal2', factor_id = ${factor.id}, updated_at = now() where id = ${session.id}`;
      await tx`insert into auth.mfa_amr_claims (session_id, authentication_method) values (${session.id}, 'totp')
               on conflict (session_id, authentication_method) do update set updated_at = now()`;
      // As GoTrue: the user's sessions below aal2 end, and other unverified TOTP factors go.
      await tx`delete from auth.sessions where user_id = ${user.id} and aal < 'aal2'`;
      await tx`delete from auth.mfa_factors where user_id = ${user.id} and factor_type = 'totp' and status = 'unverified'`;
      // The session's refresh token is swapped for a new one, as on a refresh.
      const [parent] = await tx<{ token_hash: string }[]>`
        update auth.refresh_tokens set revoked = true, updated_at = now()
         where session_id = ${session.id} and not revoked returning token_hash`;
      return { tokens: await issueTokens(tx, user.id, session.id, parent?.token_hash ?? null) };
    });
    if ("tokens" in outcome) return outcome.tokens;
    throw new AuthError(422, "mfa_challenge_expired", `MFA challenge ${outcome.expired} has expired, verify against another challenge or create a new challenge.`);
  }

  async function unenroll(req: IncomingMessage, factorId: string) {
    const { user, session } = await authenticate(req);
    const factor = await factorOf(sql, user.id, factorId);
    if (factor.status === "verified" && session.aal !== "aal2") {
      throw new AuthError(422, "insufficient_aal", "AAL2 required to unenroll verified factor");
    }
    await sql.begin((tx) => removeFactor(tx, factor));
    return { id: factor.id };
  }

  async function invite(req: IncomingMessage, body: unknown, query: URLSearchParams) {
    await requireAdmin(req);
    const input = parse(InviteBody, body);
    const redirectTo = redirectFor(req, query.get("redirect_to"));
    return sql.begin(async (tx) => {
      let user = await userByEmail(tx, input.email, true);
      if (user?.email_confirmed_at) throw new AuthError(422, "email_exists", "A user with this email address has already been registered");
      if (user) [user] = await tx<UserRow[]>`update auth.users set invited_at = now(), updated_at = now() where id = ${user.id} returning *`;
      else user = await insertUser(tx, input.email, { data: input.data, invited: true });
      mail("invite", user, await newEmailToken(tx, user, "confirmation_token"), "invite", redirectTo);
      return userJson((await loadUser(tx, user.id))!);
    });
  }

  async function adminListUsers(req: IncomingMessage, query: URLSearchParams, res: ServerResponse) {
    await requireAdmin(req);
    const page = boundedInt(query.get("page"), 1, 1, 1_000_000);
    const perPage = boundedInt(query.get("per_page"), 50, 1, 1000);
    const [{ total }] = await sql<{ total: string }[]>`select count(*) as total from auth.users`;
    const rows = await sql<UserRow[]>`select * from auth.users order by created_at desc, id limit ${perPage} offset ${(page - 1) * perPage}`;
    const users = (await withFactors(sql, rows)).map(userJson);
    // GoTrue's pagination headers, which auth.admin.listUsers reads.
    const last = Math.max(1, Math.ceil(Number(total) / perPage));
    const links = [...(page < last ? [`</admin/users?page=${page + 1}&per_page=${perPage}>; rel="next"`] : []), `</admin/users?page=${last}&per_page=${perPage}>; rel="last"`];
    res.setHeader("x-total-count", total);
    res.setHeader("link", links.join(", "));
    return { users, aud: "authenticated" };
  }

  async function adminCreateUser(req: IncomingMessage, body: unknown) {
    await requireAdmin(req);
    const input = parse(AdminUserBody, body);
    if (!input.email) {
      if (input.phone) throw new AuthError(422, "validation_failed", "Phone users are not supported by the local auth stand-in");
      throw new AuthError(422, "validation_failed", "Cannot create a user without either an email or phone");
    }
    if (input.password) checkPassword(input.password);
    const email = input.email;
    return sql.begin(async (tx) => {
      const [clash] = await tx`select 1 from auth.users where lower(email) = ${email}`;
      if (clash) throw new AuthError(422, "email_exists", "A user with this email address has already been registered");
      const user = await insertUser(tx, email, { password: input.password, data: input.user_metadata, confirmed: input.email_confirm === true });
      if (input.app_metadata) {
        await tx`update auth.users set raw_app_meta_data = ${tx.json(mergeMetadata(user.raw_app_meta_data, input.app_metadata) as postgres.JSONValue)} where id = ${user.id}`;
      }
      if (input.ban_duration) await tx`update auth.users set banned_until = ${banUntil(input.ban_duration)} where id = ${user.id}`;
      return userJson((await loadUser(tx, user.id))!);
    });
  }

  async function adminUpdateUser(req: IncomingMessage, id: string, body: unknown) {
    await requireAdmin(req);
    const input = parse(AdminUserBody, body);
    const user = await adminTarget(sql, id);
    if (input.phone) throw new AuthError(422, "validation_failed", "Phone numbers are not supported by the local auth stand-in");
    if (input.password !== undefined) checkPassword(input.password);
    const hash = input.password === undefined ? null : await bcrypt.hash(input.password, 10);
    return sql.begin(async (tx) => {
      if (input.email && input.email !== user.email?.toLowerCase()) {
        const [clash] = await tx`select 1 from auth.users where lower(email) = ${input.email} and id <> ${user.id}`;
        if (clash) throw new AuthError(422, "email_exists", "A user with this email address has already been registered");
        await tx`update auth.users set email = ${input.email} where id = ${user.id}`;
      }
      if (hash) {
        // As GoTrue: a password set by an admin ends every session of the user.
        await tx`update auth.users set encrypted_password = ${hash} where id = ${user.id}`;
        await tx`delete from auth.sessions where user_id = ${user.id}`;
        await tx`delete from auth.one_time_tokens where user_id = ${user.id}`;
      }
      if (input.email_confirm) await tx`update auth.users set email_confirmed_at = coalesce(email_confirmed_at, now()) where id = ${user.id}`;
      if (input.ban_duration) await tx`update auth.users set banned_until = ${banUntil(input.ban_duration)} where id = ${user.id}`;
      if (input.user_metadata) {
        await tx`update auth.users set raw_user_meta_data = ${tx.json(mergeMetadata(user.raw_user_meta_data, input.user_metadata) as postgres.JSONValue)} where id = ${user.id}`;
      }
      if (input.app_metadata) {
        await tx`update auth.users set raw_app_meta_data = ${tx.json(mergeMetadata(user.raw_app_meta_data, input.app_metadata) as postgres.JSONValue)} where id = ${user.id}`;
      }
      await tx`update auth.users set updated_at = now() where id = ${user.id}`;
      return userJson((await loadUser(tx, user.id))!);
    });
  }

  async function adminDeleteUser(req: IncomingMessage, id: string, body: unknown) {
    await requireAdmin(req);
    const input = parse(AdminDeleteBody, body);
    const user = await adminTarget(sql, id);
    await sql.begin(async (tx) => {
      if (!input.should_soft_delete) {
        await tx`delete from auth.users where id = ${user.id}`;
        return;
      }
      if (user.deleted_at) return;
      // GoTrue's soft delete: the row stays (for references), its address is obfuscated so that it
      // can be used again, and it can no longer sign in.
      await tx`update auth.users
                  set deleted_at = now(), updated_at = now(), encrypted_password = null, phone = null,
                      email = ${user.email ? sha256(user.id + user.email) : null}
                where id = ${user.id}`;
      await tx`delete from auth.mfa_factors where user_id = ${user.id}`;
      await tx`delete from auth.sessions where user_id = ${user.id}`;
      await tx`delete from auth.one_time_tokens where user_id = ${user.id}`;
    });
    return {};
  }

  async function adminListFactors(req: IncomingMessage, id: string) {
    await requireAdmin(req);
    return (await adminTarget(sql, id)).factors.map(factorJson);
  }

  async function adminDeleteFactor(req: IncomingMessage, id: string, factorId: string) {
    await requireAdmin(req);
    const user = await adminTarget(sql, id);
    const factor = await factorOf(sql, user.id, factorId);
    await sql.begin((tx) => removeFactor(tx, factor));
    return factorJson(factor);
  }

  async function generateLink(req: IncomingMessage, body: unknown, query: URLSearchParams) {
    await requireAdmin(req);
    const input = parse(GenerateLinkBody, body);
    const redirectTo = redirectFor(req, query.get("redirect_to") ?? input.redirect_to ?? input.redirectTo ?? null);
    return sql.begin(async (tx) => {
      let user = await userByEmail(tx, input.email, true);
      if ((input.type === "magiclink" || input.type === "recovery") && !user) throw new AuthError(404, "user_not_found", "User with this email not found");
      if ((input.type === "signup" || input.type === "invite") && user?.email_confirmed_at) {
        throw new AuthError(422, "email_exists", "A user with this email address has already been registered");
      }
      if (input.type === "signup") {
        if (!input.password) throw new AuthError(422, "validation_failed", "Signup requires a valid password");
        checkPassword(input.password);
        user ??= await insertUser(tx, input.email, { password: input.password, data: input.data });
      } else if (input.type === "invite") {
        if (user) [user] = await tx<UserRow[]>`update auth.users set invited_at = now() where id = ${user.id} returning *`;
        else user = await insertUser(tx, input.email, { data: input.data, invited: true });
      }
      const link = await newEmailToken(tx, user!, input.type === "signup" || input.type === "invite" ? "confirmation_token" : "recovery_token");
      return {
        ...userJson((await loadUser(tx, user!.id))!),
        action_link: `${opts.issuer}/verify?token=${link.tokenHash}&type=${input.type}&redirect_to=${encodeURIComponent(redirectTo)}`,
        email_otp: link.token,
        hashed_token: link.tokenHash,
        redirect_to: redirectTo,
        verification_type: input.type,
      };
    });
  }

  function settings() {
    return {
      external: { email: true, phone: false, anonymous_users: false, saml: false },
      disable_signup: !config.enable_signup,
      mailer_autoconfirm: !confirmations,
      phone_autoconfirm: false,
      sms_provider: "",
      saml_enabled: false,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Routes: the table of contents
  // -------------------------------------------------------------------------------------------
  type Ctx = { req: IncomingMessage; res: ServerResponse; query: URLSearchParams; params: string[]; body: () => Promise<unknown> };
  const routes: [method: string, path: RegExp, run: (c: Ctx) => Promise<unknown> | unknown][] = [
    ["GET", /^\/health$/, () => ({ version: "local-stand-in", name: "GoTrue (Gatehouse local stand-in)", description: "local only; hosted deployments use Supabase Auth" })],
    ["GET", /^\/settings$/, settings],
    ["POST", /^\/token$/, async (c) => {
      const grant = c.query.get("grant_type");
      if (grant === "password") return passwordGrant(c.req, await c.body());
      if (grant === "refresh_token") return refreshGrant(c.req, await c.body());
      throw new AuthError(400, "unsupported_grant_type", "grant_type must be password or refresh_token");
    }],
    ["POST", /^\/signup$/, async (c) => signup(c.req, await c.body(), c.query)],
    ["POST", /^\/otp$/, async (c) => otp(c.req, await c.body(), c.query)],
    ["POST", /^\/recover$/, async (c) => recover(c.req, await c.body(), c.query)],
    ["POST", /^\/verify$/, async (c) => verify(c.req, await c.body())],
    ["GET", /^\/user$/, async (c) => userJson((await authenticate(c.req)).user)],
    ["PUT", /^\/user$/, async (c) => updateUser(c.req, await c.body())],
    ["POST", /^\/logout$/, (c) => logout(c.req, c.query)],
    ["POST", /^\/factors$/, async (c) => enroll(c.req, await c.body())],
    ["POST", /^\/factors\/([^/]+)\/challenge$/, (c) => challenge(c.req, c.params[0])],
    ["POST", /^\/factors\/([^/]+)\/verify$/, async (c) => verifyFactor(c.req, c.params[0], await c.body())],
    ["DELETE", /^\/factors\/([^/]+)$/, (c) => unenroll(c.req, c.params[0])],
    ["POST", /^\/invite$/, async (c) => invite(c.req, await c.body(), c.query)],
    ["GET", /^\/admin\/users$/, (c) => adminListUsers(c.req, c.query, c.res)],
    ["POST", /^\/admin\/users$/, async (c) => adminCreateUser(c.req, await c.body())],
    ["GET", /^\/admin\/users\/([^/]+)$/, async (c) => {
      await requireAdmin(c.req);
      return userJson(await adminTarget(sql, c.params[0]));
    }],
    ["PUT", /^\/admin\/users\/([^/]+)$/, async (c) => adminUpdateUser(c.req, c.params[0], await c.body())],
    ["DELETE", /^\/admin\/users\/([^/]+)$/, async (c) => adminDeleteUser(c.req, c.params[0], await c.body())],
    ["GET", /^\/admin\/users\/([^/]+)\/factors$/, (c) => adminListFactors(c.req, c.params[0])],
    ["DELETE", /^\/admin\/users\/([^/]+)\/factors\/([^/]+)$/, (c) => adminDeleteFactor(c.req, c.params[0], c.params[1])],
    ["POST", /^\/admin\/generate_link$/, async (c) => generateLink(c.req, await c.body(), c.query)],
  ];

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) {
    const started = performance.now();
    res.once("close", () => {
      appendFile(opts.logFile, `${new Date().toISOString()} ${req.method} ${path} ${res.statusCode} ${Math.round(performance.now() - started)}ms\n`, () => {});
    });
    try {
      for (const [method, pattern, run] of routes) {
        const m = req.method === method ? pattern.exec(path) : null;
        if (!m) continue;
        const params = m.slice(1).map((p) => {
          try {
            return decodeURIComponent(p);
          } catch {
            return p;
          }
        });
        const out = await run({ req, res, query, params, body: () => readJson(req) });
        if (out === NO_CONTENT) {
          res.writeHead(204).end();
          return;
        }
        return send(res, 200, out);
      }
      throw new AuthError(404, "not_found", "not supported by the local auth stand-in");
    } catch (e) {
      if (e instanceof AuthError) return send(res, e.status, { code: e.status, error_code: e.errorCode, msg: e.message, ...e.extra });
      const refusal = e instanceof postgres.PostgresError ? databaseRefusal(e) : null;
      if (refusal) return send(res, refusal.status, { code: refusal.status, error_code: refusal.code, msg: refusal.message });
      if (databaseUnavailable(e)) {
        res.setHeader("retry-after", String(DATABASE_RETRY_AFTER_SECONDS));
        return send(res, 503, { code: 503, error_code: "database_unavailable", msg: "The database is not answering; try again shortly" });
      }
      console.error(`auth stand-in: unexpected ${(e as Error)?.name ?? "error"}${e instanceof postgres.PostgresError ? ` (${e.code})` : ""}`);
      return send(res, 500, { code: 500, error_code: "unexpected_failure", msg: "Unexpected failure" });
    }
  }

  return handle;
}

// bcrypt of a random string, so unknown-email logins cost the same as wrong-password ones.
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString("hex"), 10);

/**
 * A database refusal (a constraint, or a trigger's private.refuse_request or raise) as a 4xx, so
 * that what the database refuses is never a 500.
 */
function databaseRefusal(e: InstanceType<typeof postgres.PostgresError>): { status: number; code: string; message: string } | null {
  if (e.code.startsWith("23")) return { status: 409, code: "conflict", message: "the change conflicts with data that depends on it" };
  if (e.code === "PGRST") {
    try {
      const body = JSON.parse(e.message) as { code?: string; message?: string };
      const status = Number((JSON.parse(e.detail ?? "{}") as { status?: number }).status) || 400;
      return { status: status >= 400 && status < 500 ? status : 400, code: body.code ?? "refused", message: body.message ?? "refused by the database" };
    } catch {
      return { status: 400, code: "refused", message: "refused by the database" };
    }
  }
  if (e.code === "P0001") return { status: 422, code: "refused", message: "refused by the database" };
  return null;
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/** GoTrue's token hash of an email link: hex sha224 of the address and the 6-digit code. */
function emailTokenHash(email: string, token: string): string {
  return createHash("sha224").update(email.toLowerCase() + token).digest("hex");
}

function banned(u: UserRow): boolean {
  return !!u.banned_until && u.banned_until.getTime() > Date.now();
}

function banUntil(duration: string): Date | null {
  return duration === "none" ? null : new Date(Date.now() + (parseDuration(duration) ?? 0));
}

/** GoTrue's metadata update: keys are merged in, a null value removes its key. */
function mergeMetadata(current: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** What GoTrue answers a signup for an address that already has a confirmed account (confirmations on). */
function obfuscatedUser(email: string) {
  const now = new Date();
  return {
    id: randomUUID(), aud: "authenticated", role: "authenticated", email, phone: "", confirmation_sent_at: now,
    app_metadata: { provider: "email", providers: ["email"] }, user_metadata: {}, identities: [], created_at: now, updated_at: now, is_anonymous: false,
  };
}

function phoneOrEmail(phone: string | undefined): AuthError {
  return phone
    ? new AuthError(400, "phone_provider_disabled", "Unsupported phone provider")
    : new AuthError(422, "validation_failed", "An email address is required");
}

function factorJson(f: FactorRow) {
  return {
    id: f.id, ...(f.friendly_name ? { friendly_name: f.friendly_name } : {}), factor_type: f.factor_type, status: f.status,
    created_at: f.created_at, updated_at: f.updated_at, last_challenged_at: f.last_challenged_at,
  };
}

/** The entries whose value is set (GoTrue's omitempty fields). */
function present(fields: Record<string, Date | null>): Record<string, Date> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== null)) as Record<string, Date>;
}

/** GoTrue's rule for redirect URLs: site_url's scheme, host and port (any port on loopback), or an allow-list glob. */
function redirectAllowed(config: AuthConfig, candidate: string): boolean {
  if (/[\u0000-\u0020\u007f]/.test(candidate)) return false;
  let url: URL;
  let site: URL;
  try {
    url = new URL(candidate);
    site = new URL(config.site_url);
  } catch {
    return false;
  }
  const loopback = url.hostname === "localhost" || /^127\./.test(url.hostname) || url.hostname === "[::1]";
  if (url.protocol === site.protocol && url.hostname === site.hostname && (url.port === site.port || loopback)) return true;
  return config.additional_redirect_urls.some((pattern) => globRegExp(pattern).test(candidate));
}

/** A GoTrue allow-list pattern (gobwas/glob with "." and "/" as separators): ** any, * and ? not across separators. */
function globRegExp(pattern: string): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (c === "*") out += "[^./]*";
    else if (c === "?") out += "[^./]";
    else out += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? null;
}

/** The client's address as the socket sees it (the gateway calls this handler in-process). */
function ipOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? "0.0.0.0";
}

function userAgentOf(req: IncomingMessage): string | null {
  const ua = headerOf(req, "user-agent");
  return ua ? ua.replace(/[^\x20-\x7e]/g, "").slice(0, 512) : null;
}

function boundedInt(raw: string | null, fallback: number, min: number, max: number): number {
  const n = raw && /^\d{1,9}$/.test(raw) ? Number(raw) : fallback;
  return Math.min(max, Math.max(min, n));
}

/** Seals a TOTP secret: AES-256-GCM with the factor id bound in, as "v1:" + base64(iv | ciphertext | tag). */
function seal(key: Buffer, factorId: string, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv).setAAD(Buffer.from(factorId));
  const ct = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
  return `v1:${Buffer.concat([iv, ct, cipher.getAuthTag()]).toString("base64")}`;
}

function open(key: Buffer, factorId: string, sealed: string): string {
  const raw = Buffer.from(sealed.slice(3), "base64");
  const decipher = createDecipheriv("aes-256-gcm", key, raw.subarray(0, 12)).setAAD(Buffer.from(factorId));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

/**
 * The request's JSON body. Past MAX_BODY_BYTES it is refused with a 413, and the rest is still
 * read (and dropped), so that the client gets the answer instead of a reset connection.
 */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0;
        reject(new AuthError(413, "request_too_large", "request body is too large"));
      } else {
        chunks.push(chunk);
      }
    });
    req.on("error", reject);
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) return;
      if (size === 0) return resolve({});
      try {
        resolve(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks))));
      } catch {
        reject(new AuthError(400, "bad_json", "request body is not valid UTF-8 JSON"));
      }
    });
  });
}
