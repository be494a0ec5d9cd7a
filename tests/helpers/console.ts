/**
 * The console server as a browser meets it: a cookie jar that keeps what the server sets (HTTP-only
 * or not), the console's Origin on every request, and the CSRF token from GET /console/session.
 * Also a way to make a fresh member to sign in with, so that ending their sessions disturbs no
 * other test.
 */
import { randomUUID } from "node:crypto";
import bcrypt from "bcryptjs";
import type postgres from "postgres";
import { stack } from "./stack.ts";

/** One Set-Cookie as the jar keeps it. */
export interface JarCookie {
  name: string;
  value: string;
  attributes: string[];
}

/** A browser-like client of the console server at `base` (default: the stack's gateway). */
export class ConsoleBrowser {
  readonly cookies = new Map<string, JarCookie>();
  csrf = "";

  constructor(
    readonly base = stack().apiUrl,
    readonly fetcher: (req: Request) => Promise<Response> = (req) => fetch(req),
    readonly origin = base,
  ) {}

  /** A request to `path` with the jar's cookies, the Origin and the CSRF token (unless told not to). */
  async request(path: string, init: RequestInit & { origin?: string | null; csrf?: string | null } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const cookie = [...this.cookies.values()].map((c) => `${c.name}=${c.value}`).join("; ");
    if (cookie) headers.set("cookie", cookie);
    const origin = init.origin === undefined ? this.origin : init.origin;
    if (origin) headers.set("origin", origin);
    const csrf = init.csrf === undefined ? this.csrf : init.csrf;
    if (csrf) headers.set("x-csrf-token", csrf);
    const res = await this.fetcher(new Request(`${this.base}${path}`, { ...init, headers, redirect: "manual" }));
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const expired = attributes.some((a) => /^max-age=0$/i.test(a) || (/^expires=/i.test(a) && Date.parse(a.slice(8)) < Date.now()));
      if (expired || value === "") this.cookies.delete(name);
      else this.cookies.set(name, { name, value, attributes });
    }
    return res;
  }

  /** A JSON request; the answer's status and body. */
  async json(path: string, method = "GET", body?: unknown, init: { origin?: string | null; csrf?: string | null } = {}) {
    const res = await this.request(path, {
      method,
      ...init,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: any = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (parsed?.csrf) this.csrf = parsed.csrf;
    return { status: res.status, body: parsed, text, headers: res.headers };
  }

  /** Fetches the CSRF token, then signs in. */
  async signIn(email: string, password: string) {
    await this.json("/console/session");
    return this.json("/console/session", "POST", { email, password });
  }
}

/** A new member of `org` with `role` and a password: for tests that end sessions or ban users. */
export async function createMember(sql: postgres.Sql, org: string, role = "project_viewer", prefix = "member") {
  const email = `${prefix}-${randomUUID()}@acme.test`;
  const password = randomUUID();
  const [user] = await sql`insert into auth.users (id, email, email_confirmed_at, encrypted_password)
                           values (gen_random_uuid(), ${email}, now(), ${await bcrypt.hash(password, 4)}) returning id`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${user.id}, ${role}::public.member_role)`;
  return { email, password, userId: user.id as string };
}
