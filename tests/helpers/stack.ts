/**
 * How tests find the stack: GATEHOUSE_STACK_FILE (set by npm test for its throwaway stack), else
 * the running `npm start` stack's .local/stack.json.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import postgres from "postgres";
import ws from "ws";
import type { StackInfo } from "../../scripts/stack/index.ts";
import type { Database } from "../../supabase/database.types.ts";

/** A supabase-js client typed by the database's generated types (npm run types). */
export type Client = SupabaseClient<Database>;

/** The stack.json of the stack under test. */
export function stackFile(): string {
  return process.env.GATEHOUSE_STACK_FILE ?? join(process.cwd(), ".local", "stack.json");
}

/** The running stack's URLs and keys. */
export function stack(): StackInfo {
  const file = stackFile();
  if (!existsSync(file)) throw new Error(`no running stack (${file} missing): run the tests with npm test, or npm start first`);
  return JSON.parse(readFileSync(file, "utf8")) as StackInfo;
}

/** A supabase-js client with the anon key and no persisted session. */
export function anonClient(): Client {
  const s = stack();
  return createClient<Database>(s.apiUrl, s.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    // Node 20 has no global WebSocket; supabase-js's realtime client needs one at construction.
    realtime: { transport: ws as unknown as typeof WebSocket },
  });
}

/** A supabase-js client signed in as the seeded demo user `email`. */
export async function signedIn(email: string): Promise<Client> {
  const user = stack().demoUsers.find((u) => u.email === email);
  if (!user) throw new Error(`no demo user ${email}`);
  const client = anonClient();
  const { error } = await client.auth.signInWithPassword({ email, password: user.password });
  if (error) throw error;
  return client;
}

/** The access token of a signed-in client, for raw HTTP calls. */
export async function accessToken(client: Client): Promise<string> {
  const { data } = await client.auth.getSession();
  if (!data.session) throw new Error("the client is not signed in");
  return data.session.access_token;
}

/** A raw PostgREST call through the gateway, for headers and bodies supabase-js would not send. */
export async function rest(path: string, headers: Record<string, string>, init: RequestInit = {}) {
  const s = stack();
  const res = await fetch(`${s.apiUrl}/rest/v1/${path}`, {
    ...init,
    headers: { apikey: s.anonKey, "content-type": "application/json", ...headers },
  });
  return { status: res.status, body: await res.json() };
}

/** A superuser SQL connection (tests use it to set up and inspect, never to assert access). */
export function superuser(): postgres.Sql {
  return postgres(stack().dbUrl, { max: 2, onnotice: () => {} });
}

/**
 * Runs `work` in one transaction as `userId`, a member acting in organization `orgId`, as PostgREST
 * runs their request with X-Org-Id (role authenticated, their claims, private.set_context), on a
 * superuser connection: how a test calls an RPC as a person it made without signing them in.
 */
export async function asMemberIn<T>(sql: postgres.Sql, userId: string, orgId: string, work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
  return await sql.begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated", aal: "aal1" })}, true),
                    set_config('role', 'authenticated', true)`;
    await tx`select private.set_context(${orgId})`;
    return await work(tx);
  }) as T;
}
