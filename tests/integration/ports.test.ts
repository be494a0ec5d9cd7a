/**
 * The port race of a throwaway stack: a port picked as free can be taken before the stack binds
 * it. The stack reports that as PortInUse, and startOnFreePorts starts again on other ports. And a
 * second start on a running stack's data is refused without touching what the first one wrote.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runningStackIn, startOnFreePorts, startStack } from "../../scripts/stack/index.ts";
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

describe("a second start on the same data", () => {
  it("is refused, and leaves the running stack's stack.json and database alone", async () => {
    const dir = stateDir();
    const first = await startOnFreePorts({ root: process.cwd(), stateDir: dir, databaseOnly: true });
    try {
      // What the running stack wrote (a full stack writes its stack.json; this one stands in for it).
      writeFileSync(join(dir, "stack.json"), '{"first": true}\n');
      expect(runningStackIn(dir)).not.toBeNull();
      await expect(startStack({ root: process.cwd(), stateDir: dir, ports: await freePorts(), databaseOnly: true }))
        .rejects.toThrow(/already running/);
      // A refused start on a taken port leaves it alone too.
      await expect(startStack({ root: process.cwd(), stateDir: stateDir(), ports: { ...(await freePorts()), db: taken }, databaseOnly: true }))
        .rejects.toBeInstanceOf(PortInUse);
      expect(existsSync(join(dir, "stack.json"))).toBe(true);
      expect(readFileSync(join(dir, "stack.json"), "utf8")).toContain('"first"');
      expect(runningStackIn(dir)).not.toBeNull();
    } finally {
      await first.stop();
    }
  }, 60_000);
});
