/**
 * functions/_shared/audit/merkle.ts against RFC 6962's recursive definition of the Merkle tree hash,
 * for every size and position up to a few dozen leaves, and the same tree joined from runs of
 * leaves hashed apart (MerkleRange, as the verifier's threads hash them).
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  MerkleFrontier,
  MerkleRange,
  consistencyProof,
  inclusionProof,
  merkleRoot,
  verifyConsistency,
  verifyInclusion,
} from "../../functions/_shared/audit/merkle.ts";

const sha = (...parts: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** RFC 6962 §2.1, literally. */
function mth(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha();
  if (d.length === 1) return sha(Uint8Array.of(0), d[0]);
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return sha(Uint8Array.of(1), mth(d.slice(0, k)), mth(d.slice(k)));
}

const leaves = Array.from({ length: 40 }, (_, i) => sha(new TextEncoder().encode(`entry ${i}`)));
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("RFC 6962 Merkle trees", () => {
  it("joins runs of leaves hashed apart into the tree of all of them, wherever the runs are cut", () => {
    // Every way to cut 40 leaves into a run before `a`, a run a..b and a run after, as the verifier's threads do.
    for (let a = 0; a <= leaves.length; a++) {
      for (let b = a; b <= leaves.length; b++) {
        const tree = new MerkleFrontier();
        for (const [from, to] of [[0, a], [a, b], [b, leaves.length]]) {
          const run = new MerkleRange(from);
          for (const leaf of leaves.slice(from, to)) run.push(leaf);
          for (const t of run.subtrees()) tree.pushSubtree(t.hash, t.height);
          expect(tree.size).toBe(to);
          expect(hex(tree.root())).toBe(hex(mth(leaves.slice(0, to))));
        }
      }
    }
  });

  it("refuses a subtree at a place it does not start", () => {
    const tree = new MerkleFrontier();
    tree.push(leaves[0]);
    expect(() => tree.pushSubtree(leaves[1], 1)).toThrow(/can't follow 1 leaves/);
  });

  it("builds the same root incrementally as the recursive definition, for every size", () => {
    const tree = new MerkleFrontier();
    expect(hex(tree.root())).toBe(hex(mth([])));
    for (let n = 1; n <= leaves.length; n++) {
      tree.push(leaves[n - 1]);
      expect(hex(tree.root())).toBe(hex(mth(leaves.slice(0, n))));
      expect(hex(merkleRoot(leaves.slice(0, n)))).toBe(hex(mth(leaves.slice(0, n))));
    }
  });

  it("resumes a tree from its frontier", () => {
    const first = new MerkleFrontier();
    for (const l of leaves.slice(0, 13)) first.push(l);
    const resumed = new MerkleFrontier(first.frontier(), 13);
    for (const l of leaves.slice(13)) resumed.push(l);
    expect(hex(resumed.root())).toBe(hex(mth(leaves)));
    expect(() => new MerkleFrontier([], 13)).toThrow(/has 3 nodes, not 0/);
  });

  it("proves and verifies the inclusion of every leaf, and rejects a wrong leaf, index or root", () => {
    for (let n = 1; n <= 33; n++) {
      const d = leaves.slice(0, n);
      const root = mth(d);
      for (let m = 0; m < n; m++) {
        const proof = inclusionProof(d, m);
        expect(verifyInclusion(d[m], m, n, proof, root)).toBe(true);
        expect(verifyInclusion(leaves[39], m, n, proof, root)).toBe(false);
        if (n > 1) expect(verifyInclusion(d[m], (m + 1) % n, n, proof, root)).toBe(false);
        expect(verifyInclusion(d[m], m, n, proof, mth(leaves.slice(0, n + 1)))).toBe(false);
      }
    }
  });

  it("proves and verifies that every earlier tree is a prefix of every later one", () => {
    for (let n = 1; n <= 24; n++) {
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(leaves.slice(0, n), m);
        const [a, b] = [mth(leaves.slice(0, m)), mth(leaves.slice(0, n))];
        expect(verifyConsistency(m, n, proof, a, b)).toBe(true);
        // A rewritten history (a different leaf in the first tree) is not consistent.
        const forged = mth([leaves[39], ...leaves.slice(1, m)]);
        expect(verifyConsistency(m, n, proof, forged, b)).toBe(false);
      }
    }
  });
});
