/**
 * Node's own SHA-256 for the audit verifier (functions/_shared/audit/merkle.ts: setSha256): the same
 * digests as @noble/hashes', several times faster. A "binary" digest turned into bytes is faster than
 * a "buffer" one, and a text is hashed as UTF-8 without encoding it first.
 */
import { hash } from "node:crypto";
import { setSha256 } from "../functions/_shared/audit/merkle.ts";

export function nodeSha256(data: Uint8Array): Uint8Array {
  return Buffer.from(hash("sha256", data, "binary"), "binary");
}

export function useNodeSha256(): void {
  setSha256(nodeSha256, (text) => hash("sha256", text, "hex"));
}
