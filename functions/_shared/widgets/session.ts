/**
 * Widget sessions and proof of work. A session is a short-lived HS256 token, signed with the
 * widget signing key (private.widget_signing_secret, in Vault), bound to the key (and the version
 * it was issued for), the agent, the origin that asked and an anonymous visitor id. A
 * proof-of-work challenge is a token of the same key that a session request must answer with a
 * nonce: SHA-256(challenge + ":" + nonce) must start with `bits` zero bits.
 */
import { jwtVerify, SignJWT } from "jose";
import { serviceDb } from "../http/db.ts";

/** How long a session lives, in seconds. */
export const SESSION_SECONDS = 600;
/** How long a proof-of-work challenge may be answered, in seconds. */
const CHALLENGE_SECONDS = 120;

export interface WidgetSession {
  keyId: string;
  keyVersion: number;
  orgId: string;
  agentId: string;
  origin: string;
  visitorId: string;
}

let signingKey: Promise<Uint8Array> | null = null;

/** The signing key, read once per worker. */
function key(): Promise<Uint8Array> {
  signingKey ??= serviceDb()`select private.widget_signing_secret() as secret`.then(([row]) => new TextEncoder().encode(String(row.secret)))
    .catch((e) => {
      signingKey = null;
      throw e;
    });
  return signingKey;
}

/** A new session token. */
export async function signSession(s: WidgetSession): Promise<string> {
  return await new SignJWT({ typ: "widget_session", kid: s.keyId, ver: s.keyVersion, org: s.orgId, agent: s.agentId, origin: s.origin })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(s.visitorId)
    .setIssuedAt()
    .setExpirationTime(`${SESSION_SECONDS}s`)
    .sign(await key());
}

/** How long after it expired a session may still be renewed (keeping its visitor and conversation), in seconds. */
export const RENEWAL_SECONDS = 24 * 3600;

/**
 * The session a token carries, or why not: expired, or not a session token of ours. With
 * `renewal`, a session that expired within RENEWAL_SECONDS still counts (to renew it, never to use it).
 */
export async function verifySession(
  token: string,
  options: { renewal?: boolean } = {},
): Promise<{ ok: true; session: WidgetSession } | { ok: false; reason: "expired" | "invalid" }> {
  try {
    const { payload } = await jwtVerify(token, await key(), { algorithms: ["HS256"], ...(options.renewal ? { clockTolerance: RENEWAL_SECONDS } : {}) });
    if (payload.typ !== "widget_session" || typeof payload.sub !== "string" || typeof payload.kid !== "string" ||
        typeof payload.ver !== "number" || typeof payload.origin !== "string" || typeof payload.org !== "string" ||
        typeof payload.agent !== "string") {
      return { ok: false, reason: "invalid" };
    }
    return {
      ok: true,
      session: { keyId: payload.kid, keyVersion: payload.ver, orgId: payload.org, agentId: payload.agent, origin: payload.origin, visitorId: payload.sub },
    };
  } catch (e) {
    return { ok: false, reason: (e as { code?: string })?.code === "ERR_JWT_EXPIRED" ? "expired" : "invalid" };
  }
}

/** A proof-of-work challenge for a key and origin. */
export async function challenge(keyId: string, origin: string): Promise<string> {
  return await new SignJWT({ typ: "widget_pow", kid: keyId, origin })
    .setProtectedHeader({ alg: "HS256" })
    .setJti(crypto.randomUUID())
    .setExpirationTime(`${CHALLENGE_SECONDS}s`)
    .sign(await key());
}

/**
 * Whether `nonce` answers `token` (a live challenge of ours for this key and origin) with `bits`
 * zero bits, and the challenge had not been answered before: each opens one session.
 */
export async function proofHolds(token: string, nonce: string, expected: { keyId: string; origin: string; bits: number }): Promise<boolean> {
  let jti: string;
  let expires: number;
  try {
    const { payload } = await jwtVerify(token, await key(), { algorithms: ["HS256"] });
    if (payload.typ !== "widget_pow" || payload.kid !== expected.keyId || payload.origin !== expected.origin) return false;
    if (typeof payload.jti !== "string" || typeof payload.exp !== "number") return false;
    jti = payload.jti;
    expires = payload.exp;
  } catch {
    return false;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${token}:${nonce}`)));
  if (leadingZeroBits(digest) < expected.bits) return false;
  const [{ spent }] = await serviceDb()`select private.spend_proof_of_work(${jti}, to_timestamp(${expires})) as spent`;
  return spent === true;
}

function leadingZeroBits(bytes: Uint8Array): number {
  let bits = 0;
  for (const byte of bytes) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}
