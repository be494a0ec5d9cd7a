/**
 * How edge functions talk to the database, and as whom. This is the one module that sets a role
 * or JWT claims: every transaction a function opens starts with one of
 *
 *   await asMember(tx, user, orgId, { atLeast })   the signed-in user, `authenticated`, in orgId's context (RLS applies)
 *   await asService(tx, { actingFor })             the service role (bypasses RLS; private helpers granted to it)
 *   await asCaller(tx, caller, orgId, { atLeast }) whichever of the two the request's caller is
 *
 * and keeps that role until it ends (the settings are transaction-local). Tenant data is read
 * as the member under RLS, or through a definer function that derives the organization itself.
 */
import postgres from "postgres";
import type { Caller, UserCaller } from "./caller.ts";
import { refuse } from "./errors.ts";

/** A connection pool. */
export type Sql = postgres.Sql;
/** A transaction (sql.begin's argument). */
export type Tx = postgres.TransactionSql;

/** Roles of seed 003, most privileged first. */
export type MemberRole = "tenant_admin" | "project_admin" | "project_contributor" | "project_viewer";

let client: Sql | null = null;

/**
 * Statements sent on the two pools, counted only with GATEHOUSE_COUNT_ROUND_TRIPS=1 (the runs
 * bench reads the worker's). Each statement is one round trip: nothing is prepared, and no query
 * is pipelined.
 */
export const statementsSent = { count: 0 };
function counting(): { debug?: () => void } {
  return Deno.env.get("GATEHOUSE_COUNT_ROUND_TRIPS") === "1" ? { debug: () => void statementsSent.count++ } : {};
}
let servicePool: Sql | null = null;

/** The shared connection pool (SUPABASE_DB_URL), created on first use. */
export function db(): Sql {
  if (client) return client;
  const url = Deno.env.get("SUPABASE_DB_URL");
  if (!url) throw refuse("database_not_configured");
  client = postgres(url, { max: 4, connect_timeout: 3, idle_timeout: 30, prepare: false, onnotice: () => {}, ...counting() });
  return client;
}

/**
 * A pool whose sessions are the service role from the moment they connect (`role` is a startup
 * parameter, so no statement sets it): for hot paths where each database call must be one
 * statement, and so one round trip, in its own transaction. The model gateway's reserve and
 * settle are; they are security-definer functions that take the organization from the rows they
 * read, never from the caller.
 */
export function serviceDb(): Sql {
  if (servicePool) return servicePool;
  const url = Deno.env.get("SUPABASE_DB_URL");
  if (!url) throw refuse("database_not_configured");
  servicePool = postgres(url, {
    max: 8, connect_timeout: 3, idle_timeout: 30, prepare: false, onnotice: () => {},
    connection: { role: "service_role", application_name: "gatehouse-service" },
    ...counting(),
  });
  return servicePool;
}

async function become(tx: Tx, role: "authenticated" | "service_role", claims: Record<string, unknown>, orgId = ""): Promise<void> {
  await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true), set_config('role', ${role}, true),
                  set_config('gatehouse.org_id', ${orgId}, true)`;
}

// A user's token counts only while its session and its user do: signed out, timed out, revoked,
// banned or deleted is refused (401) by private.assert_session, as PostgREST refuses it, not when
// the token expires. asMember runs it in the statement that sets the context; asService acting
// for a user runs it on its own.

/**
 * Makes the rest of `tx` run as `user` in organization `orgId`, as PostgREST runs a request with
 * X-Org-Id: role `authenticated`, the user's claims, the context validated by
 * private.set_context (403 context_not_a_member). With `atLeast`, refuses (403 forbidden) a
 * member whose role in the organization is lower.
 */
export async function asMember(tx: Tx, user: UserCaller, orgId: string, options: { atLeast?: MemberRole } = {}): Promise<void> {
  await become(tx, "authenticated", user.claims);
  await tx`select private.assert_session(), private.set_context(${orgId})`.catch((e: { code?: string }) => {
    throw e?.code === "42501" ? refuse("context_not_a_member") : e;
  });
  if (!options.atLeast) return;
  const [{ ok }] = await tx`select private.has_org_role(${options.atLeast}::public.member_role) as ok`;
  if (!ok) throw refuse("forbidden", `this needs the ${options.atLeast} role in the organization`);
}

/**
 * Makes the rest of `tx` run as the service role. `actingFor` a user keeps their id as auth.uid(),
 * so that what the service role writes on their behalf (a connection they saved, an audit
 * record) names them as the actor. `orgId` names the organization it writes in as the context,
 * so that the database's rules that read the context hold for that write as for a member's own
 * (the organization's two-factor requirement, the context's ids); the service role may name any.
 */
export async function asService(tx: Tx, options: { actingFor?: Caller; orgId?: string } = {}): Promise<void> {
  const on = options.actingFor;
  await become(tx, "service_role", on?.kind === "user" ? { ...on.claims, role: "service_role" } : { role: "service_role" }, options.orgId);
  if (on?.kind === "user") await tx`select private.assert_session()`;
}

/**
 * The request's caller, whoever it is: a user as a member of `orgId` (asMember, with `atLeast`),
 * the service role as itself (it may act in any organization).
 */
export async function asCaller(tx: Tx, caller: Caller, orgId: string, options: { atLeast?: MemberRole } = {}): Promise<void> {
  if (caller.kind === "user") await asMember(tx, caller, orgId, options);
  else await asService(tx);
}
