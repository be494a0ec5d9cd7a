/**
 * A second factor for tests: a TOTP factor enrolled and verified through supabase-js (auth.mfa),
 * as a user with an authenticator app would, and the step-up of a session to aal2. Codes are
 * computed with `otpauth`, with Supabase Auth's parameters (SHA-1, 6 digits, 30 seconds).
 *
 * Verifying a factor makes the client's session aal2 and, as in Supabase Auth, ends the user's
 * other sessions that are still aal1: sign in other clients of the same user afterwards.
 */
import { randomUUID } from "node:crypto";
import { Secret, TOTP } from "otpauth";
import type { Client } from "./stack.ts";

/** Anything with supabase-js's auth client (typed or untyped createClient). */
type WithAuth = { auth: Client["auth"] };

/** The current 6-digit code of the base32 TOTP `secret`. */
export function totpCode(secret: string): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30 });
}

/**
 * Enrolls a TOTP factor for the signed-in `client` and verifies it, which leaves the client's
 * session at aal2. Returns the factor's id and its secret (for later codes).
 */
export async function enrollTotp(client: WithAuth, opts: { friendlyName?: string } = {}): Promise<{ factorId: string; secret: string }> {
  const { data, error } = await client.auth.mfa.enroll({ factorType: "totp", friendlyName: opts.friendlyName ?? `test totp ${randomUUID().slice(0, 8)}` });
  if (error) throw error;
  await stepUp(client, data.id, data.totp.secret);
  return { factorId: data.id, secret: data.totp.secret };
}

/** Raises the signed-in `client`'s session to aal2 with a challenge of the factor and its current code. */
export async function stepUp(client: WithAuth, factorId: string, secret: string): Promise<void> {
  const challenge = await client.auth.mfa.challenge({ factorId });
  if (challenge.error) throw challenge.error;
  const verified = await client.auth.mfa.verify({ factorId, challengeId: challenge.data.id, code: totpCode(secret) });
  if (verified.error) throw verified.error;
}
