/**
 * A transparency-log witness (c2sp.org/tlog-witness) for the audit tests, on the loopback port that
 * scripts/test.ts reserved and allowed for the throwaway stack's edge functions, over TLS with the
 * run's CA, with the Ed25519 key scripts/test.ts made (GATEHOUSE_AUDIT_WITNESSES names it). It
 * speaks add-checkpoint as the spec has it:
 *
 *   POST /add-checkpoint   "old <size>\n" + base64 proof lines + "\n" + a signed checkpoint note
 *     404  the origin is not a log it witnesses
 *     403  no signature of the log's trusted key verifies
 *     400  old > new, or a body it can't read
 *     409  text/x.tlog.size "<size>\n": old is not the size it last cosigned (0 for none)
 *     409  the same size with another root
 *     422  the consistency proof fails
 *     200  its cosignature/v1 line, after recording the new size and root
 *
 * Every request is kept (`requests`), so that tests see what it was sent.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { ED25519, cosignLine, ed25519Verifier, openNote, parseCheckpointText, parseVerifierKey } from "../../functions/_shared/audit/note.ts";
import { verifyConsistency } from "../../functions/_shared/audit/merkle.ts";

export interface WitnessRequest {
  old: number;
  proof: number;
  status: number;
}

export interface FakeWitness {
  name: string;
  vkey: string;
  requests: WitnessRequest[];
  /** When set, it answers with a cosignature whose signature is one byte off (a broken or lying witness). */
  corrupt: boolean;
  /** Trusts `publicKey` (raw Ed25519, base64) as the key of the log named `origin`. */
  trust(origin: string, publicKey: string): void;
  /** What it last cosigned for `origin`. */
  latest(origin: string): { size: number; root: Uint8Array } | undefined;
  /** Forgets or replaces what it cosigned for `origin` (to make it disagree with the log). */
  set(origin: string, state: { size: number; root: Uint8Array } | undefined): void;
  close(): Promise<void>;
}

interface Settings {
  witnessPort: number;
  witness: { name: string; seed: string; vkey: string };
  cert: string;
  key: string;
}

export async function startWitness(): Promise<FakeWitness> {
  const file = process.env.GATEHOUSE_TEST_PROVIDERS_FILE;
  if (!file) throw new Error("the witness tests run under npm test, which reserves the witness's port (GATEHOUSE_TEST_PROVIDERS_FILE is unset)");
  const s = JSON.parse(readFileSync(file, "utf8")) as Settings;
  const verifier = parseVerifierKey(s.witness.vkey)!;
  const pkcs8 = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(s.witness.seed, "base64")]);
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  const logs = new Map<string, Uint8Array<ArrayBuffer>>();
  const state = new Map<string, { size: number; root: Uint8Array }>();
  const requests: WitnessRequest[] = [];

  async function addCheckpoint(body: string): Promise<{ status: number; type?: string; text: string }> {
    const blank = body.indexOf("\n\n");
    const head = blank < 0 ? [] : body.slice(0, blank).split("\n");
    const note = body.slice(blank + 2);
    const old = /^old (0|[1-9][0-9]*)$/.exec(head[0] ?? "");
    if (!old || head.length - 1 > 63) return { status: 400, text: "malformed request\n" };
    const proof = head.slice(1).map((l) => new Uint8Array(Buffer.from(l, "base64")));
    if (proof.some((p) => p.length !== 32)) return { status: 400, text: "malformed proof\n" };
    const origin = note.slice(0, note.indexOf("\n"));
    const key = logs.get(origin);
    if (!key) return { status: 404, text: "unknown log\n" };
    const opened = await openNote(note, [ed25519Verifier(origin, key, ED25519)]);
    if (!opened.ok || !opened.value.signedBy.includes(origin)) return { status: 403, text: "no trusted signature\n" };
    const checkpoint = parseCheckpointText(opened.value.text);
    if (!checkpoint || checkpoint.origin !== origin) return { status: 400, text: "not a checkpoint\n" };
    const oldSize = Number(old[1]);
    if (oldSize > checkpoint.size) return { status: 400, text: "old size is larger\n" };
    const known = state.get(origin);
    if (oldSize !== (known?.size ?? 0)) return { status: 409, type: "text/x.tlog.size", text: `${known?.size ?? 0}\n` };
    if (known && known.size === checkpoint.size && Buffer.compare(Buffer.from(known.root), Buffer.from(checkpoint.root)) !== 0) {
      return { status: 409, text: "same size, another root\n" };
    }
    if (known && oldSize > 0 && !verifyConsistency(oldSize, checkpoint.size, proof, known.root, checkpoint.root)) {
      return { status: 422, text: "the consistency proof fails\n" };
    }
    if (!known && proof.length > 0) return { status: 422, text: "no proof from 0\n" };
    state.set(origin, { size: checkpoint.size, root: checkpoint.root });
    const line = await cosignLine(opened.value.text, s.witness.name, BigInt(Math.floor(Date.now() / 1000)), privateKey, verifier.publicKey);
    if (!fake.corrupt) return { status: 200, text: line };
    const [dash, name, sig] = line.trimEnd().split(" ");
    const bytes = Buffer.from(sig, "base64");
    bytes[bytes.length - 1] ^= 1;
    return { status: 200, text: `${dash} ${name} ${bytes.toString("base64")}\n` };
  }

  const server: Server = createServer({ cert: s.cert, key: s.key }, (req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => {
      void (async () => {
        const answer = req.method === "POST" && req.url === "/add-checkpoint" ? await addCheckpoint(body) : { status: 404, text: "not found\n" };
        const old = /^old ([0-9]+)\n/.exec(body);
        requests.push({ old: old ? Number(old[1]) : -1, proof: Math.max(0, body.slice(0, Math.max(0, body.indexOf("\n\n"))).split("\n").length - 1), status: answer.status });
        res.writeHead(answer.status, { "content-type": answer.type ?? "text/plain; charset=utf-8" });
        res.end(answer.text);
      })();
    });
  });
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(s.witnessPort, "127.0.0.1", () => resolve()));

  const fake: FakeWitness = {
    name: s.witness.name,
    vkey: s.witness.vkey,
    requests,
    corrupt: false,
    trust: (origin, publicKey) => logs.set(origin, new Uint8Array(Buffer.from(publicKey, "base64"))),
    latest: (origin) => state.get(origin),
    set: (origin, next) => (next ? state.set(origin, next) : state.delete(origin)),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  return fake;
}
