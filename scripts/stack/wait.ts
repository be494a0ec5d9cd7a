import { StackError } from "./errors.ts";

/**
 * Polls `probe` until it returns true, throwing a StackError naming `what` after `timeoutMs`.
 * A probe that throws a StackError aborts the wait at once (the process died, say).
 */
export async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 50;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (e) {
      if (e instanceof StackError) throw e;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 500);
  }
  throw new StackError(`${what} did not become ready within ${Math.round(timeoutMs / 1000)} s`);
}
