/**
 * Signed checkpoints, the audit export and the offline verifier (scripts/audit_verify.ts), end to
 * end: the export function streams a chain that verifies, and every kind of tampering with the
 * file is caught, with the right entry and reason, and a non-zero exit.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ED25519, openNote, parseCheckpointText, parseVerifierKey, verifierKeyText } from "../../functions/_shared/audit/note.ts";
import { ExportVerifier, checkpointMessage, entryHash, type SignedCheckpoint } from "../../functions/_shared/audit/verify.ts";
import { MerkleFrontier } from "../../functions/_shared/audit/merkle.ts";
import { type Client, accessToken, signedIn, stack, superuser } from "../helpers/stack.ts";
import { ACME, GLOBEX } from "../helpers/fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "gatehouse-audit-"));
const sql = superuser();
let ada: Client;
let victor: Client;

beforeAll(async () => {
  [ada, victor] = await Promise.all([signedIn("ada@acme.test"), signedIn("victor@acme.test")]);
  // A few more entries (and no other data), so that exports have a middle to tamper with.
  await sql`select audit.append(${ACME}, 'test.export', 'test', n::text, jsonb_build_object('n', n, 'pi', 3.14159)) from generate_series(1, 5) n`;
});
afterAll(async () => {
  await Promise.all([ada, victor].map((c) => c?.auth.signOut()));
  await sql.end();
});

async function call(client: Client, path: string, init: RequestInit = {}) {
  return fetch(`${stack().functionsUrl}/${path}`, {
    ...init,
    headers: { authorization: `Bearer ${await accessToken(client)}`, "x-org-id": ACME, ...init.headers },
  });
}

async function exportLines(query = ""): Promise<Record<string, unknown>[]> {
  const res = await call(ada, `audit-export${query}`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-ndjson");
  return (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
}

function cli(lines: Record<string, unknown>[], ...args: string[]) {
  const file = join(dir, `export-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, lines.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", file, ...args], { encoding: "utf8" });
  return { status: run.status, out: run.stdout + run.stderr };
}

async function verify(lines: Record<string, unknown>[], options: { pin?: SignedCheckpoint; publicKey?: string } = {}) {
  const v = new ExportVerifier({ ...options, canonicalize: (x) => canonicalize(x) });
  for (const l of lines) v.line(JSON.stringify(l));
  return v.finish();
}

const entries = (lines: Record<string, unknown>[]) => lines.filter((l) => l.type === "entry") as Array<Record<string, any>>;

describe("signed checkpoints", () => {
  it("lets a tenant admin sign a checkpoint on demand, verifiable with the published key", async () => {
    const [{ recorded }] = await sql`select audit.append(${ACME}, 'test.checkpoint', null, null) as recorded`;
    const res = await call(ada, "audit-checkpoint", { method: "POST" });
    expect(res.status).toBe(200);
    const { checkpoints } = await res.json();
    const cp = checkpoints[0] as SignedCheckpoint;
    const body = JSON.parse(cp.checkpoint);
    const [head] = await sql`select seq, encode(head_hash, 'hex') as hash from audit.heads where org_id = ${ACME}`;
    expect(body).toMatchObject({ org: ACME, size: Number(head.seq), head: head.hash, v: 1 });
    // What was recorded just before is sealed and covered, whether or not the sealer loop got to it.
    const [{ seq }] = await sql`select seq from audit.entries where record_id = ${recorded}`;
    expect(body.size).toBeGreaterThanOrEqual(Number(seq));
    expect(cp.checkpoint).toBe(canonicalize(body));
    const { data: keys } = await ada.rpc("audit_signing_keys");
    expect(keys!.map((k) => k.public_key)).toContain(cp.public_key);
    const { data: latest } = await ada.rpc("latest_audit_checkpoint").setHeader("x-org-id", ACME);
    expect(latest![0].checkpoint).toBe(cp.checkpoint);
    // Another organization's context, or none, never shows Acme's checkpoint.
    const casey = await signedIn("casey@both.test");
    const inGlobex = await casey.rpc("latest_audit_checkpoint").setHeader("x-org-id", GLOBEX);
    expect(inGlobex.data!.every((c) => JSON.parse(c.checkpoint).org === GLOBEX)).toBe(true);
    const { data: none } = await casey.rpc("latest_audit_checkpoint");
    expect(none).toEqual([]);
    await casey.auth.signOut();
  });

  it("refuses checkpoints to non-admins, and bad requests with 4xx JSON errors", async () => {
    const viewer = await call(victor, "audit-checkpoint", { method: "POST" });
    expect(viewer.status).toBe(403);
    expect((await viewer.json()).error.code).toBe("forbidden");
    const foreign = await call(ada, "audit-checkpoint", { method: "POST", headers: { "x-org-id": GLOBEX } });
    expect(foreign.status).toBe(403);
    const badOrg = await call(ada, "audit-checkpoint", { method: "POST", headers: { "x-org-id": "nope" } });
    expect(badOrg.status).toBe(400);
    const get = await call(ada, "audit-checkpoint");
    expect(get.status).toBe(405);
    const anon = await fetch(`${stack().functionsUrl}/audit-checkpoint`, { method: "POST", headers: { apikey: stack().anonKey } });
    expect(anon.status).toBe(401);
  });
});

describe("audit export and offline verification", () => {
  it("exports the whole chain, which the offline CLI verifies against the published key", async () => {
    const lines = await exportLines();
    expect(lines[0]).toMatchObject({ type: "header", org: ACME, from_seq: 1, frontier: [] });
    expect(lines.at(-1)!.type).toBe("checkpoint");
    const { data: keys } = await ada.rpc("audit_signing_keys");
    const run = cli(lines, "--public-key", keys![0].public_key, "--strict");
    expect(run.out).toMatch(/^ok: \d+ entries of organization 0a000000/);
    expect(run.status).toBe(0);
    // --strict also holds the hashed bytes to RFC 8785 form: re-spaced JSON with the same meaning fails.
    const respaced = structuredClone(lines);
    const e = entries(respaced)[0];
    e.canonical = JSON.stringify(JSON.parse(e.canonical), null, 1);
    e.entry_hash = entryHash(e.prev_hash, e.canonical);
    expect(cli(respaced, "--strict").out).toMatch(/FAILED at entry 1: the hashed bytes are not RFC 8785 canonical JSON/);
  });

  it("closes with the checkpoint as a C2SP signed note too, which a note verifier written from the spec opens", async () => {
    const lines = await exportLines();
    const cp = lines.at(-1)! as unknown as SignedCheckpoint;
    const body = JSON.parse(cp.checkpoint);
    const origin = `gatehouse.local/audit/${ACME}`;
    expect(cp.note!.startsWith(`${origin}\n${body.size}\n${Buffer.from(body.root, "hex").toString("base64")}\n\n\u2014 ${origin} `)).toBe(true);
    const vkey = verifierKeyText({ name: origin, type: ED25519, publicKey: Buffer.from(cp.public_key, "base64") });
    const opened = await openNote(cp.note!, [parseVerifierKey(vkey)!]);
    expect(opened.ok && parseCheckpointText(opened.value.text)).toMatchObject({ origin, size: body.size, rootHex: body.root });
    expect(cli(lines, "--public-key", cp.public_key).out).toContain(`note: the C2SP checkpoint of ${origin} verifies`);
    // A note edited to state another tree no longer verifies.
    const edited = structuredClone(lines);
    (edited.at(-1) as Record<string, unknown>).note = cp.note!.replace(`\n${body.size}\n`, `\n${body.size + 1}\n`);
    expect(cli(edited, "--public-key", cp.public_key).out).toMatch(/^FAILED: the checkpoint's note: the signature of .+ does not verify/);
    // The database keeps the note beside the body, and publishes it with the latest checkpoint.
    const [{ note }] = await sql`select note from audit.checkpoints where org_id = ${ACME} and size = ${body.size}`;
    expect(cp.note!.startsWith(note)).toBe(true);  // then any witness's cosignature (audit_witness.test.ts)
  });

  it("exports a sequence range whose root is rebuilt from the header's frontier", async () => {
    const lines = await exportLines("?from_seq=3&to_seq=9");
    expect(lines[0]).toMatchObject({ from_seq: 3, to_seq: 9 });
    expect(entries(lines).map((e) => e.seq)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(await verify(lines)).toMatchObject({ ok: true, entries: 7, size: 9 });
  });

  it("exports only an organization the caller belongs to, and nothing to anon", async () => {
    const foreign = await call(ada, "audit-export", { headers: { "x-org-id": GLOBEX } });
    expect(foreign.status).toBe(403);
    expect((await foreign.json()).error.code).toBe("context_not_a_member");
    const anon = await fetch(`${stack().functionsUrl}/audit-export`, { headers: { apikey: stack().anonKey, "x-org-id": ACME } });
    expect(anon.status).toBe(401);
    const member = await call(victor, "audit-export?from_seq=1&to_seq=1");
    expect(member.status).toBe(200);
    await member.body?.cancel();
  });

  it("answers bad ranges and parameters with 4xx JSON errors", async () => {
    expect((await call(ada, "audit-export?from_seq=0")).status).toBe(400);
    expect((await call(ada, "audit-export?from_seq=abc")).status).toBe(400);
    expect((await call(ada, "audit-export?from_seq=1&from=2026-01-01T00:00:00Z")).status).toBe(400);
    expect((await call(ada, "audit-export?surprise=1")).status).toBe(400);
    const res = await call(ada, "audit-export?from_seq=100000");
    expect(res.status).toBe(416);
    expect((await res.json()).error.code).toBe("range_not_satisfiable");
  });

  describe("finds each kind of tampering in the file", () => {
    let lines: Record<string, unknown>[];
    beforeAll(async () => {
      lines = await exportLines();
    });
    const clone = () => structuredClone(lines);

    it("an edited payload", async () => {
      const l = clone();
      const e = entries(l)[3];
      e.payload = e.payload.replace(/"new":/, '"new":{"tampered":true},"x":');
      const run = cli(l);
      expect(run.status).toBe(1);
      expect(run.out).toMatch(/FAILED at entry 4: the payload is not the one that was hashed/);
    });

    it("an edited hash", async () => {
      const l = clone();
      entries(l)[4].entry_hash = "0".repeat(64);
      expect(cli(l).out).toMatch(/FAILED at entry 5: entry_hash is not the hash of the entry/);
    });

    it("a deleted middle entry", async () => {
      const l = clone();
      l.splice(l.indexOf(entries(l)[2]), 1);
      expect(cli(l).out).toMatch(/FAILED at entry 3: expected entry 3, found 4/);
    });

    it("reordered entries", async () => {
      const l = clone();
      const [a, b] = [l.indexOf(entries(l)[2]), l.indexOf(entries(l)[3])];
      [l[a], l[b]] = [l[b], l[a]];
      expect(cli(l).out).toMatch(/FAILED at entry 3: expected entry 3, found 4/);
    });

    it("a forged entry inserted, with a well-formed hash", async () => {
      const l = clone();
      const before = entries(l)[1];
      const canonical = canonicalize({ action: "forged.event", actor: null, org: ACME, seq: 3, v: 1 })!;
      const forged = { type: "entry", seq: 3, prev_hash: before.entry_hash, entry_hash: entryHash(before.entry_hash, canonical), canonical, payload: null };
      const rest = entries(l).slice(2).map((e) => ({ ...e, seq: e.seq + 1 }));
      const out = [l[0], ...entries(l).slice(0, 2), forged, ...rest, l.at(-1)!];
      expect(cli(out).out).toMatch(/FAILED at entry 4: (prev_hash is not the hash of the entry before|the hashed bytes name another entry)/);
    });

    it("a truncation (the file cut short)", async () => {
      const l = clone().slice(0, 6);
      const run = cli(l);
      expect(run.status).toBe(1);
      expect(run.out).toMatch(/FAILED at entry 6: the export has no closing checkpoint/);
    });

    it("a tail cut, measured against a pinned checkpoint", async () => {
      const pin = lines.at(-1) as unknown as SignedCheckpoint;
      const pinFile = join(dir, "pin.json");
      writeFileSync(pinFile, JSON.stringify(pin));
      const size = JSON.parse(pin.checkpoint).size as number;
      const shorter = await exportLines(`?to_seq=${size - 2}`);
      const run = cli(shorter, "--pin", pinFile);
      expect(run.status).toBe(1);
      expect(run.out).toMatch(new RegExp(`the export ends at entry ${size - 2}, but the pinned checkpoint has ${size} entries \\(the tail was cut\\)`));
      // The same pin accepts the honest, longer export.
      expect(cli(lines, "--pin", pinFile).status).toBe(0);
    });

    it("a wholesale rewrite with recomputed hashes fails on the signature, and a re-signed one on the pin", async () => {
      // Rewrite every payload, then recompute every hash, link and the root.
      const l = clone();
      const tree = new MerkleFrontier();
      let prev = "0".repeat(64);
      for (const e of entries(l)) {
        e.payload = canonicalize({ rewritten: e.seq })!;
        const fields = JSON.parse(e.canonical);
        fields.payload_sha256 = createHash("sha256").update(e.payload).digest("hex");
        e.canonical = canonicalize(fields)!;
        e.prev_hash = prev;
        e.entry_hash = entryHash(prev, e.canonical);
        prev = e.entry_hash;
        tree.push(Buffer.from(e.entry_hash, "hex"));
      }
      const cp = l.at(-1) as unknown as SignedCheckpoint & { type: string };
      const body = JSON.parse(cp.checkpoint);
      body.head = prev;
      body.root = Buffer.from(tree.root()).toString("hex");
      cp.checkpoint = canonicalize(body)!;
      expect(cli(l).out).toMatch(/FAILED: the checkpoint's signature is not valid for the trusted key/);

      // Re-signed with the forger's own key: fine by itself, caught by the customer's pin or key.
      const forger = generateKeyPairSync("ed25519");
      cp.signature = sign(null, Buffer.from(checkpointMessage(cp.checkpoint)), forger.privateKey).toString("base64");
      cp.public_key = (forger.publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64");
      delete cp.note;  // the log's note would not verify with the forger's key; a forger drops it
      expect((await verify(l)).ok).toBe(true);
      const pin = lines.at(-1) as unknown as SignedCheckpoint;
      expect(await verify(l, { pin })).toMatchObject({ ok: false, reason: expect.stringMatching(/rewritten|signature/) });
      const { data: keys } = await ada.rpc("audit_signing_keys");
      expect(await verify(l, { publicKey: keys![0].public_key })).toMatchObject({
        ok: false,
        reason: "the checkpoint's signature is not valid for the trusted key (forged or re-signed)",
      });
    });
  });

  it("exits 2 on usage errors and unreadable files", () => {
    const none = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts"], { encoding: "utf8" });
    expect(none.status).toBe(2);
    const missing = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", join(dir, "missing.jsonl")], { encoding: "utf8" });
    expect(missing.status).toBe(2);
  });
});
