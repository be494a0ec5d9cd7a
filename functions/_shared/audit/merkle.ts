/**
 * RFC 6962 Merkle trees over audit entry hashes (the same tree private.merkle_frontier_push builds in
 * the database): leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right). Proof
 * generation follows RFC 6962 §2.1; verification follows RFC 9162 §2.1.3.2 and §2.1.4.2.
 *
 * Platform-neutral (the browser, Deno and Node alike): SHA-256 is @noble/hashes' by default, and a
 * runtime with a faster one (Node's node:crypto, for the CLI) installs it with setSha256.
 */
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

/** A synchronous SHA-256. */
export type Sha256 = (data: Uint8Array) => Uint8Array;

let sha256Impl: Sha256 = nobleSha256;
let textHexImpl: ((text: string) => string) | null = null;

/**
 * Installs a faster SHA-256 for this process (it must give the same digests: the tests check),
 * and optionally one that hashes a text's UTF-8 bytes straight to hex, as Node's hash() does.
 */
export function setSha256(impl: Sha256, textHex?: (text: string) => string): void {
  sha256Impl = impl;
  textHexImpl = textHex ?? null;
}

const utf8 = new TextEncoder();
let textInput = new Uint8Array(4096);

/** SHA-256 of a text's UTF-8 bytes, as lowercase hex. */
export function sha256TextHex(text: string): string {
  if (textHexImpl) return textHexImpl(text);
  if (textInput.length < text.length * 3) textInput = new Uint8Array(text.length * 3);
  const { written } = utf8.encodeInto(text, textInput);
  return hexOf(sha256Impl(textInput.subarray(0, written)));
}

/** SHA-256 of `data`, with the installed implementation. */
export function sha256(data: Uint8Array): Uint8Array {
  return sha256Impl(data);
}

// A tree hashes about two small inputs per leaf, so they are written in place.
const leafInput = new Uint8Array(33);
const nodeInput = new Uint8Array(65);
nodeInput[0] = 1;

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of bytes. */
export function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i]];
  return out;
}

/** The bytes of lowercase hex (null when it is not lowercase hex of whole bytes). */
export function bytesOfHex(hex: string): Uint8Array | null {
  if (hex.length % 2 !== 0) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = hexDigit(hex.charCodeAt(2 * i));
    const lo = hexDigit(hex.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) return null;
    out[i] = (hi << 4) | lo;
  }
  return out;
}

// Each character code's value as a lowercase hex digit, or 16 (by table: verifiers decode two hashes an entry).
const HEX_VALUE = new Uint8Array(65536).fill(16);
for (let i = 0; i < 16; i++) HEX_VALUE["0123456789abcdef".charCodeAt(i)] = i;

/** Writes the 32 bytes of 64 hex digits into `target` at `at`; false when it is not such hex. */
export function writeHex32(hex: string, target: Uint8Array, at: number): boolean {
  if (hex.length !== 64) return false;
  let bad = 0;
  for (let i = 0; i < 32; i++) {
    const hi = HEX_VALUE[hex.charCodeAt(2 * i)];
    const lo = HEX_VALUE[hex.charCodeAt(2 * i + 1)];
    bad |= hi | lo;
    target[at + i] = (hi << 4) | lo;
  }
  return (bad & 16) === 0;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;  // lowercase only: the format's hex is lowercase
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** The hash of a leaf holding `data`. */
export function leafHash(data: Uint8Array): Uint8Array {
  if (data.length === 32) {
    leafInput.set(data, 1);
    return sha256(leafInput);
  }
  const input = new Uint8Array(data.length + 1);
  input.set(data, 1);
  return sha256(input);
}

/** The hash of an interior node. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  if (left.length === 32 && right.length === 32) {
    nodeInput.set(left, 1);
    nodeInput.set(right, 33);
    return sha256(nodeInput);
  }
  const input = new Uint8Array(1 + left.length + right.length);
  input[0] = 1;
  input.set(left, 1);
  input.set(right, 1 + left.length);
  return sha256(input);
}

/**
 * A tree built one leaf at a time, kept as its frontier: the roots of its perfect subtrees, left
 * to right (one per set bit of the size). Appending and taking the root are O(log n).
 */
export class MerkleFrontier {
  private nodes: Uint8Array[];
  private count: number;

  /** Resumes a tree of `size` leaves from its frontier (as audit exports carry it). */
  constructor(frontier: Uint8Array[] = [], size = 0) {
    const expected = size.toString(2).split("").filter((b) => b === "1").length;
    if (frontier.length !== expected) {
      throw new Error(`a frontier of a ${size}-leaf tree has ${expected} nodes, not ${frontier.length}`);
    }
    this.nodes = frontier.map((node) => {
      if (node.length !== 32) throw new Error("a frontier node is not 32 bytes");
      return node.slice();
    });
    this.count = size;
  }

  /** The frontier (perfect-subtree roots, left to right), e.g. to resume the tree later. */
  frontier(): Uint8Array[] {
    return this.nodes.map((n) => n.slice());
  }

  /** Number of leaves. */
  get size(): number {
    return this.count;
  }

  /** Appends a leaf holding `data` (bytes, or 32 bytes as hex such as an entry hash). */
  push(data: Uint8Array | string): void {
    let leaf: Uint8Array;
    if (typeof data === "string") {
      if (!writeHex32(data, leafInput, 1)) throw new TypeError("a leaf's hex is not 32 bytes");
      leaf = sha256(leafInput);
    } else {
      leaf = leafHash(data);
    }
    let node = leaf;
    for (let n = this.count; n % 2 === 1; n = Math.floor(n / 2)) node = nodeHash(this.nodes.pop()!, node);
    this.nodes.push(node);
    this.count++;
  }

  /**
   * Appends a perfect subtree of 2^height leaves whose root is `hash` (as MerkleRange gives them),
   * the same as pushing its leaves one by one. The tree's size must be a multiple of 2^height.
   */
  pushSubtree(hash: Uint8Array, height: number): void {
    const leaves = 2 ** height;
    if (this.count % leaves !== 0) throw new RangeError(`a subtree of ${leaves} leaves can't follow ${this.count} leaves`);
    let node = hash;
    for (let n = this.count / leaves; n % 2 === 1; n = Math.floor(n / 2)) node = nodeHash(this.nodes.pop()!, node);
    this.nodes.push(node);
    this.count += leaves;
  }

  /** The Merkle tree hash (the empty tree's is SHA-256 of nothing). */
  root(): Uint8Array {
    if (this.nodes.length === 0) return sha256(new Uint8Array(0));
    let root = this.nodes[this.nodes.length - 1];
    for (let i = this.nodes.length - 2; i >= 0; i--) root = nodeHash(this.nodes[i], root);
    return root;
  }
}

/**
 * The leaves from index `start` on, hashed as far as they can be without the leaves before them:
 * into the largest perfect subtrees that sit at their place in the whole tree (a subtree of 2^h
 * leaves starts at a multiple of 2^h). A tree that has `start` leaves takes them with pushSubtree,
 * in order, and is then the tree it would be with every leaf pushed. So runs of leaves are hashed
 * apart (on other threads) and joined in order.
 */
export class MerkleRange {
  private readonly hashes: Uint8Array[] = [];
  private readonly heights: number[] = [];
  private next: number;

  constructor(start: number) {
    this.next = start;
  }

  /** Appends a leaf holding `data` (an entry hash). */
  push(data: Uint8Array): void {
    let node = leafHash(data);
    let height = 0;
    // Merges with the subtree before while that one is this one's left sibling: this one is a
    // right child (its leaves' first index over its width is odd) and the one before as wide.
    for (let index = this.next; index % 2 === 1 && this.heights[this.heights.length - 1] === height; index = (index - 1) / 2) {
      node = nodeHash(this.hashes.pop()!, node);
      this.heights.pop();
      height++;
    }
    this.hashes.push(node);
    this.heights.push(height);
    this.next++;
  }

  /** The subtrees, left to right. */
  subtrees(): { hash: Uint8Array; height: number }[] {
    return this.hashes.map((hash, i) => ({ hash, height: this.heights[i] }));
  }
}

/** The largest power of two smaller than n (n > 1). */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The Merkle tree hash of leaves (RFC 6962 MTH). */
export function merkleRoot(leaves: Uint8Array[]): Uint8Array {
  const tree = new MerkleFrontier();
  for (const leaf of leaves) tree.push(leaf);
  return tree.root();
}

/** The audit path of leaf `index` in the tree of `leaves` (RFC 6962 PATH). */
export function inclusionProof(leaves: Uint8Array[], index: number): Uint8Array[] {
  if (index < 0 || index >= leaves.length) throw new RangeError(`leaf ${index} is not in a tree of ${leaves.length}`);
  if (leaves.length === 1) return [];
  const k = split(leaves.length);
  return index < k
    ? [...inclusionProof(leaves.slice(0, k), index), merkleRoot(leaves.slice(k))]
    : [...inclusionProof(leaves.slice(k), index - k), merkleRoot(leaves.slice(0, k))];
}

/** A proof that the tree of the first `first` leaves is a prefix of the tree of `leaves` (RFC 6962 PROOF). */
export function consistencyProof(leaves: Uint8Array[], first: number): Uint8Array[] {
  if (first < 1 || first > leaves.length) throw new RangeError(`no consistency proof from ${first} to ${leaves.length}`);
  const sub = (m: number, d: Uint8Array[], complete: boolean): Uint8Array[] => {
    if (m === d.length) return complete ? [] : [merkleRoot(d)];
    const k = split(d.length);
    return m <= k
      ? [...sub(m, d.slice(0, k), complete), merkleRoot(d.slice(k))]
      : [...sub(m - k, d.slice(k), false), merkleRoot(d.slice(0, k))];
  };
  return sub(first, leaves, true);
}

/** Checks that `data` is leaf `index` of the tree of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2). */
export function verifyInclusion(
  data: Uint8Array,
  index: number,
  size: number,
  proof: Uint8Array[],
  root: Uint8Array,
): boolean {
  if (index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leafHash(data);
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

/** Checks that the tree (`first`, `firstRoot`) is a prefix of (`second`, `secondRoot`) (RFC 9162 §2.1.4.2). */
export function verifyConsistency(
  first: number,
  second: number,
  proof: Uint8Array[],
  firstRoot: Uint8Array,
  secondRoot: Uint8Array,
): boolean {
  if (first < 1 || first > second) return false;
  if (first === second) return proof.length === 0 && equal(firstRoot, secondRoot);
  const path = (first & (first - 1)) === 0 ? [firstRoot, ...proof] : [...proof];
  if (path.length === 0) return false;
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(fr, firstRoot) && equal(sr, secondRoot);
}
