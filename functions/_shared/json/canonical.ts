/**
 * RFC 8785 (JSON Canonicalization Scheme) text of a JSON value, and the SHA-256 that pins an action
 * payload to its approval. The TypeScript twin of the database's private.jcs() and
 * private.payload_sha256(); tests/unit/canonical_json.test.ts and tests/integration/canonical_json.test.ts
 * hold both to the RFC's test vectors.
 */
import { hash } from "node:crypto";
import canonicalize from "canonicalize";

/**
 * The canonical text of a JSON value. Throws on what JSON can't carry: NaN, ±Infinity, lone
 * surrogates, cycles, or a top-level value JSON drops (undefined, a function).
 */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError("the value has no JSON representation");
  return text;
}

/** SHA-256 (lowercase hex) of a value's canonical UTF-8 bytes: the hash an approver decides on. */
export function payloadSha256(value: unknown): string {
  return hash("sha256", canonicalJson(value), "hex");
}
