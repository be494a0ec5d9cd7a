/**
 * RFC 6962 proofs of an organization's chain from the database, for the audit-proof function and
 * for witnesses (witness.ts): the tree's leaves are the entry hashes, read in order. A proof costs
 * a read of the first `size` entry hashes (32 bytes each) and about as many hashes again.
 */
import { createHash } from "node:crypto";
import type { Tx } from "../http/db.ts";
import { consistencyProof, inclusionProof, setSha256 } from "./merkle.ts";

/** Installs Deno's native SHA-256 (node:crypto) for the proofs: the same digests as @noble/hashes'. */
export function useNativeSha256(): void {
  setSha256((data) => new Uint8Array(createHash("sha256").update(data).digest()));
}

/** The entry hashes of the first `size` entries (the tree's leaves), in order, inside `tx` (the service role). */
export async function leavesUpTo(tx: Tx, orgId: string, size: number): Promise<Uint8Array[]> {
  const rows = await tx`select entry_hash from audit.entries where org_id = ${orgId} and seq <= ${size} order by seq`;
  if (rows.length !== size) throw new Error("the chain has a gap");
  return rows.map((r) => new Uint8Array(r.entry_hash));
}

/** The consistency proof from `from` to `to` entries (empty from 0: nothing to prove). */
export async function consistencyFrom(tx: Tx, orgId: string, from: number, to: number): Promise<Uint8Array[]> {
  if (from === 0) return [];
  return consistencyProof(await leavesUpTo(tx, orgId, to), from);
}

/** Entry `seq`'s inclusion proof in the tree of `size` entries. */
export async function inclusionOf(tx: Tx, orgId: string, seq: number, size: number): Promise<Uint8Array[]> {
  return inclusionProof(await leavesUpTo(tx, orgId, size), seq - 1);
}
