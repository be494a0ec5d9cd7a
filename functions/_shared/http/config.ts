/**
 * A function's configuration from its environment (secrets and settings), read once on first use.
 * A configuration that does not parse is the operator's mistake, answered as a 503 with the
 * function's own code, never a 500 or a message quoting the environment.
 */
import { refuse, type RefusalCode } from "./errors.ts";

/** Reads `parse(Deno.env.get)` the first time it is asked for; refuses with `misconfigured` if that throws. */
export function configuration<T>(parse: (get: (name: string) => string | undefined) => T, misconfigured: RefusalCode): () => T {
  let value: { parsed: T } | null = null;
  return () => {
    if (value) return value.parsed;
    try {
      value = { parsed: parse((name) => Deno.env.get(name)) };
    } catch {
      throw refuse(misconfigured);
    }
    return value.parsed;
  };
}
