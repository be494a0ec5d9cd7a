/**
 * Where connections are kept: the one writer of credentials (public.save_connection, as the
 * service role acting for the caller, so the audit chain names them), the one reader
 * (private.connection_credential), and the scopes a new connection asks for. What is read here
 * never leaves the connector modules but towards its provider.
 */
import type { Caller } from "../http/caller.ts";
import { asService, type Sql, type Tx } from "../http/db.ts";
import type { Provider } from "./providers.ts";

/** A connection as clients see it (no credential, no Vault reference). */
export interface ConnectionView {
  id: string;
  org_id: string;
  provider: Provider;
  display_name: string;
  scopes: string[];
  status: "active" | "disabled";
  token_expires_at: string | null;
  verified_at: string;
}

/** A connection's stored credential, as the connectors function reads it (never returned). */
export interface StoredConnection {
  id: string | null;
  orgId: string;
  provider: Provider;
  config: unknown;
  credential: string;
}

/** A checked credential to store. */
export interface SavedCredential {
  orgId: string;
  provider: Provider;
  displayName: string;
  scopes: string[];
  credential: object;
  expiresAt: Date | null;
  connectionId: string | null;
  config: object;
}

/** The scopes a new connection of `provider` asks for: those the workspace's enabled tools of that provider need. */
export async function scopesNeeded(sql: Sql, of: { orgId: string; provider: Provider }): Promise<string[]> {
  return await sql.begin(async (tx) => {
    await asService(tx);
    const [{ scopes }] = await tx`select private.scopes_needed(${of.orgId}, ${of.provider}::public.connector_provider) as scopes`;
    return scopes as string[];
  });
}

/** Stores a checked credential through save_connection, inside `tx` (already the service role acting for the caller). */
export async function saveCredentialIn(tx: Tx, c: SavedCredential): Promise<ConnectionView> {
  const [row] = await tx`
    select id, org_id, provider, display_name, scopes, status, token_expires_at, verified_at
      from public.save_connection(${c.orgId}, ${c.provider}::public.connector_provider, ${c.displayName}, ${c.scopes}::text[],
                                  ${JSON.stringify(c.credential)}, ${c.expiresAt}, ${c.connectionId}, ${JSON.stringify(c.config)}::text::jsonb)`;
  return row as ConnectionView;
}

/**
 * Stores a checked credential through save_connection, with the context's caller as the actor, in
 * the organization's context (so that its two-factor requirement holds for this write too).
 */
export function saveCredential(ctx: { sql: Sql; caller: Caller }, c: SavedCredential): Promise<ConnectionView> {
  return ctx.sql.begin(async (tx) => {
    await asService(tx, { actingFor: ctx.caller, orgId: c.orgId });
    return await saveCredentialIn(tx, c);
  });
}

/** The stored credential of active connection `connectionId` (the service role's read). */
export async function storedConnection(tx: Tx, connectionId: string): Promise<StoredConnection | null> {
  const [row] = await tx`select id, org_id, provider, config, credential from private.connection_credential(${connectionId})`;
  return row ? { id: row.id, orgId: row.org_id, provider: row.provider, config: row.config, credential: row.credential } : null;
}
