/**
 * Personal access tokens' format (issue 26): `gtp_`, 30 random base62 characters, and the CRC-32
 * of those 30 in 6 base62 characters, as GitHub builds its tokens (its prefixes are gh?_, ours is
 * Gatehouse's). A secret scanner recognises the prefix; a mistyped or made-up token fails its
 * checksum here, before any database lookup. The database makes them (private.new_personal_access_token,
 * with the same CRC-32 and base 62) and stores only their SHA-256.
 */
import { crc32 } from "node:zlib";

export const PAT_PREFIX = "gtp_";

/** The scopes a token may hold (there is no "everything"); private.pat_scope_role says what each needs. */
export const PAT_SCOPES = ["runs:read", "runs:write", "agents:read", "audit:read", "webhooks:ingest", "tools:call"] as const;
export type PatScope = typeof PAT_SCOPES[number];

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SHAPE = /^gtp_([0-9A-Za-z]{30})([0-9A-Za-z]{6})$/;

/** `n` in base 62 (0-9A-Za-z), left-padded with 0 to `width` characters. */
export function base62(n: number, width: number): string {
  let out = "";
  do {
    out = DIGITS[n % 62] + out;
    n = Math.floor(n / 62);
  } while (n > 0);
  return out.padStart(width, "0");
}

/** The 6-character checksum of a token's 30 random characters: their CRC-32 (zlib's) in base 62. */
export function patChecksum(body: string): string {
  return base62(crc32(body), 6);
}

/** Whether `token` is shaped like a personal access token and its checksum holds (no lookup). */
export function patFormatValid(token: string): boolean {
  const parts = SHAPE.exec(token);
  return parts !== null && patChecksum(parts[1]) === parts[2];
}
