#!/usr/bin/env -S npx tsx
/**
 * Offline audit-export verifier: needs the export file and nothing else (no database, no network).
 *
 *   npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--strict]
 *
 * Recomputes every entry's hash and link, each payload's hash, the RFC 6962 Merkle root, and the
 * closing checkpoint's Ed25519 signature; with --pin, checks that the export extends the pinned
 * checkpoint (same history up to its size, nothing cut from the tail). Reports the first broken
 * entry and why. --strict also requires each entry's canonical text to be in RFC 8785 form
 * (the hashes cover the bytes either way). Exit status: 0 verified, 1 verification failed, 2 usage
 * or unreadable input.
 */
import { createReadStream, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import canonicalize from "canonicalize";
import { ExportVerifier, type SignedCheckpoint } from "../functions/_shared/audit/export.ts";

const USAGE = "usage: npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--strict]";

function readPin(path: string): SignedCheckpoint {
  const pin = JSON.parse(readFileSync(path, "utf8")) as SignedCheckpoint;
  for (const field of ["checkpoint", "signature", "public_key"] as const) {
    if (typeof pin[field] !== "string") throw new Error(`${path} is not a signed checkpoint (no "${field}")`);
  }
  return pin;
}

async function main(): Promise<number> {
  let file: string;
  let pin: SignedCheckpoint | undefined;
  let publicKey: string | undefined;
  let strict = false;
  try {
    const { positionals, values } = parseArgs({
      allowPositionals: true,
      options: { pin: { type: "string" }, "public-key": { type: "string" }, strict: { type: "boolean" } },
    });
    if (positionals.length !== 1) throw new Error(USAGE);
    file = positionals[0];
    pin = values.pin ? readPin(values.pin) : undefined;
    publicKey = values["public-key"];
    strict = values.strict ?? false;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }

  const verifier = new ExportVerifier({ pin, publicKey, canonicalize: strict ? (v) => canonicalize(v) : undefined });
  let lineNo = 0;
  try {
    for await (const text of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
      lineNo++;
      if (text.trim() === "") continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        console.log(`FAILED: line ${lineNo} is not JSON`);
        return 1;
      }
      verifier.line(value);
    }
  } catch (e) {
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
      (result.keyPinned ? "" : "\nwarning: the signature was checked against the key inside the export; pass --public-key (from audit_signing_keys) or --pin to trust a key you hold"),
  );
  return 0;
}

main().then((code) => process.exit(code));
