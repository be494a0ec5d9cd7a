/**
 * The audit verifier (functions/_shared/audit/verify.ts), the one module the console's Audit page,
 * the offline CLI and these tests run, against exports built the server's way (entry hashes, the
 * RFC 6962 frontier, checkpoint messages, Ed25519 as audit/checkpoint.ts signs) and then tampered
 * with in every way we know. Each export is checked three ways: as text with the module's own
 * SHA-256 (@noble/hashes: what the browser runs), line by line with Node's SHA-256 installed, and
 * as a file in batches, most of them on a worker thread (scripts/audit/verify_file.ts: what the CLI
 * runs). All must agree on the verdict and on the first bad entry. When a stack is running, a
 * real export from the audit-export function is verified and tampered with too.
 */
import { createHash } from "node:crypto";
import { nodeSha256, useNodeSha256 } from "../../scripts/node_sha256.ts";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { verifyExportFile } from "../../scripts/audit/verify_file.ts";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hexOf, MerkleFrontier, setSha256 } from "../../functions/_shared/audit/merkle.ts";
import {
  checkpointMessage, entryHash, ExportVerifier, hasDuplicateKeys, type SignedCheckpoint, sha256Hex, verifyExportText, type VerifyResult,
} from "../../functions/_shared/audit/verify.ts";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";

/** What a person pins: a key, and maybe a checkpoint. */
interface Pin {
  keyId: string;
  publicKey: string;
  checkpoint?: SignedCheckpoint;
}



/**
 * The page's path (the whole text, the module's own SHA-256), checked against the CLI's (the file
 * in batches of three lines, most on a worker thread, Node's SHA-256): the same verdict, the same
 * first failure. The page's verdict is returned.
 */
async function verifyExport(exported: string, pin: Pin): Promise<VerifyResult> {
  setSha256(nobleSha256);
  const options = { publicKey: pin.publicKey, ...(pin.checkpoint ? { pin: pin.checkpoint } : {}) };
  const page = await verifyExportText(exported, options);
  const file = join(mkdtempSync(join(tmpdir(), "verify-")), "export.jsonl");
  writeFileSync(file, exported);
  useNodeSha256();
  try {
    // Batches of a few lines (a pin falls inside one), and the whole export in one batch.
    expect(await verifyExportFile(file, { ...options, workers: 1, awaitWorkers: true, batchBytes: 1500 })).toEqual(page);
    expect(await verifyExportFile(file, { ...options, workers: 1, awaitWorkers: true })).toEqual(page);
  } finally {
    setSha256(nobleSha256);
    rmSync(dirname(file), { recursive: true });
  }
  return page;
}

const ORG = "0a000000-0000-4000-8000-00000000000a";
type Line = Record<string, any>;

const b64 = (bytes: ArrayBuffer | Uint8Array) => Buffer.from(bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes).toString("base64");
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

interface Signer {
  keyId: string;
  publicKey: string;
  sign: (body: string) => Promise<string>;
}

async function signer(keyId: string): Promise<Signer> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  return {
    keyId,
    publicKey: b64(await crypto.subtle.exportKey("raw", pair.publicKey)),
    sign: async (body) => b64(await crypto.subtle.sign("Ed25519", pair.privateKey, checkpointMessage(body))),
  };
}

/** A chain of `n` entries as the database seals them (audit.seal's canonical shape), from `start` (the all-zero hash). */
function chain(n: number, start = "0".repeat(64)) {
  let prev = start;
  const entries: Line[] = [];
  for (let seq = 1; seq <= n; seq++) {
    const payload = JSON.stringify({ new: { id: seq, note: `entry ${seq}` }, pi: 3.14159 });
    const canonical = canonicalize({
      action: "test.export", actor: null, at: `2026-11-22T10:00:${String(seq % 60).padStart(2, "0")}.000000Z`, org: ORG,
      payload_sha256: createHash("sha256").update(payload).digest("hex"),
      seq, target: { id: String(seq), type: "test" }, v: 1,
    })!;
    const hash = entryHash(prev, canonical);
    entries.push({ type: "entry", seq, prev_hash: prev, entry_hash: hash, canonical, payload });
    prev = hash;
  }
  return entries;
}

/** Recomputes the payload hash, link and entry hash of every entry from index `from` on (after an edit). */
function rehashFrom(entries: Line[], from: number): void {
  let prev = entries[from - 1].entry_hash;
  for (const e of entries.slice(from)) {
    const fields = JSON.parse(e.canonical);
    fields.payload_sha256 = sha256Hex(e.payload);
    e.canonical = canonicalize(fields)!;
    e.prev_hash = prev;
    e.entry_hash = entryHash(prev, e.canonical);
    prev = e.entry_hash;
  }
}

/** `all` and one more entry of `action`, `payload` and `target`, hashed onto it. */
function extend(all: Line[], e: { action: string; payload: string; target: { id: string; type: string } }): Line[] {
  const seq = all.length + 1;
  const prev = all[all.length - 1].entry_hash;
  const canonical = canonicalize({
    action: e.action, actor: null, at: "2026-11-22T10:02:00.000000Z", org: ORG,
    payload_sha256: createHash("sha256").update(e.payload).digest("hex"), seq, target: e.target, v: 1,
  })!;
  return [...all.map((x) => ({ ...x })), { type: "entry", seq, prev_hash: prev, entry_hash: entryHash(prev, canonical), canonical, payload: e.payload }];
}

/** An export of entries `from`..`to` of `all`, closed by a checkpoint `key` signs. */
async function exportOf(all: Line[], key: Signer, range: { from?: number; to?: number } = {}): Promise<{ lines: Line[]; checkpoint: SignedCheckpoint }> {
  const from = range.from ?? 1;
  const to = range.to ?? all.length;
  const before = new MerkleFrontier();
  for (const e of all.slice(0, from - 1)) before.push(e.entry_hash);
  const tree = new MerkleFrontier();
  for (const e of all.slice(0, to)) tree.push(e.entry_hash);
  const body = canonicalize({ head: all[to - 1].entry_hash, key: key.keyId, org: ORG, root: hex(tree.root()), size: to, time: "2026-11-22T10:01:00.000000Z", v: 1 })!;
  const checkpoint = { checkpoint: body, signature: await key.sign(body), key_id: key.keyId, public_key: key.publicKey };
  const header = { type: "header", format: "gatehouse-audit-export/1", org: ORG, from_seq: from, to_seq: to, frontier: before.frontier().map(hex) };
  return { lines: [header, ...all.slice(from - 1, to).map((e) => ({ ...e })), { type: "checkpoint", ...checkpoint }], checkpoint };
}

const text = (lines: Line[]) => lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
const entriesOf = (lines: Line[]) => lines.filter((l) => l.type === "entry");

/** The two paths' verdicts on the same export: the page's (text, noble) and the CLI's (lines, Node's SHA-256). */
async function both(lines: Line[], pin: Pin) {
  const browser = await verifyExport(text(lines), pin);
  useNodeSha256();
  try {
    const node = new ExportVerifier({ publicKey: pin.publicKey, ...(pin.checkpoint ? { pin: pin.checkpoint } : {}) });
    for (const l of lines) node.line(JSON.stringify(l));
    return { browser, cli: await node.finish() };
  } finally {
    setSha256(nobleSha256);
  }
}

function expectAgreement(result: Awaited<ReturnType<typeof both>>, firstBadSeq: number | null, reason: RegExp) {
  const { browser, cli } = result;
  expect(browser.ok).toBe(false);
  expect(cli).toEqual(browser);
  if (browser.ok) return;
  expect(browser.seq).toBe(firstBadSeq);
  expect(browser.reason).toMatch(reason);
}

describe("the audit export verifier", () => {
  it("verifies an export of the server's format against the pinned key, the same on both paths", async () => {
    const key = await signer("k1");
    const { lines } = await exportOf(chain(9), key);
    const { browser, cli } = await both(lines, { keyId: key.keyId, publicKey: key.publicKey });
    expect(browser).toMatchObject({ ok: true, entries: 9, size: 9, head: entriesOf(lines)[8].entry_hash, org: ORG, fromSeq: 1, extendsPin: false });
    expect(cli).toEqual(browser);
  });

  it("hashes the same with @noble/hashes as with Node's SHA-256", () => {
    for (const size of [0, 1, 55, 56, 63, 64, 65, 1000, 100_000]) {
      const data = new Uint8Array(size).map((_, i) => (i * 31 + size) & 255);
      expect(hexOf(nobleSha256(data))).toBe(hexOf(nodeSha256(data)));
    }
  });

  it("rebuilds the root of a range from the header's frontier", async () => {
    const key = await signer("k1");
    const { lines } = await exportOf(chain(11), key, { from: 4, to: 10 });
    expect(await verifyExport(text(lines), { keyId: key.keyId, publicKey: key.publicKey })).toMatchObject({ ok: true, entries: 7, size: 10 });
  });

  it("accepts an export that extends the pinned checkpoint", async () => {
    const key = await signer("k1");
    const all = chain(12);
    const { checkpoint: pinned } = await exportOf(all, key, { to: 7 });
    const { lines } = await exportOf(all, key);
    const { browser, cli } = await both(lines, { keyId: key.keyId, publicKey: key.publicKey, checkpoint: pinned });
    expect(cli.ok).toBe(true);
    expect(browser).toMatchObject({ ok: true, entries: 12, extendsPin: true });
  });

  it("finds duplicate JSON keys at any depth, as decoded, and not in strings", () => {
    expect(hasDuplicateKeys('{"a":1,"b":{"c":2,"c":3}}')).toBe(true);
    expect(hasDuplicateKeys('{"a":1,"\\u0061":2}')).toBe(true);
    expect(hasDuplicateKeys('[{"a":1},{"a":2}]')).toBe(false);
    expect(hasDuplicateKeys('{"a":"\\"a\\":1","b":["a","a"]}')).toBe(false);
    expect(hasDuplicateKeys('{"a" : 1, "a" : 2}')).toBe(true);
  });

  it("computes the SHA-256 an approver sees from the canonical text's UTF-8 bytes", async () => {
    for (const canonical of ['{"a":"x","b":[1,2]}', '{"text":"Crème brûlée, 🍮"}']) {
      expect(sha256Hex(canonical)).toBe(createHash("sha256").update(canonical, "utf8").digest("hex"));
    }
  });

  describe("fails on one tampered event, at the entry the CLI names", () => {
    let key: Signer;
    let lines: Line[];
    const pin = () => ({ keyId: key.keyId, publicKey: key.publicKey });
    const fresh = async () => {
      key = await signer("k1");
      lines = (await exportOf(chain(8), key)).lines;
      return structuredClone(lines);
    };

    it("an edited payload", async () => {
      const l = await fresh();
      entriesOf(l)[3].payload = entriesOf(l)[3].payload.replace("entry 4", "entry 4, refunded");
      expectAgreement(await both(l, pin()), 4, /the payload is not the one that was hashed/);
    });

    it("one edited character of the export's text", async () => {
      await fresh();
      const original = text(lines);
      const tampered = original.replace('\\"note\\":\\"entry 5\\"', '\\"note\\":\\"entry 6\\"');
      expect(tampered).not.toBe(original);
      expect(await verifyExport(tampered, pin())).toEqual({ ok: false, seq: 5, reason: "the payload is not the one that was hashed" });
    });

    it("edited hashed bytes, with the entry's hash recomputed", async () => {
      const l = await fresh();
      const e = entriesOf(l)[2];
      e.canonical = e.canonical.replace("test.export", "test.innocent");
      e.entry_hash = entryHash(e.prev_hash, e.canonical);
      expectAgreement(await both(l, pin()), 4, /prev_hash is not the hash of the entry before/);
    });

    it("the last entry rewritten with every hash recomputed", async () => {
      const l = await fresh();
      const e = entriesOf(l)[7];
      e.canonical = e.canonical.replace("test.export", "test.innocent");
      e.entry_hash = entryHash(e.prev_hash, e.canonical);
      expectAgreement(await both(l, pin()), 8, /the checkpoint's head is not the last entry's hash/);
    });

    it("an edited hash", async () => {
      const l = await fresh();
      entriesOf(l)[4].entry_hash = "0".repeat(64);
      expectAgreement(await both(l, pin()), 5, /entry_hash is not the hash of the entry/);
    });

    it("a deleted entry", async () => {
      const l = await fresh();
      l.splice(l.indexOf(entriesOf(l)[2]), 1);
      expectAgreement(await both(l, pin()), 3, /expected entry 3, found 4/);
    });

    it("reordered entries", async () => {
      const l = await fresh();
      const [a, b] = [l.indexOf(entriesOf(l)[2]), l.indexOf(entriesOf(l)[3])];
      [l[a], l[b]] = [l[b], l[a]];
      expectAgreement(await both(l, pin()), 3, /expected entry 3, found 4/);
    });

    it("a truncation", async () => {
      const l = (await fresh()).slice(0, 6);
      expectAgreement(await both(l, pin()), 6, /no closing checkpoint/);
    });

    it("a chain re-signed with a key that is not the pinned one", async () => {
      await fresh();
      const forger = await signer("k1");
      const all = entriesOf(lines).map((e) => ({ ...e }));
      all[1].payload = all[1].payload.replace("entry 2", "entry two");
      rehashFrom(all, 1);  // every hash from entry 2 on, as a forger holding the database would
      const { lines: forged } = await exportOf(all, forger);
      const { browser, cli } = await both(forged, pin());
      expect(cli).toEqual(browser);
      expect(browser).toMatchObject({ ok: false, seq: null, reason: expect.stringMatching(/signature is not valid for the trusted key/) });
    });

    it("history rewritten before a pinned checkpoint", async () => {
      await fresh();
      const all = chain(8);
      const { checkpoint: pinned } = await exportOf(all, key, { to: 5 });
      const rewritten = all.map((e) => ({ ...e }));
      rewritten[2].payload = rewritten[2].payload.replace("entry 3", "entry three");
      rehashFrom(rewritten, 2);
      // Signed by the real key (a compromised signer), yet it does not extend the pin.
      const { lines: l } = await exportOf(rewritten, key);
      expectAgreement(await both(l, { ...pin(), checkpoint: pinned }), 5, /not the one the pinned checkpoint states/);
    });

    it("a duplicated payload key, which JSON.parse would read as the last one", async () => {
      const l = await fresh();
      const victim = entriesOf(l)[2];
      const lines = text(l).split("\n");
      const at = lines.findIndex((x) => x.includes(`"seq":${victim.seq},`));
      // The first payload is what another parser may read; the last one hashes right.
      lines[at] = lines[at].replace('"payload":', `"payload":${JSON.stringify('{"forged":true}')},"payload":`);
      expect(JSON.parse(lines[at]).payload).toBe(victim.payload);
      const tampered = lines.join("\n");
      expect(await verifyExport(tampered, pin())).toEqual({ ok: false, seq: 3, reason: "line 4: the line has a duplicate JSON key (parsers disagree on which one counts)" });
    });

    it("a payload emptied without a recorded purge, and one with its purge in the export", async () => {
      const l = await fresh();
      entriesOf(l)[3].payload = null;
      expectAgreement(await both(l, pin()), 4, /the payload of entry 4 is gone, and the export holds no record of its purge/);

      // The same chain with entry 9 recording the purge of entry 4: accepted.
      const all = chain(8);
      const purge = { action: "audit.payload_purged", payload: JSON.stringify({ reason: "erasure request", seq: 4 }), target: { id: "4", type: "audit.entries" } };
      const purged = extend(all, purge);
      purged[3].payload = null;
      const { lines: withPurge } = await exportOf(purged, key);
      const { browser, cli } = await both(withPurge, pin());
      expect(browser).toMatchObject({ ok: true, entries: 9 });
      expect(cli).toEqual(browser);
    });

    it("a workspace purge: every payload before its org.purged entry gone, and not one after it", async () => {
      await fresh();
      const all = chain(6);
      const purged = extend(all, { action: "org.purged", payload: JSON.stringify({ deleted: { "public.agents": 1 } }), target: { id: ORG, type: "public.organizations" } });
      for (const e of purged.slice(0, 6)) e.payload = null;
      const { lines: whole } = await exportOf(purged, key);
      const { browser, cli } = await both(whole, pin());
      expect(browser).toMatchObject({ ok: true, entries: 7 });
      expect(cli).toEqual(browser);

      // The org.purged entry keeps its own payload (the counts): emptied, it is caught.
      const own = structuredClone(purged);
      own[6].payload = null;
      expectAgreement(await both((await exportOf(own, key)).lines, pin()), 7, /the payload of entry 7 is gone/);
      // An entry after the workspace's purge keeps its payload: emptied, it is caught.
      const later = extend(purged, { action: "test.after", payload: "{}", target: { id: "1", type: "test" } });
      later[7].payload = null;
      expectAgreement(await both((await exportOf(later, key)).lines, pin()), 8, /the payload of entry 8 is gone/);
      // And another action of that name's shape is no workspace purge.
      const other = extend(all, { action: "org.purged_not", payload: "{}", target: { id: "1", type: "test" } });
      other[2].payload = null;
      expectAgreement(await both((await exportOf(other, key)).lines, pin()), 3, /the payload of entry 3 is gone/);
    });

    it("a chain whose entry 1 does not link to the all-zero hash, even with every hash recomputed and signed", async () => {
      await fresh();
      const all = chain(5, "1".repeat(64));
      const { lines: l } = await exportOf(all, key);
      expectAgreement(await both(l, pin()), 1, /entry 1 does not link to the all-zero hash/);
    });

    it("a carriage return or a byte order mark, which the format has none of", async () => {
      await fresh();
      expect(await verifyExport(text(lines).replaceAll("\n", "\r\n"), pin())).toEqual({ ok: false, seq: null, reason: "line 1 ends with a carriage return: lines end with a line feed alone" });
      expect(await verifyExport(`\uFEFF${text(lines)}`, pin())).toEqual({ ok: false, seq: null, reason: "the export starts with a byte order mark: it is UTF-8 without one" });
    });

    it("a line that is no longer JSON", async () => {
      await fresh();
      const broken = text(lines).split("\n").map((l, i) => (i === 3 ? l.slice(0, -2) : l)).join("\n");
      expect(await verifyExport(broken, pin())).toEqual({ ok: false, seq: 3, reason: "line 4: the line is not JSON" });
    });
  });
});

describe("the CLI's verifier on every core (scripts/audit/verify_file.ts)", () => {
  it("checks the batches of a worker that dies on the main thread, with the same verdict", async () => {
    const key = await signer("k1");
    const { lines } = await exportOf(chain(40), key);
    const file = join(mkdtempSync(join(tmpdir(), "verify-")), "export.jsonl");
    writeFileSync(file, text(lines));
    // A worker that says it is ready, and exits when it is given its first batch.
    const dies = `const { parentPort } = require("node:worker_threads"); parentPort.on("message", () => process.exit(3)); parentPort.postMessage("ready");`;
    useNodeSha256();
    try {
      const options = { publicKey: key.publicKey, workers: 1, awaitWorkers: true, batchBytes: 1500 };
      expect(await verifyExportFile(file, { ...options, workerScript: dies })).toMatchObject({ ok: true, entries: 40 });
      const tampered = structuredClone(lines);
      entriesOf(tampered)[30].payload = entriesOf(tampered)[30].payload.replace("entry 31", "entry 31!");
      writeFileSync(file, text(tampered));
      expect(await verifyExportFile(file, { ...options, workerScript: dies })).toEqual({ ok: false, seq: 31, reason: "the payload is not the one that was hashed" });
    } finally {
      setSha256(nobleSha256);
      rmSync(dirname(file), { recursive: true });
    }
  });
});

describe("hashed bytes read in place (audit.seal's form) and parsed (any other form)", () => {
  /** Entry 2 of a three-entry chain with these fields, its hashed bytes in seal's key order or reversed. */
  async function exportWith(fields: { action: string; actor: string | null; target: { id: string | null; type: string } | null }, reversed: boolean, key: Signer) {
    const all = chain(1);
    const payload = JSON.stringify({ note: "x" });
    const body: Record<string, unknown> = {
      action: fields.action, actor: fields.actor, at: "2026-11-22T10:02:00.000000Z", org: ORG, payload_sha256: sha256Hex(payload), seq: 2, target: fields.target, v: 1,
    };
    const canonical = reversed ? JSON.stringify(Object.fromEntries(Object.entries(body).reverse())) : canonicalize(body)!;
    const prev = all[0].entry_hash;
    all.push({ type: "entry", seq: 2, prev_hash: prev, entry_hash: entryHash(prev, canonical), canonical, payload });
    const purge = extend(all, { action: "audit.payload_purged", payload: "{}", target: { id: "1", type: "audit.entries" } });
    purge[0].payload = null;
    return text((await exportOf(purge, key)).lines);
  }

  it("agree on every action, actor and target, including ids and types with quotes, backslashes and other scripts", async () => {
    const key = await signer("k1");
    const pin = { publicKey: key.publicKey };
    const action = fc.stringMatching(/^[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){1,3}$/);
    const target = fc.option(fc.record({ id: fc.option(fc.string({ unit: "binary" })), type: fc.string({ unit: "binary" }) }));
    await fc.assert(fc.asyncProperty(action, fc.option(fc.uuid()), target, async (a, actor, t) => {
      for (const reversed of [false, true]) {
        const result = await verifyExportText(await exportWith({ action: a, actor, target: t }, reversed, key), pin);
        // Entry 1's payload is gone, and entry 3 records its purge: read in place or parsed, it counts.
        expect(result).toMatchObject({ ok: true, entries: 3 });
      }
    }), { numRuns: 150 });
  });

  it("agree that hashed bytes with an escape JSON has not (\\q) are not JSON, whichever path reads them", async () => {
    const key = await signer("k1");
    const all = chain(2);
    const canonical = canonicalize({ action: "test.export", actor: null, at: "2026-11-22T10:02:00.000000Z", org: ORG, payload_sha256: sha256Hex("{}"), seq: 3, target: { id: "3", type: "test" }, v: 1 })!
      .replace('"type":"test"', '"type":"te\\qst"');
    expect(() => JSON.parse(canonical)).toThrow();
    const prev = all[1].entry_hash;
    all.push({ type: "entry", seq: 3, prev_hash: prev, entry_hash: entryHash(prev, canonical), canonical, payload: "{}" });
    expect(await verifyExport(text((await exportOf(all, key)).lines), { keyId: key.keyId, publicKey: key.publicKey }))
      .toEqual({ ok: false, seq: 3, reason: "the hashed bytes are not one JSON object without duplicate keys" });
  });

  it("agree that a purge naming another entry, or the same number written otherwise, records no purge", async () => {
    const key = await signer("k1");
    for (const id of ["01", "1.0", " 1", "2"]) {
      const all = chain(2);
      const purged = extend(all, { action: "audit.payload_purged", payload: "{}", target: { id, type: "audit.entries" } });
      purged[0].payload = null;
      expect(await verifyExportText(text((await exportOf(purged, key)).lines), { publicKey: key.publicKey })).toMatchObject({ ok: false, seq: 1 });
    }
  });
});

/** Whether a stack is up to export from (npm test's throwaway one, or npm start's). */
async function stackUp(): Promise<boolean> {
  const file = process.env.GATEHOUSE_STACK_FILE ?? ".local/stack.json";
  if (!existsSync(file)) return false;
  try {
    const { stack } = await import("../helpers/stack.ts");
    const res = await fetch(`${stack().functionsUrl}/health`, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

describe.skipIf(!(await stackUp()))("a real export from the audit-export function", () => {
  it("verifies in the page's verifier, and fails at the one entry whose payload was edited", async () => {
    const { accessToken, signedIn, stack } = await import("../helpers/stack.ts");
    const ada = await signedIn("ada@acme.test");
    try {
      const res = await fetch(`${stack().functionsUrl}/audit-export`, { headers: { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ORG } });
      expect(res.status).toBe(200);
      const exported = await res.text();
      const { data: keys, error } = await ada.rpc("audit_signing_keys");
      expect(error).toBeNull();
      const lines = exported.trim().split("\n").map((l) => JSON.parse(l) as Line);
      const closing = lines.at(-1)!;
      const key = keys!.find((k) => k.key_id === closing.key_id)!;
      const pin = { keyId: key.key_id, publicKey: key.public_key };
      const verified = await verifyExport(exported, pin);
      expect(verified).toMatchObject({ ok: true, org: ORG, size: lines[0].to_seq });

      const victim = entriesOf(lines).find((e) => typeof e.payload === "string" && e.payload.length > 2)!;
      victim.payload = victim.payload.replace(/^\{/, '{"tampered":true,');
      expect(await verifyExport(text(lines), pin)).toEqual({ ok: false, seq: victim.seq, reason: "the payload is not the one that was hashed" });
    } finally {
      await ada.auth.signOut();
    }
  });
});
