/**
 * The audit export format and its verifier, shared by the audit-export function (which writes it)
 * and the offline CLI (scripts/audit_verify.ts, which checks it without a database).
 *
 * An export is JSON Lines:
 *   {"type":"header","format":"gatehouse-audit-export/1","org":…,"from_seq":a,"to_seq":b,"frontier":[hex…]}
 *   {"type":"entry","seq":…,"prev_hash":hex,"entry_hash":hex,"canonical":"{…}","payload":"{…}"|null}   (a..b)
 *   {"type":"checkpoint","checkpoint":"{…}","signature":base64,"key_id":…,"public_key":base64}
 * `frontier` is the Merkle frontier of entries 1..a-1, so the root can be rebuilt from a..b alone.
 * `payload` is the payload's JSON text exactly as it was hashed (null once purged). The checkpoint
 * states size b.
 * Runs on Node and Deno alike (node:crypto, Web Crypto).
 */
import { Buffer } from "node:buffer";
import { hash } from "node:crypto";
import { MerkleFrontier } from "./merkle.ts";

export const EXPORT_FORMAT = "gatehouse-audit-export/1";
const ENTRY_TAG = new TextEncoder().encode("gatehouse.audit.v1\u0000");
const CHECKPOINT_TAG = "gatehouse.audit.checkpoint.v1\n";
const HEX64 = /^[0-9a-f]{64}$/;

export interface ExportHeader {
  type: "header";
  format: typeof EXPORT_FORMAT;
  org: string;
  from_seq: number;
  to_seq: number;
  frontier: string[];
}

export interface ExportEntry {
  type: "entry";
  seq: number;
  prev_hash: string;
  entry_hash: string;
  canonical: string;
  payload: string | null;
}

/** A signed checkpoint, as exports end with it and as a customer pins it. */
export interface SignedCheckpoint {
  checkpoint: string;
  signature: string;
  key_id: string;
  public_key: string;
}

export interface CheckpointBody {
  head: string;
  key: string;
  org: string;
  root: string;
  size: number;
  time: string;
  v: 1;
}

export type VerifyResult =
  | { ok: true; org: string; entries: number; size: number; keyPinned: boolean; checkpoint: CheckpointBody }
  | { ok: false; seq: number | null; reason: string };

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function bytesOf(hex: string): Uint8Array {
  return Buffer.from(hex, "hex");
}

/** The bytes of base64 text. */
export function base64Bytes(b64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// What an entry hash covers, written in place (the tag stays at the front): a verifier hashes one
// per entry.
let entryInput = Buffer.alloc(4096);
entryInput.set(ENTRY_TAG);

/** SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical) as hex, or null if prev_hash is not 64 hex digits. */
function entryHashOrNull(prevHash: string, canonical: string): string | null {
  const start = ENTRY_TAG.length + 32;
  if (entryInput.length < start + canonical.length * 3) {
    entryInput = Buffer.alloc(2 * (start + canonical.length * 3));
    entryInput.set(ENTRY_TAG);
  }
  if (prevHash.length !== 64 || entryInput.write(prevHash, ENTRY_TAG.length, "hex") !== 32) return null;
  const end = start + entryInput.write(canonical, start, "utf8");
  return hash("sha256", entryInput.subarray(0, end), "hex");
}

/** The hash that chains an entry: SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical). */
export function entryHash(prevHash: string, canonical: string): string {
  const computed = entryHashOrNull(prevHash, canonical);
  if (computed === null) throw new TypeError("prev_hash is not 64 hex digits");
  return computed;
}

/** The bytes an Ed25519 checkpoint signature covers. */
export function checkpointMessage(body: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(CHECKPOINT_TAG + body);
}

/** Checks a checkpoint's Ed25519 signature against a raw public key (base64). */
export async function checkpointSignatureValid(cp: SignedCheckpoint, publicKey: string): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("raw", base64Bytes(publicKey), { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, base64Bytes(cp.signature), checkpointMessage(cp.checkpoint));
  } catch {
    return false;
  }
}

function parseBody(text: string): CheckpointBody | null {
  try {
    const body = JSON.parse(text) as CheckpointBody;
    const fine = body.v === 1 && HEX64.test(body.head) && HEX64.test(body.root) && Number.isSafeInteger(body.size)
      && typeof body.org === "string" && typeof body.key === "string";
    return fine ? body : null;
  } catch {
    return null;
  }
}

export interface VerifyOptions {
  /** The trusted signing key (raw Ed25519, base64). Without it, the pin's key, else the export's own. */
  publicKey?: string;
  /** An earlier checkpoint the customer pinned: the export must extend it. */
  pin?: SignedCheckpoint;
  /** An RFC 8785 canonicalizer, to also require that hashed JSON is in canonical form. */
  canonicalize?: (value: unknown) => string | undefined;
}

/**
 * Verifies an export fed one parsed line at a time, so that exports of any size stream through in
 * constant memory. Call `line` for each line, then `finish`. The first failure is kept.
 */
export class ExportVerifier {
  private header: ExportHeader | null = null;
  private tree: MerkleFrontier | null = null;
  private last: { seq: number; hash: string } | null = null;
  private checkpoint: SignedCheckpoint | null = null;
  private failure: { seq: number | null; reason: string } | null = null;
  private pinBody: CheckpointBody | null = null;
  private pinMatched = false;

  constructor(private readonly options: VerifyOptions = {}) {}

  private fail(seq: number | null, reason: string): void {
    this.failure ??= { seq, reason };
  }

  private checkPinAt(size: number, head: string | null): void {
    const pin = this.pinBody;
    if (!pin || pin.size !== size || !this.tree) return;
    if (hexOf(this.tree.root()) !== pin.root || (head !== null && head !== pin.head)) {
      this.fail(size, `the chain up to entry ${size} is not the one the pinned checkpoint states (history was rewritten)`);
    }
    this.pinMatched = true;
  }

  /** Feeds one parsed line of the export. */
  line(value: unknown): void {
    if (this.failure) return;
    const line = value as { type?: string };
    if (this.header === null) {
      if (line?.type !== "header") return this.fail(null, "the export does not start with its header");
      const h = line as ExportHeader;
      if (h.format !== EXPORT_FORMAT) return this.fail(null, `unknown export format ${JSON.stringify(h.format)}`);
      if (!Number.isSafeInteger(h.from_seq) || h.from_seq < 1 || !Array.isArray(h.frontier) || !h.frontier.every((x) => HEX64.test(x))) {
        return this.fail(null, "the header is malformed");
      }
      this.header = h;
      try {
        this.tree = new MerkleFrontier(h.frontier.map(bytesOf), h.from_seq - 1);
      } catch (e) {
        return this.fail(null, `the header's frontier is wrong: ${(e as Error).message}`);
      }
      if (this.options.pin) {
        this.pinBody = parseBody(this.options.pin.checkpoint);
        if (!this.pinBody) return this.fail(null, "the pinned checkpoint is malformed");
        if (this.pinBody.org !== h.org) return this.fail(null, "the pinned checkpoint is of another organization");
        if (this.pinBody.size < h.from_seq - 1) {
          return this.fail(null, `the pinned checkpoint (size ${this.pinBody.size}) precedes the export; export from entry ${this.pinBody.size + 1} or earlier`);
        }
        this.checkPinAt(h.from_seq - 1, null);
      }
      return;
    }
    if (this.checkpoint) return this.fail(null, "lines follow the checkpoint");
    if (line?.type === "entry") return this.entry(line as ExportEntry);
    if (line?.type === "checkpoint") {
      this.checkpoint = line as unknown as SignedCheckpoint;
      return;
    }
    this.fail(this.last ? this.last.seq + 1 : this.header.from_seq, `unexpected line type ${JSON.stringify(line?.type)}`);
  }

  private entry(e: ExportEntry): void {
    const h = this.header!;
    const expected = this.last ? this.last.seq + 1 : h.from_seq;
    if (e.seq !== expected) return this.fail(expected, `expected entry ${expected}, found ${JSON.stringify(e.seq)} (an entry is missing or out of order)`);
    // The first prev_hash is checked here; every later one must equal the hash computed before it,
    // and every entry_hash the one computed now, so they are checked by comparison.
    if (typeof e.prev_hash !== "string" || typeof e.entry_hash !== "string" || typeof e.canonical !== "string"
        || (!this.last && !HEX64.test(e.prev_hash))) {
      return this.fail(e.seq, "the entry is malformed");
    }
    if (this.last && e.prev_hash !== this.last.hash) return this.fail(e.seq, "prev_hash is not the hash of the entry before");
    if (!this.last && this.pinBody?.size === e.seq - 1 && e.prev_hash !== this.pinBody.head) {
      return this.fail(e.seq, "prev_hash is not the head of the pinned checkpoint (history was rewritten)");
    }
    if (entryHashOrNull(e.prev_hash, e.canonical) !== e.entry_hash) return this.fail(e.seq, "entry_hash is not the hash of the entry");
    let fields: { seq?: unknown; org?: unknown; payload_sha256?: unknown };
    try {
      fields = JSON.parse(e.canonical);
    } catch {
      return this.fail(e.seq, "the hashed bytes are not JSON");
    }
    if (fields.seq !== e.seq || fields.org !== h.org) return this.fail(e.seq, "the hashed bytes name another entry or organization");
    const canonicalize = this.options.canonicalize;
    if (canonicalize && canonicalize(fields) !== e.canonical) return this.fail(e.seq, "the hashed bytes are not RFC 8785 canonical JSON");
    if (e.payload !== null) {
      if (typeof e.payload !== "string") return this.fail(e.seq, "the payload is malformed");
      if (hash("sha256", e.payload, "hex") !== fields.payload_sha256) {
        return this.fail(e.seq, "the payload is not the one that was hashed");
      }
    }
    this.tree!.push(e.entry_hash);
    this.last = { seq: e.seq, hash: e.entry_hash };
    this.checkPinAt(e.seq, e.entry_hash);
  }

  /** Finishes: checks the closing checkpoint, its signature and the pin. */
  async finish(): Promise<VerifyResult> {
    if (this.failure) return { ok: false, ...this.failure };
    const h = this.header;
    if (!h) return { ok: false, seq: null, reason: "the export is empty" };
    const size = this.last?.seq ?? h.from_seq - 1;
    const cp = this.checkpoint;
    if (!cp) return { ok: false, seq: size + 1, reason: "the export has no closing checkpoint (it was cut short)" };
    const body = parseBody(cp.checkpoint);
    if (!body) return { ok: false, seq: null, reason: "the checkpoint is malformed" };
    if (body.org !== h.org) return { ok: false, seq: null, reason: "the checkpoint is of another organization" };
    if (body.size !== size || size !== h.to_seq) {
      return { ok: false, seq: size + 1, reason: `the export ends at entry ${size}, but its checkpoint states ${body.size} and its header ${h.to_seq}` };
    }
    if (this.last && body.head !== this.last.hash) return { ok: false, seq: size, reason: "the checkpoint's head is not the last entry's hash" };
    if (hexOf(this.tree!.root()) !== body.root) return { ok: false, seq: null, reason: "the Merkle root of the entries is not the checkpoint's" };

    const pinned = this.options.pin;
    const trusted = this.options.publicKey ?? pinned?.public_key ?? cp.public_key;
    const keyPinned = this.options.publicKey !== undefined || pinned !== undefined;
    if (pinned && !(await checkpointSignatureValid(pinned, trusted))) {
      return { ok: false, seq: null, reason: "the pinned checkpoint's signature is not valid for the trusted key" };
    }
    if (!(await checkpointSignatureValid(cp, trusted))) {
      return { ok: false, seq: null, reason: "the checkpoint's signature is not valid for the trusted key (forged or re-signed)" };
    }
    if (this.pinBody && this.pinBody.size > size) {
      return { ok: false, seq: size + 1, reason: `the export ends at entry ${size}, but the pinned checkpoint has ${this.pinBody.size} entries (the tail was cut)` };
    }
    if (this.pinBody && !this.pinMatched) return { ok: false, seq: null, reason: "the pinned checkpoint was not reached" };
    return { ok: true, org: h.org, entries: size - h.from_seq + 1, size, keyPinned, checkpoint: body };
  }
}
