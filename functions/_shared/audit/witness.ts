/**
 * Submitting checkpoints to witnesses (c2sp.org/tlog-witness, add-checkpoint), so that a log can't
 * show two histories to two audiences: a witness cosigns a checkpoint only once it has checked a
 * consistency proof from the last one it cosigned for the same log. For each witness configured
 * (GATEHOUSE_AUDIT_WITNESSES, operator configuration: [{"url", "vkey"}], at most 8):
 *
 *   POST <url>/add-checkpoint
 *     old <size the witness last cosigned, 0 for none>\n
 *     <base64 consistency proof hash>\n …    (none from 0)
 *     \n
 *     <the checkpoint's signed note>
 *   200  cosignature line(s), checked here with the witness's key (cosignature/v1), then kept
 *   409  text/x.tlog.size "<size>\n": the witness is at another size; retried once from it
 *   else the witness refused (403 unknown signature, 404 unknown log, 422 bad proof, …): reported
 *
 * Requests go through the egress guard like every outbound call. Nothing here is on the path of
 * signing: a witness that is down or refuses leaves the checkpoint signed, uncosigned, and says so.
 */
import { z } from "zod";
import type { EgressOptions } from "../egress/check.ts";
import { guardedFetch } from "../egress/transport.ts";
import { asService, type Sql, type Tx } from "../http/db.ts";
import { COSIGNATURE_V1, type NoteVerifier, openNote, parseVerifierKey } from "./note.ts";
import { consistencyFrom } from "./proofs.ts";
import { base64Of } from "./verify.ts";

/** A witness the operator configured. */
export interface Witness {
  url: string;
  verifier: NoteVerifier;
}

const Config = z.array(z.strictObject({ url: z.url().startsWith("https://"), vkey: z.string().max(400) })).max(8);

/** The witnesses in GATEHOUSE_AUDIT_WITNESSES (none when unset); throws on a malformed setting. */
export function witnessesFrom(get: (name: string) => string | undefined): Witness[] {
  const raw = get("GATEHOUSE_AUDIT_WITNESSES");
  if (!raw) return [];
  return Config.parse(JSON.parse(raw)).map((w) => {
    const verifier = parseVerifierKey(w.vkey);
    if (!verifier || verifier.type !== COSIGNATURE_V1) throw new Error(`witness ${w.url}: vkey is not a cosignature/v1 verifier key`);
    return { url: w.url.replace(/\/+$/, ""), verifier };
  });
}

/** How one witness answered: cosigned (and kept), or why not. */
export interface WitnessOutcome {
  witness: string;
  outcome: "cosigned" | "refused" | "unreachable" | "invalid_cosignature";
  status?: number;
}

type Answer = { kind: "cosigned"; lines: string } | { kind: "conflict"; size: number } | { kind: "refused"; status: number } | { kind: "unreachable" };

async function addCheckpoint(witness: Witness, request: { old: number; proof: Uint8Array[]; note: string }, egress: EgressOptions): Promise<Answer> {
  const body = `old ${request.old}\n${request.proof.map((h) => `${base64Of(h)}\n`).join("")}\n${request.note}`;
  const sent = await guardedFetch(`${witness.url}/add-checkpoint`, {
    method: "POST", headers: { "content-type": "text/plain; charset=utf-8", "user-agent": "Gatehouse-Audit/1" }, body,
  }, egress);
  if (!sent.ok) return { kind: "unreachable" };
  const { response } = sent.value;
  const text = await response.text();
  if (response.status === 200) return { kind: "cosigned", lines: text };
  if (response.status === 409 && response.headers.get("content-type") === "text/x.tlog.size" && /^(0|[1-9][0-9]{0,15})\n$/.test(text)) {
    return { kind: "conflict", size: Number(text.trim()) };
  }
  return { kind: "refused", status: response.status };
}

/**
 * Submits the checkpoint of `size` (its note as stored) to each witness, and keeps each checked
 * cosignature. Runs as the service role on `sql`, outside the signing transaction, and holds no
 * transaction while a witness answers: the note and proofs are read first, the cosignature kept after.
 */
export async function witnessCheckpoint(sql: Sql, orgId: string, size: number, witnesses: Witness[], egress: EgressOptions): Promise<WitnessOutcome[]> {
  const outcomes: WitnessOutcome[] = [];
  for (const witness of witnesses) outcomes.push(await witnessOne(sql, orgId, size, witness, egress));
  return outcomes;
}

async function witnessOne(sql: Sql, orgId: string, size: number, witness: Witness, egress: EgressOptions): Promise<WitnessOutcome> {
  const name = witness.verifier.name;
  const service = <T>(work: (tx: Tx) => Promise<T>) => sql.begin(async (tx) => {
    await asService(tx);
    return await work(tx);
  }) as Promise<T>;
  const [c] = await service((tx) => tx`
    select note, (select max(w.size) from audit.cosignatures w where w.org_id = ${orgId} and w.witness = ${name}) as last
      from audit.checkpoints where org_id = ${orgId} and size = ${size}`);
  if (!c?.note) return { witness: name, outcome: "refused" };
  const note = c.note as string;
  let old = Number(c.last ?? 0);
  if (old >= size) return { witness: name, outcome: "cosigned" };
  const submit = async () => addCheckpoint(witness, { old, proof: await service((tx) => consistencyFrom(tx, orgId, old, size)), note }, egress);
  let answer = await submit();
  if (answer.kind === "conflict" && answer.size <= size && answer.size !== old) {
    old = answer.size;
    answer = await submit();
  }
  if (answer.kind === "unreachable") return { witness: name, outcome: "unreachable" };
  if (answer.kind !== "cosigned") return { witness: name, outcome: "refused", status: answer.kind === "refused" ? answer.status : 409 };
  // Only this witness's own cosignature line, checked with its key, is kept.
  const line = answer.lines.split("\n").filter((l) => l.startsWith(`\u2014 ${name} `)).map((l) => `${l}\n`)[0];
  const opened = line ? await openNote(note + line, [witness.verifier]) : null;
  if (!opened?.ok || !opened.value.cosignedBy.some((w) => w.name === name)) return { witness: name, outcome: "invalid_cosignature" };
  await service((tx) => tx`insert into audit.cosignatures (org_id, size, witness, line) values (${orgId}, ${size}, ${name}, ${line})
                              on conflict do nothing`);
  return { witness: name, outcome: "cosigned" };
}
