/**
 * Idle connections the egress guard may send another request over (EgressOptions.keepAlive): the
 * model vendors' endpoints, which every call reaches again, so that a call doesn't dial (and
 * handshake TLS) each time.
 *
 * A connection is pooled under everything that made it safe: TLS or not, the hostname its
 * certificate was verified against, the port, the CA set, and the address it was connected to,
 * which the guard had checked. A request takes an idle connection only to an address its own
 * lookup has just checked again, so reuse never reaches an address that a fresh check would
 * refuse; every new connection is checked as before. A connection goes back to the pool only
 * after an exchange that ended cleanly (the whole response read, neither side asking to close),
 * and leaves it when it closes, errors, sends anything while idle, or has been idle IDLE_MS.
 */
import type net from "node:net";
import type { Target } from "./check.ts";

/** How long a connection may sit idle, in ms: under most servers' keep-alive timeouts. */
export const IDLE_MS = 4_000;
/** Idle connections kept per key; more are closed. */
const MAX_IDLE_PER_KEY = 8;

interface Idle {
  socket: net.Socket;
  timer: ReturnType<typeof setTimeout>;
  forget: () => void;
}

const idle = new Map<string, Idle[]>();
const caIds = new WeakMap<string[], number>();
let nextCaId = 1;

/** The pool's key for a connection to `address` for `target`. */
function keyOf(target: Target, address: string, caCerts: string[] | undefined): string {
  let ca = 0;
  if (caCerts) {
    ca = caIds.get(caCerts) ?? nextCaId++;
    caIds.set(caCerts, ca);
  }
  return `${target.secure ? "tls" : "tcp"}|${target.hostname}|${target.port}|${address}|${ca}`;
}

/** An idle connection to one of the target's checked addresses, taken out of the pool, or null. */
export function takeIdle(target: Target, caCerts: string[] | undefined): { socket: net.Socket; address: string; key: string } | null {
  for (const address of target.addresses) {
    const key = keyOf(target, address, caCerts);
    const list = idle.get(key);
    while (list && list.length > 0) {
      const entry = list.pop()!;
      entry.forget();
      if (!entry.socket.destroyed && entry.socket.readable && entry.socket.writable) return { socket: entry.socket, address, key };
      entry.socket.destroy();
    }
  }
  return null;
}

/** The key a new connection to `address` would be pooled under. */
export function poolKey(target: Target, address: string, caCerts: string[] | undefined): string {
  return keyOf(target, address, caCerts);
}

/** Puts a connection whose exchange ended cleanly back in the pool (or closes it, when the pool is full). */
export function release(key: string, socket: net.Socket): void {
  const list = idle.get(key) ?? [];
  if (list.length >= MAX_IDLE_PER_KEY || socket.destroyed) return void socket.destroy();
  const drop = () => {
    const at = list.indexOf(entry);
    if (at >= 0) list.splice(at, 1);
    entry.forget();
    socket.destroy();
  };
  const entry: Idle = {
    socket,
    timer: setTimeout(drop, IDLE_MS),
    forget: () => {
      clearTimeout(entry.timer);
      socket.off("close", drop);
      socket.off("error", drop);
      socket.off("end", drop);
      socket.off("data", drop);
    },
  };
  // Nothing may arrive on an idle connection; whatever does (or its end) retires it.
  socket.on("close", drop);
  socket.on("error", drop);
  socket.on("end", drop);
  socket.on("data", drop);
  list.push(entry);
  idle.set(key, list);
}

/** Closes every idle connection (a test's cleanup, or a worker's shutdown). */
export function closeIdleConnections(): void {
  for (const list of idle.values()) {
    for (const entry of list.splice(0)) {
      entry.forget();
      entry.socket.destroy();
    }
  }
  idle.clear();
}
