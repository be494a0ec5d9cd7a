#!/usr/bin/env -S npx tsx
/**
 * Offline audit-export verifier: needs the export file and nothing else (no database, no network).
 *
 *   npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--witness <vkey>]… [--strict]
 *   npm run audit:verify -- --since <pin.json> --url <…/functions/v1> --org <id> [--public-key <base64>] [--out <new-pin.json>]
 *   npm run audit:verify -- --entry <seq> --url <…/functions/v1> --org <id> (--public-key <base64> | --pin <pin.json>)
 *
 * With --since, no export is needed: the audit-proof function's consistency proof from the pinned
 * checkpoint's size to the chain now, and the new signed checkpoint, are checked (the same key,
 * the pinned tree a prefix of the new one), and the new checkpoint is the new pin (--out writes
 * it). With --entry, one entry is checked against a signed tree by its inclusion proof. Both read
 * a bearer token from GATEHOUSE_TOKEN (a personal access token with audit:read, or a member's
 * access token), and send GATEHOUSE_APIKEY as apikey when it is set.
 *
 * The checks are functions/_shared/audit/verify.ts's, the same module the console's Audit page and
 * the tests run: every entry's hash and link (entry 1 to the all-zero hash), each payload's hash (a
 * purged one only with its purge recorded), the RFC 6962 Merkle root, and the closing checkpoint's
 * Ed25519 signature; with --pin, that the export extends the pinned checkpoint (same history up to
 * its size, nothing cut from the tail). The closing checkpoint's C2SP signed note, when it has one,
 * must be signed by the same key and state the same tree; --witness (a verifier key,
 * name+hex+base64, repeatable) also checks and reports that witness's cosignature. A line with a
 * duplicate JSON key, a CR or a byte order mark, or bytes that are not UTF-8, is refused. Reports the first broken entry and why. --strict also
 * requires each entry's canonical text to be in RFC 8785 form (the hashes cover the bytes either
 * way). Exit status: 0 verified, 1 verification failed, 2 usage or unreadable input.
 *
 * Node's own SHA-256 is installed for speed (merkle.ts: setSha256); the digests are the same. The
 * file is streamed in batches of lines, and an export of 16 MiB or more is checked on every core
 * (scripts/audit/verify_file.ts), with the same verdict and the same first failure as a line at a
 * time.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { useNodeSha256 } from "./node_sha256.ts";
import {
  type ConsistencyAnswer, fetchProof, type InclusionAnswer, parseCheckpoint, type SignedCheckpoint, verifyEntryInclusion, verifyExtension,
  type VerifyResult,
} from "../functions/_shared/audit/verify.ts";
import { verifyExportFile } from "./audit/verify_file.ts";

const USAGE = [
  "usage: npm run audit:verify -- <export.jsonl> [--pin <checkpoint.json>] [--public-key <base64>] [--witness <vkey>]... [--strict]",
  "       npm run audit:verify -- --since <pin.json> --url <functions url> --org <id> [--public-key <base64>] [--out <new-pin.json>]",
  "       npm run audit:verify -- --entry <seq> --url <functions url> --org <id> (--public-key <base64> | --pin <pin.json>)",
].join("\n");

useNodeSha256();

function readPin(path: string): SignedCheckpoint {
  const pin = JSON.parse(readFileSync(path, "utf8")) as SignedCheckpoint;
  for (const field of ["checkpoint", "signature", "public_key"] as const) {
    if (typeof pin[field] !== "string") throw new Error(`${path} is not a signed checkpoint (no "${field}")`);
  }
  return pin;
}

async function main(): Promise<number> {
  let file: string | undefined;
  let pin: SignedCheckpoint | undefined;
  let publicKey: string | undefined;
  let strict = false;
  let witnesses: string[] = [];
  let online: { since?: SignedCheckpoint; entry?: number; url: string; orgId: string; out?: string } | undefined;
  try {
    const { positionals, values } = parseArgs({
      allowPositionals: true,
      options: {
        pin: { type: "string" }, "public-key": { type: "string" }, strict: { type: "boolean" }, witness: { type: "string", multiple: true },
        since: { type: "string" }, entry: { type: "string" }, url: { type: "string" }, org: { type: "string" }, out: { type: "string" },
      },
    });
    pin = values.pin ? readPin(values.pin) : undefined;
    publicKey = values["public-key"];
    strict = values.strict ?? false;
    witnesses = values.witness ?? [];
    if (values.since !== undefined || values.entry !== undefined) {
      if (positionals.length !== 0 || !values.url || !values.org || (values.since !== undefined) === (values.entry !== undefined)) throw new Error(USAGE);
      if (values.entry !== undefined && !/^[1-9][0-9]{0,15}$/.test(values.entry)) throw new Error("--entry is an entry number");
      if (values.entry !== undefined && !publicKey && !pin) throw new Error("--entry needs the key to trust: --public-key or --pin");
      online = {
        url: values.url, orgId: values.org, out: values.out,
        ...(values.since !== undefined ? { since: readPin(values.since) } : { entry: Number(values.entry) }),
      };
    } else {
      if (positionals.length !== 1) throw new Error(USAGE);
      file = positionals[0];
    }
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (online) return await proofs(online, { publicKey: publicKey ?? pin?.public_key, witnesses });

  let result: VerifyResult;
  try {
    result = await verifyExportFile(file!, { pin, publicKey, witnesses, strict });
  } catch (e) {
    console.error(`cannot read ${file}: ${(e as Error).message}`);
    return 2;
  }
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

/** --since and --entry: a proof from the audit-proof function, checked here. */
async function proofs(
  run: { since?: SignedCheckpoint; entry?: number; url: string; orgId: string; out?: string },
  trust: { publicKey?: string; witnesses: string[] },
): Promise<number> {
  const token = process.env.GATEHOUSE_TOKEN;
  if (!token) {
    console.error("set GATEHOUSE_TOKEN: a personal access token with audit:read (or a member's access token)");
    return 2;
  }
  const auth = { token, orgId: run.orgId, ...(process.env.GATEHOUSE_APIKEY ? { apikey: process.env.GATEHOUSE_APIKEY } : {}) };
  try {
    if (run.since) {
      const pinned = parseCheckpoint(run.since.checkpoint);
      if (!pinned) throw new Error("the pin's checkpoint is malformed");
      const answer = await fetchProof<ConsistencyAnswer>(run.url, { type: "consistency", from: pinned.size }, auth);
      const result = await verifyExtension(run.since, answer, { ...(trust.publicKey ? { publicKey: trust.publicKey } : {}), witnesses: trust.witnesses });
      if (!result.ok) {
        console.log(`FAILED: ${result.reason}`);
        return 1;
      }
      if (run.out) writeFileSync(run.out, JSON.stringify(result.checkpoint) + "\n");
      console.log(
        `ok: the log extends the pinned checkpoint: ${pinned.size} → ${result.body.size} entries, root ${result.body.root}, signed ${result.body.time} by key ${result.body.key}` +
          (run.out ? `\nnew pin: written to ${run.out}` : `\nnew pin: ${JSON.stringify(result.checkpoint)}`),
      );
      return 0;
    }
    const answer = await fetchProof<InclusionAnswer>(run.url, { type: "inclusion", seq: run.entry! }, auth);
    const result = await verifyEntryInclusion(answer, { publicKey: trust.publicKey!, witnesses: trust.witnesses });
    if (!result.ok) {
      console.log(`FAILED at entry ${run.entry}: ${result.reason}`);
      return 1;
    }
    console.log(`ok: entry ${run.entry} (${JSON.parse(answer.entry.canonical).action}) is in the tree of ${result.body.size} entries, root ${result.body.root}, signed by key ${result.body.key}`);
    return 0;
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
}

main().then((code) => process.exit(code));
