/**
 * What each connector provider's calls look like on the wire: the live check before a credential
 * is saved, a delivery, and for OAuth2 the code exchange, refresh and revocation. Every request
 * goes through the egress guard (guardedFetch), which checks the URL again on every send.
 *
 * | provider          | credential (in Vault)                     | live check                     | delivery                          |
 * |-------------------|-------------------------------------------|--------------------------------|-----------------------------------|
 * | `slack_webhook`   | `{url}` under hooks.slack.com/services/   | a short test message           | POST the approved JSON            |
 * | `discord_webhook` | `{url}` under discord.com/api/webhooks/   | GET the webhook (Discord's own) | POST the approved JSON            |
 * | `https_webhook`   | `{url}`, any https URL                    | a `gatehouse.verification` POST | POST the approved JSON            |
 * | `github`          | `{token}`                                 | GET /user; X-OAuth-Scopes      | `{method, path, body}` on the API |
 * | `notion`          | `{token}`                                 | GET /v1/users/me               | `{method, path, body}` on the API |
 * | `oauth2`          | `{access_token, refresh_token?, client_secret}` | the code exchange itself | `{method, path, body}` on `api_url` |
 * | `sandbox`         | `{}` (bubblewrap needs none)              | the worker's self-test         | `{runtime, code, files}` runs (sandbox/tool.ts) |
 *
 * Provider base URLs default to the real services; GATEHOUSE_PROVIDER_URLS (operator or test
 * configuration, never tenant input) can point them elsewhere.
 */
import { z } from "zod";
import { canonicalJson } from "../json/canonical.ts";
import { testAllowanceFrom } from "../egress/allowance.ts";
import type { EgressCode, EgressOptions } from "../egress/check.ts";
import { guardedFetch } from "../egress/transport.ts";
import type { SandboxBackend } from "../sandbox/backend.ts";

/** The providers a connection can be to (public.connector_provider). */
export const PROVIDERS = ["slack_webhook", "discord_webhook", "https_webhook", "github", "notion", "oauth2", "sandbox"] as const;
/** A connector provider. */
export type Provider = typeof PROVIDERS[number];
/** The providers reached over HTTP with a webhook URL or a token (oauth2 has its flow, sandbox runs code). */
export type HttpProvider = Exclude<Provider, "oauth2" | "sandbox">;

/** Where the fixed providers live. Webhook entries are the prefix every webhook URL must start with. */
export interface ProviderUrls {
  slack_webhook: string;
  discord_webhook: string;
  github: string;
  notion: string;
}

export const DEFAULT_PROVIDER_URLS: ProviderUrls = {
  slack_webhook: "https://hooks.slack.com/services/",
  discord_webhook: "https://discord.com/api/webhooks/",
  github: "https://api.github.com",
  notion: "https://api.notion.com",
};

/** How connector calls are made: provider URLs and egress options, and where code runs. */
export interface ConnectorEnv {
  urls: ProviderUrls;
  egress: EgressOptions;
  /**
   * The code sandbox this process runs sandbox actions on (the run worker's, after its self-test).
   * Absent where processes can't be started (the edge functions): a sandbox action is then held
   * back, its approval unused, for a worker to execute.
   */
  sandbox?: SandboxBackend;
}

/**
 * The connector environment from the function's configuration: provider URLs, and the egress
 * guard's test-only allowance (egress/allowance.ts). Nothing a tenant sends can reach either.
 */
export function connectorEnvFrom(get: (name: string) => string | undefined): ConnectorEnv {
  const urls = { ...DEFAULT_PROVIDER_URLS, ...z.record(z.string(), z.url()).parse(JSON.parse(get("GATEHOUSE_PROVIDER_URLS") ?? "{}")) };
  const testOnly = testAllowanceFrom(get);
  return { urls, egress: { timeoutMs: 10_000, maxBytes: 256 * 1024, maxRedirects: 0, ...(testOnly ? { testOnly } : {}) } };
}

// ---------------------------------------------------------------------------------------------
// Credentials and settings
// ---------------------------------------------------------------------------------------------
const anyUrl = z.url().max(2048);

export const WebhookCredential = z.strictObject({ url: anyUrl });
export const TokenCredential = z.strictObject({ token: z.string().min(1).max(1024).regex(/^[\x21-\x7e]+$/, "a token is printable ASCII") });
export const OAuth2Credential = z.strictObject({
  access_token: z.string().min(1).max(4096),
  refresh_token: z.string().min(1).max(4096).optional(),
  client_secret: z.string().min(1).max(1024),
});
export type OAuth2Credential = z.infer<typeof OAuth2Credential>;

/** The non-secret settings of an OAuth2 connection (connections.config). */
export const OAuth2Config = z.strictObject({
  authorize_url: anyUrl,
  token_url: anyUrl,
  revoke_url: anyUrl.optional(),
  api_url: anyUrl,
  client_id: z.string().min(1).max(256),
  redirect_uri: anyUrl,
});
export type OAuth2Config = z.infer<typeof OAuth2Config>;

/** The payload of an API delivery: which endpoint of the provider's API, and the JSON body. */
export const ApiCall = z.strictObject({
  method: z.enum(["POST", "PATCH", "PUT", "DELETE"]),
  path: z.string().max(512).regex(/^\/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*$/, "an absolute path without a query")
    .refine((p) => !p.split("/").some((s) => s === ".." || s === "."), "no dot segments")
    .refine((p) => !p.includes("//"), "no empty segments"),
  body: z.record(z.string(), z.unknown()).optional(),
});

/** A webhook or token credential, parsed (OAuth2 credentials come from the code exchange); a refusal names what is wrong. */
export function parseCredential(input: { provider: HttpProvider; credential: unknown }, urls: ProviderUrls):
  { ok: true; value: Record<string, string> } | { ok: false; reason: "invalid_credential"; message: string } {
  const { provider, credential: raw } = input;
  const schema = provider === "github" || provider === "notion" ? TokenCredential : WebhookCredential;
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: "invalid_credential", message: parsed.error.issues.map((i) => `${i.path.join(".") || "credential"}: ${i.message}`).join("; ") };
  if (provider === "slack_webhook" || provider === "discord_webhook") {
    const prefix = urls[provider];
    if (!(parsed.data as { url: string }).url.startsWith(prefix)) return { ok: false, reason: "invalid_credential", message: `a ${provider} URL starts with ${prefix}` };
  }
  return { ok: true, value: parsed.data as Record<string, string> };
}

/** The fixed providers' destinations, as the database names them (their base URLs are operator configuration). */
const FIXED_DESTINATIONS = { github: "api.github.com", notion: "api.notion.com" } as const;

/**
 * The host a connection's deliveries go to, derived with the URL parser from the credential about
 * to be used (a webhook's URL) or the settings (an OAuth2 API URL): what the database pinned as
 * the connection's destination when the action was approved (private.connection_destination).
 * Null when there is none to derive.
 */
export function destinationOf(provider: Provider, credential: Record<string, string>, config: Record<string, unknown>): string | null {
  if (provider === "github" || provider === "notion") return FIXED_DESTINATIONS[provider];
  if (provider === "sandbox") return typeof config.backend === "string" && /^[a-z][a-z0-9-]{0,31}$/.test(config.backend) ? `sandbox:${config.backend}` : null;
  const url = provider === "oauth2" ? config.api_url : credential.url;
  if (typeof url !== "string" || !URL.canParse(url)) return null;
  return new URL(url).host;
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------
/**
 * How a provider call ended. `delivered`: a 2xx; `unauthorized`: the provider refused the
 * credential (401/403, or a webhook that no longer exists, 404/410); `rejected`: another 4xx;
 * `provider_error`: a 5xx or an unreadable answer; otherwise the egress guard's code.
 */
export type CallOutcome = "delivered" | "unauthorized" | "rejected" | "provider_error" | EgressCode;

export interface CallResult {
  outcome: CallOutcome;
  /** The provider's HTTP status, when it answered. */
  status: number | null;
  /** The answer's body (JSON when it parses, else text), for the sanitizer; never logged or audited. */
  body: unknown;
  headers: Headers | null;
}

const WEBHOOK_GONE = new Set([404, 410]);

function outcomeOf(status: number, webhook: boolean): CallOutcome {
  if (status >= 200 && status < 300) return "delivered";
  if (status === 401 || status === 403 || (webhook && WEBHOOK_GONE.has(status))) return "unauthorized";
  if (status >= 400 && status < 500) return "rejected";
  return "provider_error";
}

async function call(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: string },
  env: ConnectorEnv,
  webhook = false,
): Promise<CallResult> {
  const sent = await guardedFetch(url, { method: init.method, headers: { "user-agent": "Gatehouse-Connectors/1", ...init.headers }, body: init.body ?? null }, env.egress);
  if (!sent.ok) return { outcome: sent.reason, status: null, body: null, headers: null };
  const { response } = sent.value;
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch { /* text it is */ }
  return { outcome: outcomeOf(response.status, webhook), status: response.status, body, headers: response.headers };
}

const json = { "content-type": "application/json" };

function apiHeaders(provider: Provider, token: string): Record<string, string> {
  const auth = { authorization: `Bearer ${token}` };
  if (provider === "github") return { ...auth, accept: "application/vnd.github+json", "x-github-api-version": "2022-11-28" };
  if (provider === "notion") return { ...auth, "notion-version": "2022-06-28" };
  return { ...auth, accept: "application/json" };
}

/** The URL of `path` under an API base, which the path can't leave. */
function apiUrl(base: string, path: string): string {
  const root = new URL(base);
  const url = new URL(root.pathname.replace(/\/$/, "") + path, root);
  return url.href;
}

/** The live check of a credential before it is saved. `grantedScopes` when the provider reports them. */
export async function verifyCredential(
  check: { provider: HttpProvider; credential: Record<string, string> },
  env: ConnectorEnv,
): Promise<CallResult & { grantedScopes?: string[] }> {
  const { provider, credential } = check;
  switch (provider) {
    case "slack_webhook":
      return call(credential.url, { method: "POST", headers: json, body: JSON.stringify({ text: "Gatehouse connected this channel." }) }, env, true);
    case "discord_webhook":
      return call(credential.url, { method: "GET" }, env, true);
    case "https_webhook":
      return call(credential.url, { method: "POST", headers: json, body: JSON.stringify({ type: "gatehouse.verification" }) }, env, true);
    case "github": {
      const result = await call(apiUrl(env.urls.github, "/user"), { method: "GET", headers: apiHeaders("github", credential.token) }, env);
      const header = result.headers?.get("x-oauth-scopes");
      return header == null ? result : { ...result, grantedScopes: header.split(",").map((s) => s.trim()).filter(Boolean) };
    }
    case "notion":
      return call(apiUrl(env.urls.notion, "/v1/users/me"), { method: "GET", headers: apiHeaders("notion", credential.token) }, env);
  }
}

/**
 * Delivers an approved action. Webhooks receive the approved canonical JSON byte for byte; API
 * providers receive `{method, path, body}` from it, the body as canonical JSON.
 */
export async function deliver(
  delivery: { provider: Exclude<Provider, "sandbox">; credential: Record<string, string>; config: Record<string, unknown>; canonicalPayload: string },
  env: ConnectorEnv,
): Promise<CallResult | { outcome: "invalid_payload"; status: null; body: string; headers: null }> {
  const { provider, credential, config, canonicalPayload } = delivery;
  if (provider === "slack_webhook" || provider === "discord_webhook" || provider === "https_webhook") {
    return await call(credential.url, { method: "POST", headers: json, body: canonicalPayload }, env, true);
  }
  const parsed = ApiCall.safeParse(JSON.parse(canonicalPayload));
  if (!parsed.success) {
    return { outcome: "invalid_payload", status: null, body: "an API action is {method, path, body}", headers: null };
  }
  const { method, path, body } = parsed.data;
  const base = provider === "oauth2" ? String(config.api_url) : env.urls[provider];
  const token = provider === "oauth2" ? credential.access_token : credential.token;
  return await call(apiUrl(base, path), {
    method,
    headers: { ...apiHeaders(provider, token), ...(body ? json : {}) },
    ...(body ? { body: canonicalJson(body) } : {}),
  }, env);
}

// ---------------------------------------------------------------------------------------------
// OAuth2 (RFC 6749 authorization code and refresh, RFC 7009 revocation), client_secret_basic
// ---------------------------------------------------------------------------------------------
const TokenAnswer = z.object({
  access_token: z.string().min(1).max(4096),
  token_type: z.string().regex(/^bearer$/i),
  expires_in: z.coerce.number().int().positive().max(31_536_000).optional(),
  refresh_token: z.string().min(1).max(4096).optional(),
  scope: z.string().max(4096).optional(),
});

/** What a token request answered: the tokens, or how the call ended (never a secret). */
export type TokenResult = { ok: true; tokens: Tokens; result: CallResult } | { ok: false; reason: CallOutcome; result: CallResult };

export interface Tokens {
  access_token: string;
  refresh_token?: string;
  expiresAt: Date | null;
  scopes: string[] | null;
}

function basicAuth(clientId: string, clientSecret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, "+");
  return `Basic ${btoa(`${encode(clientId)}:${encode(clientSecret)}`)}`;
}

async function tokenRequest(request: { config: OAuth2Config; clientSecret: string; form: Record<string, string> }, env: ConnectorEnv):
  Promise<TokenResult> {
  const { config, clientSecret, form } = request;
  const result = await call(config.token_url, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json", authorization: basicAuth(config.client_id, clientSecret) },
    body: new URLSearchParams(form).toString(),
  }, env);
  if (result.outcome !== "delivered") {
    const outcome = result.outcome === "rejected" ? "unauthorized" : result.outcome;
    return { ok: false, reason: outcome, result: { ...result, outcome } };
  }
  const answer = TokenAnswer.safeParse(result.body);
  if (!answer.success) return { ok: false, reason: "provider_error", result: { ...result, outcome: "provider_error" } };
  const a = answer.data;
  return {
    ok: true,
    result,
    tokens: {
      access_token: a.access_token,
      ...(a.refresh_token ? { refresh_token: a.refresh_token } : {}),
      expiresAt: a.expires_in ? new Date(Date.now() + a.expires_in * 1000) : null,
      scopes: a.scope === undefined ? null : a.scope.split(" ").filter(Boolean),
    },
  };
}

/** Exchanges an authorization code for tokens: the live check of an OAuth2 connection. */
export function exchangeCode(exchange: { config: OAuth2Config; clientSecret: string; code: string; codeVerifier: string }, env: ConnectorEnv): Promise<TokenResult> {
  const { config, clientSecret, code, codeVerifier } = exchange;
  return tokenRequest({ config, clientSecret, form: { grant_type: "authorization_code", code, redirect_uri: config.redirect_uri, code_verifier: codeVerifier } }, env);
}

/** Trades the refresh token for a new access token (and maybe a new refresh token). */
export function refreshTokens(connection: { config: OAuth2Config; credential: OAuth2Credential }, env: ConnectorEnv): Promise<TokenResult> {
  const { config, credential } = connection;
  return tokenRequest({ config, clientSecret: credential.client_secret, form: { grant_type: "refresh_token", refresh_token: credential.refresh_token ?? "" } }, env);
}

/**
 * Revokes an OAuth2 connection's tokens at the provider (RFC 7009): the refresh token, which
 * revokes its access tokens too, then the access token. Null when the provider has no revocation
 * endpoint; otherwise the first failure, or the last result.
 */
export async function revokeTokens(connection: { config: OAuth2Config; credential: OAuth2Credential }, env: ConnectorEnv): Promise<CallResult | null> {
  const { config, credential } = connection;
  if (!config.revoke_url) return null;
  let last: CallResult | null = null;
  const tokens: [string, string][] = [
    ...(credential.refresh_token ? [[credential.refresh_token, "refresh_token"] as [string, string]] : []),
    [credential.access_token, "access_token"],
  ];
  for (const [token, hint] of tokens) {
    last = await call(config.revoke_url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: basicAuth(config.client_id, credential.client_secret) },
      body: new URLSearchParams({ token, token_type_hint: hint }).toString(),
    }, env);
    if (last.outcome !== "delivered") return last;
  }
  return last;
}

/** The provider's authorization URL for the scopes needed, with state and a PKCE (S256) challenge. */
export function authorizationUrl(config: OAuth2Config, request: { scopes: string[]; state: string; codeChallenge: string }): string {
  const { scopes, state, codeChallenge } = request;
  const url = new URL(config.authorize_url);
  url.searchParams.set("response_type", "code");
  url.searchParams.set("client_id", config.client_id);
  url.searchParams.set("redirect_uri", config.redirect_uri);
  if (scopes.length > 0) url.searchParams.set("scope", scopes.join(" "));
  url.searchParams.set("state", state);
  url.searchParams.set("code_challenge", codeChallenge);
  url.searchParams.set("code_challenge_method", "S256");
  return url.href;
}
