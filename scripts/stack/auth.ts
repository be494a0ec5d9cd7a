/**
 * LOCAL-ONLY stand-in for Supabase Auth (GoTrue). Hosted deployments use Supabase Auth itself;
 * this exists because GoTrue can't run here without Docker.
 *
 * It implements just enough of GoTrue's HTTP API for @supabase/supabase-js to work unchanged:
 *   POST /token?grant_type=password        email + password against bcrypt hashes in auth.users
 *   POST /token?grant_type=refresh_token   rotates the refresh token; reuse revokes the session
 *   GET  /user                             the signed-in user (the session must still exist)
 *   POST /logout?scope=local|global|others ends sessions
 *   GET  /health, GET /settings
 * Access tokens are HS256 JWTs with GoTrue's claims (sub, role, aud, email, session_id, exp, ...).
 * Errors use GoTrue's body shape ({ code, error_code, msg }) because supabase-js parses it.
 * One line per request goes to its log (time, method, path, status, ms; never a token or body).
 */
import { createHash, randomBytes } from "node:crypto";
import { appendFile } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import bcrypt from "bcryptjs";
import { jwtVerify, SignJWT } from "jose";
import type { Sql, TransactionSql } from "postgres";
import { z } from "zod";

const MAX_BODY_BYTES = 16 * 1024;

interface AuthOptions {
  sql: Sql;
  jwtSecret: string;
  jwtExpiry: number;
  issuer: string;
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
  last_sign_in_at: Date | null;
  raw_app_meta_data: Record<string, unknown>;
  raw_user_meta_data: Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
  banned_until: Date | null;
  is_anonymous: boolean;
}

class AuthError extends Error {
  constructor(readonly status: number, readonly errorCode: string, message: string) {
    super(message);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const PasswordGrant = z.object({ email: z.email().max(255), password: z.string().min(1).max(1024) });
const RefreshGrant = z.object({ refresh_token: z.string().min(1).max(256) });

/** A request handler for everything under /auth/v1 (the prefix already stripped from `path`). */
export function createAuthHandler(opts: AuthOptions) {
  const key = new TextEncoder().encode(opts.jwtSecret);
  const { sql } = opts;

  function userJson(u: UserRow) {
    return {
      id: u.id,
      aud: u.aud,
      role: u.role,
      email: u.email ?? "",
      email_confirmed_at: u.email_confirmed_at,
      phone: u.phone ?? "",
      confirmed_at: u.email_confirmed_at,
      last_sign_in_at: u.last_sign_in_at,
      app_metadata: u.raw_app_meta_data,
      user_metadata: u.raw_user_meta_data,
      identities: [],
      created_at: u.created_at,
      updated_at: u.updated_at,
      is_anonymous: u.is_anonymous,
    };
  }

  async function issueSession(db: Sql | TransactionSql, user: UserRow, sessionId: string, parentHash: string | null) {
    const refresh = randomBytes(32).toString("base64url");
    await db`
      insert into auth.refresh_tokens (token_hash, user_id, session_id, parent)
      values (${sha256(refresh)}, ${user.id}, ${sessionId}, ${parentHash})`;
    const now = Math.floor(Date.now() / 1000);
    const expiresAt = now + opts.jwtExpiry;
    const accessToken = await new SignJWT({
      email: user.email ?? "",
      phone: user.phone ?? "",
      app_metadata: user.raw_app_meta_data,
      user_metadata: user.raw_user_meta_data,
      role: user.role,
      aal: "aal1",
      amr: [{ method: "password", timestamp: now }],
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
      expires_in: opts.jwtExpiry,
      expires_at: expiresAt,
      refresh_token: refresh,
      user: userJson(user),
    };
  }

  function usable(u: UserRow | undefined): u is UserRow {
    return !!u && (!u.banned_until || u.banned_until.getTime() < Date.now());
  }

  async function passwordGrant(body: unknown) {
    const input = PasswordGrant.safeParse(body);
    if (!input.success) throw new AuthError(400, "validation_failed", "email and password are required");
    const [user] = await sql<UserRow[]>`
      select * from auth.users where lower(email) = lower(${input.data.email}) and deleted_at is null`;
    // Compare against a dummy hash when the user is unknown, so timing doesn't reveal which emails exist.
    const hash = user?.encrypted_password ?? DUMMY_HASH;
    const ok = await bcrypt.compare(input.data.password, hash);
    if (!ok || !usable(user) || !user.encrypted_password) {
      throw new AuthError(400, "invalid_credentials", "Invalid login credentials");
    }
    const [session] = await sql<{ id: string }[]>`insert into auth.sessions (user_id) values (${user.id}) returning id`;
    const [fresh] = await sql<UserRow[]>`
      update auth.users set last_sign_in_at = now(), updated_at = now() where id = ${user.id} returning *`;
    return issueSession(sql, fresh, session.id, null);
  }

  async function refreshGrant(body: unknown) {
    const input = RefreshGrant.safeParse(body);
    if (!input.success) throw new AuthError(400, "validation_failed", "refresh_token is required");
    const tokenHash = sha256(input.data.refresh_token);
    const outcome = await sql.begin(async (tx) => {
      const [row] = await tx<{ id: string; revoked: boolean; session_id: string; user_id: string }[]>`
        select id, revoked, session_id, user_id from auth.refresh_tokens where token_hash = ${tokenHash} for update`;
      if (!row) throw new AuthError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found");
      if (row.revoked) {
        // A rotated-out token presented again means it leaked: end the whole session (and commit that).
        await tx`delete from auth.sessions where id = ${row.session_id}`;
        return null;
      }
      await tx`update auth.refresh_tokens set revoked = true, updated_at = now() where id = ${row.id}`;
      const [user] = await tx<UserRow[]>`select * from auth.users where id = ${row.user_id} and deleted_at is null`;
      if (!usable(user)) throw new AuthError(400, "user_banned", "User is banned");
      await tx`update auth.sessions set updated_at = now() where id = ${row.session_id}`;
      return await issueSession(tx, user, row.session_id, tokenHash);
    });
    if (!outcome) throw new AuthError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used");
    return outcome;
  }

  async function authenticate(req: IncomingMessage): Promise<{ userId: string; sessionId: string }> {
    const header = req.headers.authorization ?? "";
    const token = /^Bearer\s+(.+)$/i.exec(header)?.[1];
    if (!token) throw new AuthError(401, "no_authorization", "This endpoint requires a Bearer token");
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(token, key, { algorithms: ["HS256"] }));
    } catch {
      throw new AuthError(403, "bad_jwt", "invalid JWT: unable to parse or verify signature");
    }
    const sessionId = typeof claims.session_id === "string" ? claims.session_id : null;
    if (!claims.sub || !sessionId) throw new AuthError(403, "bad_jwt", "JWT is not a user session token");
    // Validly signed, but no session of ours: sub and session_id are always uuids.
    if (!UUID.test(claims.sub) || !UUID.test(sessionId)) throw new AuthError(401, "bad_jwt", "JWT sub and session_id must be uuids");
    const [session] = await sql`select 1 from auth.sessions where id = ${sessionId} and user_id = ${claims.sub}`;
    if (!session) throw new AuthError(403, "session_not_found", "Session from session_id claim in JWT does not exist");
    return { userId: claims.sub, sessionId };
  }

  async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) {
    const started = performance.now();
    res.once("close", () => {
      appendFile(opts.logFile, `${new Date().toISOString()} ${req.method} ${path} ${res.statusCode} ${Math.round(performance.now() - started)}ms\n`, () => {});
    });
    try {
      if (req.method === "GET" && path === "/health") {
        return send(res, 200, { version: "local-stand-in", name: "GoTrue (Gatehouse local stand-in)", description: "local only; hosted deployments use Supabase Auth" });
      }
      if (req.method === "GET" && path === "/settings") {
        return send(res, 200, { external: { email: true }, disable_signup: true, mailer_autoconfirm: false, phone_autoconfirm: false, sms_provider: "" });
      }
      if (req.method === "POST" && path === "/token") {
        const body = await readJson(req);
        const grant = query.get("grant_type");
        if (grant === "password") return send(res, 200, await passwordGrant(body));
        if (grant === "refresh_token") return send(res, 200, await refreshGrant(body));
        throw new AuthError(400, "unsupported_grant_type", "grant_type must be password or refresh_token");
      }
      if (req.method === "GET" && path === "/user") {
        const { userId } = await authenticate(req);
        const [user] = await sql<UserRow[]>`select * from auth.users where id = ${userId} and deleted_at is null`;
        if (!user) throw new AuthError(404, "user_not_found", "User from sub claim in JWT does not exist");
        return send(res, 200, userJson(user));
      }
      if (req.method === "POST" && path === "/logout") {
        const { userId, sessionId } = await authenticate(req);
        const scope = query.get("scope") ?? "global";
        if (scope === "local") await sql`delete from auth.sessions where id = ${sessionId}`;
        else if (scope === "others") await sql`delete from auth.sessions where user_id = ${userId} and id <> ${sessionId}`;
        else if (scope === "global") await sql`delete from auth.sessions where user_id = ${userId}`;
        else throw new AuthError(400, "validation_failed", "scope must be global, local or others");
        res.writeHead(204).end();
        return;
      }
      throw new AuthError(404, "not_found", "not supported by the local auth stand-in");
    } catch (e) {
      if (e instanceof AuthError) return send(res, e.status, { code: e.status, error_code: e.errorCode, msg: e.message });
      console.error(`auth stand-in: unexpected ${(e as Error)?.name ?? "error"}`);
      return send(res, 500, { code: 500, error_code: "unexpected_failure", msg: "Unexpected failure" });
    }
  }

  return handle;
}

// bcrypt of a random string, so unknown-email logins cost the same as wrong-password ones.
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString("hex"), 10);

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
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
