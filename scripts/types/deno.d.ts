/**
 * The few Deno APIs that functions/_shared modules use, as tsc sees them when a test or script
 * imports such a module under Node (where those code paths never run). `deno check` checks the
 * same modules against Deno's real types (scripts/typecheck.ts).
 */
declare namespace Deno {
  const env: { get(name: string): string | undefined };
  function resolveDns(query: string, recordType: "A" | "AAAA", options?: { signal?: AbortSignal }): Promise<string[]>;
}
