/**
 * The audit sealer: runs audit.seal_pending() on one connection, over and over, as pg_cron does on
 * hosted Supabase. Recording an action only inserts it into audit.records; this loop chains what
 * was recorded, a batch per organization per call. While a call finds work the next follows at
 * once; when one finds nothing the loop sleeps `intervalMs`. A failed call is reported and retried
 * after the interval.
 */
import postgres from "postgres";

/** How long the loop waits after a call that found nothing, unless GATEHOUSE_SEAL_INTERVAL_MS says otherwise. */
export const DEFAULT_SEAL_INTERVAL_MS = 200;

export interface Sealer {
  /** Stops after the call in flight, then closes the connection. */
  stop(): Promise<void>;
  /** Resolves once a call that started after this one was made has found nothing left to seal. */
  drained(): Promise<void>;
}

export function startSealer(dbUrl: string, opts: { intervalMs: number; batch?: number; onError?: (e: Error) => void }): Sealer {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  const batch = opts.batch ?? 10_000;
  let stopped = false;
  let waiters: (() => void)[] = [];
  let wake: (() => void) | null = null;
  const loop = (async () => {
    while (!stopped) {
      const waiting = waiters;
      waiters = [];
      let sealed = 0;
      try {
        const [row] = await sql`select audit.seal_pending(${batch}) as sealed`;
        sealed = Number(row.sealed);
      } catch (e) {
        opts.onError?.(e as Error);
        waiters.push(...waiting);
        sealed = 0;
      }
      if (sealed > 0) {
        waiters.push(...waiting);
        if (sealed >= batch) continue;  // a backlog: keep going
      } else {
        for (const w of waiting) w();
      }
      if (stopped || waiters.length > 0) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, opts.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  })();
  return {
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await sql.end({ timeout: 2 });
    },
    drained() {
      return new Promise<void>((resolve) => {
        waiters.push(resolve);
        wake?.();
      });
    },
  };
}
