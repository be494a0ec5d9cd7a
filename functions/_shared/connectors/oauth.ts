/**
 * OAuth2 connections: authorization code with PKCE (start, callback), and revocation of an OAuth2
 * connection's tokens (RFC 7009) when it is disabled or was granted too much. The wire formats
 * are in providers.ts; refreshing before a delivery is in execution.ts.
 */
import { createHash, randomBytes } from "node:crypto";
import { checkUrl } from "../egress/check.ts";
import { asCaller, asService } from "../http/db.ts";
import { refuse } from "../http/errors.ts";
import { auditCall, type ConnectorContext, holdId, meter, meterIn, type OrgContext, timed, verificationError } from "./calls.ts";
import {
  authorizationUrl,
  exchangeCode,
  OAuth2Config,
  OAuth2Credential,
  revokeTokens,
} from "./providers.ts";
import { type ConnectionView, saveCredential, scopesNeeded, type StoredConnection } from "./store.ts";

/** What a tenant admin sends to start an OAuth2 authorization: the provider's settings and the client secret. */
export type OAuthStartInput = OAuth2Config & { display_name: string; client_secret: string };

/** How long an authorization may stay in flight. */
const AUTHORIZATION_SECONDS = 600;

/** The hex SHA-256 of an authorization's state: what the database keys it by. */
function stateKey(state: string): string {
  return createHash("sha256").update(state).digest("hex");
}

/**
 * Starts an OAuth2 authorization for the scopes the workspace's enabled `oauth2` tools need: checks
 * the endpoints the function will call with the egress guard, keeps the client secret and a PKCE
 * verifier in Vault under the state's hash for 10 minutes, and answers the URL to send the admin to.
 */
export async function startOAuth(ctx: OrgContext, input: OAuthStartInput) {
  const { sql, caller, orgId, env } = ctx;
  const { display_name, client_secret, ...config } = input;
  // The role first: only a tenant admin may have the function look names up and call out.
  await sql.begin((tx) => asCaller(tx, caller, orgId, { atLeast: "tenant_admin" }));
  if (new URL(config.authorize_url).protocol !== "https:" && !env.egress.testOnly?.http) throw refuse("invalid_authorize_url");
  for (const [name, url] of [["token_url", config.token_url], ["revoke_url", config.revoke_url], ["api_url", config.api_url]] as const) {
    if (!url) continue;
    const checked = await checkUrl(url, env.egress);
    if (!checked.ok) throw refuse(checked.reason, `${name} was refused by the egress guard: ${checked.message}`);
  }
  const state = randomBytes(32).toString("base64url");
  const verifier = randomBytes(32).toString("base64url");
  const scopes = await scopesNeeded(sql, { orgId, provider: "oauth2" });
  await sql.begin(async (tx) => {
    await asService(tx);
    await tx`select private.begin_oauth_authorization(${stateKey(state)}, ${orgId}, ${display_name}, ${JSON.stringify(config)}::text::jsonb,
                                                      ${scopes}::text[], ${JSON.stringify({ client_secret, code_verifier: verifier })},
                                                      ${caller.kind === "user" ? caller.userId : null})`;
  });
  return {
    authorization_url: authorizationUrl(config, { scopes, state, codeChallenge: createHash("sha256").update(verifier).digest("base64url") }),
    state,
    scopes,
    expires_in: AUTHORIZATION_SECONDS,
  };
}

/**
 * Completes an OAuth2 authorization: takes the state once, exchanges the code (the live check),
 * refuses tokens granted more scopes than were asked for (revoking them), and saves the connection.
 */
export async function completeOAuth(ctx: OrgContext, input: { state: string; code: string }): Promise<ConnectionView> {
  const { sql, caller, orgId, env } = ctx;
  await sql.begin((tx) => asCaller(tx, caller, orgId, { atLeast: "tenant_admin" }));
  const pending = await sql.begin(async (tx) => {
    await asService(tx);
    const [row] = await tx`select * from private.take_oauth_authorization(${stateKey(input.state)}, ${orgId})`;
    return row;
  });
  // Only whoever started the authorization completes it (RFC 6749 §10.12): a callback carried to
  // someone else's session, even another admin's of the same organization, is refused.
  if (!pending || (caller.kind === "user" && pending.created_by !== caller.userId)) throw refuse("oauth_state_invalid");
  const config = OAuth2Config.parse(pending.config);
  const secrets = JSON.parse(pending.secret as string) as { client_secret: string; code_verifier: string };
  const requested = pending.scopes as string[];

  const audit = { orgId, connectionId: null, provider: "oauth2" as const, kind: "verify" as const, holdId: holdId() };
  await meter(ctx, audit);
  const [exchanged, latencyMs] = await timed(() =>
    exchangeCode({ config, clientSecret: secrets.client_secret, code: input.code, codeVerifier: secrets.code_verifier }, env));
  await auditCall(ctx, { ...audit, outcome: exchanged.ok ? "delivered" : exchanged.reason, status: exchanged.result.status, latencyMs });
  if (!exchanged.ok) throw verificationError(exchanged.result);
  const { tokens } = exchanged;
  const credential: OAuth2Credential = {
    access_token: tokens.access_token,
    ...(tokens.refresh_token ? { refresh_token: tokens.refresh_token } : {}),
    client_secret: secrets.client_secret,
  };
  const excess = (tokens.scopes ?? []).filter((s) => !requested.includes(s));
  if (excess.length > 0) {
    await revokeAndAudit(ctx, { id: null, orgId, provider: "oauth2", config, credential: JSON.stringify(credential) });
    throw refuse("connector_excess_scopes", `the provider granted scopes that were not asked for: ${excess.join(", ")}; the tokens were revoked`);
  }
  try {
    return await saveCredential(ctx, {
      orgId, provider: "oauth2", displayName: pending.display_name, scopes: tokens.scopes ?? requested, credential,
      expiresAt: tokens.expiresAt, connectionId: null, config,
    });
  } catch (e) {
    // Not saved (the admin was removed or demoted during the exchange, say): the tokens the
    // provider has just issued are revoked, not left live with nobody holding them.
    await revokeAndAudit(ctx, { id: null, orgId, provider: "oauth2", config, credential: JSON.stringify(credential) });
    throw e;
  }
}

/** Revokes an OAuth2 connection's tokens where the provider can; what happened, for the answer. */
export async function revokeAndAudit(ctx: ConnectorContext, c: StoredConnection): Promise<"revoked" | "not_supported" | "failed"> {
  if (c.provider !== "oauth2") return "not_supported";
  const config = OAuth2Config.safeParse(c.config);
  const credential = OAuth2Credential.safeParse(JSON.parse(c.credential));
  if (!config.success || !credential.success || !config.data.revoke_url) return "not_supported";
  // Revocation is never held back by a limit; it is counted (while the meter has room).
  await ctx.sql.begin(async (tx) => {
    await asService(tx);
    await meterIn(tx, { orgId: c.orgId, cost: 0 });
  });
  const [result, latencyMs] = await timed(() => revokeTokens({ config: config.data, credential: credential.data }, ctx.env));
  const outcome = result?.outcome ?? "not_supported";
  await auditCall(ctx, { orgId: c.orgId, connectionId: c.id, provider: c.provider, kind: "revoke", outcome, status: result?.status ?? null, latencyMs });
  return outcome === "delivered" ? "revoked" : "failed";
}
