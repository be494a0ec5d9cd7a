/**
 * /functions/v1/tokens: personal access tokens in use (docs/tokens.md).
 *
 *   POST /exchange   (internal: the local gateway's; the rest function exchanges in-process) X-Personal-Access-Token:
 *                    gtp_… → a 5-minute access token for REST and the functions, carrying the
 *                    token's user, organization, project and scopes. It is never handed to the
 *                    token's holder: a JWT signed with the project's secret for a real user is
 *                    also a credential Supabase Auth accepts (it needs no session), so a
 *                    read-only token's holder could use it to change its owner's password or
 *                    factors. Only the service role may call it.
 *   POST /leaked     a secret scanner's report of tokens found in public (GitHub's secret scanning
 *                    partner format, signed with ECDSA P-256): each one of ours is revoked, with an
 *                    audit entry naming where it was found
 *
 * verify_jwt is off: a scanner has no account, and the exchange compares its caller's key with
 * the service role's itself. Each route checks its own credential before anything else.
 *
 * Configuration: GATEHOUSE_JWT_SECRET (the project's JWT secret, which signs the access tokens;
 * hosted: the legacy JWT secret, set as a function secret); GATEHOUSE_LEAK_REPORT_KEYS, the
 * scanner's public keys in the shape of GitHub's https://api.github.com/meta/public_keys/secret_scanning
 * ({"public_keys": [{"key_identifier", "key" (PEM), "is_current"}]}); without it /leaked answers 503.
 */
import { createHash, createPublicKey, type KeyObject, timingSafeEqual, verify } from "node:crypto";
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody, readRawBody } from "../_shared/http/body.ts";
import { configuration } from "../_shared/http/config.ts";
import { serviceDb } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, refusals } from "../_shared/http/schemas.ts";
import { ACCESS_TOKEN_SECONDS, exchangeToken, signAccessToken } from "../_shared/pat/exchange.ts";
import { PAT_SCOPES } from "../_shared/pat/token.ts";

const signing = configuration((get) => ({
  jwtSecret: z.string().min(32).parse(get("GATEHOUSE_JWT_SECRET")),
  serviceRoleKey: z.string().min(20).parse(get("SUPABASE_SERVICE_ROLE_KEY")),
  issuer: `${(get("SUPABASE_URL") ?? "").replace(/\/$/, "")}/functions/v1/tokens`,
}), "tokens_misconfigured");

const LeakKeys = z.object({
  public_keys: z.array(z.object({ key_identifier: z.string().min(1), key: z.string().min(1), is_current: z.boolean().optional() })).min(1),
});
const leakKeys = configuration((get): Map<string, KeyObject> | null => {
  const raw = get("GATEHOUSE_LEAK_REPORT_KEYS");
  if (!raw) return null;
  const parsed = LeakKeys.parse(JSON.parse(raw));
  return new Map(parsed.public_keys.map((k) => [k.key_identifier, createPublicKey(k.key)]));
}, "tokens_misconfigured");

/** The largest leak report taken (GitHub batches matches; each is one short object). */
const MAX_REPORT_BYTES = 512 * 1024;

const app = functionApp({
  name: "tokens",
  version: "1.0.0",
  description: "Personal access tokens in use: exchanged for short-lived access tokens, and revoked when a secret scanner reports one leaked.",
});

const Exchanged = z.object({
  access_token: z.string().describe("A JWT for REST and the functions: Authorization: Bearer <access_token>"),
  token_type: z.literal("bearer"),
  expires_in: z.number().int().describe(`Seconds it lives (at most ${ACCESS_TOKEN_SECONDS}, never past the personal access token's expiry)`),
  expires_at: z.number().int().describe("When it expires, in seconds since the epoch"),
  personal_access_token: z.object({
    id: z.uuid(),
    org_id: z.uuid(),
    project_id: z.uuid().nullable(),
    scopes: z.array(z.enum(PAT_SCOPES)),
    expires_at: z.string(),
  }),
});

// The exchange takes no body (an empty JSON object at most).
app.use("/exchange", jsonBody(1024));

app.openapi(createRoute({
  method: "post", path: "/exchange",
  summary: "Internal (the service role): exchange the personal access token in X-Personal-Access-Token for a short-lived access token",
  request: { headers: z.object({ "x-personal-access-token": z.string().optional().describe("The personal access token (gtp_…) to exchange") }) },
  security: [{ bearer: [] }],
  responses: { 200: { description: "The access token and what it acts for", content: jsonContent(Exchanged) }, ...refusals(401, 403, 503) },
}), async (c) => {
  const { jwtSecret, issuer, serviceRoleKey } = signing();
  const bearer = c.req.header("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1] ?? "";
  if (!sameSecret(bearer, serviceRoleKey)) throw refuse("token_exchange_internal");
  const pat = c.req.header("x-personal-access-token");
  if (!pat) throw refuse("missing_auth", "send the personal access token in X-Personal-Access-Token");
  const grant = await exchangeToken(pat);
  const { token, expiresAt } = await signAccessToken(grant, jwtSecret, issuer);
  return c.json({
    access_token: token,
    token_type: "bearer" as const,
    expires_in: expiresAt - Math.floor(Date.now() / 1000),
    expires_at: expiresAt,
    personal_access_token: { id: grant.id, org_id: grant.orgId, project_id: grant.projectId, scopes: grant.scopes, expires_at: grant.expiresAt },
  }, 200);
});

const Match = z.object({
  token: z.string().max(1000),
  type: z.string().max(200),
  url: z.string().max(4000).optional(),
  source: z.string().max(100).optional(),
});
const Feedback = z.object({
  token_hash: z.string().describe("SHA-256 of the reported token, hex"),
  token_type: z.string(),
  label: z.enum(["true_positive", "false_positive"]),
});

app.openapi(createRoute({
  method: "post", path: "/leaked", summary: "A secret scanner's signed report of tokens found in public (GitHub's partner format)",
  description: "The body is a JSON array of {token, type, url, source}, signed as it is: the signature is checked over the raw bytes before the body is read.",
  request: {
    headers: z.object({
      "github-public-key-identifier": z.string().optional().describe("Which of the scanner's keys signed the body"),
      "github-public-key-signature": z.string().optional().describe("Base64 ECDSA (P-256, SHA-256, DER) signature of the raw body"),
    }),
  },
  responses: {
    200: { description: "Per token: ours (revoked now or before) or not", content: jsonContent(z.array(Feedback)) },
    ...refusals(400, 401, 413, 415, 503),
  },
}), async (c) => {
  // The size first, as every function's body: nothing larger is read, whoever sends it.
  const body = await readRawBody(c.req.raw, MAX_REPORT_BYTES);
  const keys = leakKeys();
  if (!keys) throw refuse("leak_reports_not_configured");
  const keyId = c.req.header("github-public-key-identifier");
  const signature = c.req.header("github-public-key-signature");
  if (!keyId || !signature) throw refuse("leak_report_signature_missing");
  // The signature is over the raw bytes, checked before anything reads them.
  const key = keys.get(keyId);
  const signatureBytes = /^[A-Za-z0-9+/]+={0,2}$/.test(signature) ? Buffer.from(signature, "base64") : null;
  let verified = false;
  try {
    verified = key !== undefined && signatureBytes !== null && verify("sha256", body, { key, dsaEncoding: "der" }, signatureBytes);
  } catch {
    verified = false;
  }
  if (!verified) throw refuse("leak_report_signature_invalid");
  if (!/^application\/json\s*(;|$)/i.test(c.req.header("content-type") ?? "")) throw refuse("unsupported_media_type");
  let matches: z.infer<typeof Match>[];
  try {
    matches = z.array(Match).min(1).max(1000).parse(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body)));
  } catch {
    throw refuse("invalid_body", "a report is a JSON array of {token, type, url, source}");
  }
  const feedback: z.infer<typeof Feedback>[] = [];
  for (const m of matches) {
    const [{ outcome }] = await serviceDb()`select private.revoke_leaked_token(${m.token}, ${m.url ?? null}, ${m.source ?? null}) as outcome`;
    feedback.push({
      token_hash: createHash("sha256").update(m.token).digest("hex"),
      token_type: m.type,
      label: (outcome as { found: boolean }).found ? "true_positive" : "false_positive",
    });
  }
  return c.json(feedback, 200);
});

/** Whether `given` is `expected`, compared in constant time. */
function sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

Deno.serve(app.fetch);
