/**
 * Applies the local Supabase platform layer (platform.sql) to a bare Postgres. Hosted Supabase has
 * the real roles, `auth` and `vault` built in; there this is never run, and a database that already
 * has a real `auth.users` (not ours) is left untouched.
 */
import { readFileSync } from "node:fs";
import type { Sql } from "postgres";

const MARKER = "gatehouse-local-platform";

/** Result of {@link applyPlatformLayer}: whether the layer was applied or a real platform was found. */
export type PlatformOutcome = "applied" | "real-platform";

/**
 * Applies the layer when the real platform is absent. Idempotent: a second run finds the marker and
 * re-applies the (create-if-missing / create-or-replace) statements, which changes nothing.
 */
export async function applyPlatformLayer(
  sql: Sql,
  opts: { rootKeyFile: string; exposedSchemas: string[]; rolePasswords: Record<string, string> },
): Promise<PlatformOutcome> {
  const [state] = await sql<{ has_auth: boolean; marker: string | null }[]>`
    select to_regclass('auth.users') is not null as has_auth,
           obj_description(to_regnamespace('vault')::oid, 'pg_namespace') as marker`;
  if (state.has_auth && state.marker !== MARKER) return "real-platform";

  const template = readFileSync(new URL("./platform.sql", import.meta.url), "utf8");
  const text = template.replaceAll("{{ROOT_KEY_FILE}}", quoteLiteral(opts.rootKeyFile));
  await sql.begin(async (tx) => {
    await tx.unsafe(text);
    for (const [role, password] of Object.entries(opts.rolePasswords)) {
      await tx.unsafe(`alter role ${quoteIdent(role)} with login password ${quoteLiteral(password)}`);
    }
    // Supabase's splinter lints read the exposed schemas from this setting, as PostgREST does.
    await tx.unsafe(`alter database postgres set pgrst.db_schemas = ${quoteLiteral(opts.exposedSchemas.join(","))}`);
  });
  return "applied";
}

function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}
