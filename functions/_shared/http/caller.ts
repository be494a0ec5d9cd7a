/**
 * Who is calling a function, and the organization they name. The platform (or the local gateway)
 * has verified the JWT's signature before the function runs (verify_jwt stays on); this reads its
 * claims. Membership and roles are the database's to decide (db.ts: asMember).
 *
 * An access token exchanged for a personal access token (pat/exchange.ts) is a user's, with a
 * `pat` claim. A function takes one only where it names the scope it needs (`tokenScope`): by
 * default a token is refused (403 token_not_accepted), so a route added later is closed to tokens
 * until it says otherwise. The database holds a token's requests to its scopes again.
 */
import { decodeJwt } from "jose";
import { z } from "zod";
import type { PatScope } from "../pat/token.ts";
import { refuse } from "./errors.ts";

/** What a personal access token behind a request is bound to. */
export type TokenBinding = { id: string; orgId: string; projectId: string | null; scopes: PatScope[] };

/** A signed-in user, with the claims of their access token (and, for a personal access token's, its binding). */
export type UserCaller = { kind: "user"; userId: string; claims: Record<string, unknown>; token?: TokenBinding };

/** The caller of a function: the service role (the agent runtime, the scheduler) or a signed-in user. */
export type Caller = { kind: "service" } | UserCaller;

const uuid = z.uuid();

const PatClaim = z.object({
  id: uuid,
  org_id: uuid,
  project_id: uuid.nullable(),
  scopes: z.array(z.string()),
});

/**
 * The caller behind the request's bearer token; 401 for a missing, malformed or non-session token.
 * A personal access token's caller only with `tokenScope`, when the token holds it (403
 * token_not_accepted, token_scope otherwise).
 */
export function callerOf(req: Request, options: { tokenScope?: PatScope } = {}): Caller {
  const token = req.headers.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) throw refuse("missing_auth");
  if (token.startsWith("gtp_")) {
    throw refuse("token_not_accepted", "exchange a personal access token for an access token first: POST /functions/v1/tokens/exchange");
  }
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(token);
  } catch {
    throw refuse("invalid_token", "the bearer token is not a JWT");
  }
  if (claims.role === "service_role") return { kind: "service" };
  if (claims.role !== "authenticated") throw refuse("sign_in_required");
  // auth.uid() casts sub to uuid: a token whose sub (or session) is not one is no user's session.
  const sub = uuid.safeParse(claims.sub);
  if (!sub.success || (claims.session_id !== undefined && !uuid.safeParse(claims.session_id).success)) {
    throw refuse("invalid_token", "the token's sub and session_id must be uuids");
  }
  if (claims.pat === undefined) return { kind: "user", userId: sub.data, claims };
  const pat = PatClaim.safeParse(claims.pat);
  if (!pat.success) throw refuse("invalid_token", "the token's pat claim is malformed");
  if (!options.tokenScope) throw refuse("token_not_accepted");
  if (!pat.data.scopes.includes(options.tokenScope)) throw refuse("token_scope", `this needs a token with the ${options.tokenScope} scope`);
  const binding: TokenBinding = { id: pat.data.id, orgId: pat.data.org_id, projectId: pat.data.project_id, scopes: pat.data.scopes as PatScope[] };
  return { kind: "user", userId: sub.data, claims, token: binding };
}

/** The X-Org-Id of the request, validated as a uuid. */
export function orgIdOf(req: Request): string {
  const raw = req.headers.get("x-org-id");
  if (raw === null) throw refuse("context_missing_org_id");
  const parsed = uuid.safeParse(raw.toLowerCase());
  if (!parsed.success) throw refuse("context_invalid_org_id");
  return parsed.data;
}
