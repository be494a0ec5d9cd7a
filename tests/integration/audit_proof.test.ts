/**
 * Proofs over HTTP (functions/audit-proof) and the offline verifier's --since and --entry
 * (scripts/audit_verify.ts, functions/_shared/audit/verify.ts), end to end against the stack:
 * a customer who pinned a checkpoint learns from a consistency proof alone that today's chain
 * extends it, and gets a new pin; a pin of another history (a fork) or another root at the same
 * size (a split view), signed with the log's own key as a compromised log would, is refused; one
 * entry is checked by its inclusion proof. Access is the export's.
 */
import { createPrivateKey, sign } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkpointMessage, type ConsistencyAnswer, fetchProof, type SignedCheckpoint, verifyExtension } from "../../functions/_shared/audit/verify.ts";
import { ACME, GLOBEX } from "../helpers/fixtures.ts";
import { accessToken, asMemberIn, type Client, signedIn, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
const ADA = "a0000000-0000-4000-8000-000000000001";
let ada: Client;
let victor: Client;
let token: string;
const dir = mkdtempSync(join(tmpdir(), "gatehouse-audit-proof-"));

beforeAll(async () => {
  [ada, victor] = await Promise.all(["ada@acme.test", "victor@acme.test"].map(signedIn));
  token = await asMemberIn(sql, ADA, ACME, async (tx) => {
    const [{ made }] = await tx`select public.create_personal_access_token('audit monitor', ${["audit:read"]}::text[], 7, null) as made`;
    return (made as { token: string }).token;
  });
});
afterAll(async () => {
  await Promise.all([ada, victor].map((c) => c?.auth.signOut()));
  await sql.end();
  rmSync(dir, { recursive: true, force: true });
});

async function proof(query: string, as: Client | string = ada, org = ACME) {
  const bearer = typeof as === "string" ? as : await accessToken(as);
  const res = await fetch(`${stack().functionsUrl}/audit-proof?${query}`, { headers: { authorization: `Bearer ${bearer}`, "x-org-id": org } });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function verifier(...args: string[]) {
  const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", ...args], {
    encoding: "utf8", env: { ...process.env, GATEHOUSE_TOKEN: token },
  });
  return { status: run.status, out: run.stdout + run.stderr };
}

const pinFile = (cp: SignedCheckpoint) => {
  const file = join(dir, `pin-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(cp));
  return file;
};

/** A checkpoint body signed with the log's own key (read from Vault): what a compromised log could hand out. */
async function signedByTheLog(body: Record<string, unknown>): Promise<SignedCheckpoint> {
  const [key] = await sql`select k.key_id, encode(k.public_key, 'base64') as public_key, s.decrypted_secret as pkcs8
                            from audit.signing_keys k join vault.decrypted_secrets s on s.id = k.secret_id where k.retired_at is null`;
  const text = canonicalize({ ...body, key: key.key_id })!;
  const signature = sign(null, Buffer.from(checkpointMessage(text)), createPrivateKey({ key: Buffer.from(key.pkcs8, "base64"), format: "der", type: "pkcs8" }));
  return { checkpoint: text, signature: signature.toString("base64"), key_id: key.key_id, public_key: key.public_key.replaceAll("\n", "") };
}

async function grow(n: number) {
  await sql`select audit.append(${ACME}, 'test.proof', 'test', i::text, '{}') from generate_series(1, ${n}) i`;
}

describe("proofs over HTTP", () => {
  it("serves a consistency proof with the signed checkpoint of the larger tree, and an inclusion proof", async () => {
    const consistency = await proof("type=consistency&from=2");
    expect(consistency.status).toBe(200);
    const body = JSON.parse(consistency.body.checkpoint.checkpoint);
    expect(consistency.body).toMatchObject({ type: "consistency", from: 2, to: body.size });
    expect(consistency.body.checkpoint.note).toContain(`/audit/${ACME}\n${body.size}\n`);
    const inclusion = await proof(`type=inclusion&seq=3&size=${body.size}`, victor);
    expect(inclusion.status).toBe(200);
    expect(inclusion.body).toMatchObject({ type: "inclusion", seq: 3, size: body.size, entry: { seq: 3 } });
  });

  it("answers bad requests and other organizations with 4xx JSON errors, as the export does", async () => {
    expect(await proof("type=consistency")).toMatchObject({ status: 400, body: { error: { code: "invalid_query" } } });
    expect(await proof("type=inclusion&seq=1&from=2")).toMatchObject({ status: 400, body: { error: { code: "invalid_query" } } });
    expect(await proof("type=proof&from=1")).toMatchObject({ status: 400 });
    expect(await proof("type=consistency&from=0")).toMatchObject({ status: 400 });
    expect(await proof("type=consistency&from=99999999")).toMatchObject({ status: 416, body: { error: { code: "range_not_satisfiable" } } });
    expect(await proof("type=inclusion&seq=5&size=4")).toMatchObject({ status: 416, body: { error: { code: "range_not_satisfiable" } } });
    expect(await proof("type=consistency&from=1", ada, GLOBEX)).toMatchObject({ status: 403 });
    const anon = await fetch(`${stack().functionsUrl}/audit-proof?type=consistency&from=1`, { headers: { apikey: stack().anonKey } });
    expect(anon.status).toBe(401);
  });
});

describe("the verifier's --since and --entry", () => {
  it("verifies that the chain extends a pinned checkpoint from a consistency proof alone, and writes the new pin", async () => {
    const pinned = (await proof("type=consistency&from=1")).body.checkpoint as SignedCheckpoint;
    await grow(5);
    const out = join(dir, "next-pin.json");
    const run = verifier("--since", pinFile(pinned), "--url", stack().functionsUrl, "--org", ACME, "--out", out);
    expect(run.out).toMatch(/^ok: the log extends the pinned checkpoint: (\d+) → (\d+) entries/);
    expect(run.status).toBe(0);
    const next = JSON.parse(readFileSync(out, "utf8")) as SignedCheckpoint;
    expect(JSON.parse(next.checkpoint).size).toBeGreaterThanOrEqual(JSON.parse(pinned.checkpoint).size + 5);
    // The new pin is itself a pin: the next check starts from it.
    expect(verifier("--since", out, "--url", stack().functionsUrl, "--org", ACME).status).toBe(0);
  });

  it("refuses a fork and a split view, even signed with the log's own key", async () => {
    const now = JSON.parse((await proof("type=consistency&from=1")).body.checkpoint.checkpoint);
    const [e] = await sql`select encode(entry_hash, 'hex') as head from audit.entries where org_id = ${ACME} and seq = ${now.size - 3}`;
    // Another history of the first size-3 entries: the log's key signed a different root.
    const fork = await signedByTheLog({ head: e.head, org: ACME, root: "ab".repeat(32), size: now.size - 3, time: now.time, v: 1 });
    const forked = verifier("--since", pinFile(fork), "--url", stack().functionsUrl, "--org", ACME);
    expect(forked.out).toMatch(/^FAILED: the tree of \d+ entries does not extend the pinned tree of \d+ \(history was rewritten: a fork\)/);
    expect(forked.status).toBe(1);
    // A pin of another root at a size the log signed too: two signed checkpoints of one size that
    // disagree. (The chain may grow while the CLI runs, so the proof is asked for that size here.)
    const split = await signedByTheLog({ head: now.head, org: ACME, root: "cd".repeat(32), size: now.size, time: now.time, v: 1 });
    const answer = await fetchProof<ConsistencyAnswer>(stack().functionsUrl, { type: "consistency", from: now.size, to: now.size }, { token, orgId: ACME });
    expect(await verifyExtension(split, answer)).toEqual({ ok: false, reason: `two signed checkpoints of size ${now.size} state different roots (a split view)` });
    // A pin signed by another key than the one trusted is refused before anything is fetched.
    const other = { ...fork, public_key: Buffer.alloc(32, 7).toString("base64") };
    expect(verifier("--since", pinFile(other), "--url", stack().functionsUrl, "--org", ACME).out).toMatch(/^FAILED: the pinned checkpoint: the checkpoint's signature is not valid/);
  });

  it("checks one entry by its inclusion proof against the trusted key", async () => {
    const { data: keys } = await ada.rpc("audit_signing_keys");
    const run = verifier("--entry", "4", "--url", stack().functionsUrl, "--org", ACME, "--public-key", keys!.at(-1)!.public_key);
    expect(run.out).toMatch(/^ok: entry 4 \([a-z_.]+\) is in the tree of \d+ entries/);
    expect(run.status).toBe(0);
    const wrongKey = verifier("--entry", "4", "--url", stack().functionsUrl, "--org", ACME, "--public-key", Buffer.alloc(32, 9).toString("base64"));
    expect(wrongKey.out).toMatch(/^FAILED at entry 4: the checkpoint's signature is not valid for the trusted key/);
    expect(verifier("--entry", "4", "--url", stack().functionsUrl, "--org", ACME).status).toBe(2);
  });
});
