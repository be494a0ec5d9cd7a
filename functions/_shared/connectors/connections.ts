/**
 * Connections to outside services: saving one after a live check with its provider, disabling
 * one (revoked at the provider where it can be, then deleted from Vault), and disabling an agent
 * (its tools, and the connections nothing enabled uses any more). OAuth2 connections are made in
 * oauth.ts; deliveries through a connection in execution.ts.
 * Credentials are kept in store.ts.
 */
import type { Caller } from "../http/caller.ts";
import { asCaller, asService, type Tx } from "../http/db.ts";
import { refuse } from "../http/errors.ts";
import { auditCall, type ConnectorContext, holdId, meter, type OrgContext, timed, verificationError } from "./calls.ts";
import { revokeAndAudit } from "./oauth.ts";
import { parseCredential, type Provider, verifyCredential } from "./providers.ts";
import { SandboxConfig } from "../sandbox/tool.ts";
import { type ConnectionView, saveCredential, scopesNeeded, storedConnection } from "./store.ts";

type Scope = { caller: Caller; orgId: string };

/**
 * Whether a tenant row that `tx`'s caller found is one it may act on in `scope.orgId`. As a
 * member, RLS decides: another organization's row is not there. The service role, which bypasses
 * RLS, must name the row's own organization.
 */
function inScope(scope: Scope, row: { org_id: string } | undefined): boolean {
  return row !== undefined && (scope.caller.kind === "user" || row.org_id === scope.orgId);
}

/** Whether `tx`'s caller may act on connection `id` in the scope (and, given, that it is of `provider`). */
async function connectionIn(tx: Tx, scope: Scope, wanted: { id: string; provider?: Provider }): Promise<boolean> {
  const [row] = await tx`select org_id, provider from public.connections where id = ${wanted.id}`;
  return inScope(scope, row as { org_id: string } | undefined) && (!wanted.provider || row.provider === wanted.provider);
}

/** What a tenant admin sends to save a webhook, token or sandbox connection. */
export interface SaveInput {
  provider: Provider;
  display_name: string;
  credential?: unknown;
  connection_id?: string;
  /** A sandbox connection's settings (sandbox/tool.ts SandboxConfig); no other provider takes any. */
  config?: unknown;
}

/** Checks that `tx`'s caller is a tenant admin of the organization, and that a connection it names is one of its, of `provider`. */
async function checkAdmin(ctx: OrgContext, input: SaveInput): Promise<void> {
  await ctx.sql.begin(async (tx) => {
    await asCaller(tx, ctx.caller, ctx.orgId, { atLeast: "tenant_admin" });
    if (input.connection_id && !(await connectionIn(tx, ctx, { id: input.connection_id, provider: input.provider }))) {
      throw refuse("connection_not_found", "no such connection of this provider in this organization");
    }
  });
}

/**
 * Turns code execution on for the organization (tenant admin): a sandbox connection, whose settings
 * name the backend and any tighter limits. The local backend needs no credential; there is nothing
 * outside to check, and the run worker proves its sandbox (the self-test) before any code runs.
 */
async function saveSandbox(ctx: OrgContext, input: SaveInput): Promise<ConnectionView> {
  const config = SandboxConfig.safeParse(input.config ?? null);
  if (!config.success) throw refuse("invalid_sandbox_config", config.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`).join("; "));
  const credential = input.credential ?? {};
  if (typeof credential !== "object" || credential === null || Object.keys(credential).length > 0) {
    throw refuse("invalid_credential", "the bubblewrap backend takes no credential: send {} or none");
  }
  await checkAdmin(ctx, input);
  return saveCredential(ctx, {
    orgId: ctx.orgId, provider: "sandbox", displayName: input.display_name, scopes: [], credential: {},
    expiresAt: null, connectionId: input.connection_id ?? null, config: config.data,
  });
}

/**
 * Checks the credential with a live call to its provider, then stores it through
 * save_connection (a sandbox connection: saveSandbox), asking for the scopes the workspace's enabled tools of that provider need.
 * A GitHub token that reports its scopes must hold exactly those (least privilege).
 */
export async function saveConnection(ctx: OrgContext, input: SaveInput): Promise<ConnectionView> {
  const { sql, orgId, env } = ctx;
  const provider = input.provider;
  if (provider === "oauth2") throw refuse("use_oauth2_flow");
  if (provider === "sandbox") return await saveSandbox(ctx, input);
  if (input.config !== undefined) throw refuse("config_not_taken");
  const credential = parseCredential({ provider, credential: input.credential }, env.urls);
  if (!credential.ok) throw refuse(credential.reason, credential.message);
  await checkAdmin(ctx, input);
  const needed = await scopesNeeded(sql, { orgId, provider });

  const audit = { orgId, connectionId: input.connection_id ?? null, provider, kind: "verify" as const, holdId: holdId() };
  await meter(ctx, audit);
  const [result, latencyMs] = await timed(() => verifyCredential({ provider, credential: credential.value }, env));
  await auditCall(ctx, { ...audit, outcome: result.outcome, status: result.status, latencyMs });
  if (result.outcome !== "delivered") throw verificationError(result);

  let scopes = needed;
  if (result.grantedScopes) {
    const missing = needed.filter((s) => !result.grantedScopes!.includes(s));
    const excess = result.grantedScopes.filter((s) => !needed.includes(s));
    if (missing.length > 0) throw refuse("connector_missing_scopes", `the token lacks scopes the enabled tools need: ${missing.join(", ")}`);
    if (excess.length > 0) {
      throw refuse("connector_excess_scopes", `the token holds scopes no enabled tool needs: ${excess.join(", ")}; issue one with only ${needed.join(", ") || "no scopes"}`);
    }
    scopes = result.grantedScopes;
  }
  return saveCredential(ctx, {
    orgId, provider, displayName: input.display_name, scopes, credential: credential.value,
    expiresAt: null, connectionId: input.connection_id ?? null, config: {},
  });
}

/**
 * Revokes connection `connectionId`'s tokens at its provider where it can (OAuth2), and audits the
 * call; what happened. Disabling a connection does this first, and so does a workspace purge.
 */
export async function revokeAtProvider(ctx: ConnectorContext, connectionId: string): Promise<"revoked" | "not_supported" | "failed"> {
  const stored = await ctx.sql.begin(async (tx) => {
    await asService(tx);
    return await storedConnection(tx, connectionId);
  });
  return stored ? await revokeAndAudit(ctx, stored) : "not_supported";
}

/** Revokes (where the provider can) and disables connection `connectionId`, which the caller may act on (checked before). */
async function revokeAndDisable(ctx: ConnectorContext, connectionId: string) {
  const revocation = await revokeAtProvider(ctx, connectionId);
  const connection = await ctx.sql.begin(async (tx) => {
    await asService(tx, { actingFor: ctx.caller });
    const [row] = await tx`
      select id, org_id, provider, display_name, scopes, status, token_expires_at, verified_at
        from public.disable_connection(${connectionId})`;
    return row as ConnectionView;
  });
  return { connection, revocation };
}

/** Disables a connection of `orgId` (tenant admin): revokes its tokens at the provider, then deletes them from Vault. */
export async function disableConnection(ctx: OrgContext, connectionId: string) {
  await ctx.sql.begin(async (tx) => {
    await asCaller(tx, ctx.caller, ctx.orgId, { atLeast: "tenant_admin" });
    if (!(await connectionIn(tx, ctx, { id: connectionId }))) throw refuse("connection_not_found");
  });
  return revokeAndDisable(ctx, connectionId);
}

/**
 * Disables an agent (project admin of its project): its tools are disabled, and each connection
 * nothing enabled uses any more is revoked at the provider and disabled.
 */
export async function disableAgent(ctx: OrgContext, agentId: string) {
  const released = await ctx.sql.begin(async (tx) => {
    // disable_agent checks the project admin role on the agent's project.
    await asCaller(tx, ctx.caller, ctx.orgId);
    const [agent] = await tx`select org_id from public.agents where id = ${agentId}`;
    if (!inScope(ctx, agent as { org_id: string } | undefined)) throw refuse("agent_not_found");
    const rows = await tx`select id from public.disable_agent(${agentId}) as id`;
    return rows.map((r) => r.id as string);
  });
  const connections = [];
  for (const id of released) connections.push(await revokeAndDisable(ctx, id));
  return { agent_id: agentId, connections };
}
