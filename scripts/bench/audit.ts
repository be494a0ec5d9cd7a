/**
 * `npm run bench -- audit`, on throwaway stacks, everything measured side by side in one run:
 *   - chained append throughput against a plain INSERT of the same payload into an unchained
 *     table of the same columns, 8 writers on 8 organizations and 8 writers on 1 organization
 *     (target ≥ 0.9 each), on a database with nothing else running (no other sealer, no
 *     functions or workers); the rounds alternate plain and chained. A chained run lasts until
 *     every event is in the chain: the writers record each event as the service role does (an
 *     INSERT into audit.records) while the stack's sealer loop (scripts/stack/sealer.ts, default
 *     interval) chains what they recorded, and the clock stops when the sealer has found nothing
 *     left;
 *   - the export through the audit-export function: a whole chain of --export-entries entries, and
 *     the last 1,000 of it, in entries per second;
 *   - the offline verifier as the CLI runs it (scripts/audit/verify_file.ts: every line read, every
 *     hash and link, the Merkle root, the signature, on every core) over that whole export, against
 *     JSON-parsing the same lines alone, each line and the hashed bytes it carries, the least any
 *     verifier of the format does before it hashes anything (target ≥ 0.6); the verifier on one
 *     thread and raw SHA-256 over the bytes for reference.
 */
import { hash, randomUUID } from "node:crypto";
import postgres from "postgres";
import { useNodeSha256 } from "../node_sha256.ts";
import { verifyExportFile } from "../audit/verify_file.ts";
import { DEFAULT_SEAL_INTERVAL_MS, startSealer } from "../stack/sealer.ts";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startOnFreePorts } from "../stack/index.ts";
import { median } from "./common.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

export interface AuditOptions {
  /** Events per writer per measured round (a round of seconds: a shorter one measures mostly the sealer's last pass). */
  events: number;
  /** Entries in the chain exported through the function. */
  exportEntries: number;
  rounds: number;
}

const WRITERS = 8;

/** A payload the size of a typical row snapshot. */
function payload(writer: number, i: number) {
  return {
    new: { id: randomUUID(), name: `agent ${writer}-${i}`, description: "Answers questions about returns.", config: { model: "m", temperature: 0.2 } },
    old: null,
  };
}

/**
 * Events per second for WRITERS connections doing `events` statements each, and then, if given,
 * until `settled` resolves.
 */
async function throughput(
  writers: postgres.Sql[],
  events: number,
  statement: (sql: postgres.Sql, writer: number, i: number) => Promise<unknown>,
  settled?: () => Promise<void>,
): Promise<number> {
  const start = process.hrtime.bigint();
  await Promise.all(writers.map(async (sql, w) => {
    for (let i = 0; i < events; i++) await statement(sql, w, i);
  }));
  await settled?.();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return (writers.length * events) / seconds;
}

async function appendBench(dbUrl: string, opts: AuditOptions): Promise<{ spread: number; single: number }> {
  const admin = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const writers = Array.from({ length: WRITERS }, () => postgres(dbUrl, { max: 1, onnotice: () => {} }));
  let sealingError: Error | null = null;
  const sealer = startSealer(dbUrl, { intervalMs: DEFAULT_SEAL_INTERVAL_MS, onError: (e) => (sealingError ??= e) });
  const sealed = async () => {
    await sealer.drained();
    if (sealingError) throw sealingError;
  };
  try {
    const orgs = Array.from({ length: WRITERS }, () => randomUUID());
    for (const id of orgs) await admin`insert into public.organizations (id, name, slug) values (${id}, 'Bench', ${`bench-${id.slice(0, 8)}`})`;
    await admin`create schema bench`;
    await admin`
      create table bench.plain_events (
        id bigint generated always as identity primary key, org_id uuid not null, action text not null,
        target_type text, target_id text, payload json not null, occurred_at timestamptz not null default clock_timestamp())`;

    const plain = (orgOf: (w: number) => string) => (sql: postgres.Sql, w: number, i: number) =>
      sql`insert into bench.plain_events (org_id, action, target_type, target_id, payload)
          values (${orgOf(w)}, 'bench.event', 'bench', ${String(i)}, ${sql.json(payload(w, i))})`;
    const chained = (orgOf: (w: number) => string) => (sql: postgres.Sql, w: number, i: number) =>
      sql`insert into audit.records (org_id, action, target_type, target_id, payload)
          values (${orgOf(w)}, 'bench.event', 'bench', ${String(i)}, ${sql.json(payload(w, i))})`;
    const [{ before }] = await admin`select count(*)::int as before from audit.entries`;

    const results = { spreadPlain: [] as number[], spreadChained: [] as number[], singlePlain: [] as number[], singleChained: [] as number[] };
    await throughput(writers, 50, chained((w) => orgs[w]), sealed);  // warm up plans and caches
    await throughput(writers, 50, plain((w) => orgs[w]));
    for (let r = 0; r < opts.rounds; r++) {
      results.spreadPlain.push(await throughput(writers, opts.events, plain((w) => orgs[w])));
      results.spreadChained.push(await throughput(writers, opts.events, chained((w) => orgs[w]), sealed));
      results.singlePlain.push(await throughput(writers, opts.events, plain(() => orgs[0])));
      results.singleChained.push(await throughput(writers, opts.events, chained(() => orgs[0]), sealed));
    }
    // Every event is in a chain that verifies: the runs above measured real chaining.
    const [{ chained: total, pending }] = await admin`
      select (select count(*)::int from audit.entries) - ${before} as chained, (select count(*)::int from audit.pending) as pending`;
    const expected = WRITERS * (50 + 2 * opts.rounds * opts.events);
    if (total !== expected || pending !== 0) throw new Error(`the chains hold ${total} of ${expected} events (${pending} pending)`);
    for (const org of orgs) {
      const [v] = await admin`select ok, reason from audit.verify_chain(${org})`;
      if (!v.ok) throw new Error(`organization ${org}'s chain does not verify: ${v.reason}`);
    }
    // Each round's chained run against the plain run just before it: the disk's commit latency
    // drifts over a run more than chaining costs, and a ratio of neighbours cancels the drift.
    const report = (label: string, p: number[], c: number[], target: number) => {
      const ratios = c.map((x, i) => x / p[i]);
      const ratio = median(ratios);
      console.log(
        `${label}\n  plain insert: ${median(p).toFixed(0)} events/s; chained append: ${median(c).toFixed(0)} events/s` +
          `\n  ratio ${ratio.toFixed(3)} (target ≥ ${target}; the median of ${ratios.length} rounds, ${Math.min(...ratios).toFixed(3)} to ${Math.max(...ratios).toFixed(3)})`,
      );
      return ratio;
    };
    return {
      spread: report(`append, ${WRITERS} writers on ${WRITERS} organizations`, results.spreadPlain, results.spreadChained, 0.9),
      single: report(`append, ${WRITERS} writers on 1 organization`, results.singlePlain, results.singleChained, 0.9),
    };
  } finally {
    await sealer.stop();
    await Promise.all([admin, ...writers].map((sql) => sql.end()));
  }
}

/**
 * The offline verifier as the CLI runs it (scripts/audit/verify_file.ts with Node's SHA-256, on
 * every core) over an export file, against JSON-parsing the same file's lines alone; both read the
 * file from the page cache. For reference, the verifier on this thread alone, and raw SHA-256 over
 * the file's bytes.
 */
async function verifierBench(file: string, publicKey: string, entries: number, opts: AuditOptions): Promise<number> {
  useNodeSha256();
  const rates = { verifier: [] as number[], alone: [] as number[], parse: [] as number[], raw: [] as number[] };
  const verify = async (workers?: number) => {
    const t = process.hrtime.bigint();
    const result = await verifyExportFile(file, { publicKey, ...(workers === undefined ? {} : { workers }) });
    if (!result.ok || result.entries !== entries) throw new Error(`the benchmark export does not verify: ${result.ok ? result.entries : result.reason}`);
    return entries / (Number(process.hrtime.bigint() - t) / 1e9);
  };
  for (let r = 0; r < opts.rounds + 1; r++) {
    const verifier = await verify();
    const alone = await verify(0);

    let t = process.hrtime.bigint();
    // Only parsing each line and the hashed bytes it carries: the least any verifier of the format
    // does before it hashes anything. Each line is decoded alone (the file as one string would be
    // slower: one non-ASCII character, such as the note's em dash, makes all of it two bytes a
    // character).
    const read = readFileSync(file);
    for (let start = 0; start < read.length;) {
      const lf = read.indexOf(10, start);
      const end = lf === -1 ? read.length : lf;
      if (end > start) {
        const e = JSON.parse(read.toString("utf8", start, end)) as { canonical?: string };
        if (typeof e.canonical === "string") JSON.parse(e.canonical);
      }
      start = end + 1;
    }
    const parse = entries / (Number(process.hrtime.bigint() - t) / 1e9);

    t = process.hrtime.bigint();
    const bytes = readFileSync(file);
    for (let at = 0; at < bytes.length; at += 1 << 16) hash("sha256", bytes.subarray(at, at + (1 << 16)));
    const raw = entries / (Number(process.hrtime.bigint() - t) / 1e9);
    if (r > 0) {  // the first round warms up the JIT and the page cache
      rates.verifier.push(verifier);
      rates.alone.push(alone);
      rates.parse.push(parse);
      rates.raw.push(raw);
    }
  }
  const ratio = median(rates.verifier) / median(rates.parse);
  console.log(
    `offline verifier (${entries} entries, ${(statSync(file).size / 1e6).toFixed(1)} MB, ${availableParallelism()} cores)` +
      `\n  JSON parsing alone (each line and its hashed bytes): ${median(rates.parse).toFixed(0)} entries/s; verifier: ${median(rates.verifier).toFixed(0)} entries/s` +
      `\n  ratio ${ratio.toFixed(3)} (target ≥ 0.6)` +
      `\n  for reference, the verifier on one thread: ${median(rates.alone).toFixed(0)} entries/s (ratio ${(median(rates.alone) / median(rates.parse)).toFixed(3)}); raw SHA-256 over the file: ${median(rates.raw).toFixed(0)} entries/s`,
  );
  return ratio;
}

/** A chain of `entries` entries in a new organization, recorded and sealed in batches. */
async function chainOf(sql: postgres.Sql, entries: number): Promise<string> {
  const org = randomUUID();
  await sql`insert into public.organizations (id, name, slug) values (${org}, 'Export', ${`export-${org.slice(0, 8)}`})`;
  for (let done = 0; done < entries; done += 5000) {
    await sql`
      select audit.append(${org}, 'bench.event', 'bench', n::text,
                          jsonb_build_object('new', jsonb_build_object('id', gen_random_uuid(), 'name', 'agent ' || n, 'temperature', 0.2)))
        from generate_series(1, ${Math.min(5000, entries - done)}) n`;
    await sql`select audit.seal(${org})`;
  }
  return org;
}

/**
 * The export through the audit-export function: a whole chain, and its last 1,000 entries. Returns
 * the whole chain's export, written to `file`, and the key that signed it.
 */
async function exportBench(
  info: { dbUrl: string; functionsUrl: string; serviceRoleKey: string },
  opts: AuditOptions,
  file: string,
): Promise<{ publicKey: string }> {
  const sql = postgres(info.dbUrl, { max: 1, onnotice: () => {} });
  try {
    const start = Date.now();
    const org = await chainOf(sql, opts.exportEntries);
    console.log(`export through the audit-export function: a chain of ${opts.exportEntries} entries, built in ${((Date.now() - start) / 1000).toFixed(1)} s`);
    const exported = async (query: string) => {
      const t = process.hrtime.bigint();
      const res = await fetch(`${info.functionsUrl}/audit-export?org_id=${org}${query}`, { headers: { authorization: `Bearer ${info.serviceRoleKey}` } });
      const text = await res.text();
      const seconds = Number(process.hrtime.bigint() - t) / 1e9;
      if (res.status !== 200) throw new Error(`audit-export answered ${res.status}: ${text.slice(0, 200)}`);
      const lines = text.split("\n").filter(Boolean).length - 2;
      if (query === "") writeFileSync(file, text);
      return { lines, seconds };
    };
    await exported(`&from_seq=${opts.exportEntries - 999}`);  // warm the function up
    const whole: number[] = [];
    const tail: number[] = [];
    const tailMs: number[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const w = await exported("");
      whole.push(w.lines / w.seconds);
      const t = await exported(`&from_seq=${opts.exportEntries - 999}`);
      tail.push(t.lines / t.seconds);
      tailMs.push(t.seconds * 1000);
    }
    console.log(
      `  whole chain: ${median(whole).toFixed(0)} entries/s` +
        `\n  its last 1000 entries: ${median(tail).toFixed(0)} entries/s (${median(tailMs).toFixed(0)} ms)`,
    );
    const [{ key }] = await sql`
      select encode(k.public_key, 'base64') as key
        from audit.checkpoints c join audit.signing_keys k on k.key_id = c.key_id
       where c.org_id = ${org} order by c.size desc limit 1`;
    return { publicKey: key };
  } finally {
    await sql.end();
  }
}

/** Runs the audit benchmark; true when every ratio meets its target. */
export async function benchAudit(opts: AuditOptions): Promise<boolean> {
  // Appends on the database alone: the full stack's own sealer, checkpoints and workers would
  // chain and sign alongside the bench's sealer, and its services take CPU from either side.
  const databaseDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  let append: { spread: number; single: number };
  try {
    const database = await startOnFreePorts({ root, stateDir: databaseDir, log: () => {}, databaseOnly: true });
    try {
      append = await appendBench(database.info.dbUrl, opts);
    } finally {
      await database.stop();
    }
  } finally {
    rmSync(databaseDir, { recursive: true, force: true });
  }
  const { spread, single } = append;
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  let stack: Awaited<ReturnType<typeof startOnFreePorts>> | null = await startOnFreePorts({ root, stateDir, log: () => {} });
  try {
    const file = join(stateDir, "export.jsonl");
    const { publicKey } = await exportBench(stack.info, opts, file);
    // The verifier is an offline tool: measured with the stack stopped, as a customer runs it.
    await stack.stop();
    stack = null;
    const verify = await verifierBench(file, publicKey, opts.exportEntries, opts);
    return spread >= 0.9 && single >= 0.9 && verify >= 0.6;
  } finally {
    await stack?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
