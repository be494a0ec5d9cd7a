/**
 * /functions/v1/rest: REST with a personal access token, where the gateway in front takes JWTs only
 * (hosted Supabase; docs/tokens.md). A program sends `Authorization: Bearer gtp_…`; this function
 * checks the checksum (no lookup), exchanges the token inside (pat/exchange.ts: the database answers
 * what it acts for) and passes the request to PostgREST with the 5-minute access token it signs, so
 * the access token never reaches the program: Supabase Auth would take it as the owner's.
 *
 *   GET  /rest/{table}?…        a table or view (PostgREST's query string, Range, Prefer)
 *   POST /rest/rpc/{function}   an RPC (a JSON body)
 *
 * These are the only shapes of request a token's scopes open (private.token_route_scope); the
 * database checks the route, the token and its scopes again on every request. Locally the gateway
 * does the same exchange for /rest/v1 itself, so this function is the hosted path, and works
 * locally too. verify_jwt is off: the personal access token is the credential.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { functionApp } from "../_shared/http/app.ts";
import { readRawBody } from "../_shared/http/body.ts";
import { configuration } from "../_shared/http/config.ts";
import { refuse } from "../_shared/http/errors.ts";
import { refusals } from "../_shared/http/schemas.ts";
import { exchangeToken, signAccessToken } from "../_shared/pat/exchange.ts";
import { patFormatValid } from "../_shared/pat/token.ts";

const config = configuration((get) => {
  const url = z.url().parse(get("SUPABASE_URL")).replace(/\/$/, "");
  return {
    restUrl: `${url}/rest/v1`,
    anonKey: z.string().min(20).parse(get("SUPABASE_ANON_KEY")),
    jwtSecret: z.string().min(32).parse(get("GATEHOUSE_JWT_SECRET")),
    issuer: `${url}/functions/v1/tokens`,
  };
}, "tokens_misconfigured");

/** The largest RPC body passed on. */
const MAX_BODY_BYTES = 256 * 1024;
/** The request headers PostgREST reads that are passed on; the rest are not. */
const PASSED = ["accept", "prefer", "range", "range-unit", "content-type", "x-org-id", "x-project-id"];
/** The answer headers passed back. */
const RETURNED = ["content-type", "content-range", "preference-applied", "location"];

const app = functionApp({
  name: "rest",
  version: "1.0.0",
  description: "REST (PostgREST) with a personal access token: the token is exchanged inside, and the request passed on with the access token it gives.",
});

// A name is checked in forward(), after the body's size and the token: every request of the
// route's shape is answered in that order, whatever its name.
const Name = z.string().max(200).describe("A table, view or function name");
/** What a table, view or function name may be (one path segment, no escapes). */
const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

app.openapi(createRoute({
  method: "get", path: "/{table}", summary: "Read a table or view as PostgREST does, with a personal access token (Authorization: Bearer gtp_…)",
  request: { params: z.object({ table: Name }) },
  security: [{ bearer: [] }],
  responses: { 200: { description: "PostgREST's answer" }, 206: { description: "A range of rows" }, ...refusals(400, 401, 403, 404, 406, 416, 503) },
}), (c) => forward(c, "", c.req.valid("param").table));

app.openapi(createRoute({
  method: "post", path: "/rpc/{function}", summary: "Call an RPC as PostgREST does, with a personal access token (Authorization: Bearer gtp_…)",
  request: { params: z.object({ function: Name }) },
  security: [{ bearer: [] }],
  responses: { 200: { description: "PostgREST's answer" }, ...refusals(400, 401, 403, 404, 409, 413, 415, 429, 503) },
}), (c) => forward(c, "/rpc", c.req.valid("param").function));

/** Passes the request on to PostgREST (`${prefix}/${name}`) as the token's owner, narrowed to the token. */
async function forward(c: Context, prefix: string, name: string): Promise<Response> {
  // The size first, as every function's body: nothing larger is read, whoever sends it.
  const body = c.req.method === "POST" ? await readRawBody(c.req.raw, MAX_BODY_BYTES) : undefined;
  const bearer = c.req.header("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!bearer) throw refuse("missing_auth", "send Authorization: Bearer <personal access token>");
  if (!patFormatValid(bearer)) throw refuse("token_invalid", "this route takes a personal access token (gtp_…) whose checksum holds");
  if (!NAME.test(name)) throw refuse("not_found", "no table, view or function of that name");
  const path = `${prefix}/${name}`;
  const { restUrl, anonKey, jwtSecret, issuer } = config();
  const { token } = await signAccessToken(await exchangeToken(bearer), jwtSecret, issuer);
  const headers = new Headers({ apikey: anonKey, authorization: `Bearer ${token}` });
  for (const name of PASSED) {
    const value = c.req.header(name);
    if (value !== undefined) headers.set(name, value);
  }
  const answer = await fetch(`${restUrl}${path}${new URL(c.req.url).search}`, { method: c.req.method, headers, body });
  const returned = new Headers();
  for (const name of RETURNED) {
    const value = answer.headers.get(name);
    if (value !== null) returned.set(name, value);
  }
  return new Response(answer.body, { status: answer.status, headers: returned });
}

Deno.serve(app.fetch);
