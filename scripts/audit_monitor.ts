#!/usr/bin/env -S npx tsx
/**
 * A customer-run monitor of an organization's audit chain (docs/audit.md, "The monitor"): run it
 * from CI or cron, as a transparency log's monitors are run.
 *
 *   npm run audit:monitor -- --org <id> --state <file> --url <…/functions/v1> [--public-key <base64>] [--witness <vkey>]…
 *
 * The state file keeps the last checkpoint the monitor trusted, the signing key it trusts, and the
 * root of every signed checkpoint size it has seen. Each run fetches the newest signed checkpoint
 * with a consistency proof from the trusted one (the audit-proof function), and checks:
 *   - the signature, with the trusted key (and the C2SP note's, and witnesses' cosignatures);
 *   - that the log has not shrunk: fewer entries than already seen is misbehaviour;
 *   - the consistency proof: the trusted tree is a prefix of the new one (otherwise history was
 *     rewritten: a fork);
 *   - no split view: a size it has seen before with another root.
 * Then it trusts the new checkpoint. The first run (no state yet) needs --public-key, the key
 * audit_signing_keys publishes, and trusts the checkpoint it gets (trust on first use).
 * Exit status: 0 the log behaves, 1 it misbehaved (an ALERT line says how; the state is left as
 * it was, so the alert repeats until someone looks), 2 usage, network or server trouble.
 * A bearer token is read from GATEHOUSE_TOKEN (a personal access token with audit:read, or a
 * member's access token), and GATEHOUSE_APIKEY is sent as apikey when it is set.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { useNodeSha256 } from "./node_sha256.ts";
import {
  checkpointSignatureValid, checkNote, type ConsistencyAnswer, fetchProof, parseCheckpoint, type SignedCheckpoint, verifyExtension,
} from "../functions/_shared/audit/verify.ts";

const USAGE = "usage: npm run audit:monitor -- --org <id> --state <file> --url <functions url> [--public-key <base64>] [--witness <vkey>]...";

useNodeSha256();

/** What the monitor keeps between runs. */
export interface MonitorState {
  version: 1;
  org: string;
  /** The signing key it trusts (raw Ed25519, base64). */
  public_key: string;
  /** The last checkpoint it trusted. */
  trusted: SignedCheckpoint;
  /** The root of each signed size it has seen (the newest 1000). */
  seen: Record<string, string>;
}

class Alert extends Error {}

async function run(): Promise<number> {
  let org: string;
  let stateFile: string;
  let url: string;
  let publicKey: string | undefined;
  let witnesses: string[];
  try {
    const { values, positionals } = parseArgs({
      allowPositionals: true,
      options: { org: { type: "string" }, state: { type: "string" }, url: { type: "string" }, "public-key": { type: "string" }, witness: { type: "string", multiple: true } },
    });
    if (positionals.length > 0 || !values.org || !values.state || !values.url) throw new Error(USAGE);
    [org, stateFile, url, publicKey, witnesses] = [values.org, values.state, values.url, values["public-key"], values.witness ?? []];
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const token = process.env.GATEHOUSE_TOKEN;
  if (!token) {
    console.error("set GATEHOUSE_TOKEN: a personal access token with audit:read (or a member's access token)");
    return 2;
  }
  const auth = { token, orgId: org, ...(process.env.GATEHOUSE_APIKEY ? { apikey: process.env.GATEHOUSE_APIKEY } : {}) };

  let state: MonitorState | null = null;
  if (existsSync(stateFile)) {
    try {
      state = JSON.parse(readFileSync(stateFile, "utf8")) as MonitorState;
      if (state.version !== 1 || state.org !== org || !parseCheckpoint(state.trusted?.checkpoint ?? "")) throw new Error("not a monitor state of this organization");
    } catch (e) {
      console.error(`${stateFile}: ${(e as Error).message}`);
      return 2;
    }
    if (publicKey && publicKey !== state.public_key) {
      console.error(`${stateFile} trusts another key than --public-key; rotate deliberately by starting a new state file`);
      return 2;
    }
  }

  try {
    if (!state) {
      if (!publicKey) throw new Error("the first run needs --public-key (from rpc/audit_signing_keys): there is no state to trust yet");
      const answer = await fetchProof<ConsistencyAnswer>(url, { type: "consistency", from: 1 }, auth);
      const body = parseCheckpoint(answer.checkpoint?.checkpoint ?? "");
      if (!body || body.org !== org || !(await checkpointSignatureValid(answer.checkpoint, publicKey))) {
        throw new Alert("the log's checkpoint is not signed by the key given, or is of another organization");
      }
      const note = await checkNote(answer.checkpoint.note, { org, body, publicKey, witnesses });
      if (typeof note === "string") throw new Alert(note);
      save(stateFile, { version: 1, org, public_key: publicKey, trusted: answer.checkpoint, seen: { [body.size]: body.root } });
      console.log(`ok: first run; trusting the checkpoint of ${body.size} entries, root ${body.root} (trust on first use)`);
      return 0;
    }

    const trusted = parseCheckpoint(state.trusted.checkpoint)!;
    let answer: ConsistencyAnswer;
    try {
      answer = await fetchProof<ConsistencyAnswer>(url, { type: "consistency", from: trusted.size }, auth);
    } catch (e) {
      if (/ 416 range_not_satisfiable/.test((e as Error).message)) {
        throw new Alert(`the log now holds fewer entries than the ${trusted.size} it signed before (it was cut, or shows this monitor another view)`);
      }
      throw e;
    }
    const result = await verifyExtension(state.trusted, answer, { publicKey: state.public_key, witnesses });
    if (!result.ok) throw new Alert(result.reason);
    const seenRoot = state.seen[String(result.body.size)];
    if (seenRoot !== undefined && seenRoot !== result.body.root) {
      throw new Alert(`two signed checkpoints of size ${result.body.size} state different roots (a split view): ${seenRoot} and ${result.body.root}`);
    }
    const seen = Object.entries<string>({ ...state.seen, [result.body.size]: result.body.root }).sort((a, b) => Number(b[0]) - Number(a[0])).slice(0, 1000);
    save(stateFile, { ...state, trusted: result.checkpoint, seen: Object.fromEntries(seen) });
    const cosigned = result.note?.cosignedBy.map((w) => w.name).join(", ");
    console.log(`ok: the log extends what it signed before: ${trusted.size} → ${result.body.size} entries, root ${result.body.root}` +
      (cosigned ? `; cosigned by ${cosigned}` : ""));
    if (witnesses.length > (result.note?.cosignedBy.length ?? 0)) console.log("warning: a witness you named did not cosign the newest checkpoint");
    return 0;
  } catch (e) {
    if (e instanceof Alert) {
      console.log(`ALERT: the audit log of ${org} misbehaved: ${e.message}`);
      return 1;
    }
    console.error(`audit monitor: ${(e as Error).message}`);
    return 2;
  }
}

/** Writes the state whole or not at all (a crash mid-write leaves the old one). */
function save(file: string, state: MonitorState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(state, null, 2) + "\n");
  renameSync(`${file}.tmp`, file);
}

run().then((code) => process.exit(code));
