/**
 * The signed-in person as the console server describes them (never a token), the CSRF token it
 * hands out, and the one fetch every API call goes through. A 401 from anywhere means the session
 * is over: listeners (the app) send the person back to sign-in with a readable reason.
 */
import { ApiError } from "./errors.ts";

/** What the console server says about the signed-in person (GET /console/session). */
export interface Me {
  user: { id: string; email: string };
  /** The API's URL (the Supabase project's): a widget snippet names it. */
  api_url: string;
  aal: "aal1" | "aal2";
  factors: { id: string; friendly_name: string; factor_type: string; status: string; created_at: string }[];
  session: { started_at: string | null; idle_timeout_seconds: number | null; absolute_deadline: string | null };
}

/** A refusal from the console server or the API: a stable code and a message for people (errors.ts). */
export { ApiError };

let csrf = "";
const signedOutListeners = new Set<(reason: string) => void>();

/** Why a session ended, in words, from the code the server or the database gave. */
export function endedBecause(code: string, message?: string): string {
  switch (code) {
    case "session_expired":
      return message ?? "Your session has ended; sign in again.";
    case "session_revoked":
      return "Your session was ended (signed out elsewhere, or revoked by an administrator). Sign in again.";
    case "user_disabled":
      return "This account is disabled. Ask an administrator of your organization.";
    case "signed_out":
      return "";
    default:
      return "Your session has ended; sign in again.";
  }
}

/** Calls fn whenever a request finds the session over; returns the unsubscribe. */
export function onSignedOut(fn: (reason: string) => void): () => void {
  signedOutListeners.add(fn);
  return () => signedOutListeners.delete(fn);
}

/** fetch, same-origin, with the CSRF token on every request; a 401 ends the session in the app. */
export async function consoleFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (csrf) headers.set("x-csrf-token", csrf);
  headers.delete("authorization");
  headers.delete("apikey");
  const res = await fetch(input, { ...init, headers, credentials: "same-origin" });
  if (res.status === 401) {
    const body = (await res.clone().json().catch(() => ({}))) as { error?: { code?: string; message?: string }; code?: string; message?: string };
    const code = body.error?.code ?? body.code ?? "";
    const reason = endedBecause(code, body.error?.message ?? body.message);
    for (const fn of signedOutListeners) fn(reason);
  }
  return res;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await consoleFetch(`/console${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string }; csrf?: string };
  if (json.csrf) csrf = json.csrf;
  if (!res.ok) throw new ApiError(res.status, json.error?.code ?? "unexpected", json.error?.message ?? `The console server answered ${res.status}.`);
  return json as T;
}

/** The signed-in person, or null when nobody is (which also fetches the CSRF token). */
export async function loadMe(): Promise<Me | null> {
  try {
    return await call<Me>("GET", "/session");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

/** The console server's session routes, one function each. */
export const auth = {
  signIn: (email: string, password: string) => call<Me>("POST", "/session", { email, password }),
  signOut: (scope: "local" | "others" | "global" = "local") => call<{ signed_out: string }>("DELETE", `/session?scope=${scope}`),
  confirm: (token_hash: string, type: string) => call<Me>("POST", "/auth/confirm", { token_hash, type }),
  recover: (email: string) => call<{ sent: true }>("POST", "/auth/recover", { email }),
  /** A new link for an open invitation, mailed to the invited address (the token is the one in the invitation's link). */
  invitationLink: (token: string) => call<{ mailed: string; expires_at: string }>("POST", "/auth/invitation-link", { token }),
  setPassword: (password: string) => call<{ updated: true }>("PUT", "/auth/password", { password }),
  enroll: (friendly_name: string) => call<{ id: string; qr_code: string; secret: string; uri: string }>("POST", "/mfa/enroll", { friendly_name }),
  verify: (factor_id: string, code: string) => call<Me>("POST", "/mfa/verify", { factor_id, code }),
  unenroll: (id: string) => call<{ removed: string }>("DELETE", `/mfa/factors/${id}`),
};
