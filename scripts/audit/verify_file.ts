/**
 * The offline verifier over an export file, on every core: functions/_shared/audit/verify.ts's
 * checks, the file streamed in constant memory (but for the numbers of purged entries).
 *
 * The file is read in batches of whole lines. Each batch's entries are checked where there is a
 * free core (a worker thread, or this thread when none is free): each entry's hash, hashed bytes,
 * payload and link to the one before it, and the batch's Merkle subtrees, none of which needs a
 * line before the batch (checkEntryLines). This thread then takes the batches in order
 * (ExportVerifier.accept): the link from one batch to the next, the pin, the tree. So the verdict,
 * and the first failure it names, are the ones a line-at-a-time verifier gives; a batch ends where
 * a pinned checkpoint's size is, so the pin is checked at its own root.
 *
 * Workers pay off only on a large export (starting one takes about as long as checking 10,000
 * entries), so a smaller one is checked on this thread alone, as it is while the workers start.
 * The workers run a bundle of verify_worker.ts that esbuild makes as they start (a worker thread
 * does not inherit tsx's loader).
 */
import { open, type FileHandle } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { build } from "esbuild";
import { ExportVerifier, type VerifyOptions, type VerifyResult } from "../../functions/_shared/audit/verify.ts";
import { type BatchJob, type BatchResult, checkBatch } from "./verify_batch.ts";

export interface FileVerifyOptions extends VerifyOptions {
  /** Also require each entry's hashed bytes in RFC 8785 form (the CLI's --strict). */
  strict?: boolean;
  /** Worker threads; by default one per core but this one's, for an export of workersFrom bytes or more. */
  workers?: number;
  /** The size from which workers are started (default 16 MiB). */
  workersFrom?: number;
  /** Lines per batch (default 1,024). */
  batchLines?: number;
  /** Waits for the workers to start before checking a batch on this thread (for tests: batches then go to workers first). */
  awaitWorkers?: boolean;
}

const CHUNK = 4 << 20;

/** Reads a file in runs of whole lines (split on LF; a last line without one is a line too). */
class LineReader {
  private buf = Buffer.alloc(0);
  private pos = 0;
  private eof = false;

  constructor(private readonly file: FileHandle) {}

  /** Up to `max` lines, as their bytes joined by LF (without the last LF); null at the end. */
  async next(max: number): Promise<{ bytes: Buffer; lines: number } | null> {
    let lines = 0;
    let scan = this.pos;
    let end = -1;
    for (;;) {
      while (lines < max) {
        const lf = this.buf.indexOf(10, scan);
        if (lf === -1) break;
        lines++;
        end = lf;
        scan = lf + 1;
      }
      if (lines === max || this.eof) break;
      const chunk = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await this.file.read(chunk, 0, CHUNK, null);
      if (bytesRead === 0) {
        this.eof = true;
        continue;
      }
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk.subarray(0, bytesRead)]);
      scan -= this.pos;
      if (end !== -1) end -= this.pos;
      this.pos = 0;
    }
    if (lines < max && scan < this.buf.length) {  // the last line, without an LF
      lines++;
      end = this.buf.length;
      scan = end;
    }
    if (lines === 0) return null;
    const bytes = this.buf.subarray(this.pos, end);
    this.pos = scan;
    return { bytes, lines };
  }
}

/** A worker thread running verify_worker.ts, ready once it says so. */
class BatchWorker {
  readonly ready: Promise<void>;
  inFlight = 0;
  private dead = false;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (r: BatchResult) => void; reject: (e: Error) => void }>();
  private readonly worker: Worker;
  private isReady = false;

  constructor(code: string) {
    this.worker = new Worker(code, { eval: true });
    this.ready = new Promise((resolve, reject) => {
      this.worker.on("message", (m: "ready" | { id: number; result: BatchResult }) => {
        if (m === "ready") {
          this.isReady = true;
          return resolve();
        }
        const w = this.waiting.get(m.id)!;
        this.waiting.delete(m.id);
        this.inFlight--;
        w.resolve(m.result);
      });
      this.worker.on("error", (e) => {
        this.dead = true;
        reject(e);
        for (const w of this.waiting.values()) w.reject(e);
        this.waiting.clear();
      });
    });
    this.ready.catch(() => {});
  }

  /** Whether it can take a batch now (it keeps one queued, so it never waits on this thread). */
  get free(): boolean {
    return this.isReady && !this.dead && this.inFlight < 2;
  }

  check(job: BatchJob): Promise<BatchResult> {
    const id = this.nextId++;
    this.inFlight++;
    // The batch's bytes move to the worker rather than being copied twice.
    const bytes = new Uint8Array(job.bytes);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...job, bytes, id }, [bytes.buffer]);
    });
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}

let workerCode: Promise<string> | null = null;

/** verify_worker.ts and what it imports, bundled into one script a worker thread runs as it is. */
function bundledWorker(): Promise<string> {
  workerCode ??= build({
    entryPoints: [fileURLToPath(new URL("./verify_worker.ts", import.meta.url))],
    bundle: true, format: "cjs", platform: "node", target: "node20", write: false, logLevel: "silent",
  }).then((out) => out.outputFiles[0].text);
  return workerCode;
}

/** Starts `n` workers; they join the list as they come up (the bundle is made asynchronously). */
function startWorkers(n: number): { workers: BatchWorker[]; started: Promise<unknown> } {
  const workers: BatchWorker[] = [];
  const code = bundledWorker();
  const started = Promise.all(Array.from({ length: n }, () => code.then((c) => {
    const w = new BatchWorker(c);
    workers.push(w);
    return w.ready;
  })));
  started.catch(() => {});
  return { workers, started };
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Verifies an export file; throws only when the file can't be read. */
export async function verifyExportFile(path: string, options: FileVerifyOptions = {}): Promise<VerifyResult> {
  const file = await open(path, "r");
  const verifier = new ExportVerifier(options);
  const batchLines = options.batchLines ?? 1024;
  const strict = options.strict ?? false;
  let workers: BatchWorker[] = [];
  try {
    const size = (await file.stat()).size;
    const wanted = options.workers ?? (size >= (options.workersFrom ?? 16 << 20) ? availableParallelism() - 1 : 0);
    const pool = startWorkers(wanted);
    workers = pool.workers;
    if (options.awaitWorkers) await pool.started;
    const reader = new LineReader(file);

    const first = await reader.next(1);
    if (!first) return await verifier.finish();
    try {
      verifier.line(decoder.decode(first.bytes));
    } catch {
      return { ok: false, seq: null, reason: "line 1 is not UTF-8" };
    }
    const start = verifier.position();
    if (!start) return await verifier.finish();

    // Batches in the order of their lines, each checked here or on a worker.
    const queue: { line: number; result: BatchResult | Promise<BatchResult> }[] = [];
    let planned = start.nextSeq;
    let line = 2;
    let reading = true;
    for (;;) {
      while (queue.length > 0 && !(queue[0].result instanceof Promise)) {
        const { line: at, result } = queue.shift()!;
        const verdict = take(verifier, at, result as BatchResult);
        if (verdict) return verdict;
        if (verifier.failed) return await verifier.finish();  // the first failure is found: nothing after it counts
      }
      if (!reading && queue.length === 0) break;
      if (reading && queue.length < 2 * workers.length + 2) {
        let max = batchLines;
        if (start.pinSize !== null && planned <= start.pinSize) max = Math.min(max, start.pinSize - planned + 1);
        const batch = await reader.next(max);
        if (!batch) {
          reading = false;
          continue;
        }
        const job: BatchJob = { bytes: batch.bytes, org: start.org, firstSeq: planned, strict };
        const worker = workers.find((w) => w.free);
        if (worker) {
          const item: (typeof queue)[number] = { line, result: worker.check(job) };
          item.result = (item.result as Promise<BatchResult>).then(
            (r) => (item.result = r),
            () => (item.result = checkBatch(job)),  // a worker that died: checked here instead
          );
          queue.push(item);
        } else {
          queue.push({ line, result: checkBatch(job) });
          await new Promise((resolve) => setImmediate(resolve));  // lets finished workers' answers in
        }
        planned += batch.lines;
        line += batch.lines;
        continue;
      }
      if (queue.length === 0) break;
      await queue[0].result;
    }
    return await verifier.finish();
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await file.close();
  }
}

/** Takes a checked batch into the verifier; a verdict when verification ends there. */
function take(verifier: ExportVerifier, line: number, result: BatchResult): VerifyResult | null {
  if (!result.ok) return { ok: false, seq: null, reason: `line ${line + result.line} is not UTF-8` };
  verifier.accept(result.run);
  for (const text of result.rest) verifier.line(text);
  return null;
}
