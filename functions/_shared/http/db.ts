/**
 * Direct database access for edge functions, through postgres.js and the platform's SUPABASE_DB_URL.
 * Use it only for work that must bypass PostgREST; tenant data goes through RLS as the caller.
 */
import postgres from "postgres";
import { HttpError } from "./errors.ts";

let client: ReturnType<typeof postgres> | null = null;

/** The shared connection pool, created on first use. */
export function db(): ReturnType<typeof postgres> {
  if (client) return client;
  const url = Deno.env.get("SUPABASE_DB_URL");
  if (!url) throw new HttpError(503, "database_not_configured", "SUPABASE_DB_URL is not set");
  client = postgres(url, { max: 4, connect_timeout: 3, idle_timeout: 30, prepare: false, onnotice: () => {} });
  return client;
}
