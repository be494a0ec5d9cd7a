/**
 * The audit chain's verifier: one module for the offline CLI (scripts/audit_verify.ts), the
 * console's Audit page (web/src/Audit.tsx, in the browser), the audit-export function (which writes
 * the format) and the tests. The SQL verifier (audit.verify_chain) stays the independent
 * in-database check. Platform-neutral: Web APIs only (Web Crypto for Ed25519), and SHA-256 from
 * merkle.ts (@noble/hashes unless the runtime installs a faster one).
 *
 * An export (format gatehouse-audit-export/1) is UTF-8 JSON Lines, each line ended by LF alone,
 * with no byte order mark (a CR or a BOM is refused, not stripped: the bytes are what was signed
 * for, and two readings of one file must not differ):
 *   {"type":"header","format":"gatehouse-audit-export/1","org":…,"from_seq":a,"to_seq":b,"frontier":[hex…]}
 *   {"type":"entry","seq":…,"prev_hash":hex,"entry_hash":hex,"canonical":"{…}","payload":"{…}"|null}   (a..b)
 *   {"type":"checkpoint","checkpoint":"{…}","signature":base64,"key_id":…,"public_key":base64}
 * `frontier` is the Merkle frontier of entries 1..a-1, so the root can be rebuilt from a..b alone;
 * `payload` is the payload's JSON text exactly as it was hashed, or null once purged. The
 * checkpoint states size b. What is checked, in order:
 *   - each line is one JSON value with no duplicate key at any depth (JSON.parse keeps the last of
 *     two, and another parser may keep the first);
 *   - entries run from a to b without a gap; entry 1 links to the all-zero hash; each later one to
 *     the hash of the one before; each entry_hash is SHA-256("gatehouse.audit.v1" 0x00 || prev_hash
 *     || canonical); the hashed bytes name the entry's own number and organization;
 *   - a payload is the text whose SHA-256 the hashed bytes state; a null one only where the export
 *     also holds that entry's purge (an `audit.payload_purged` entry whose target is its number),
 *     or the workspace's purge (an `org.purged` entry after it: every payload before it is gone);
 *   - the RFC 6962 root of the entries and the last entry's hash are the closing checkpoint's, and
 *     that checkpoint is signed (Ed25519 over "gatehouse.audit.checkpoint.v1\n" || body) by the
 *     trusted key, not by whatever key the export carries;
 *   - given a pinned checkpoint, the export extends it: the same history up to its size, and
 *     nothing cut after it.
 */
import { hexOf, MerkleFrontier, MerkleRange, sha256, sha256TextHex, verifyConsistency, verifyInclusion, writeHex32 } from "./merkle.ts";
import { ed25519Verifier, type NoteVerifier, openNote, parseCheckpointText, parseVerifierKey } from "./note.ts";

export const EXPORT_FORMAT = "gatehouse-audit-export/1";
const ENTRY_TAG = new TextEncoder().encode("gatehouse.audit.v1\u0000");
const CHECKPOINT_TAG = "gatehouse.audit.checkpoint.v1\n";
const HEX64 = /^[0-9a-f]{64}$/;
const ZERO_HASH = "0".repeat(64);
const PURGE = "audit.payload_purged";
const ORG_PURGED = "org.purged";
const utf8 = new TextEncoder();

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
  /** The same checkpoint as a C2SP tlog-checkpoint signed note (checkpoints signed since issue 28 have one). */
  note?: string;
}

/** What a checkpoint signs (RFC 8785 JSON). */
export interface CheckpointBody {
  head: string;
  key: string;
  org: string;
  root: string;
  size: number;
  time: string;
  v: 1;
}

/** What the closing checkpoint's C2SP signed note said: its origin, and the witnesses that cosigned it. */
export interface NoteCheck {
  origin: string;
  cosignedBy: { name: string; time: number }[];
}

export type VerifyResult =
  | {
      ok: true; org: string; fromSeq: number; entries: number; size: number; head: string; keyPinned: boolean; extendsPin: boolean;
      checkpoint: CheckpointBody;
      /** The closing checkpoint's signed note, verified; null when the export has none (checkpoints signed before notes were kept). */
      note: NoteCheck | null;
    }
  | { ok: false; seq: number | null; reason: string };

export interface VerifyOptions {
  /** The trusted signing key (raw Ed25519, base64). Without it, the pin's key, else the export's own. */
  publicKey?: string;
  /** An earlier checkpoint the customer pinned: the export must extend it. */
  pin?: SignedCheckpoint;
  /** An RFC 8785 canonicalizer, to also require that hashed JSON is in canonical form. */
  canonicalize?: (value: unknown) => string | undefined;
  /** Witnesses' verifier keys (name+hex+base64): their cosignatures on the checkpoint's note are checked and reported. */
  witnesses?: string[];
}

// ---------------------------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------------------------
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The bytes of standard base64 (RFC 4648 §4, padded, no line breaks or spaces); null when it is not that. */
export function base64Bytes(b64: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64.test(b64)) return null;
  const binary = atob(b64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Standard base64 of bytes, one line. */
export function base64Of(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

/** SHA-256 of a text's UTF-8 bytes, as hex. */
export function sha256Hex(text: string): string {
  return sha256TextHex(text);
}

// ---------------------------------------------------------------------------------------------
// JSON with no duplicate keys
// ---------------------------------------------------------------------------------------------
/**
 * Whether JSON text (already known to parse) has an object with the same key twice, at any depth.
 * Keys are compared as decoded ("a" and "\u0061" are one key).
 */
export function hasDuplicateKeys(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 123) stack.push(new Set());  // {
    else if (c === 91) stack.push(null);  // [
    else if (c === 125 || c === 93) stack.pop();  // } ]
    else if (c === 34) {  // a string: a key when a colon follows it
      let j = i + 1;
      let escaped = false;
      for (; j < text.length; j++) {
        const d = text.charCodeAt(j);
        if (d === 92) {
          j++;  // the escaped character
          escaped = true;
        } else if (d === 34) {
          break;
        }
      }
      let k = j + 1;
      while (k < text.length && (text[k] === " " || text[k] === "\t" || text[k] === "\n" || text[k] === "\r")) k++;
      const keys = stack[stack.length - 1];
      if (text[k] === ":" && keys) {
        const key = escaped ? JSON.parse(text.slice(i, j + 1)) as string : text.slice(i + 1, j);
        if (keys.has(key)) return true;
        keys.add(key);
      }
      i = j;
    }
  }
  return false;
}

/** One line as a JSON value, refusing duplicate keys; a reason when it is not one. */
export function parseLine(text: string): { ok: true; value: unknown } | { ok: false; reason: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: "the line is not JSON" };
  }
  if (hasDuplicateKeys(text)) return { ok: false, reason: "the line has a duplicate JSON key (parsers disagree on which one counts)" };
  return { ok: true, value };
}

const ENTRY_START = '{"type":"entry","seq":';

/**
 * An entry line exactly as the audit-export function writes it, read by position: the six keys in
 * order, each once, and the two text values (canonical, payload) parsed alone. A line of any other
 * shape gives null, and goes through the full parse and duplicate-key scan instead. No key can
 * repeat in a line read here: the keys before "canonical" are at fixed places, the canonical
 * value is one JSON string up to the line's last `,"payload":` (a quote after a comma can't be
 * inside a string), and the payload is one value up to the closing brace.
 */
function entryAt(text: string): ExportEntry | null {
  if (!text.startsWith(ENTRY_START)) return null;
  const digits = ENTRY_START.length;
  let end = digits;
  while (end < digits + 16 && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end++;
  if (end === digits || (text.charCodeAt(digits) === 48 && end > digits + 1) || !text.startsWith(',"prev_hash":"', end)) return null;
  const prev = end + 14;
  if (!text.startsWith('","entry_hash":"', prev + 64)) return null;
  const hash = prev + 80;
  if (!text.startsWith('","canonical":', hash + 64)) return null;
  const canonicalAt = hash + 78;
  const payloadKey = text.lastIndexOf(',"payload":');
  if (payloadKey < canonicalAt || text.charCodeAt(text.length - 1) !== 125) return null;
  let canonical: unknown;
  let payload: unknown;
  try {
    canonical = JSON.parse(text.slice(canonicalAt, payloadKey));
    payload = JSON.parse(text.slice(payloadKey + 11, -1));
  } catch {
    return null;
  }
  if (typeof canonical !== "string" || (payload !== null && typeof payload !== "string")) return null;
  return {
    type: "entry", seq: Number(text.slice(digits, end)), prev_hash: text.slice(prev, prev + 64), entry_hash: text.slice(hash, hash + 64),
    canonical, payload,
  };
}

// A JSON string: no raw control character, and only the escapes JSON has.
const STRING = String.raw`"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"`;

/**
 * Hashed bytes as audit.seal writes them (RFC 8785: these keys in this order, each once, so no
 * key can be there twice), matched whole rather than parsed, since a verifier reads every entry's:
 * readSealed says whether a text has this form and, when it has, fills `sealed` with where its
 * fields are. Hashed bytes of any other form are parsed (hashedFields).
 */
const SEALED = new RegExp(
  String.raw`^\{"action":"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+","actor":(?:null|"[0-9a-f-]{36}"),"at":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z","org":"[0-9a-f-]{36}","payload_sha256":"[0-9a-f]{64}","seq":[1-9][0-9]{0,15},"target":(?:null|\{"id":(null|${STRING}),"type":${STRING}\}),"v":1\}$`,
);
const sealed = { actionEnd: 0, org: 0, payloadSha: 0, seq: 0, purge: false, orgPurged: false };

function readSealed(c: string): boolean {
  if (!SEALED.test(c)) return false;
  // Past the action, every field up to the target has a fixed length but the actor (null or a quoted uuid).
  const actionEnd = c.indexOf('"', 11);
  const org = actionEnd + (c.charCodeAt(actionEnd + 10) === 110 ? 14 : 48) + 43;
  const digits = org + 128;
  let seq = 0;
  let i = digits;
  for (let ch = c.charCodeAt(i); ch >= 48 && ch <= 57; ch = c.charCodeAt(++i)) seq = seq * 10 + (ch - 48);
  sealed.actionEnd = actionEnd;
  sealed.org = org;
  sealed.payloadSha = org + 56;
  sealed.seq = seq;
  sealed.purge = actionEnd === 11 + PURGE.length && c.startsWith(PURGE, 11);
  sealed.orgPurged = actionEnd === 11 + ORG_PURGED.length && c.startsWith(ORG_PURGED, 11);
  return true;
}

/** The target id of hashed bytes of audit.seal's form (only a purge's is read; SEALED matched it as a JSON string). */
function sealedTargetId(c: string): unknown {
  const id = SEALED.exec(c)?.[1];
  return id === undefined || id === "null" ? null : JSON.parse(id);
}

/** The fields of the hashed bytes the verifier reads. */
interface Hashed {
  action: unknown;
  org: unknown;
  seq: unknown;
  payload_sha256: unknown;
  /** The target's id (a purge names the entry it purged here). */
  targetId: unknown;
}

/** The fields of hashed bytes of any form (JSON without duplicate keys), or null when they are not one object. */
function hashedFields(canonical: string): Hashed | null {
  if (readSealed(canonical)) {
    return {
      action: canonical.slice(11, sealed.actionEnd), org: canonical.slice(sealed.org, sealed.org + 36),
      payload_sha256: canonical.slice(sealed.payloadSha, sealed.payloadSha + 64), seq: sealed.seq, targetId: sealedTargetId(canonical),
    };
  }
  const parsed = parseLine(canonical);
  if (!parsed.ok || typeof parsed.value !== "object" || parsed.value === null) return null;
  const f = parsed.value as { action?: unknown; org?: unknown; seq?: unknown; payload_sha256?: unknown; target?: { id?: unknown } | null };
  return { action: f.action, org: f.org, seq: f.seq, payload_sha256: f.payload_sha256, targetId: f.target?.id ?? null };
}

// ---------------------------------------------------------------------------------------------
// Hashes and signatures
// ---------------------------------------------------------------------------------------------
// What an entry hash covers, written in place (the tag stays at the front).
let entryInput = new Uint8Array(4096);
entryInput.set(ENTRY_TAG);
let entryCanonical = entryInput.subarray(ENTRY_TAG.length + 32);

/** SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical), or null if prev_hash is not 64 hex digits. */
function entryHashBytes(prevHash: string, canonical: string, prevBytes?: Uint8Array): Uint8Array | null {
  const start = ENTRY_TAG.length + 32;
  if (entryInput.length < start + canonical.length * 3) {
    entryInput = new Uint8Array(2 * (start + canonical.length * 3));
    entryInput.set(ENTRY_TAG);
    entryCanonical = entryInput.subarray(start);
  }
  // The hash before, decoded once: given as bytes when it was just computed (and prevHash is its hex).
  if (prevBytes) entryInput.set(prevBytes, ENTRY_TAG.length);
  else if (!writeHex32(prevHash, entryInput, ENTRY_TAG.length)) return null;
  const { written } = utf8.encodeInto(canonical, entryCanonical);
  return sha256(entryInput.subarray(0, start + written));
}

/** Scratch for a stated hash, decoded to compare. */
const stated = new Uint8Array(32);

function equal32(a: Uint8Array, b: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= a[i] ^ b[i];
  return diff === 0 && a.length === 32;
}

/** The hash that chains an entry: SHA-256("gatehouse.audit.v1" 0x00 || prev_hash || canonical), as hex. */
export function entryHash(prevHash: string, canonical: string): string {
  const computed = entryHashBytes(prevHash, canonical);
  if (computed === null) throw new TypeError("prev_hash is not 64 lowercase hex digits");
  return hexOf(computed);
}

function payloadHash(payload: string): string {
  return sha256TextHex(payload);
}

/** The bytes an Ed25519 checkpoint signature covers. */
export function checkpointMessage(body: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(CHECKPOINT_TAG + body);
}

/** Checks a checkpoint's Ed25519 signature against a raw public key (base64). */
export async function checkpointSignatureValid(cp: SignedCheckpoint, publicKey: string): Promise<boolean> {
  // Exports and pins from before base64 went on one line (issue 25) break it every 76 characters.
  const legacy = (b64: string) => b64.replaceAll("\n", "");
  const key = base64Bytes(legacy(publicKey));
  const signature = base64Bytes(legacy(cp.signature));
  if (!key || !signature) return false;
  try {
    const imported = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", imported, signature, checkpointMessage(cp.checkpoint));
  } catch {
    return false;
  }
}

/** A checkpoint's body, or null when it is not one. */
export function parseCheckpoint(text: string): CheckpointBody | null {
  const parsed = parseLine(text);
  if (!parsed.ok) return null;
  const body = parsed.value as CheckpointBody;
  const fine = body !== null && typeof body === "object" && body.v === 1 && typeof body.head === "string" && HEX64.test(body.head)
    && typeof body.root === "string" && HEX64.test(body.root) && Number.isSafeInteger(body.size) && body.size >= 0
    && typeof body.org === "string" && typeof body.key === "string";
  return fine ? body : null;
}

// ---------------------------------------------------------------------------------------------
// The verifier
// ---------------------------------------------------------------------------------------------
/**
 * Verifies an export fed one line at a time (its text, without the LF), so that exports of any
 * size stream through in constant memory (but for the numbers of purged entries). Call `line`
 * for each line, then `finish`. The first failure is kept.
 */
export class ExportVerifier {
  private header: ExportHeader | null = null;
  private tree: MerkleFrontier | null = null;
  private last: { seq: number; hash: string } | null = null;
  private checkpoint: SignedCheckpoint | null = null;
  private failure: { seq: number | null; reason: string } | null = null;
  private pinBody: CheckpointBody | null = null;
  private pinMatched = false;
  private lineCount = 0;
  /** Entries whose payload is null, and the entries the export records purges of. */
  private readonly emptied: number[] = [];
  private readonly purges = new Set<number>();
  /** The last org.purged entry: every payload before it was purged with the workspace (0: none). */
  private purgedThrough = 0;

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

  /** Feeds one line of the export: its text, without the line feed. */
  line(text: string): void {
    if (this.failure) return;
    this.lineCount++;
    if (this.lineCount === 1 && text.charCodeAt(0) === 0xfeff) {
      return this.fail(null, "the export starts with a byte order mark: it is UTF-8 without one");
    }
    if (text.endsWith("\r")) return this.fail(null, `line ${this.lineCount} ends with a carriage return: lines end with a line feed alone`);
    if (this.header !== null && !this.checkpoint) {
      const e = entryAt(text);
      if (e) return this.entry(e);
    }
    if (text === "") return this.fail(null, `line ${this.lineCount} is empty`);
    const parsed = parseLine(text);
    if (!parsed.ok) return this.fail(this.last ? this.last.seq + 1 : this.header?.from_seq ?? null, `line ${this.lineCount}: ${parsed.reason}`);
    this.value(parsed.value);
  }

  /** Feeds one line already parsed (from a source that holds values, not text; duplicate keys can't be seen then). */
  value(value: unknown): void {
    if (this.failure) return;
    const line = value as { type?: string } | null;
    if (this.header === null) {
      if (line?.type !== "header") return this.fail(null, "the export does not start with its header");
      const h = line as ExportHeader;
      if (h.format !== EXPORT_FORMAT) return this.fail(null, `unknown export format ${JSON.stringify(h.format)}`);
      if (!Number.isSafeInteger(h.from_seq) || h.from_seq < 1 || !Number.isSafeInteger(h.to_seq) || typeof h.org !== "string"
          || !Array.isArray(h.frontier) || !h.frontier.every((x) => typeof x === "string" && HEX64.test(x))) {
        return this.fail(null, "the header is malformed");
      }
      this.header = h;
      try {
        this.tree = new MerkleFrontier(h.frontier.map((x) => { const b = new Uint8Array(32); writeHex32(x, b, 0); return b; }), h.from_seq - 1);
      } catch (e) {
        return this.fail(null, `the header's frontier is wrong: ${(e as Error).message}`);
      }
      if (this.options.pin) {
        this.pinBody = parseCheckpoint(this.options.pin.checkpoint);
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

  /** Whether a check has failed (finish() says which). */
  get failed(): boolean {
    return this.failure !== null;
  }

  /**
   * Where the export stands: its organization, the entry expected next, and a pinned size still
   * ahead (a run must end there); null before the header, after the checkpoint or a failure.
   */
  position(): { org: string; nextSeq: number; pinSize: number | null } | null {
    if (!this.header || this.checkpoint || this.failure) return null;
    const nextSeq = this.last ? this.last.seq + 1 : this.header.from_seq;
    return { org: this.header.org, nextSeq, pinSize: this.pinBody && this.pinBody.size >= nextSeq ? this.pinBody.size : null };
  }

  /**
   * Feeds lines held in memory (texts without their LF), the entries among them checked in runs,
   * which is faster than a line at a time: the same checks, in the same order.
   */
  feed(lines: readonly string[]): void {
    let i = 0;
    while (i < lines.length && !this.failure) {
      const at = this.position();
      if (!at) {
        this.line(lines[i++]);
        continue;
      }
      const end = Math.min(lines.length, i + RUN_LINES);
      const run = checkEntryLines(lines, { org: at.org, firstSeq: at.nextSeq, until: at.pinSize, canonicalize: this.options.canonicalize }, i, end);
      this.accept(run);
      const stopped = run.lines < end - i && !run.failure;
      i += run.lines;
      if (stopped && !entryAt(lines[i])) this.line(lines[i++]);  // a line of another kind (the checkpoint), read alone
    }
  }

  private entry(e: ExportEntry): void {
    const at = this.position()!;
    const run = new EntryRunBuilder(at.org, at.nextSeq, this.options.canonicalize);
    run.add(e);
    this.accept(run.result(0));
  }

  /**
   * Takes the entries that follow as a run checked elsewhere (checkEntryLines, perhaps on another
   * thread): what needs the entries before them (the link to the last one, the pin) is checked
   * here, in order, and the run's own first failure is kept.
   */
  accept(run: EntryRun): void {
    if (this.failure) return;
    const at = this.position();
    if (!at) return this.fail(null, this.checkpoint ? "lines follow the checkpoint" : "the export does not start with its header");
    if (run.count === 0 && !run.failure) return;  // no entry: the line that stopped it is read alone
    if (run.firstSeq !== at.nextSeq) {
      return this.fail(at.nextSeq, `expected entry ${at.nextSeq}, found ${run.firstSeq} (an entry is missing or out of order)`);
    }
    this.lineCount += run.lines;
    if (run.firstPrev !== null) {
      const first = run.firstSeq;
      if (this.last && run.firstPrev !== this.last.hash) return this.fail(first, "prev_hash is not the hash of the entry before");
      if (!this.last && this.pinBody?.size === first - 1 && first > 1 && run.firstPrev !== this.pinBody.head) {
        return this.fail(first, "prev_hash is not the head of the pinned checkpoint (history was rewritten)");
      }
    }
    if (run.failure) return this.fail(run.failure.seq, run.failure.reason);
    if (run.count === 0) return;
    const lastSeq = run.firstSeq + run.count - 1;
    if (this.pinBody && this.pinBody.size > at.nextSeq - 1 && this.pinBody.size < lastSeq) {
      return this.fail(this.pinBody.size, "a run of entries spans the pinned checkpoint's size (verify it in runs that end there)");
    }
    for (const t of run.subtrees) this.tree!.pushSubtree(t.hash, t.height);
    for (const seq of run.emptied) this.emptied.push(seq);
    for (const seq of run.purges) this.purges.add(seq);
    this.purgedThrough = Math.max(this.purgedThrough, run.purgedThrough);
    this.last = { seq: lastSeq, hash: run.lastHash };
    this.checkPinAt(lastSeq, run.lastHash);
  }

  /** Finishes: checks the purges, the closing checkpoint, its signature and the pin. */
  async finish(): Promise<VerifyResult> {
    if (this.failure) return { ok: false, ...this.failure };
    const h = this.header;
    if (!h) return { ok: false, seq: null, reason: "the export is empty" };
    const size = this.last?.seq ?? h.from_seq - 1;
    const unexplained = this.emptied.find((seq) => !this.purges.has(seq) && seq >= this.purgedThrough);
    if (unexplained !== undefined) {
      return {
        ok: false, seq: unexplained,
        reason: `the payload of entry ${unexplained} is gone, and the export holds no record of its purge (export through the audit.payload_purged entry that names it, or the org.purged entry after it)`,
      };
    }
    const cp = this.checkpoint;
    if (!cp) return { ok: false, seq: size + 1, reason: "the export has no closing checkpoint (it was cut short)" };
    if (typeof cp.checkpoint !== "string" || typeof cp.signature !== "string" || typeof cp.public_key !== "string") {
      return { ok: false, seq: null, reason: "the checkpoint line is malformed" };
    }
    const body = parseCheckpoint(cp.checkpoint);
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
    const note = await checkNote(cp.note, { org: h.org, body, publicKey: trusted, witnesses: this.options.witnesses ?? [] });
    if (typeof note === "string") return { ok: false, seq: null, reason: note };
    return {
      ok: true, org: h.org, fromSeq: h.from_seq, entries: size - h.from_seq + 1, size, head: this.last?.hash ?? body.head,
      keyPinned, extendsPin: pinned !== undefined, checkpoint: body, note,
    };
  }
}

/** What the checks of a run of consecutive entries found: all the verifier needs of them to go on (ExportVerifier.accept). */
export interface EntryRun {
  /** The number the run's first entry must have. */
  firstSeq: number;
  /** Entries that passed. */
  count: number;
  /** The first entry's prev_hash (null when it was not read that far), and the last passing entry's hash. */
  firstPrev: string | null;
  lastHash: string;
  /** The passing entries' Merkle subtrees (MerkleRange), left to right. */
  subtrees: { hash: Uint8Array; height: number }[];
  /** Entries whose payload is null, and the entries whose purge the run records. */
  emptied: number[];
  purges: number[];
  /** The run's last org.purged entry (0: none): the workspace's purge, of every payload before it. */
  purgedThrough: number;
  /** Lines the run took. */
  lines: number;
  /** The first failure; the entries before it passed. */
  failure: { seq: number; reason: string } | null;
}

/** Checks entries one after another: all of an entry's checks that need no line before the run. */
class EntryRunBuilder {
  private readonly tree: MerkleRange;
  private count = 0;
  private firstPrev: string | null = null;
  /** The last entry's hash as bytes, and as its hex when it was read as text (else made when asked for). */
  private lastBytes: Uint8Array = new Uint8Array(32);
  private lastHex: string | null = "";
  private readonly emptied: number[] = [];
  private readonly purges: number[] = [];
  private purgedThrough = 0;
  private failure: { seq: number; reason: string } | null = null;

  constructor(
    private readonly org: string,
    private readonly firstSeq: number,
    private readonly canonicalize?: (value: unknown) => string | undefined,
  ) {
    this.tree = new MerkleRange(firstSeq - 1);
  }

  /** Checks the next entry; false once one has failed. */
  add(e: ExportEntry): boolean {
    const seq = this.firstSeq + this.count;
    const reason = this.check(e, seq);
    if (reason === null) return true;
    this.failure = { seq, reason };
    return false;
  }

  private check(e: ExportEntry, seq: number): string | null {
    if (e.seq !== seq) return `expected entry ${seq}, found ${JSON.stringify(e.seq)} (an entry is missing or out of order)`;
    // prev_hash is checked as it is decoded (entryHashBytes), entry_hash as it is compared.
    if (typeof e.prev_hash !== "string" || typeof e.entry_hash !== "string" || typeof e.canonical !== "string") return "the entry is malformed";
    if (this.count === 0) this.firstPrev = e.prev_hash;
    if (seq === 1 && e.prev_hash !== ZERO_HASH) return "entry 1 does not link to the all-zero hash (the chain's start was replaced)";
    if (this.count > 0 && e.prev_hash !== this.lastHash()) return "prev_hash is not the hash of the entry before";
    const computed = entryHashBytes(e.prev_hash, e.canonical, this.count > 0 ? this.lastBytes : undefined);
    if (computed === null || !writeHex32(e.entry_hash, stated, 0) || !equal32(computed, stated)) {
      return computed === null ? "the entry is malformed" : "entry_hash is not the hash of the entry";
    }
    // Hashed bytes of audit.seal's form are read in place (the hot path); any other form is parsed.
    const c = e.canonical;
    const inPlace = readSealed(c) && sealed.seq === seq && this.org.length === 36 && c.startsWith(this.org, sealed.org);
    const fields = inPlace ? null : hashedFields(c);
    if (!inPlace) {
      if (!fields) return "the hashed bytes are not one JSON object without duplicate keys";
      if (fields.seq !== seq || fields.org !== this.org) return "the hashed bytes name another entry or organization";
    }
    if (this.canonicalize && this.canonicalize(JSON.parse(c)) !== c) return "the hashed bytes are not RFC 8785 canonical JSON";
    if (e.payload === null) this.emptied.push(seq);
    else if (typeof e.payload !== "string") return "the payload is malformed";
    else if (fields ? payloadHash(e.payload) !== fields.payload_sha256 : !c.startsWith(payloadHash(e.payload), sealed.payloadSha)) {
      return "the payload is not the one that was hashed";
    }
    if (fields ? fields.action === PURGE : sealed.purge) this.purgeOf(fields ? fields.targetId : sealedTargetId(c));
    else if (fields ? fields.action === ORG_PURGED : sealed.orgPurged) this.purgedThrough = seq;
    this.tree.push(computed);
    this.lastHex = e.entry_hash;
    this.lastBytes = computed;
    this.count++;
    return null;
  }

  private lastHash(): string {
    this.lastHex ??= hexOf(this.lastBytes);
    return this.lastHex;
  }

  /** A purge record's target: the number of the entry whose payload it purged. */
  private purgeOf(targetId: unknown): void {
    if (typeof targetId === "string" && /^[1-9][0-9]{0,15}$/.test(targetId)) this.purges.push(Number(targetId));
  }


  result(lines: number): EntryRun {
    return {
      firstSeq: this.firstSeq, count: this.count, firstPrev: this.firstPrev, lastHash: this.count > 0 ? this.lastHash() : "", subtrees: this.tree.subtrees(),
      emptied: this.emptied, purges: this.purges, purgedThrough: this.purgedThrough, lines, failure: this.failure,
    };
  }
}

/**
 * Checks a run of entry lines (their texts) whose first must be entry `firstSeq` of `org` (by
 * default, whatever its number), up to entry `until` if given, as far as they are entries in the
 * layout audit-export writes: each entry's hash, hashed bytes, payload
 * and link to the one before it in the run, and the run's Merkle subtrees. It needs no line before
 * the run, so runs are checked apart (on other threads, scripts/audit/verify_file.ts) and given to
 * ExportVerifier.accept in order; the lines after `lines` go to ExportVerifier.line.
 */
export function checkEntryLines(
  lines: readonly string[],
  run: { org: string; firstSeq?: number; until?: number | null; canonicalize?: (value: unknown) => string | undefined },
  start = 0,
  end = lines.length,
): EntryRun {
  let e = start < end ? entryAt(lines[start]) : null;
  // Without a number to start from (a batch cut from the file by its bytes), the run starts at its
  // first entry's own: ExportVerifier.accept checks that it is the one expected next.
  const builder = new EntryRunBuilder(run.org, run.firstSeq ?? (typeof e?.seq === "number" ? e.seq : 0), run.canonicalize);
  let i = start;
  while (e) {
    i++;
    // A run ends at entry `until` (a pinned checkpoint's size, whose root the pin needs).
    if (!builder.add(e) || i >= end || e.seq === run.until) break;
    e = entryAt(lines[i]);
  }
  return builder.result(i - start);
}

/** Lines checked in one run when a verifier is fed many at once. */
const RUN_LINES = 4096;

/**
 * Checks a checkpoint's C2SP signed note, when it has one: signed by the trusted key under its
 * origin (which names the organization), stating the body's size and root; witnesses' cosignatures
 * checked. Null when there is no note; a reason when it does not verify.
 */
export async function checkNote(
  note: unknown,
  expected: { org: string; body: CheckpointBody; publicKey: string; witnesses: string[] },
): Promise<NoteCheck | null | string> {
  if (note === undefined || note === null) return null;
  if (typeof note !== "string") return "the checkpoint's note is malformed";
  const origin = note.slice(0, note.indexOf("\n"));
  if (!origin.endsWith(`/${expected.org}`)) return "the checkpoint's note names another log than the organization's";
  const key = base64Bytes(expected.publicKey.replaceAll("\n", ""));
  if (!key || key.length !== 32) return "the trusted key is not an Ed25519 public key";
  const witnesses: NoteVerifier[] = [];
  for (const w of expected.witnesses) {
    const parsed = parseVerifierKey(w);
    if (!parsed) return `the witness key ${w.slice(0, 40)} is not a verifier key (name+hex+base64)`;
    witnesses.push(parsed);
  }
  const opened = await openNote(note, [ed25519Verifier(origin, key), ...witnesses]);
  if (!opened.ok) return `the checkpoint's note: ${opened.reason}`;
  if (!opened.value.signedBy.includes(origin)) return "the checkpoint's note is not signed by the trusted key";
  const text = parseCheckpointText(opened.value.text);
  if (!text || text.origin !== origin || text.size !== expected.body.size || text.rootHex !== expected.body.root) {
    return "the checkpoint's note states another tree than its body";
  }
  return { origin, cosignedBy: opened.value.cosignedBy };
}

/**
 * Verifies a whole export held as text (the browser's case): lines split on LF, the last one
 * possibly without it.
 */
export async function verifyExportText(text: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const verifier = new ExportVerifier(options);
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  verifier.feed(lines);
  return await verifier.finish();
}

// ---------------------------------------------------------------------------------------------
// Proofs (the audit-proof function's answers): a pin extended, one entry included
// ---------------------------------------------------------------------------------------------
/** What audit-proof answers for ?type=consistency. */
export interface ConsistencyAnswer {
  type: "consistency";
  from: number;
  to: number;
  proof: string[];
  checkpoint: SignedCheckpoint;
}

/** What audit-proof answers for ?type=inclusion. */
export interface InclusionAnswer {
  type: "inclusion";
  seq: number;
  size: number;
  proof: string[];
  entry: { seq: number; prev_hash: string; entry_hash: string; canonical: string };
  checkpoint: SignedCheckpoint;
}

/** A proof's verdict: the checkpoint it proved against (the new pin, for a consistency proof), or why not. */
export type ProofResult =
  | { ok: true; checkpoint: SignedCheckpoint; body: CheckpointBody; note: NoteCheck | null }
  | { ok: false; reason: string };

function hashes(list: unknown): Uint8Array[] | null {
  if (!Array.isArray(list) || list.length > 64) return null;
  const out: Uint8Array[] = [];
  for (const h of list) {
    const b = new Uint8Array(32);
    if (typeof h !== "string" || !writeHex32(h, b, 0)) return null;
    out.push(b);
  }
  return out;
}

/** A signed checkpoint checked against the trusted key (and its note, if any); its body, or why not. */
async function trustedCheckpoint(cp: SignedCheckpoint | undefined, publicKey: string, witnesses: string[]): Promise<{ body: CheckpointBody; note: NoteCheck | null } | string> {
  if (!cp || typeof cp.checkpoint !== "string" || typeof cp.signature !== "string") return "the answer has no signed checkpoint";
  const body = parseCheckpoint(cp.checkpoint);
  if (!body) return "the checkpoint is malformed";
  if (!(await checkpointSignatureValid(cp, publicKey))) return "the checkpoint's signature is not valid for the trusted key (forged or re-signed)";
  const note = await checkNote(cp.note, { org: body.org, body, publicKey, witnesses });
  if (typeof note === "string") return note;
  return { body, note };
}

/**
 * Checks that a consistency proof extends the pinned checkpoint: both signed by the trusted key
 * (the pin's, unless given), of the same organization, and the pinned tree a prefix of the new one
 * (RFC 9162 §2.1.4.2). The new checkpoint is then the new pin.
 */
export async function verifyExtension(
  pin: SignedCheckpoint,
  answer: ConsistencyAnswer,
  options: { publicKey?: string; witnesses?: string[] } = {},
): Promise<ProofResult> {
  const key = options.publicKey ?? pin.public_key;
  const old = await trustedCheckpoint(pin, key, []);
  if (typeof old === "string") return { ok: false, reason: `the pinned checkpoint: ${old}` };
  const next = await trustedCheckpoint(answer?.checkpoint, key, options.witnesses ?? []);
  if (typeof next === "string") return { ok: false, reason: next };
  if (next.body.org !== old.body.org) return { ok: false, reason: "the new checkpoint is of another organization" };
  if (next.body.size < old.body.size) {
    return { ok: false, reason: `the log now states ${next.body.size} entries, fewer than the ${old.body.size} pinned (it forked or was cut)` };
  }
  const proof = hashes(answer.proof);
  if (!proof || answer.from !== old.body.size || answer.to !== next.body.size) return { ok: false, reason: "the consistency proof is malformed or for other sizes" };
  const oldRoot = new Uint8Array(32);
  const newRoot = new Uint8Array(32);
  writeHex32(old.body.root, oldRoot, 0);
  writeHex32(next.body.root, newRoot, 0);
  if (!verifyConsistency(old.body.size, next.body.size, proof, oldRoot, newRoot)) {
    return {
      ok: false,
      reason: old.body.size === next.body.size
        ? `two signed checkpoints of size ${old.body.size} state different roots (a split view)`
        : `the tree of ${next.body.size} entries does not extend the pinned tree of ${old.body.size} (history was rewritten: a fork)`,
    };
  }
  return { ok: true, checkpoint: answer.checkpoint, body: next.body, note: next.note };
}

/**
 * Checks that an entry is in a signed tree: its hash is the hash of its bytes, its bytes name it
 * and the checkpoint's organization, and the inclusion proof leads to the checkpoint's root
 * (RFC 9162 §2.1.3.2), which the trusted key signed.
 */
export async function verifyEntryInclusion(answer: InclusionAnswer, options: { publicKey: string; witnesses?: string[] }): Promise<ProofResult> {
  const signed = await trustedCheckpoint(answer?.checkpoint, options.publicKey, options.witnesses ?? []);
  if (typeof signed === "string") return { ok: false, reason: signed };
  const e = answer.entry;
  const proof = hashes(answer.proof);
  if (!e || !proof || typeof e.canonical !== "string" || typeof e.prev_hash !== "string" || typeof e.entry_hash !== "string"
      || answer.size !== signed.body.size || e.seq !== answer.seq) {
    return { ok: false, reason: "the inclusion proof is malformed or for another tree" };
  }
  const computed = entryHashBytes(e.prev_hash, e.canonical);
  if (!computed || hexOf(computed) !== e.entry_hash) return { ok: false, reason: "entry_hash is not the hash of the entry" };
  if (e.seq === 1 && e.prev_hash !== ZERO_HASH) return { ok: false, reason: "entry 1 does not link to the all-zero hash" };
  const fields = hashedFields(e.canonical);
  if (!fields || fields.seq !== e.seq || fields.org !== signed.body.org) return { ok: false, reason: "the hashed bytes name another entry or organization" };
  const root = new Uint8Array(32);
  writeHex32(signed.body.root, root, 0);
  if (!verifyInclusion(computed, e.seq - 1, signed.body.size, proof, root)) {
    return { ok: false, reason: `entry ${e.seq} is not in the signed tree of ${signed.body.size} entries` };
  }
  return { ok: true, checkpoint: answer.checkpoint, body: signed.body, note: signed.note };
}

/** Asks the audit-proof function at `functionsUrl` (…/functions/v1) for a proof, with a bearer token. */
export async function fetchProof<T>(functionsUrl: string, query: Record<string, string | number>, auth: { token: string; orgId: string; apikey?: string }): Promise<T> {
  const url = new URL(`${functionsUrl.replace(/\/+$/, "")}/audit-proof`);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, String(v));
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${auth.token}`, "x-org-id": auth.orgId, ...(auth.apikey ? { apikey: auth.apikey } : {}) },
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`audit-proof answered ${res.status} without JSON`);
  }
  if (!res.ok) {
    const error = (body as { error?: { code?: string; message?: string } }).error;
    throw new Error(`audit-proof answered ${res.status} ${error?.code ?? ""}: ${error?.message ?? text.slice(0, 200)}`);
  }
  return body as T;
}
