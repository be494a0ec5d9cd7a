/**
 * C2SP signed notes (c2sp.org/signed-note), transparency-log checkpoints (c2sp.org/tlog-checkpoint)
 * and Ed25519 cosignatures (c2sp.org/tlog-cosignature, cosignature/v1), written from the specs so
 * that any transparency-log tool (a witness, Go's sumdb/note, Sigstore's) reads our checkpoints.
 * Platform-neutral: Web Crypto for Ed25519, merkle.ts's SHA-256.
 *
 *   note        text (lines, each ending in LF) + LF + signature lines
 *   signature   "— " name " " base64(key ID (4 bytes) || signature) LF   (— is U+2014)
 *   key ID      SHA-256(name || LF || type || public key)[:4]; type 0x01 Ed25519, 0x04 cosignature/v1
 *   checkpoint  text: origin LF, tree size (decimal) LF, base64 root hash LF
 *   cosignature the signature is timestamp (8 bytes, big-endian seconds) || Ed25519 over
 *               "cosignature/v1\ntime <timestamp>\n" || the checkpoint's text
 */
import { hexOf, sha256 } from "./merkle.ts";

const utf8 = new TextEncoder();
const DASH = "\u2014 ";
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
export const ED25519 = 0x01;
export const COSIGNATURE_V1 = 0x04;

function b64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

function unb64(text: string): Uint8Array<ArrayBuffer> | null {
  if (!BASE64.test(text)) return null;
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A key name: non-empty, no space of any kind, no "+" (signed-note). */
export function validKeyName(name: string): boolean {
  return name.length > 0 && !/[\s\u0085+]/u.test(name.replace(/\uFEFF/g, "x"));
}

/** A key's 4-byte ID: SHA-256(name || LF || type || public key)[:4], as a number. */
export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  const n = utf8.encode(name);
  const input = new Uint8Array(n.length + 2 + publicKey.length);
  input.set(n);
  input[n.length] = 0x0a;
  input[n.length + 1] = type;
  input.set(publicKey, n.length + 2);
  const digest = sha256(input);
  return ((digest[0] << 24) | (digest[1] << 16) | (digest[2] << 8) | digest[3]) >>> 0;
}

/** A verifier's key: who signs, and with what. */
export interface NoteVerifier {
  name: string;
  type: typeof ED25519 | typeof COSIGNATURE_V1;
  /** The raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array<ArrayBuffer>;
  id: number;
}

/** The verifier key text: name+hex(key ID)+base64(type || public key). */
export function verifierKeyText(v: { name: string; type: number; publicKey: Uint8Array }): string {
  const id = keyId(v.name, v.type, v.publicKey).toString(16).padStart(8, "0");
  return `${v.name}+${id}+${b64(Uint8Array.of(v.type, ...v.publicKey))}`;
}

/** Parses a verifier key (name+hex+base64), checking its key ID; null when it is not one. */
export function parseVerifierKey(text: string): NoteVerifier | null {
  const first = text.indexOf("+");
  const second = text.indexOf("+", first + 1);
  if (first <= 0 || second < 0) return null;
  const name = text.slice(0, first);
  const hex = text.slice(first + 1, second);
  const key = unb64(text.slice(second + 1));
  if (!validKeyName(name) || !/^[0-9a-fA-F]{8}$/.test(hex) || !key || key.length !== 33) return null;
  const type = key[0];
  if (type !== ED25519 && type !== COSIGNATURE_V1) return null;
  const publicKey = key.slice(1);
  const id = keyId(name, type, publicKey);
  if (id !== parseInt(hex, 16)) return null;
  return { name, type, publicKey, id };
}

/** An Ed25519 verifier for `name` with a raw public key. */
export function ed25519Verifier(name: string, publicKey: Uint8Array<ArrayBuffer>, type: typeof ED25519 | typeof COSIGNATURE_V1 = ED25519): NoteVerifier {
  return { name, type, publicKey, id: keyId(name, type, publicKey) };
}

async function ed25519Verify(publicKey: Uint8Array<ArrayBuffer>, signature: Uint8Array<ArrayBuffer>, message: Uint8Array<ArrayBuffer>): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, signature, message);
  } catch {
    return false;
  }
}

/** The message a cosignature/v1 signs at `time` (seconds) over a checkpoint's text. */
export function cosignatureMessage(text: string, time: bigint): Uint8Array<ArrayBuffer> {
  return utf8.encode(`cosignature/v1\ntime ${time}\n${text}`);
}

/** One signature line as parsed. */
interface SignatureLine {
  name: string;
  id: number;
  /** What follows the key ID. */
  body: Uint8Array<ArrayBuffer>;
}

/** What opening a note found: its text, and which known keys signed it (cosigners with their time). */
export interface OpenedNote {
  text: string;
  signedBy: string[];
  cosignedBy: { name: string; time: number }[];
}

/**
 * Opens a signed note with the verifiers given (signed-note's rules): the text and the signatures
 * of known keys (name and key ID both match), each of which must verify; unknown signatures are
 * ignored. Refused when the note is malformed, a known signature does not verify, or none does.
 */
export async function openNote(note: string, verifiers: NoteVerifier[]): Promise<{ ok: true; value: OpenedNote } | { ok: false; reason: string }> {
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) return { ok: false, reason: "the note holds a control character other than a line feed" };
  const split = note.lastIndexOf("\n\n");
  if (split < 0) return { ok: false, reason: "the note has no signatures" };
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block === "" || !block.endsWith("\n")) return { ok: false, reason: "the note's signatures do not end with a line feed" };
  const lines: SignatureLine[] = [];
  for (const line of block.slice(0, -1).split("\n")) {
    if (!line.startsWith(DASH)) return { ok: false, reason: "a signature line does not start with an em dash and a space" };
    const rest = line.slice(DASH.length);
    const space = rest.indexOf(" ");
    const name = rest.slice(0, space);
    const sig = space > 0 ? unb64(rest.slice(space + 1)) : null;
    if (!validKeyName(name) || !sig || sig.length < 5) return { ok: false, reason: "a signature line is malformed" };
    lines.push({ name, id: ((sig[0] << 24) | (sig[1] << 16) | (sig[2] << 8) | sig[3]) >>> 0, body: sig.slice(4) });
  }
  if (lines.length > 100) return { ok: false, reason: "the note has more than 100 signatures" };
  const signedBy: string[] = [];
  const cosignedBy: { name: string; time: number }[] = [];
  const seen = new Set<string>();
  for (const line of lines) {
    const verifier = verifiers.find((v) => v.name === line.name && v.id === line.id);
    if (!verifier || seen.has(`${line.name}+${line.id}`)) continue;
    seen.add(`${line.name}+${line.id}`);
    if (verifier.type === ED25519) {
      if (line.body.length !== 64 || !(await ed25519Verify(verifier.publicKey, line.body, utf8.encode(text)))) {
        return { ok: false, reason: `the signature of ${line.name} does not verify` };
      }
      signedBy.push(line.name);
    } else {
      if (line.body.length !== 72) return { ok: false, reason: `the cosignature of ${line.name} is malformed` };
      const time = new DataView(line.body.buffer, line.body.byteOffset, 8).getBigUint64(0);
      if (time > 2n ** 63n - 1n || !(await ed25519Verify(verifier.publicKey, line.body.slice(8), cosignatureMessage(text, time)))) {
        return { ok: false, reason: `the cosignature of ${line.name} does not verify` };
      }
      cosignedBy.push({ name: line.name, time: Number(time) });
    }
  }
  if (signedBy.length === 0 && cosignedBy.length === 0) return { ok: false, reason: "no known key signed the note" };
  return { ok: true, value: { text, signedBy, cosignedBy } };
}

/** A checkpoint's text: origin, size, base64 root, each ending in LF. */
export function checkpointText(c: { origin: string; size: number; root: Uint8Array }): string {
  return `${c.origin}\n${c.size}\n${b64(c.root)}\n`;
}

/** A checkpoint's text parsed (tlog-checkpoint), strictly: no leading zeros, a 32-byte root; null otherwise. */
export function parseCheckpointText(text: string): { origin: string; size: number; root: Uint8Array; rootHex: string; extensions: string[] } | null {
  if (!text.endsWith("\n")) return null;
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => l === "")) return null;
  const [origin, size, root, ...extensions] = lines;
  const bytes = unb64(root);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(size) || !bytes || bytes.length !== 32) return null;
  return { origin, size: Number(size), root: bytes, rootHex: hexOf(bytes), extensions };
}

/** Signs `text` as a note by `name` with an Ed25519 private key (public half given for the key ID). */
export async function signNote(text: string, name: string, privateKey: CryptoKey, publicKey: Uint8Array): Promise<string> {
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, utf8.encode(text)));
  const id = keyId(name, ED25519, publicKey);
  const payload = new Uint8Array(4 + sig.length);
  new DataView(payload.buffer).setUint32(0, id);
  payload.set(sig, 4);
  return `${text}\n${DASH}${name} ${b64(payload)}\n`;
}

/** A cosignature/v1 line by `name` over a checkpoint's text at `time` (seconds). */
export async function cosignLine(text: string, name: string, time: bigint, privateKey: CryptoKey, publicKey: Uint8Array): Promise<string> {
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, cosignatureMessage(text, time)));
  const payload = new Uint8Array(4 + 8 + 64);
  const view = new DataView(payload.buffer);
  view.setUint32(0, keyId(name, COSIGNATURE_V1, publicKey));
  view.setBigUint64(4, time);
  payload.set(sig, 12);
  return `${DASH}${name} ${b64(payload)}\n`;
}
