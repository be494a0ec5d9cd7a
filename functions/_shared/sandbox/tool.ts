/**
 * The code sandbox as a tool (issue 27; docs/sandbox.md, "code.run"): what an agent's tool bound to
 * a `sandbox` connection takes, what the connection's settings may say, and how one execution
 * becomes the tool's result, its outcome code and its audit entry.
 *
 * The payload {runtime, code, files} is an action's payload like any other: proposed, approved and
 * hash-pinned, then let through once by the execution gate, which hands back the approved
 * canonical bytes; those bytes, parsed here, are what runs (connectors/execution.ts). The audit
 * entry holds the limits and the outcome (exit code, time, killed or not, bytes out), never the
 * code or its output; the output goes to the model, in the run's transcript only.
 */
import { z } from "zod";
import { DEFAULT_LIMITS, FILE_PATH, type SandboxBackend, SandboxError, type SandboxLimits, type SandboxResult } from "./backend.ts";

/** The backends a sandbox connection may name: this machine's (the run worker's host). */
export const SANDBOX_BACKENDS = ["bubblewrap"] as const;

/**
 * The most a tool's execution may use. Output is capped so that the result (stdout, stderr and
 * out/ files in base64) fits a transcript message (256 KiB) with room to spare.
 */
export const TOOL_LIMITS: SandboxLimits = { ...DEFAULT_LIMITS, seconds: 10, outputBytes: 32 * 1024, outBytes: 64 * 1024 };

/** A sandbox connection's settings (connections.config): its backend, and limits tighter than TOOL_LIMITS. */
export const SandboxConfig = z.strictObject({
  backend: z.enum(SANDBOX_BACKENDS),
  limits: z.strictObject({
    seconds: z.number().int().min(1).max(TOOL_LIMITS.seconds).optional(),
    memory_mib: z.number().int().min(32).max(TOOL_LIMITS.memoryMiB).optional(),
    processes: z.number().int().min(4).max(TOOL_LIMITS.processes).optional(),
  }).optional(),
});
export type SandboxConfig = z.infer<typeof SandboxConfig>;

/** The limits an execution through a connection with `config` gets. */
export function limitsOf(config: SandboxConfig): SandboxLimits {
  const l = config.limits ?? {};
  return { ...TOOL_LIMITS, seconds: l.seconds ?? TOOL_LIMITS.seconds, memoryMiB: l.memory_mib ?? TOOL_LIMITS.memoryMiB, processes: l.processes ?? TOOL_LIMITS.processes };
}

/** What a code.run call sends: the code, its runtime and input files. */
export const CodeRun = z.strictObject({
  runtime: z.enum(["python", "javascript", "typescript"]),
  code: z.string().min(1).max(48 * 1024),
  files: z.record(z.string().regex(FILE_PATH, "a relative path without . or .. segments").refine((p) => p !== "out" && !p.startsWith("out/") && p !== "main.py" && p !== "main.ts", "out/ is where the code writes, and main.py or main.ts is the code"),
    z.string().max(48 * 1024)).refine((f) => Object.keys(f).length <= 20, "at most 20 input files").optional(),
});
export type CodeRun = z.infer<typeof CodeRun>;

/** The function parameters a model sees for a sandbox tool (CodeRun as JSON Schema). */
export const CODE_RUN_PARAMETERS = {
  type: "object",
  additionalProperties: false,
  required: ["runtime", "code"],
  properties: {
    runtime: { type: "string", enum: ["python", "javascript", "typescript"], description: "python runs Python 3; javascript and typescript run in Deno" },
    code: { type: "string", description: "The program (main.py or main.ts in the working directory)" },
    files: { type: "object", additionalProperties: { type: "string" }, description: "Input files by relative path, as text" },
  },
} as const;

/** What the model is told the tool does. */
export function codeRunDescription(tool: string): string {
  return `${tool}: runs a short program in a fresh sandbox with no network, and answers its exit code, stdout, stderr and the files it wrote under out/ ` +
    `(a person may have to approve the exact code first). Limits: ${TOOL_LIMITS.seconds} s, ${TOOL_LIMITS.memoryMiB} MiB.`;
}

/** An execution's outcome code: exit_<n>, killed_deadline, killed_memory. */
export function outcomeOf(result: SandboxResult): string {
  return result.killed ? `killed_${result.killed}` : `exit_${result.exitCode ?? 255}`;
}

/** An execution as its audit entry records it: limits and outcome, never the code or its output. */
// A type, not an interface: it is JSON, and goes into the audit payload as such.
export type ExecutionAudit = {
  backend: string;
  runtime: CodeRun["runtime"];
  limits: { seconds: number; memory_mib: number; processes: number; file_mib: number; output_bytes: number; out_bytes: number };
  exit_code: number | null;
  killed: SandboxResult["killed"];
  ms: number;
  stdout_bytes: number;
  stderr_bytes: number;
  out_files: number;
  out_bytes: number;
  truncated: boolean;
};

/** What one execution answered: its outcome code, the tool's result and the audit entry's detail. */
export type Execution =
  | { ok: true; outcome: string; result: unknown; audit: ExecutionAudit }
  /** Nothing ran: the payload is not a CodeRun, or the backend refused (its self-test failed). */
  | { ok: false; outcome: "invalid_payload" | "sandbox_invalid_request" | "sandbox_unavailable"; message: string };

/** Runs the approved canonical payload on `backend` with the connection's settings. */
export async function executeCode(backend: SandboxBackend, config: SandboxConfig, canonicalPayload: string): Promise<Execution> {
  const parsed = CodeRun.safeParse(JSON.parse(canonicalPayload));
  if (!parsed.success) return { ok: false, outcome: "invalid_payload", message: "a code.run payload is {runtime, code, files?}" };
  const { runtime, code, files } = parsed.data;
  const limits = limitsOf(config);
  let result: SandboxResult;
  try {
    result = await backend.run({ runtime: runtime === "python" ? "python" : "javascript", code, ...(files ? { files } : {}) }, limits);
  } catch (e) {
    if (e instanceof SandboxError) return { ok: false, outcome: e.code, message: e.message };
    throw e;
  }
  const bytes = (s: string) => new TextEncoder().encode(s).byteLength;
  const outBytes = result.out.reduce((n, f) => n + f.bytes, 0);
  const truncated = result.truncated.stdout || result.truncated.stderr || result.truncated.out;
  return {
    ok: true,
    outcome: outcomeOf(result),
    result: {
      exit_code: result.exitCode,
      killed: result.killed,
      ms: result.ms,
      stdout: result.stdout,
      stderr: result.stderr,
      truncated: result.truncated,
      files: result.out.map((f) => ({ path: `out/${f.path}`, bytes: f.bytes, base64: f.base64 })),
    },
    audit: {
      backend: backend.name,
      runtime,
      limits: {
        seconds: limits.seconds, memory_mib: limits.memoryMiB, processes: limits.processes, file_mib: limits.fileMiB,
        output_bytes: limits.outputBytes, out_bytes: limits.outBytes,
      },
      exit_code: result.exitCode,
      killed: result.killed,
      ms: result.ms,
      stdout_bytes: bytes(result.stdout),
      stderr_bytes: bytes(result.stderr),
      out_files: result.out.length,
      out_bytes: outBytes,
      truncated,
    },
  };
}
