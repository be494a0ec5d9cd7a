/** What the benchmarks share: a throwaway database, and statistics. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startOnFreePorts } from "../stack/index.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Runs `work` against a fresh, migrated and seeded database that is removed afterwards. */
export async function withThrowawayDatabase<T>(work: (dbUrl: string) => Promise<T>): Promise<T> {
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, databaseOnly: true, log: () => {} });
  try {
    return await work(stack.info.dbUrl);
  } finally {
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The p-th percentile of some numbers. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs `work` over `items`, `concurrency` at a time. */
export async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  }));
}
