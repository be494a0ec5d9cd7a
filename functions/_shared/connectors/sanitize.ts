/**
 * Model-context hygiene: a tool result handed back to an agent first passes through here, so that
 * credentials and auth material never reach the model (and, through it, a user or a log).
 *
 * Three layers, strongest first:
 *   1. the exact credentials the call used (the connection's own secret, tokens it minted) are
 *      replaced wherever they appear, whole or inside a longer string;
 *   2. members whose name says they carry credentials or auth headers are dropped;
 *   3. strings shaped like well-known credentials (provider token prefixes, JWTs, PEM private keys,
 *      bearer and basic auth, webhook URLs that embed their secret, URL userinfo and secret query
 *      parameters) are redacted.
 */

/** What replaces redacted material. */
export const REDACTED = "[redacted]";

/** Member names (compared lowercased, without `-` and `_`) that carry credentials or auth headers. */
const SECRET_KEYS = new Set([
  "authorization", "proxyauthorization", "cookie", "setcookie", "xapikey", "apikey", "apisecret",
  "accesstoken", "refreshtoken", "idtoken", "token", "clientsecret", "secret", "password", "passwd",
  "privatekey", "signingsecret", "webhooksecret", "xhubsignature", "xhubsignature256", "xslacksignature",
  "sessiontoken", "awssecretaccesskey", "credentials", "bearer",
]);

const PATTERNS: RegExp[] = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  /\b(?:Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*/gi,
  /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g,            // JWT
  /\bxox[abposr]-[A-Za-z0-9-]{10,}/g,                                     // Slack tokens
  /\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}/g,                          // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}/g,
  /\b(?:secret|ntn)_[A-Za-z0-9]{20,}/g,                                   // Notion integration tokens
  /\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}/g,                          // Stripe secret keys
  /\bwhsec_[A-Za-z0-9+/=]{10,}/g,                                         // webhook signing secrets
  /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g,                                       // AWS access key ids
  /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9/_-]+/g,              // Slack webhook URLs
  /https:\/\/(?:canary\.|ptb\.)?discord(?:app)?\.com\/api\/webhooks\/[A-Za-z0-9/_-]+/g,
  /(?<=[a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+(?=@)/gi,                  // URL userinfo
  /(?<=[?&](?:access_token|refresh_token|token|api_key|apikey|key|secret|client_secret|signature|sig|password)=)[^&#\s"']+/gi,
];

function normalizedKey(key: string): string {
  return key.toLowerCase().replace(/[-_]/g, "");
}

function sanitizeString(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join(REDACTED);
  for (const pattern of PATTERNS) out = out.replace(pattern, REDACTED);
  return out;
}

/**
 * A copy of a JSON tool result fit for a model's context: credentials redacted, auth members
 * dropped. `secrets` are exact values to remove wherever they occur, as they are or URL-encoded
 * or base64-encoded (at least 8 characters, so a short value can't blank out ordinary text).
 */
export function sanitizeToolResult(value: unknown, options: { secrets?: string[] } = {}): unknown {
  // Each secret also as an echo would commonly carry it: URL-encoded, and base64 (standard and URL-safe).
  const secrets = [...new Set((options.secrets ?? []).filter((s) => typeof s === "string" && s.length >= 8).flatMap((s) => {
    const bytes = new TextEncoder().encode(s);
    const base64 = btoa(String.fromCharCode(...bytes));
    return [s, encodeURIComponent(s), base64, base64.replace(/=+$/, ""), base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")];
  }))];
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > 64) return REDACTED;  // deeper than any tool result should be; refuse to guess
    if (typeof v === "string") return sanitizeString(v, secrets);
    if (Array.isArray(v)) return v.map((item) => walk(item, depth + 1));
    if (v !== null && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(v)) {
        if (SECRET_KEYS.has(normalizedKey(key))) continue;
        out[sanitizeString(key, secrets)] = walk(item, depth + 1);
      }
      return out;
    }
    return v;
  };
  return walk(value, 0);
}
