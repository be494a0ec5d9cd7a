/**
 * The port race of a throwaway stack: a port picked as free can be taken before the stack binds
 * it. The stack reports that as PortInUse, and startOnFreePorts starts again on other ports.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOnFreePorts, startStack } from "../../scripts/stack/index.ts";
import { freePorts, PortInUse, type StackPorts } from "../../scripts/stack/ports.ts";

let squatter: Server;
let taken: number;
const dirs: string[] = [];
const stateDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-ports-"));
  dirs.push(dir);
  return dir;
};

beforeAll(async () => {
  squatter = createServer();
  await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", () => r()));
  taken = (squatter.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise((r) => squatter.close(r));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("the port race", () => {
  it("reports a port taken between picking and binding as PortInUse", async () => {
    const ports = { ...(await freePorts()), db: taken };
    await expect(startStack({ root: process.cwd(), stateDir: stateDir(), ports, databaseOnly: true })).rejects.toBeInstanceOf(PortInUse);
  });

  it("starts again on other ports when a picked one was taken", async () => {
    const picks: StackPorts[] = [];
    const lines: string[] = [];
    const stack = await startOnFreePorts({ root: process.cwd(), stateDir: stateDir(), databaseOnly: true, log: (l) => lines.push(l) }, {
      pickPorts: async () => {
        const ports = picks.length === 0 ? { ...(await freePorts()), db: taken } : await freePorts();
        picks.push(ports);
        return ports;
      },
    });
    try {
      expect(picks).toHaveLength(2);
      expect(stack.info.ports.db).not.toBe(taken);
      expect(lines.some((l) => /starting again on other ports/.test(l))).toBe(true);
    } finally {
      await stack.stop();
    }
  }, 60_000);
});
