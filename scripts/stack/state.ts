/**
 * What a stack keeps in its state folder between starts: its random secrets (secrets.json, mode
 * 0600), the Vault root key outside the cluster, and the demo logins' passwords.
 */
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import type postgres from "postgres";
import { generateSecrets, type StackSecrets } from "./keys.ts";

/** A seeded demo login, with the role it has in each of its organizations. */
export interface DemoUser {
  email: string;
  password: string;
  memberships: { organization: string; role: string }[];
}

/** The secrets and demo passwords of one state folder. */
export interface PersistedState extends StackSecrets {
  demoPasswords: Record<string, string>;
}

/** The state of `stateDir`, created with fresh secrets when there is none. */
export function loadState(stateDir: string): PersistedState {
  const file = join(stateDir, "secrets.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as PersistedState;
  const state: PersistedState = { ...generateSecrets(), demoPasswords: {} };
  saveState(stateDir, state);
  return state;
}

/** Writes the state folder's secrets.json (mode 0600). */
export function saveState(stateDir: string, state: PersistedState): void {
  writeFileSync(join(stateDir, "secrets.json"), JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
}

/** Forgets the state's secrets (a new cluster gets new ones). */
export function forgetState(stateDir: string): void {
  rmSync(join(stateDir, "secrets.json"), { force: true });
}

/** Writes the Vault root key outside the cluster, readable by the server's OS user only. */
export function writeRootKey(stateDir: string, hex: string, pg: { uid?: number; gid?: number }): string {
  const file = join(stateDir, "vault_root.key");
  rmSync(file, { force: true });
  writeFileSync(file, hex + "\n", { mode: 0o400 });
  if (pg.uid !== undefined && pg.gid !== undefined) chownSync(file, pg.uid, pg.gid);
  return file;
}

/** Gives every seeded demo user without a password a fresh random one, and returns all demo logins. */
export async function demoLogins(sql: postgres.Sql, state: PersistedState, stateDir: string): Promise<DemoUser[]> {
  const rows = await sql<{ id: string; email: string; has_password: boolean; memberships: DemoUser["memberships"] | null }[]>`
    select u.id, u.email, u.encrypted_password is not null as has_password,
           (select json_agg(json_build_object('organization', o.name, 'role', m.role) order by o.name)
              from public.organization_members m join public.organizations o on o.id = m.org_id
             where m.user_id = u.id) as memberships
      from auth.users u
     where u.raw_app_meta_data ->> 'demo' = 'true'
     order by u.email`;
  let changed = false;
  for (const row of rows) {
    if (row.has_password && state.demoPasswords[row.email]) continue;
    const password = randomBytes(9).toString("base64url");
    await sql`update auth.users set encrypted_password = ${await bcrypt.hash(password, 10)} where id = ${row.id}`;
    state.demoPasswords[row.email] = password;
    changed = true;
  }
  if (changed) saveState(stateDir, state);
  return rows.map((r) => ({ email: r.email, password: state.demoPasswords[r.email], memberships: r.memberships ?? [] }));
}
