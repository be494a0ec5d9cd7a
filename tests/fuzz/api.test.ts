/**
 * Property-based fuzzing of everything the stack answers on its public port: every route of every
 * edge function (read from each function's own OpenAPI document), every exposed RPC (read from
 * PostgREST's OpenAPI, and checked against the catalog so none is missed), the auth
 * endpoints and the console server's own routes (a signed-in console session, with its cookies and
 * CSRF token, is one of the callers). Each gets malformed JSON, NUL bytes and unpaired surrogates, wrong types, oversized
 * bodies, odd headers and every kind of caller, and must answer:
 *   - never a 5xx, never an empty error body;
 *   - a refusal is JSON with a stable code;
 *   - a refusal writes nothing (every public table is fingerprinted around it).
 *
 * It runs alone, after the other suites (scripts/test.ts), because it compares the whole
 * database before and after each request. Its callers are a user of its own and the service role;
 * whatever a lucky input manages to create stays in the fuzz user's own organization.
 */
import { randomUUID } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACME, GLOBEX } from "../helpers/fixtures.ts";
import { ConsoleBrowser } from "../helpers/console.ts";
import { type StripeFake, startStripeFake } from "../helpers/stripe_fake.ts";
import { stack, superuser } from "../helpers/stack.ts";

const s = stack();
const sql = superuser();
const RUNS = Number(process.env.GATEHOUSE_FUZZ_RUNS ?? 30);

interface Target {
  name: string;
  method: string;
  /** The URL, `{param}` placeholders left in. */
  url: string;
  kind: "function" | "rest" | "auth" | "console";
  /** Top-level body members the route takes (for bodies that are almost right). */
  fields: string[];
}

interface Sent {
  target: Target;
  status: number;
  text: string;
}

let fuzzOrg = "";
let userToken = "";
/** The fuzz user signed in to the console server: its cookies and CSRF token. */
const consoleSession = new ConsoleBrowser();
let requests = 0;
const statuses = new Map<number, number>();

/** A fingerprint of every public table: any row added, changed or removed changes it. */
async function fingerprint(): Promise<string> {
  const tables = await sql<{ name: string }[]>`
    select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind = 'r' order by 1`;
  const parts = await sql.unsafe(tables.map((t) => `select md5(coalesce(string_agg(x::text, ',' order by x::text), '')) as h from ${t.name} x`).join(" union all "));
  return parts.map((p) => p.h).join("");
}

async function signUpFuzzUser(): Promise<string> {
  const email = `fuzz-${randomUUID()}@fuzz.test`;
  const password = randomUUID();
  const id = randomUUID();
  await sql`insert into auth.users (id, email, email_confirmed_at, encrypted_password, raw_app_meta_data)
            values (${id}, ${email}, now(), ${await bcrypt.hash(password, 4)}, '{"provider":"email"}')`;
  const res = await fetch(`${s.apiUrl}/auth/v1/token?grant_type=password`, {
    method: "POST", headers: { apikey: s.anonKey, "content-type": "application/json" }, body: JSON.stringify({ email, password }),
  });
  const token = (await res.json()).access_token as string;
  expect((await consoleSession.signIn(email, password)).status).toBe(200);
  const created = await fetch(`${s.restUrl}/rpc/create_organization`, {
    method: "POST", headers: { apikey: s.anonKey, authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ p_name: "Fuzz", p_slug: `fuzz-${id.slice(0, 8)}` }),
  });
  fuzzOrg = await created.json();
  return token;
}

/** Every route of every function, from the function's own OpenAPI document. */
async function functionTargets(): Promise<Target[]> {
  const root = join(process.cwd(), "functions");
  const names = readdirSync(root).filter((n) => !n.startsWith("_") && statSync(join(root, n)).isDirectory());
  const targets: Target[] = [];
  for (const name of names) {
    const res = await fetch(`${s.functionsUrl}/${name}/openapi.json`, { headers: { authorization: `Bearer ${s.anonKey}` } });
    expect(res.status, `${name}/openapi.json`).toBe(200);
    const doc = await res.json();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        const schema = op.requestBody?.content?.["application/json"]?.schema;
        const fields = Object.keys(schema?.properties ?? {});
        targets.push({ name: `${method.toUpperCase()} /functions/v1${path}`, method: method.toUpperCase(), url: `${s.functionsUrl}${path}`, kind: "function", fields });
      }
      // Methods a route does not take must be refused cleanly too.
      targets.push({ name: `PUT /functions/v1${path}`, method: "PUT", url: `${s.functionsUrl}${path}`, kind: "function", fields: [] });
    }
  }
  return targets;
}

/** Every RPC PostgREST exposes to a user or the service role, with its argument names. */
async function rpcTargets(): Promise<Target[]> {
  const byName = new Map<string, Target>();
  for (const auth of [`Bearer ${userToken}`, `Bearer ${s.serviceRoleKey}`]) {
    const doc = await (await fetch(`${s.restUrl}/`, { headers: { apikey: s.anonKey, authorization: auth } })).json();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      if (!path.startsWith("/rpc/") || !ops.post) continue;
      const body = (ops.post.parameters ?? []).find((p: any) => p.in === "body");
      const fields = Object.keys(body?.schema?.properties ?? {});
      byName.set(path, { name: `POST /rest/v1${path}`, method: "POST", url: `${s.restUrl}${path}`, kind: "rest", fields });
    }
  }
  return [...byName.values()];
}

const AUTH_TARGETS = (): Target[] => [
  ...["password", "refresh_token", "id_token", ""].map((g) => ({
    name: `POST /auth/v1/token?grant_type=${g}`, method: "POST", url: `${s.apiUrl}/auth/v1/token?grant_type=${g}`, kind: "auth" as const,
    fields: ["email", "password", "refresh_token"],
  })),
  { name: "GET /auth/v1/user", method: "GET", url: `${s.apiUrl}/auth/v1/user`, kind: "auth", fields: [] },
  { name: "POST /auth/v1/logout", method: "POST", url: `${s.apiUrl}/auth/v1/logout?scope=local`, kind: "auth", fields: [] },
  { name: "GET /auth/v1/settings", method: "GET", url: `${s.apiUrl}/auth/v1/settings`, kind: "auth", fields: [] },
];

/**
 * The console server's routes. Signing out and changing the password are left out: either would end
 * the fuzz caller's sessions (console_server.test.ts covers their bad input).
 */
const CONSOLE_TARGETS = (): Target[] => ([
  ["GET", "/session", []], ["POST", "/session", ["email", "password"]],
  ["GET", "/auth/confirm?token_hash={param}&type=invite", []], ["POST", "/auth/confirm", ["token_hash", "type"]],
  ["POST", "/auth/recover", ["email"]],
  ["GET", "/mfa/factors", []], ["POST", "/mfa/enroll", ["friendly_name"]], ["POST", "/mfa/verify", ["factor_id", "code"]],
  ["DELETE", "/mfa/factors/{id}", []], ["POST", "/api/rest/v1/rpc/create_invitation", ["p_email", "p_role"]],
  ["POST", "/api/functions/v1/invitations", ["email", "role"]],
] as [string, string, string[]][]).map(([method, path, fields]) => ({
  name: `${method} /console${path}`, method, url: `${s.apiUrl}/console${path}`, kind: "console" as const, fields,
}));

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------
const nasty = fc.constantFrom("\u0000", "a\u0000b", "\ud800", "\udfff", "x\ud83d", "\u202e", "\uffff", "'; drop table x; --", "%00", "../../etc", "0000-01-01", "99999-12-31T00:00:00Z", "-1", "1e309", "NaN");
const scalar = fc.oneof(fc.string(), nasty, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.uuid());
const value = fc.oneof(scalar, fc.array(scalar, { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 3 }));

/** A body for `target`: garbage text, JSON of the wrong shape, or its own fields with wrong or nasty values. */
function bodyFor(target: Target): fc.Arbitrary<string> {
  const almost = target.fields.length === 0
    ? fc.constant("{}")
    : fc.dictionary(fc.constantFrom(...target.fields), value, { minKeys: 1 }).map((o) => JSON.stringify(o));
  return fc.oneof(
    almost,
    almost,
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 40 }),
    fc.constantFrom("", "{", "[1,", "{\"a\":}", "null", "\"x\"", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"\\u0000\":1}",
      "[".repeat(200) + "]".repeat(200), "\u0000", "\ufeff{}"),
  );
}

/** X-Org-Id: none, the fuzz user's own ("fuzz"), the seed's (not the fuzz user's), or junk. */
const orgHeader = fc.oneof(fc.constant(undefined), fc.constant("fuzz"), fc.constant(ACME), fc.constant(GLOBEX), fc.uuid(),
  fc.string({ unit: "grapheme-ascii", maxLength: 10 }), fc.constantFrom("00000000-0000-0000-0000-000000000000", "NOT-A-UUID"));
const contentType = fc.constantFrom(undefined, "application/json", "text/plain", "application/json; charset=latin1", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "");

type Caller = "none" | "anon" | "garbage" | "user" | "service";
const caller = fc.constantFrom<Caller>("none", "anon", "garbage", "user", "service");

function headersFor(target: Target, who: Caller, org: string | undefined, type: string | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  if (target.kind === "console") return consoleHeaders(who, org, type);
  const key = who === "service" ? s.serviceRoleKey : s.anonKey;
  if (target.kind !== "function" && who !== "none") h.apikey = key;
  if (who === "user") h.authorization = `Bearer ${userToken}`;
  if (who === "service") h.authorization = `Bearer ${s.serviceRoleKey}`;
  if (who === "anon") h.authorization = `Bearer ${s.anonKey}`;
  if (who === "garbage") h.authorization = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.not-a-signature";
  if (org !== undefined) h["x-org-id"] = org === "fuzz" ? fuzzOrg : org;
  if (type !== undefined) h["content-type"] = type;
  return h;
}

/** A console caller: signed in (cookies, Origin, CSRF token), from another site, forged, or nobody. */
function consoleHeaders(who: Caller, org: string | undefined, type: string | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  const cookie = [...consoleSession.cookies.values()].map((c) => `${c.name}=${c.value}`).join("; ");
  if (who === "user" || who === "service") Object.assign(h, { cookie, origin: s.apiUrl, "x-csrf-token": consoleSession.csrf });
  if (who === "anon") h.origin = "https://elsewhere.example";
  if (who === "garbage") Object.assign(h, { cookie: "gh-auth=base64-eyJub3QiOiJhIHNlc3Npb24ifQ; gh-activity=x.y; gh-csrf=z", origin: s.apiUrl, "x-csrf-token": "z" });
  if (org !== undefined) h["x-org-id"] = org === "fuzz" ? fuzzOrg : org;
  if (type !== undefined) h["content-type"] = type;
  return h;
}

const pathParam = fc.oneof(fc.uuid(), fc.string({ minLength: 1, maxLength: 12 }).map(encodeURIComponent), fc.constantFrom("%00", "..", "%2e%2e%2f", "a".repeat(300)));

async function send(target: Target, url: string, init: RequestInit): Promise<Sent> {
  const res = await fetch(url, { ...init, method: target.method, body: target.method === "GET" ? undefined : init.body });
  const text = await res.text();
  requests++;
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  return { target, status: res.status, text };
}

/** The stable code of a refusal's JSON body, whichever service answered. */
function codeOf(text: string): unknown {
  const body = JSON.parse(text);
  return body?.error?.code ?? body?.error_code ?? body?.code;
}

async function check(sent: Sent, before: string): Promise<void> {
  const where = `${sent.target.name} -> ${sent.status} ${sent.text.slice(0, 200)}`;
  expect(sent.status, where).toBeGreaterThanOrEqual(200);
  expect(sent.status, where).toBeLessThan(500);
  if (sent.status >= 400) {
    expect(sent.text, where).not.toBe("");
    expect(() => codeOf(sent.text), where).not.toThrow();
    expect(typeof codeOf(sent.text), where).toBe("string");
    expect(await fingerprint(), `${where}: a refusal wrote something`).toBe(before);
  }
}

function fill(url: string, param: string): string {
  return url.replace(/\{[^}]+\}/g, param);
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------
let targets: Target[] = [];
let seedBefore = "";

/** What the seed's two organizations hold, so that the fuzzing provably leaves them alone. */
async function seedFingerprint(): Promise<string> {
  const [row] = await sql`
    select md5(string_agg(x, ',' order by x)) as h from (
      select a::text as x from public.agents a where a.org_id in (${ACME}, ${GLOBEX})
      union all select m::text from public.organization_members m where m.org_id in (${ACME}, ${GLOBEX})
      union all select c::text from public.connections c where c.org_id in (${ACME}, ${GLOBEX})
      union all select p::text from public.projects p where p.org_id in (${ACME}, ${GLOBEX})) rows`;
  return row.h;
}

// Stripe's fake answers the billing function (it runs alone, so the fake's port is free): what
// Stripe itself would answer is not a 5xx of ours.
let stripe: StripeFake | undefined;

beforeAll(async () => {
  stripe = await startStripeFake();
  userToken = await signUpFuzzUser();
  targets = [...(await functionTargets()), ...(await rpcTargets()), ...AUTH_TARGETS(), ...CONSOLE_TARGETS()];
  seedBefore = await seedFingerprint();
}, 60_000);

afterAll(async () => {
  const fiveHundreds = [...statuses].filter(([st]) => st >= 500).reduce((n, [, c]) => n + c, 0);
  console.log(`fuzz: ${requests} requests to ${targets.length} routes, ${fiveHundreds} 5xx; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  await sql.end();
  await stripe?.close();
});

describe("fuzzing every route", () => {
  it("covers every RPC the catalog exposes", async () => {
    const exposed = await sql<{ name: string }[]>`
      select distinct '/rest/v1/rpc/' || p.proname as name from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'public' and p.prokind = 'f'
         and (has_function_privilege('authenticated', p.oid, 'execute') or has_function_privilege('service_role', p.oid, 'execute')
              or has_function_privilege('anon', p.oid, 'execute'))`;
    const covered = new Set(targets.map((t) => t.name.replace(/^POST /, "")));
    expect(exposed.map((e) => e.name).filter((n) => !covered.has(n))).toEqual([]);
    // Every function route, as its OpenAPI document names it, answers (none is a 404 to the fuzzer).
    for (const t of targets.filter((t) => t.kind === "function" && t.method !== "PUT")) {
      const res = await fetch(fill(t.url, randomUUID()), { method: t.method, headers: { authorization: `Bearer ${s.anonKey}` } });
      await res.body?.cancel();
      expect(res.status, t.name).not.toBe(404);
    }
  });

  it("answers the classic bad inputs on every route with a 4xx JSON code and writes nothing", async () => {
    const big = JSON.stringify({ a: "x".repeat(2 * 1024 * 1024) });
    for (const target of targets) {
      const url = fill(target.url, randomUUID());
      for (const [who, body, type] of [
        ["none", "{}", "application/json"], ["user", "{not json", "application/json"], ["user", big, "application/json"],
        ["user", '{"a":"\\u0000"}', "application/json"], ["service", '{"x":"\\ud800"}', "application/json"], ["user", "{}", "text/plain"],
        ["user", "", "text/plain"], ["service", "", "multipart/form-data; boundary=x"], ["garbage", "[]", "application/json; charset=latin1"],
      ] as [Caller, string, string][]) {
        const before = await fingerprint();
        await check(await send(target, url, { headers: headersFor(target, who, "fuzz", type), body }), before);
      }
    }
  }, 300_000);

  it("never answers generated input with a 5xx, and a refusal writes nothing", async () => {
    for (const target of targets) {
      // Two thirds of the runs send a well-formed envelope (a real caller, JSON, a usable context)
      // around a body of the route's own fields, so that generated values reach the handler and
      // the database instead of stopping at the first header check.
      const envelope = fc.oneof(
        { weight: 1, arbitrary: fc.tuple(caller, orgHeader, contentType) },
        { weight: 2, arbitrary: fc.tuple(fc.constantFrom<Caller>("user", "service"), fc.constantFrom("fuzz", undefined), fc.constant("application/json")) },
      );
      await fc.assert(
        fc.asyncProperty(envelope, bodyFor(target), pathParam, async ([who, org, type], body, param) => {
          const before = await fingerprint();
          await check(await send(target, fill(target.url, param), { headers: headersFor(target, who, org, type), body }), before);
        }),
        { numRuns: RUNS, endOnFailure: true },
      );
    }
  }, 600_000);

  it("leaves the seed's organizations as they were", async () => {
    expect(await seedFingerprint()).toBe(seedBefore);
  });
});
