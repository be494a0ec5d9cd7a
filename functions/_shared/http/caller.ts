/**
 * Who is calling a function, and the organization they name. The platform (or the local gateway)
 * has verified the JWT's signature before the function runs (verify_jwt stays on); this reads its
 * claims. Membership and roles are the database's to decide (db.ts: asMember).
 */
import { decodeJwt } from "jose";
import { z } from "zod";
import { refuse } from "./errors.ts";

/** A signed-in user, with the claims of their access token. */
export type UserCaller = { kind: "user"; userId: string; claims: Record<string, unknown> };

/** The caller of a function: the service role (the agent runtime, the scheduler) or a signed-in user. */
export type Caller = { kind: "service" } | UserCaller;

const uuid = z.uuid();

/** The caller behind the request's bearer token; 401 for a missing, malformed or non-session token. */
export function callerOf(req: Request): Caller {
  const token = req.headers.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) throw refuse("missing_auth");
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
  return { kind: "user", userId: sub.data, claims };
}

/** The X-Org-Id of the request, validated as a uuid. */
export function orgIdOf(req: Request): string {
  const raw = req.headers.get("x-org-id");
  if (raw === null) throw refuse("context_missing_org_id");
  const parsed = uuid.safeParse(raw.toLowerCase());
  if (!parsed.success) throw refuse("context_invalid_org_id");
  return parsed.data;
}
