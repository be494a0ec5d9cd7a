/**
 * The ports a stack listens on: `npm start`'s defaults (overridable with GATEHOUSE_*_PORT), free
 * ones for a throwaway stack, and the one error that means "someone else has that port".
 */
import { createServer } from "node:net";
import { StackError } from "./errors.ts";

/** The ports one stack listens on. */
export interface StackPorts {
  api: number;
  db: number;
  rest: number;
  functions: number;
}

/**
 * A port a piece of the stack needed was taken. A throwaway stack on free ports retries with new
 * ones (another process can take a free port between picking it and binding it).
 */
export class PortInUse extends StackError {
  override name = "PortInUse";
}

/** True when a log or error message says a bind failed because the address is taken. */
export function saysAddressInUse(text: string): boolean {
  return /EADDRINUSE|Address already in use|AddrInUse/i.test(text);
}

/** The default ports of `npm start`, overridable with GATEHOUSE_*_PORT. */
export function defaultPorts(apiPort: number, dbPort: number): StackPorts {
  const env = (name: string, fallback: number) => {
    const v = process.env[name];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new StackError(`${name}=${v} is not a port number`);
    return n;
  };
  return {
    api: env("GATEHOUSE_API_PORT", apiPort),
    db: env("GATEHOUSE_DB_PORT", dbPort),
    rest: env("GATEHOUSE_REST_PORT", apiPort + 9),
    functions: env("GATEHOUSE_FUNCTIONS_PORT", apiPort + 10),
  };
}

/** A loopback port that is free now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Four distinct free loopback ports, for a throwaway stack. */
export async function freePorts(): Promise<StackPorts> {
  const picked = new Set<number>();
  while (picked.size < 4) picked.add(await freePort());
  const [api, db, rest, functions] = [...picked];
  return { api, db, rest, functions };
}

/** Refuses (PortInUse) when `port` can't be bound now, naming the variable that moves it. */
export async function assertPortFree(port: number, what: string, envName: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (e: NodeJS.ErrnoException) => {
      reject(
        e.code === "EADDRINUSE"
          ? new PortInUse(`port ${port} (${what}) is already in use: stop what holds it (another npm start?) or set ${envName}`)
          : new StackError(`cannot listen on port ${port} (${what}): ${e.message}`),
      );
    });
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
  });
}
