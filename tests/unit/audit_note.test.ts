/**
 * C2SP signed notes, checkpoints and cosignatures (functions/_shared/audit/note.ts), written from
 * the specs, against the vectors others publish: Go's sumdb/note example (PeterNeumann), and a
 * cosignature/v1 made with the same seed over the tlog-checkpoint spec's example checkpoint.
 * Ed25519 is deterministic, so signing with the seed must give the published lines byte for byte.
 */
import { describe, expect, it } from "vitest";
import {
  checkpointText, cosignLine, ED25519, openNote, parseCheckpointText, parseVerifierKey, signNote, verifierKeyText,
} from "../../functions/_shared/audit/note.ts";

const PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY_SEED = Buffer.from("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "base64").subarray(1);
const PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_LINE = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=";

const WITNESS_VKEY = "witness.example/w1+cc9a7044+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const SOFA = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
const WITNESS_LINE = "— witness.example/w1 zJpwRAAAAABkGFDLJeR//pqzhnEKVvEm2wWbh2RJ6oru5+cUUfm5X9NnlaGr8aSH9QE5RVZD4QGlxl2F5UpVIIi94p178KLfqPPsAA==";

async function seedKey(seed: Uint8Array): Promise<CryptoKey> {
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  return await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
}

describe("C2SP signed notes", () => {
  it("reads Go's sumdb/note example and signs it byte for byte the same", async () => {
    const peter = parseVerifierKey(PETER_VKEY)!;
    expect(peter).toMatchObject({ name: "PeterNeumann", type: ED25519, id: 0xc74f20a3 });
    expect(verifierKeyText(peter)).toBe(PETER_VKEY);
    const note = `${PETER_TEXT}\n${PETER_LINE}\n`;
    expect(await openNote(note, [peter])).toEqual({ ok: true, value: { text: PETER_TEXT, signedBy: ["PeterNeumann"], cosignedBy: [] } });
    expect(await signNote(PETER_TEXT, "PeterNeumann", await seedKey(PETER_SKEY_SEED), peter.publicKey)).toBe(note);
  });

  it("refuses a note whose known signature does not verify, one no known key signed, and malformed ones", async () => {
    const peter = parseVerifierKey(PETER_VKEY)!;
    const note = `${PETER_TEXT}\n${PETER_LINE}\n`;
    expect(await openNote(note.replace("problem,", "problem;"), [peter])).toEqual({ ok: false, reason: "the signature of PeterNeumann does not verify" });
    expect(await openNote(note, [])).toEqual({ ok: false, reason: "no known key signed the note" });
    expect((await openNote(note.replace("— ", "- "), [peter])).ok).toBe(false);
    expect((await openNote(note.replace("\n\n", "\r\n\n"), [peter])).ok).toBe(false);
    expect((await openNote(note.slice(0, -1), [peter])).ok).toBe(false);
    expect(parseVerifierKey(PETER_VKEY.replace("c74f20a3", "c74f20a4"))).toBeNull();
  });

  it("checks a cosignature/v1 (time and signature) and makes the same line from the seed", async () => {
    const witness = parseVerifierKey(WITNESS_VKEY)!;
    const opened = await openNote(`${SOFA}\n${WITNESS_LINE}\n`, [witness]);
    expect(opened).toEqual({ ok: true, value: { text: SOFA, signedBy: [], cosignedBy: [{ name: "witness.example/w1", time: 1679315147 }] } });
    expect(await cosignLine(SOFA, "witness.example/w1", 1679315147n, await seedKey(PETER_SKEY_SEED), witness.publicKey)).toBe(`${WITNESS_LINE}\n`);
    // The same signature at another time does not verify.
    const moved = Buffer.from(WITNESS_LINE.split(" ")[2], "base64");
    moved.writeBigUInt64BE(1679315148n, 4);
    expect((await openNote(`${SOFA}\n— witness.example/w1 ${moved.toString("base64")}\n`, [witness])).ok).toBe(false);
  });

  it("writes and reads tlog-checkpoint text strictly", () => {
    const parsed = parseCheckpointText(SOFA)!;
    expect(parsed).toMatchObject({ origin: "example.com/behind-the-sofa", size: 20852163, extensions: [] });
    expect(checkpointText(parsed)).toBe(SOFA);
    expect(parseCheckpointText(SOFA.replace("20852163", "020852163"))).toBeNull();
    expect(parseCheckpointText(SOFA.replace("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "CsUY"))).toBeNull();
    expect(parseCheckpointText(SOFA.slice(0, -1))).toBeNull();
  });
});
