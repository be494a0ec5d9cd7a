/**
 * The console's one way to the API, scoped to an organization: `api.from(table)` and `api.rpc(fn)`
 * are supabase-js with the organization's X-Org-Id on every request (no screen sets it), and
 * `api.run(query)` and `api.invoke(fn, body)` answer the data or throw one typed ApiError, whatever
 * refused: PostgREST, the database's own refusal, an edge function or the console server.
 *
 * Every request goes through the console server's proxy (session.ts: consoleFetch), which attaches
 * the signed-in person's token from an HTTP-only cookie; the page holds no key or token.
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Database } from "../../supabase/database.types.ts";
import { ApiError } from "./errors.ts";
import { consoleFetch } from "./session.ts";

export { ApiError };

/** Any error as an ApiError: a PostgREST error, a function's JSON error body, or anything else. */
export async function apiError(error: unknown, status = 0): Promise<ApiError> {
  if (error instanceof ApiError) return error;
  const e = error as { code?: string; message?: string; status?: number; context?: Response };
  // A function's error (supabase-js FunctionsHttpError): its response's JSON body says what.
  if (e?.context instanceof Response) {
    try {
      const body = (await e.context.clone().json()) as { error?: { code?: string; message?: string } };
      if (body.error?.code) return new ApiError(e.context.status, body.error.code, body.error.message ?? body.error.code);
    } catch {
      // not JSON: fall through
    }
    return new ApiError(e.context.status, "unexpected", `The server answered ${e.context.status}.`);
  }
  // PostgREST's error: a code that is a word is ours (private.refuse_request); an SQLSTATE is the database's.
  const code = typeof e?.code === "string" && e.code !== "" ? e.code : "unexpected";
  return new ApiError(e?.status ?? status, code, e?.message ?? String(error));
}

/** What an ApiError means to a person: its message, and its code when that adds something. */
export function describeError(error: unknown): string {
  if (!error) return "";
  const e = error as { code?: string; message?: string };
  const message = e.message ?? String(error);
  return e.code && e.code !== "unexpected" && !/^\d+$/.test(e.code) && !message.includes(e.code) ? `${message} (${e.code})` : message;
}

export type Client = SupabaseClient<Database>;

/** The organization-scoped API a screen uses. */
export interface OrgApi {
  orgId: string;
  from: Client["from"];
  rpc: Client["rpc"];
  /** The data of a supabase-js query or RPC, or its error as an ApiError. */
  run<T>(query: PromiseLike<{ data: T | null; error: unknown; status?: number }>): Promise<T>;
  /** Calls edge function `name` (a path below /functions/v1) with a JSON body (and any headers of its own); its answer, or its refusal as an ApiError. */
  invoke<T>(name: string, body?: unknown, headers?: Record<string, string>): Promise<T>;
}

const clients = new Map<string, OrgApi>();

function client(orgId: string | null): Client {
  return createClient<Database>(`${location.origin}/console/api`, "signed-in-through-the-console-server", {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: { fetch: consoleFetch, headers: orgId ? { "x-org-id": orgId } : {} },
  });
}

/** The data of a supabase-js query or RPC (of orgApi or personalApi), or its error as an ApiError. */
export async function run<T>(query: PromiseLike<{ data: T | null; error: unknown; status?: number }>): Promise<T> {
  const { data, error, status } = await query;
  if (error) throw await apiError(error, status);
  return data as T;
}

/** The API as the signed-in person in organization `orgId`. */
export function orgApi(orgId: string): OrgApi {
  let api = clients.get(orgId);
  if (api) return api;
  const sb = client(orgId);
  api = {
    orgId,
    from: sb.from.bind(sb) as Client["from"],
    rpc: sb.rpc.bind(sb) as Client["rpc"],
    run,
    invoke: async <T>(name: string, body: unknown = {}, headers: Record<string, string> = {}) => {
      const { data, error } = await sb.functions.invoke<T>(name, { body: body as Record<string, unknown>, headers: { ...headers, "x-org-id": orgId } });
      if (error) throw await apiError(error);
      return data as T;
    },
  };
  clients.set(orgId, api);
  return api;
}

/** The API as the signed-in person, outside any organization (their organizations, their account). */
export const personalApi = (() => {
  let sb: Client | null = null;
  return (): Client => (sb ??= client(null));
})();
