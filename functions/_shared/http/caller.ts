/**
 * Who is calling a function, and the organization context they act in. The platform (or the local
 * gateway) has verified the JWT before the function runs (verify_jwt stays on); this reads its
 * claims and lets the database decide membership and role, as PostgREST's pre-request does.
 */
import { decodeJwt } from "jose";
import type postgres from "postgres";
import { z } from "zod";
import { HttpError } from "./errors.ts";

export type Caller =
  | { kind: "service" }
  | { kind: "user"; userId: string; claims: Record<string, unknown> };

const uuid = z.uuid();

/** The caller behind the request's bearer token. */
export function callerOf(req: Request): Caller {
  const token = req.headers.get("authorization")?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) throw new HttpError(401, "missing_auth", "send Authorization: Bearer <token>");
  let claims: Record<string, unknown>;
  try {
    claims = decodeJwt(token);
  } catch {
    throw new HttpError(401, "invalid_token", "the bearer token is not a JWT");
  }
  if (claims.role === "service_role") return { kind: "service" };
  if (claims.role === "authenticated" && typeof claims.sub === "string") return { kind: "user", userId: claims.sub, claims };
  throw new HttpError(401, "sign_in_required", "sign in, or call with the service role");
}

/** The X-Org-Id of the request, validated as a uuid. */
export function orgIdOf(req: Request): string {
  const raw = req.headers.get("x-org-id");
  if (raw === null) throw new HttpError(400, "context_missing_org_id", "send X-Org-Id");
  const parsed = uuid.safeParse(raw.toLowerCase());
  if (!parsed.success) throw new HttpError(400, "context_invalid_org_id", "X-Org-Id must be a uuid");
  return parsed.data;
}

/**
 * Inside `tx`, checks that a user caller belongs to `orgId` with at least `role` (the service role
 * passes), using the database's own helpers. Leaves the transaction in its original role.
 */
export async function requireOrgRole(
  tx: postgres.TransactionSql,
  caller: Caller,
  orgId: string,
  role: "tenant_admin" | "project_admin" | "project_contributor" | "project_viewer",
): Promise<void> {
  if (caller.kind === "service") return;
  await tx`select set_config('request.jwt.claims', ${JSON.stringify(caller.claims)}, true)`;
  await tx`set local role authenticated`;
  await tx.savepoint(async (sp) => {
    await sp`select private.set_context(${orgId})`;
  }).catch((e: { code?: string }) => {
    if (e?.code === "42501") throw new HttpError(403, "context_not_a_member", "you are not a member of this organization");
    throw e;
  });
  const [{ ok }] = await tx`select private.has_org_role(${role}::public.member_role) as ok`;
  await tx`reset role`;
  if (!ok) throw new HttpError(403, "forbidden", `this needs the ${role} role in the organization`);
}
