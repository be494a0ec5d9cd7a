/**
 * Verifying an audit export in the browser, with Web Crypto only: the same checks as the offline
 * CLI (scripts/audit_verify.ts, through functions/_shared/audit/export.ts), so that a person can
 * check what the server handed them without trusting the page's server for the answer.
 *
 * The export is JSON Lines (format gatehouse-audit-export/1):
 *   {"type":"header","format":…,"org":…,"from_seq":a,"to_seq":b,"frontier":[hex…]}
 *   {"type":"entry","seq":…,"prev_hash":hex,"entry_hash":hex,"canonical":"{…}","payload":"{…}"|null}   (a..b)
 *   {"type":"checkpoint","checkpoint":"{…}","signature":base64,"key_id":…,"public_key":base64}
 * and is checked as follows:
 *   - every entry's hash is SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical), each
 *     links to the one before, numbers run without a gap, and the hashed bytes name the entry's
 *     own number and organization;
 *   - a payload, unless purged, is the text whose SHA-256 the hashed bytes state;
 *   - the RFC 6962 Merkle root of the entries (resumed from the header's frontier) and the last
 *     entry's hash are the closing checkpoint's, and that checkpoint is signed (Ed25519, over
 *     "gatehouse.audit.checkpoint.v1\n" || body) by the pinned key, not by whatever key the export
 *     carries;
 *   - given a pinned checkpoint, the export extends it: the same history up to its size, and
 *     nothing cut after it.
 * These are pure functions of their input (no DOM, no network), so a test runs them on Node too.
 */
import type { CheckpointBody, SignedCheckpoint } from "../../functions/_shared/audit/export.ts";

export type { CheckpointBody, SignedCheckpoint };

// The format's constants, as functions/_shared/audit/export.ts has them; only its types are
// imported, as its code needs node:crypto, which a browser lacks.
const EXPORT_FORMAT = "gatehouse-audit-export/1";
const ENTRY_TAG = "gatehouse.audit.v1\u0000";
const CHECKPOINT_TAG = "gatehouse.audit.checkpoint.v1\n";
const HEX64 = /^[0-9a-f]{64}$/;
const utf8 = new TextEncoder();

/** What the person trusts: a signing key (raw Ed25519, base64) and, optionally, a checkpoint the export must extend. */
export interface Pin {
  keyId: string;
  publicKey: string;
  checkpoint?: SignedCheckpoint;
}

/** The outcome of verifying an export: what checked out, or the first entry that did not and why. */
export type Verification =
  | {
      ok: true;
      /** How many entries were checked. */
      checked: number;
      /** The last entry exported, which the checkpoint signs. */
      head: { seq: number; hash: string };
      org: string;
      fromSeq: number;
      checkpoint: CheckpointBody;
      /** Whether a pinned checkpoint was given (and the export extends it). */
      extendsPin: boolean;
    }
  | { ok: false; firstBadSeq: number | null; reason: string };

interface Header {
  type: "header";
  format: string;
  org: string;
  from_seq: number;
  to_seq: number;
  frontier: string[];
}

interface Entry {
  type: "entry";
  seq: number;
  prev_hash: string;
  entry_hash: string;
  canonical: string;
  payload: string | null;
}

type Bytes = Uint8Array<ArrayBuffer>;

function hexOf(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function bytesOfHex(hex: string): Bytes {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function bytesOfBase64(b64: string): Bytes {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function concat(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(bytes: Bytes): Promise<Bytes> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** The lowercase hex SHA-256 of a text's UTF-8 bytes (an action's canonical payload, an audit payload). */
export async function sha256Hex(text: string): Promise<string> {
  return hexOf(await sha256(utf8.encode(text)));
}

/** An entry's hash: SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical), as hex. */
async function entryHash(prevHash: string, canonical: string): Promise<string> {
  return hexOf(await sha256(concat(utf8.encode(ENTRY_TAG), bytesOfHex(prevHash), utf8.encode(canonical))));
}

/**
 * The RFC 6962 tree over entry hashes, kept as its frontier (the roots of its perfect subtrees,
 * left to right): leaf = SHA-256(0x00 || entry hash), node = SHA-256(0x01 || left || right).
 * The same tree as functions/_shared/audit/merkle.ts and private.merkle_frontier_push.
 */
class Frontier {
  private constructor(private nodes: Bytes[], private count: number) {}

  /** Resumes a tree of `size` leaves from its frontier, or null if the frontier can't be one. */
  static of(frontier: string[], size: number): Frontier | null {
    const expected = size.toString(2).split("").filter((b) => b === "1").length;
    return frontier.length === expected ? new Frontier(frontier.map(bytesOfHex), size) : null;
  }

  async push(entryHashHex: string): Promise<void> {
    let node = await sha256(concat(Uint8Array.of(0), bytesOfHex(entryHashHex)));
    for (let n = this.count; n % 2 === 1; n = Math.floor(n / 2)) node = await sha256(concat(Uint8Array.of(1), this.nodes.pop()!, node));
    this.nodes.push(node);
    this.count++;
  }

  async root(): Promise<string> {
    if (this.nodes.length === 0) return hexOf(await sha256(new Uint8Array(0)));
    let root = this.nodes[this.nodes.length - 1];
    for (let i = this.nodes.length - 2; i >= 0; i--) root = await sha256(concat(Uint8Array.of(1), this.nodes[i], root));
    return hexOf(root);
  }
}

/** A checkpoint's body, or null if it is not one. */
export function parseCheckpoint(text: string): CheckpointBody | null {
  try {
    const body = JSON.parse(text) as CheckpointBody;
    const fine = body.v === 1 && HEX64.test(body.head) && HEX64.test(body.root) && Number.isSafeInteger(body.size)
      && typeof body.org === "string" && typeof body.key === "string";
    return fine ? body : null;
  } catch {
    return null;
  }
}

/** Whether a checkpoint's Ed25519 signature is valid for a raw public key (base64). */
export async function checkpointSignatureValid(cp: SignedCheckpoint, publicKey: string): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("raw", bytesOfBase64(publicKey), { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, bytesOfBase64(cp.signature), utf8.encode(CHECKPOINT_TAG + cp.checkpoint));
  } catch {
    return false;
  }
}

/**
 * Verifies an export (its JSON Lines text) against what the person pinned: the signing key, and
 * optionally a checkpoint it must extend. Reports the first entry that fails and why.
 */
export async function verifyExport(text: string, pin: Pin): Promise<Verification> {
  const fail = (firstBadSeq: number | null, reason: string): Verification => ({ ok: false, firstBadSeq, reason });
  const lines = text.split("\n").map((line, i) => ({ line: line.replace(/\r$/, ""), no: i + 1 })).filter((l) => l.line.trim() !== "");
  if (lines.length === 0) return fail(null, "the export is empty");

  const parsed: unknown[] = [];
  for (const { line, no } of lines) {
    try {
      parsed.push(JSON.parse(line));
    } catch {
      // Where the unreadable line sits tells the person which entry was damaged.
      const before = parsed.filter((p) => (p as { type?: string })?.type === "entry").at(-1) as Entry | undefined;
      const header = parsed[0] as Header | undefined;
      const expected = before ? before.seq + 1 : header?.type === "header" ? header.from_seq : null;
      return fail(expected, `line ${no} is not JSON`);
    }
  }

  const h = parsed[0] as Header;
  if ((h as { type?: string })?.type !== "header") return fail(null, "the export does not start with its header");
  if (h.format !== EXPORT_FORMAT) return fail(null, `unknown export format ${JSON.stringify(h.format)}`);
  if (!Number.isSafeInteger(h.from_seq) || h.from_seq < 1 || typeof h.org !== "string"
      || !Array.isArray(h.frontier) || !h.frontier.every((x) => typeof x === "string" && HEX64.test(x))) {
    return fail(null, "the header is malformed");
  }
  const tree = Frontier.of(h.frontier, h.from_seq - 1);
  if (!tree) return fail(null, `the header's frontier can't be that of a tree of ${h.from_seq - 1} entries`);

  const pinBody = pin.checkpoint ? parseCheckpoint(pin.checkpoint.checkpoint) : null;
  if (pin.checkpoint && !pinBody) return fail(null, "the pinned checkpoint is malformed");
  if (pinBody && pinBody.org !== h.org) return fail(null, "the pinned checkpoint is of another organization");
  if (pinBody && pinBody.size < h.from_seq - 1) {
    return fail(null, `the pinned checkpoint (size ${pinBody.size}) precedes the export; export from entry ${pinBody.size + 1} or earlier`);
  }
  let pinMatched = false;
  const checkPinAt = async (size: number, head: string | null): Promise<Verification | null> => {
    if (!pinBody || pinBody.size !== size) return null;
    pinMatched = true;
    if ((await tree.root()) !== pinBody.root || (head !== null && head !== pinBody.head)) {
      return fail(size, `the chain up to entry ${size} is not the one the pinned checkpoint states (history was rewritten)`);
    }
    return null;
  };
  const atStart = await checkPinAt(h.from_seq - 1, null);
  if (atStart) return atStart;

  let last: { seq: number; hash: string } | null = null;
  let checkpoint: SignedCheckpoint | null = null;
  for (const value of parsed.slice(1)) {
    const line = value as { type?: string };
    const expected: number = last ? last.seq + 1 : h.from_seq;
    if (checkpoint) return fail(null, "lines follow the checkpoint");
    if (line?.type === "checkpoint") {
      checkpoint = line as unknown as SignedCheckpoint;
      continue;
    }
    if (line?.type !== "entry") return fail(expected, `unexpected line type ${JSON.stringify(line?.type)}`);
    const e = line as Entry;
    if (e.seq !== expected) return fail(expected, `expected entry ${expected}, found ${JSON.stringify(e.seq)} (an entry is missing or out of order)`);
    // The first prev_hash is checked here; every later one must equal the hash computed before it.
    if (typeof e.prev_hash !== "string" || typeof e.entry_hash !== "string" || typeof e.canonical !== "string"
        || (!last && !HEX64.test(e.prev_hash))) {
      return fail(e.seq, "the entry is malformed");
    }
    if (last && e.prev_hash !== last.hash) return fail(e.seq, "prev_hash is not the hash of the entry before");
    if (!last && pinBody?.size === e.seq - 1 && e.prev_hash !== pinBody.head) {
      return fail(e.seq, "prev_hash is not the head of the pinned checkpoint (history was rewritten)");
    }
    if ((await entryHash(e.prev_hash, e.canonical)) !== e.entry_hash) return fail(e.seq, "entry_hash is not the hash of the entry");
    let fields: { seq?: unknown; org?: unknown; payload_sha256?: unknown };
    try {
      fields = JSON.parse(e.canonical);
    } catch {
      return fail(e.seq, "the hashed bytes are not JSON");
    }
    if (fields.seq !== e.seq || fields.org !== h.org) return fail(e.seq, "the hashed bytes name another entry or organization");
    if (e.payload !== null) {
      if (typeof e.payload !== "string") return fail(e.seq, "the payload is malformed");
      if ((await sha256Hex(e.payload)) !== fields.payload_sha256) return fail(e.seq, "the payload is not the one that was hashed");
    }
    await tree.push(e.entry_hash);
    last = { seq: e.seq, hash: e.entry_hash };
    const atPin = await checkPinAt(e.seq, e.entry_hash);
    if (atPin) return atPin;
  }

  const size = last?.seq ?? h.from_seq - 1;
  if (!checkpoint) return fail(size + 1, "the export has no closing checkpoint (it was cut short)");
  const body = parseCheckpoint(checkpoint.checkpoint);
  if (!body) return fail(null, "the checkpoint is malformed");
  if (body.org !== h.org) return fail(null, "the checkpoint is of another organization");
  if (body.size !== size || size !== h.to_seq) {
    return fail(size + 1, `the export ends at entry ${size}, but its checkpoint states ${body.size} and its header ${h.to_seq}`);
  }
  if (last && body.head !== last.hash) return fail(size, "the checkpoint's head is not the last entry's hash");
  if ((await tree.root()) !== body.root) return fail(null, "the Merkle root of the entries is not the checkpoint's");

  if (pin.checkpoint && !(await checkpointSignatureValid(pin.checkpoint, pin.publicKey))) {
    return fail(null, `the pinned checkpoint's signature is not valid for the pinned key ${pin.keyId}`);
  }
  if (!(await checkpointSignatureValid(checkpoint, pin.publicKey))) {
    const other = checkpoint.key_id !== pin.keyId ? ` (the export says key ${JSON.stringify(checkpoint.key_id)})` : "";
    return fail(null, `the checkpoint's signature is not valid for the pinned key ${pin.keyId}${other}: forged, re-signed or signed by another key`);
  }
  if (pinBody && pinBody.size > size) {
    return fail(size + 1, `the export ends at entry ${size}, but the pinned checkpoint has ${pinBody.size} entries (the tail was cut)`);
  }
  if (pinBody && !pinMatched) return fail(null, "the pinned checkpoint was not reached");
  return {
    ok: true,
    checked: size - h.from_seq + 1,
    head: { seq: size, hash: body.head },
    org: h.org,
    fromSeq: h.from_seq,
    checkpoint: body,
    extendsPin: pinBody !== null,
  };
}
