/**
 * The offline verifier over an export file, on every core: functions/_shared/audit/verify.ts's
 * checks, the file streamed in constant memory (but for the numbers of purged entries).
 *
 * The file is read 512 KiB at a time, a batch being the whole lines read. Each batch is checked
 * where there is a free core (a worker thread, or this thread when none is free; verify_batch.ts):
 * each entry's hash, hashed bytes, payload and link to the one before it, and the batch's Merkle
 * subtrees, none of which needs a line before the batch (checkEntryLines). This thread then takes
 * the batches in order (ExportVerifier.accept): the link from one batch to the next, the numbers
 * running on, the pin, the tree. So the verdict, and the first failure it names, are the ones a
 * line-at-a-time verifier gives (the tests compare them on every tampering they make); a run of
 * entries ends where a pinned checkpoint's size is, so the pin is checked at its own root.
 *
 * Workers pay off only on a large export (starting one takes about as long as checking 10,000
 * entries), so a smaller one is checked on this thread alone, as it is while the workers start.
 * The workers run a bundle of verify_worker.ts that esbuild makes as they start (a worker thread
 * does not inherit tsx's loader).
 */
import { readSync } from "node:fs";
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
  /** Bytes read at a time, a batch being the whole lines in them (default 512 KiB). */
  batchBytes?: number;
  /** Waits for the workers to start before checking a batch on this thread (for tests: batches then go to workers first). */
  awaitWorkers?: boolean;
}

/** Bytes read at a time: a batch is the whole lines in them. */
const CHUNK = 512 << 10;
/** Batches read ahead of the one taken next: this thread checks on while that one is on a worker. */
const MAX_QUEUED = 16;

/** Reads a file in batches of whole lines: what follows the last LF of a read starts the next batch. */
class BatchReader {
  private carry: Buffer = Buffer.alloc(0);
  private eof = false;

  constructor(private readonly file: FileHandle, private readonly chunk: number) {}

  /** The next batch's lines (their bytes joined by LF, without the last LF); null at the end. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      if (this.eof) {
        if (this.carry.length === 0) return null;
        const last = this.carry;  // the last line, without an LF
        this.carry = Buffer.alloc(0);
        return last;
      }
      const buf = Buffer.allocUnsafeSlow(this.carry.length + this.chunk);
      this.carry.copy(buf, 0);
      const bytesRead = readSync(this.file.fd, buf, this.carry.length, this.chunk, null);
      const data = buf.subarray(0, this.carry.length + bytesRead);
      if (bytesRead === 0) {
        this.eof = true;
        continue;
      }
      const lf = data.lastIndexOf(10);
      if (lf === -1) {
        this.carry = data;  // a line longer than a read: read on
        continue;
      }
      this.carry = Buffer.from(data.subarray(lf + 1));
      return data.subarray(0, lf);
    }
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

  /** Whether it can take a batch now (it keeps two queued, so it never waits on this thread). */
  get free(): boolean {
    return this.isReady && !this.dead && this.inFlight < 3;
  }

  check(job: BatchJob): Promise<BatchResult> {
    const id = this.nextId++;
    this.inFlight++;
    // The batch's bytes are copied to the worker (half a megabyte), not moved: if the worker dies,
    // this thread checks the batch itself.
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...job, id });
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
  const strict = options.strict ?? false;
  let workers: BatchWorker[] = [];
  try {
    const size = (await file.stat()).size;
    const wanted = options.workers ?? (size >= (options.workersFrom ?? 16 << 20) ? availableParallelism() - 1 : 0);
    const pool = startWorkers(wanted);
    workers = pool.workers;
    if (options.awaitWorkers) await pool.started;
    const reader = new BatchReader(file, options.batchBytes ?? CHUNK);

    // The header, read here: the organization and the pin the batches are checked for.
    let first = await reader.next();
    if (!first) return await verifier.finish();
    const lf = first.indexOf(10);
    try {
      verifier.line(decoder.decode(lf === -1 ? first : first.subarray(0, lf)));
    } catch {
      return { ok: false, seq: null, reason: "line 1 is not UTF-8" };
    }
    first = lf === -1 ? null : first.subarray(lf + 1);
    const start = verifier.position();
    if (!start) return await verifier.finish();

    // Batches in the order of their lines, each checked here or on a worker.
    const queue: { result: BatchResult | null; done?: Promise<unknown> }[] = [];
    let line = 2;
    let reading = true;
    for (;;) {
      while (queue.length > 0 && queue[0].result) {
        const result = queue.shift()!.result!;
        if (!result.ok) return { ok: false, seq: null, reason: `line ${line + result.line} is not UTF-8` };
        for (const item of result.items) {
          if (typeof item === "string") verifier.line(item);
          else verifier.accept(item);
        }
        line += result.lines;
        if (verifier.failed) return await verifier.finish();  // the first failure is found: nothing after it counts
      }
      if (reading && queue.length < MAX_QUEUED) {
        const bytes = first ?? (await reader.next());
        first = null;
        if (!bytes) {
          reading = false;
          continue;
        }
        const job: BatchJob = { bytes, org: start.org, pinSize: start.pinSize, strict };
        const worker = workers.find((w) => w.free);
        if (worker) {
          const item: (typeof queue)[number] = { result: null };
          item.done = worker.check(job).then(
            (r) => (item.result = r),
            () => (item.result = checkBatch(job)),  // a worker that died: checked here instead
          );
          queue.push(item);
        } else {
          queue.push({ result: checkBatch(job) });
          await new Promise((resolve) => setImmediate(resolve));  // lets finished workers' answers in
        }
        continue;
      }
      if (queue.length === 0) break;
      await queue[0].done;
    }
    return await verifier.finish();
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await file.close();
  }
}
