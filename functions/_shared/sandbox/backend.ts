/**
 * What a code sandbox is to the rest of Gatehouse (docs/sandbox.md, "Hosted deployments"): a
 * self-test and a run, with the request, limits and result below. This machine's backend is
 * bubblewrap on the run worker's host (bubblewrap.ts); a microVM service (E2B, Deno Sandbox, Vercel
 * Sandbox) implements the same two calls, and must fail its self-test, never run unprotected, where
 * it can't prove its isolation. This module holds only the contract, so that code which names a
 * backend (the connectors' environment) doesn't load one.
 */

export interface SandboxBackend {
  /** What runs the code: the backend a sandbox connection names (connections.config.backend). */
  name: string;
  /** Whether every layer is in force (cached); run refuses when it is not. */
  selfTest(): Promise<SelfTest>;
  /** One execution in a fresh sandbox. */
  run(req: SandboxRequest, limits?: SandboxLimits): Promise<SandboxResult>;
}

/** One layer the self-test checked. */
export interface LayerCheck {
  layer: "bubblewrap" | "network" | "filesystem" | "processes" | "identity" | "limits" | "deadline";
  ok: boolean;
  detail: string;
}

/** What the self-test found: ok only when every layer is in force. */
export interface SelfTest {
  ok: boolean;
  layers: LayerCheck[];
}

export type Runtime = "javascript" | "python";

export interface SandboxLimits {
  /** Wall-clock budget, in seconds. */
  seconds: number;
  memoryMiB: number;
  processes: number;
  /** The largest file it may write. */
  fileMiB: number;
  /** stdout and stderr, each. */
  outputBytes: number;
  /** All of out/ together. */
  outBytes: number;
}

export const DEFAULT_LIMITS: SandboxLimits = { seconds: 10, memoryMiB: 256, processes: 64, fileMiB: 8, outputBytes: 64 * 1024, outBytes: 1024 * 1024 };

export interface SandboxRequest {
  runtime: Runtime;
  code: string;
  /** Input files, by a relative path under /work (no `..`). */
  files?: Record<string, string>;
}

export interface SandboxResult {
  exitCode: number | null;
  /** Why it was stopped from outside, if it was. */
  killed: "deadline" | "memory" | null;
  ms: number;
  stdout: string;
  stderr: string;
  truncated: { stdout: boolean; stderr: boolean; out: boolean };
  /** What it wrote under /work/out (base64), within outBytes. */
  out: { path: string; bytes: number; base64: string }[];
}

/** Why the sandbox refuses to run code (the self-test found a layer missing), or why a request is refused. */
export class SandboxError extends Error {
  override name = "SandboxError";
  constructor(readonly code: "sandbox_unavailable" | "sandbox_invalid_request", message: string) {
    super(message);
  }
}

/** An input file's path: relative, without . or .. segments. */
export const FILE_PATH = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}$/;

