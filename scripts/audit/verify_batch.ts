/**
 * One batch of an export's lines, checked where it is given (the verifier's main thread, or a
 * worker of scripts/audit/verify_file.ts): its bytes checked to be UTF-8 (bytes that are not refuse
 * the batch, at the first line that has them), and its entries checked by
 * functions/_shared/audit/verify.ts (checkEntryLines). A batch is cut from the file by its bytes,
 * so its first entry's number is its own, and ExportVerifier.accept checks that it is the one
 * expected next. What comes back, in the order of the lines, is all the verifier needs: runs of
 * entries (cut where a pinned checkpoint's size is, so that the pin is checked at its own root)
 * for ExportVerifier.accept, and the texts of the lines that are not entries (the checkpoint) for
 * ExportVerifier.line.
 */
import { isUtf8 } from "node:buffer";
import canonicalize from "canonicalize";
import { checkEntryLines, type EntryRun } from "../../functions/_shared/audit/verify.ts";

export interface BatchJob {
  /** Whole lines, each without its LF, joined by LF. */
  bytes: Uint8Array;
  org: string;
  /** A pinned checkpoint's size: a run ends there. */
  pinSize: number | null;
  /** Require RFC 8785 canonical form (--strict). */
  strict: boolean;
}

export type BatchResult =
  | { ok: true; lines: number; items: (EntryRun | string)[] }
  /** The batch's line `line` (from 0) is not UTF-8. */
  | { ok: false; line: number };

export function checkBatch(job: BatchJob): BatchResult {
  const b = job.bytes;
  if (!isUtf8(b)) return { ok: false, line: firstNotUtf8(b) };
  const lines = Buffer.from(b.buffer, b.byteOffset, b.length).toString("utf8").split("\n");
  const options = { org: job.org, until: job.pinSize, canonicalize: job.strict ? (v: unknown) => canonicalize(v) : undefined };
  const items: (EntryRun | string)[] = [];
  for (let i = 0; i < lines.length;) {
    const run = checkEntryLines(lines, options, i);
    items.push(run);
    i += run.lines;
    if (run.failure) break;
    // The run ended at a line that is not an entry (or at entry pinSize, to go on from there).
    if (i < lines.length && (run.lines === 0 || run.firstSeq + run.count - 1 !== job.pinSize)) items.push(lines[i++]);
  }
  return { ok: true, lines: lines.length, items };
}

function firstNotUtf8(bytes: Uint8Array): number {
  let line = 0;
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(10, start);
    if (!isUtf8(bytes.subarray(start, end === -1 ? bytes.length : end))) return line;
    if (end === -1) return line;
    line++;
    start = end + 1;
  }
}
