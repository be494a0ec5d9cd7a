import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Database } from "../../supabase/database.types.ts";

interface PublicEnv {
  supabaseUrl: string;
  anonKey: string;
}

/** The public URL and anon key: baked in at build time, else read from the gateway's /env.json. */
async function publicEnv(): Promise<PublicEnv> {
  const url = import.meta.env.VITE_SUPABASE_URL as string | undefined;
  const anonKey = import.meta.env.VITE_SUPABASE_ANON_KEY as string | undefined;
  if (url && anonKey) return { supabaseUrl: url, anonKey };
  const res = await fetch("/env.json");
  if (!res.ok) throw new Error(`cannot load /env.json (${res.status})`);
  return (await res.json()) as PublicEnv;
}

let client: Promise<SupabaseClient<Database>> | null = null;

/** The browser's Supabase client, signed in as the user (never with a privileged key). */
export function supabase(): Promise<SupabaseClient<Database>> {
  client ??= publicEnv().then((env) => createClient<Database>(env.supabaseUrl, env.anonKey));
  return client;
}
