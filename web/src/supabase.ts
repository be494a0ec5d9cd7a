/**
 * The browser's way to the API: supabase-js pointed at the console server's proxy
 * (/console/api), which attaches the signed-in person's access token from an HTTP-only cookie.
 * The page never holds a token or a key of any kind: the "key" below is a placeholder the proxy
 * replaces, and supabase-js keeps no session (persistSession off, no storage touched).
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Database } from "../../supabase/database.types.ts";
import { consoleFetch } from "./session.ts";

let client: SupabaseClient<Database> | null = null;

/** The console's Supabase client: every call goes out as the signed-in person, through the proxy. */
export function supabase(): SupabaseClient<Database> {
  client ??= createClient<Database>(`${location.origin}/console/api`, "signed-in-through-the-console-server", {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { fetch: consoleFetch },
  });
  return client;
}
