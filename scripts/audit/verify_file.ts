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
 * does not inherit tsx's loader). A batch moves to its worker without a copy; a worker that dies
 * (it throws or exits) leaves its batches to be read again from the file and checked here.
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
  /** The script the workers run instead of verify_worker.ts's bundle (for tests: a worker that dies). */
  workerScript?: string;
}

/** Bytes read at a time: a batch is the whole lines in them. */
const CHUNK = 512 << 10;
/** Batches read ahead of the one taken next: this thread checks on while that one is on a worker. */
const MAX_QUEUED = 16;

/** Reads a file in batches of whole lines: what follows the last LF of a read starts the next batch. */
class BatchReader {
  private carry: Buffer = Buffer.alloc(0);
  /** Where in the file the carry starts. */
  private position = 0;
  private eof = false;

  constructor(private readonly file: FileHandle, private readonly chunk: number) {}

  /** The next batch's lines (their bytes joined by LF, without the last LF) and where they start; null at the end. */
  next(): { bytes: Buffer; at: number } | null {
    for (;;) {
      if (this.eof) {
        if (this.carry.length === 0) return null;
        const last = { bytes: this.carry, at: this.position };  // the last line, without an LF
        this.carry = Buffer.alloc(0);
        return last;
      }
      // A buffer of its own, so that the batch can move to a worker.
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
      const batch = { bytes: data.subarray(0, lf), at: this.position };
      this.carry = Buffer.from(data.subarray(lf + 1));
      this.position += lf + 1;
      return batch;
    }
  }

  /** A batch's bytes again, read from the file (for a batch whose worker died with it). */
  again(at: number, length: number): Buffer {
    const bytes = Buffer.alloc(length);
    readSync(this.file.fd, bytes, 0, length, at);
    return bytes;
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
      // A worker that throws, or exits, hands back what it held (it is checked on this thread).
      const died = (e: Error) => {
        this.dead = true;
        reject(e);
        for (const w of this.waiting.values()) w.reject(e);
        this.waiting.clear();
      };
      this.worker.on("error", died);
      this.worker.on("exit", (code) => died(new Error(`the verifier's worker exited (${code})`)));
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
    // The batch's bytes move to the worker (a buffer of their own: BatchReader), not copied.
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...job, id }, [job.bytes.buffer as ArrayBuffer]);
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
function startWorkers(n: number, script?: string): { workers: BatchWorker[]; started: Promise<unknown> } {
  const workers: BatchWorker[] = [];
  const code = script !== undefined ? Promise.resolve(script) : bundledWorker();
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
    const pool = startWorkers(wanted, options.workerScript);
    workers = pool.workers;
    if (options.awaitWorkers) await pool.started;
    const reader = new BatchReader(file, options.batchBytes ?? CHUNK);

    // The header, read here: the organization and the pin the batches are checked for.
    const head = reader.next();
    if (!head) return await verifier.finish();
    const lf = head.bytes.indexOf(10);
    try {
      verifier.line(decoder.decode(lf === -1 ? head.bytes : head.bytes.subarray(0, lf)));
    } catch {
      return { ok: false, seq: null, reason: "line 1 is not UTF-8" };
    }
    let first = lf === -1 ? null : { bytes: head.bytes.subarray(lf + 1), at: head.at + lf + 1 };
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
        const batch = first ?? reader.next();
        first = null;
        if (!batch) {
          reading = false;
          continue;
        }
        const job: BatchJob = { bytes: batch.bytes, org: start.org, pinSize: start.pinSize, strict };
        const worker = workers.find((w) => w.free);
        if (worker) {
          const item: (typeof queue)[number] = { result: null };
          const at = batch.at;
          const length = batch.bytes.length;
          item.done = worker.check(job).then(
            (r) => (item.result = r),
            // A worker that died took the batch's bytes with it: read again, and checked here.
            () => (item.result = checkBatch({ ...job, bytes: reader.again(at, length) })),
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
