/**
 * Per-installation secrets of the local stack. Nothing here is committed: each data folder gets its
 * own random JWT secret, database passwords and Vault root key on first start.
 */
import { randomBytes } from "node:crypto";
import { SignJWT } from "jose";

/** The random secrets one local stack is created with. */
export interface StackSecrets {
  jwtSecret: string;
  postgresPassword: string;
  authenticatorPassword: string;
  authAdminPassword: string;
  vaultRootKeyHex: string;
}

/** Fresh random secrets for a new stack. */
export function generateSecrets(): StackSecrets {
  const token = () => randomBytes(24).toString("base64url");
  return {
    jwtSecret: randomBytes(48).toString("base64url"),
    postgresPassword: token(),
    authenticatorPassword: token(),
    authAdminPassword: token(),
    vaultRootKeyHex: randomBytes(32).toString("hex"),
  };
}

/**
 * Signs a long-lived API key JWT for `role` (`anon` or `service_role`), shaped like the keys the
 * Supabase CLI prints for a local project.
 */
export async function signApiKey(jwtSecret: string, role: "anon" | "service_role"): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ role })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuer("supabase-local")
    .setIssuedAt(now)
    .setExpirationTime(now + 10 * 365 * 24 * 3600)
    .sign(new TextEncoder().encode(jwtSecret));
}
