#!/usr/bin/env -S npx tsx
/**
 * Offline audit-export verifier: needs the export file and nothing else (no database, no network).
 *
 *   npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--witness <vkey>]… [--strict]
 *
 * The checks are functions/_shared/audit/verify.ts's, the same module the console's Audit page and
 * the tests run: every entry's hash and link (entry 1 to the all-zero hash), each payload's hash (a
 * purged one only with its purge recorded), the RFC 6962 Merkle root, and the closing checkpoint's
 * Ed25519 signature; with --pin, that the export extends the pinned checkpoint (same history up to
 * its size, nothing cut from the tail). The closing checkpoint's C2SP signed note, when it has one,
 * must be signed by the same key and state the same tree; --witness (a verifier key,
 * name+hex+base64, repeatable) also checks and reports that witness's cosignature. A line with a duplicate JSON key, a CR or a byte order mark,
 * or bytes that are not UTF-8, is refused. Reports the first broken entry and why. --strict also
 * requires each entry's canonical text to be in RFC 8785 form (the hashes cover the bytes either
 * way). Exit status: 0 verified, 1 verification failed, 2 usage or unreadable input.
 *
 * Node's own SHA-256 is installed for speed (merkle.ts: setSha256); the digests are the same.
 */
import { hash } from "node:crypto";
import { createReadStream, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import canonicalize from "canonicalize";
import { setSha256 } from "../functions/_shared/audit/merkle.ts";
import { ExportVerifier, type SignedCheckpoint } from "../functions/_shared/audit/verify.ts";

const USAGE = "usage: npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--witness <vkey>]... [--strict]";

setSha256((data) => hash("sha256", data, "buffer"));

function readPin(path: string): SignedCheckpoint {
  const pin = JSON.parse(readFileSync(path, "utf8")) as SignedCheckpoint;
  for (const field of ["checkpoint", "signature", "public_key"] as const) {
    if (typeof pin[field] !== "string") throw new Error(`${path} is not a signed checkpoint (no "${field}")`);
  }
  return pin;
}

/**
 * The file's lines, split on LF (a CR stays on its line, for the verifier to refuse), each decoded
 * as UTF-8 with invalid bytes refused.
 */
async function* linesOf(file: string): AsyncGenerator<string> {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  let rest: Buffer | null = null;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    const data: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
    let start = 0;
    for (let end = data.indexOf(10, start); end !== -1; end = data.indexOf(10, start)) {
      yield decoder.decode(data.subarray(start, end));
      start = end + 1;
    }
    rest = start < data.length ? data.subarray(start) : null;
  }
  if (rest) yield decoder.decode(rest);
}

async function main(): Promise<number> {
  let file: string;
  let pin: SignedCheckpoint | undefined;
  let publicKey: string | undefined;
  let strict = false;
  let witnesses: string[] = [];
  try {
    const { positionals, values } = parseArgs({
      allowPositionals: true,
      options: { pin: { type: "string" }, "public-key": { type: "string" }, strict: { type: "boolean" }, witness: { type: "string", multiple: true } },
    });
    if (positionals.length !== 1) throw new Error(USAGE);
    file = positionals[0];
    pin = values.pin ? readPin(values.pin) : undefined;
    publicKey = values["public-key"];
    strict = values.strict ?? false;
    witnesses = values.witness ?? [];
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }

  const verifier = new ExportVerifier({ pin, publicKey, witnesses, canonicalize: strict ? (v) => canonicalize(v) : undefined });
  let lineNo = 0;
  try {
    for await (const text of linesOf(file)) {
      lineNo++;
      verifier.line(text);
    }
  } catch (e) {
    if (e instanceof TypeError && /encoded data was not valid/i.test(e.message)) {
      console.log(`FAILED: line ${lineNo + 1} is not UTF-8`);
      return 1;
    }
    console.error(`cannot read ${file}: ${(e as Error).message}`);
    return 2;
  }
  const result = await verifier.finish();
  if (!result.ok) {
    console.log(`FAILED${result.seq !== null ? ` at entry ${result.seq}` : ""}: ${result.reason}`);
    return 1;
  }
  const cp = result.checkpoint;
  console.log(
    `ok: ${result.entries} entries of organization ${result.org} verify, up to entry ${result.size}\n` +
      `checkpoint: size ${cp.size}, root ${cp.root}, head ${cp.head}, signed ${cp.time} by key ${cp.key}` +
      (pin ? `\npin: extends the pinned checkpoint` : "") +
      (result.note
        ? `\nnote: the C2SP checkpoint of ${result.note.origin} verifies` +
          result.note.cosignedBy.map((w) => `\nwitness: cosigned by ${w.name} at ${new Date(w.time * 1000).toISOString()}`).join("")
        : "\nnote: none (a checkpoint signed before notes were kept)") +
      (witnesses.length > (result.note?.cosignedBy.length ?? 0) ? "\nwarning: a witness you named did not cosign this checkpoint" : "") +
      (result.keyPinned ? "" : "\nwarning: the signature was checked against the key inside the export; pass --public-key (from audit_signing_keys) or --pin to trust a key you hold"),
  );
  return 0;
}

main().then((code) => process.exit(code));
