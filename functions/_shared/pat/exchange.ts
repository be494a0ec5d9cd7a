/**
 * Using a personal access token (supabase/migrations/…_personal_access_token_use.sql): a token is
 * checked by its checksum here (no lookup), then by the database, which answers what it acts for;
 * `signAccessToken` turns that into a 5-minute access token that PostgREST and the functions take
 * like a user's, with the token's organization, project and scopes in its `pat` claim. The
 * database holds the token to them on every request, and checks the token row itself each time,
 * so revoking it takes effect at once, whatever access token it was exchanged for.
 */
import { SignJWT } from "jose";
import { serviceDb } from "../http/db.ts";
import { refuse } from "../http/errors.ts";
import { PAT_PREFIX, type PatScope, patFormatValid } from "./token.ts";

/** What a live token acts for. */
export interface TokenGrant {
  id: string;
  userId: string;
  orgId: string;
  projectId: string | null;
  scopes: PatScope[];
  expiresAt: string;
}

/** How long an exchanged access token lives, in seconds. */
export const ACCESS_TOKEN_SECONDS = 300;

/** Whether a bearer value is meant as a personal access token (its prefix); its checksum is checked by exchangeToken. */
export function looksLikePat(bearer: string): boolean {
  return bearer.startsWith(PAT_PREFIX);
}

/**
 * What `token` acts for: 401 token_invalid for a bad checksum, without a database query, and for an
 * unknown token; token_revoked, token_expired, user_disabled from the database. Using a token moves
 * its last_used_at; its first use is an audit entry.
 */
export async function exchangeToken(token: string): Promise<TokenGrant> {
  if (!patFormatValid(token)) throw refuse("token_invalid", "this is not a personal access token (its checksum does not hold)");
  const [{ grant }] = await serviceDb()`select private.exchange_personal_access_token(${token}) as grant`;
  const g = grant as { refusal?: "token_invalid" | "token_revoked" | "token_expired" | "user_disabled"; id: string; user_id: string; org_id: string; project_id: string | null; scopes: PatScope[]; expires_at: string };
  if (g.refusal) throw refuse(g.refusal);
  return { id: g.id, userId: g.user_id, orgId: g.org_id, projectId: g.project_id, scopes: g.scopes, expiresAt: g.expires_at };
}

/** The `pat` claim of a grant: what the database reads a token's request by. */
export function patClaim(grant: TokenGrant) {
  return { id: grant.id, org_id: grant.orgId, project_id: grant.projectId, scopes: grant.scopes };
}

/** The claims a request made with `grant` acts with, as a signed access token would carry them. */
export function grantClaims(grant: TokenGrant): Record<string, unknown> {
  return { sub: grant.userId, role: "authenticated", aud: "authenticated", aal: "aal1", is_anonymous: false, pat: patClaim(grant) };
}

/** A signed access token for `grant`: HS256 with the project's JWT secret, ACCESS_TOKEN_SECONDS long (never past the token's expiry). */
export async function signAccessToken(grant: TokenGrant, jwtSecret: string, issuer: string): Promise<{ token: string; expiresAt: number }> {
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = Math.min(now + ACCESS_TOKEN_SECONDS, Math.floor(Date.parse(grant.expiresAt) / 1000));
  const token = await new SignJWT({ ...grantClaims(grant), amr: [{ method: "personal_access_token", timestamp: now }] })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer(issuer)
    .setSubject(grant.userId)
    .setIssuedAt(now)
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(jwtSecret));
  return { token, expiresAt };
}
