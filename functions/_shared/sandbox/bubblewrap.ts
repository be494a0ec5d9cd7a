/**
 * The sandbox backend of this machine: bubblewrap on the run worker's host (run.ts), behind its
 * self-test (selftest.ts). The worker hands it to executions (connectors/execution.ts).
 */
import type { SandboxBackend } from "./backend.ts";
import { runCode, sandboxReady } from "./selftest.ts";

export const bubblewrapBackend: SandboxBackend = { name: "bubblewrap", selfTest: sandboxReady, run: runCode };
