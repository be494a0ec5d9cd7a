/**
 * Witnesses (c2sp.org/tlog-witness) cosigning our checkpoints, end to end: the audit-checkpoint
 * function submits each new checkpoint's C2SP note to the witness the stack is configured with
 * (tests/helpers/witness.ts, speaking add-checkpoint with its own key), with a consistency proof
 * from the size the witness last cosigned; it checks and keeps the cosignature, which then travels
 * with the checkpoint's note, and the offline verifier checks and reports it (--witness). A witness
 * that disagrees with the log refuses, and nothing is kept; one that lost its state answers 409
 * with its size, and the function starts again from there.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACME } from "../helpers/fixtures.ts";
import { accessToken, type Client, signedIn, stack, superuser } from "../helpers/stack.ts";
import { type FakeWitness, startWitness } from "../helpers/witness.ts";

const sql = superuser();
const origin = `gatehouse.local/audit/${ACME}`;
const dir = mkdtempSync(join(tmpdir(), "gatehouse-witness-"));
let ada: Client;
let witness: FakeWitness;

beforeAll(async () => {
  witness = await startWitness();
  ada = await signedIn("ada@acme.test");
});
afterAll(async () => {
  await ada?.auth.signOut();
  await witness?.close();
  await sql.end();
  rmSync(dir, { recursive: true, force: true });
});

interface Signed {
  checkpoints: { checkpoint: string; public_key: string; note: string }[];
  witnessed: { witness: string; outcome: string; status?: number; size: number }[];
}

async function checkpointNow(): Promise<Signed> {
  await sql`select audit.append(${ACME}, 'test.witnessed', 'test', i::text, '{}') from generate_series(1, 3) i`;
  const res = await fetch(`${stack().functionsUrl}/audit-checkpoint`, {
    method: "POST", headers: { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ACME, "content-type": "application/json" }, body: "{}",
  });
  expect(res.status).toBe(200);
  return await res.json() as Signed;
}

const mine = (s: Signed) => s.witnessed.find((w) => w.witness === witness.name)!;

describe("witnesses", () => {
  it("cosign through add-checkpoint, with a consistency proof from what they last cosigned, and the verifier reports it", async () => {
    // Not yet told about our log: the witness refuses (404), and the checkpoint stays signed.
    const unknown = await checkpointNow();
    expect(mine(unknown)).toMatchObject({ outcome: "refused", status: 404 });
    expect(unknown.checkpoints[0].note).not.toContain(`\u2014 ${witness.name} `);

    witness.trust(origin, unknown.checkpoints[0].public_key);
    const first = await checkpointNow();
    expect(mine(first)).toMatchObject({ outcome: "cosigned" });
    expect(first.checkpoints[0].note).toContain(`\n\u2014 ${witness.name} `);
    const size = mine(first).size;
    expect(witness.latest(origin)?.size).toBe(size);

    const second = await checkpointNow();
    expect(mine(second)).toMatchObject({ outcome: "cosigned" });
    // The witness was sent the size it last cosigned and a consistency proof from it.
    const sent = witness.requests.filter((r) => r.status === 200).at(-1)!;
    expect(sent.old).toBeGreaterThanOrEqual(size);
    expect(sent.proof).toBeGreaterThan(0);
    const [{ n }] = await sql`select count(*)::int as n from audit.cosignatures where org_id = ${ACME} and witness = ${witness.name}`;
    expect(n).toBeGreaterThanOrEqual(2);

    // An export closes with the witnessed note; the offline verifier checks the cosignature.
    const res = await fetch(`${stack().functionsUrl}/audit-export?to_seq=${mine(second).size}`, {
      headers: { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ACME },
    });
    const file = join(dir, "export.jsonl");
    writeFileSync(file, await res.text());
    const key = second.checkpoints[0].public_key;
    const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", file, "--public-key", key, "--witness", witness.vkey], { encoding: "utf8" });
    expect(run.stdout).toContain(`witness: cosigned by ${witness.name} at `);
    expect(run.status).toBe(0);
    // A cosignature that does not verify fails the note: one character of its signature changed.
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    const closing = JSON.parse(lines.at(-1)!);
    const prefix = `\u2014 ${witness.name} `;
    const at = closing.note.indexOf(prefix) + prefix.length + 30;
    closing.note = closing.note.slice(0, at) + (closing.note[at] === "A" ? "B" : "A") + closing.note.slice(at + 1);
    const tamperedFile = join(dir, "tampered.jsonl");
    writeFileSync(tamperedFile, [...lines.slice(0, -1), JSON.stringify(closing)].join("\n") + "\n");
    const tampered = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", tamperedFile, "--public-key", key, "--witness", witness.vkey], { encoding: "utf8" });
    expect(tampered.stdout).toMatch(/^FAILED: the checkpoint's note: the cosignature of witness\.test\/w1 does not verify/);
    expect(tampered.status).toBe(1);
  });

  it("is refused by a witness that holds another history, and keeps nothing", async () => {
    const latest = witness.latest(origin)!;
    witness.set(origin, { size: latest.size, root: new Uint8Array(32).fill(7) });
    const refused = await checkpointNow();
    expect(mine(refused)).toMatchObject({ outcome: "refused", status: 422 });
    expect(await sql`select 1 from audit.cosignatures where org_id = ${ACME} and size = ${mine(refused).size} and witness = ${witness.name}`).toHaveLength(0);
    expect(refused.checkpoints[0].note).not.toContain(`\u2014 ${witness.name} `);
    witness.set(origin, latest);
  });

  it("starts again from the size a witness that lost its state answers with (409, text/x.tlog.size)", async () => {
    witness.set(origin, undefined);
    const before = witness.requests.length;
    const again = await checkpointNow();
    expect(mine(again)).toMatchObject({ outcome: "cosigned" });
    const sent = witness.requests.slice(before);
    const conflict = sent.findIndex((r) => r.status === 409);
    expect(conflict).toBeGreaterThanOrEqual(0);
    expect(sent.slice(conflict + 1)).toContainEqual({ old: 0, proof: 0, status: 200 });
  });

  it("keeps no cosignature that does not verify with the witness's key", async () => {
    witness.corrupt = true;
    try {
      const lied = await checkpointNow();
      expect(mine(lied)).toMatchObject({ outcome: "invalid_cosignature" });
      expect(await sql`select 1 from audit.cosignatures where org_id = ${ACME} and size = ${mine(lied).size}`).toHaveLength(0);
      expect(lied.checkpoints[0].note).not.toContain(`\u2014 ${witness.name} `);
    } finally {
      witness.corrupt = false;
    }
  });
});
