/**
 * One batch of an export's lines, checked where it is given (the verifier's main thread, or a
 * worker of scripts/audit/verify_file.ts): its bytes decoded as UTF-8 (a byte that is not refuses
 * the batch) and its entries checked by functions/_shared/audit/verify.ts (checkEntryLines). What
 * comes back is all ExportVerifier.accept needs, and the lines after the run, read one at a time.
 */
import canonicalize from "canonicalize";
import { checkEntryLines, type EntryRun } from "../../functions/_shared/audit/verify.ts";

export interface BatchJob {
  /** The batch's lines, each without its LF, joined by LF. */
  bytes: Uint8Array;
  org: string;
  /** The entry its first line must be. */
  firstSeq: number;
  /** Require RFC 8785 canonical form (--strict). */
  strict: boolean;
}

export type BatchResult =
  | { ok: true; run: EntryRun; rest: string[] }
  /** The batch's line `line` (from 0) is not UTF-8. */
  | { ok: false; line: number };

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function checkBatch(job: BatchJob): BatchResult {
  let text: string;
  try {
    text = decoder.decode(job.bytes);
  } catch {
    return { ok: false, line: firstNotUtf8(job.bytes) };
  }
  const lines = text.split("\n");
  const run = checkEntryLines(lines, { org: job.org, firstSeq: job.firstSeq, canonicalize: job.strict ? (v) => canonicalize(v) : undefined });
  return { ok: true, run, rest: run.failure ? [] : lines.slice(run.lines) };
}

function firstNotUtf8(bytes: Uint8Array): number {
  let line = 0;
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(10, start);
    try {
      decoder.decode(bytes.subarray(start, end === -1 ? bytes.length : end));
    } catch {
      return line;
    }
    if (end === -1) return line;
    line++;
    start = end + 1;
  }
}
