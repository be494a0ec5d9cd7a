/**
 * What a code sandbox is to the rest of Gatehouse (docs/sandbox.md, "Hosted deployments"): a
 * self-test and a run, with the request, limits and result of run.ts. This machine's backend is
 * bubblewrap on the worker's host; a microVM service (E2B, Deno Sandbox, Vercel Sandbox) implements
 * the same two calls, and must fail its self-test, never run unprotected, where it can't prove its
 * isolation.
 */
import type { SandboxLimits, SandboxRequest, SandboxResult } from "./run.ts";
import { runCode, type SelfTest, sandboxReady } from "./selftest.ts";

export interface SandboxBackend {
  /** What runs the code, for audit entries and errors. */
  name: string;
  /** Whether every layer is in force (cached); run refuses when it is not. */
  selfTest(): Promise<SelfTest>;
  /** One execution in a fresh sandbox. */
  run(req: SandboxRequest, limits?: SandboxLimits): Promise<SandboxResult>;
}

/** Bubblewrap on this host (the run worker's). */
export const bubblewrapBackend: SandboxBackend = { name: "bubblewrap", selfTest: sandboxReady, run: runCode };
