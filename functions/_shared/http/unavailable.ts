/**
 * Whether an error means the database can't serve right now, rather than that the request was
 * wrong or our code failed: the client can't connect or lost its connection, or the server says it
 * is shutting down, starting up, out of connections or cancelled the statement. Such a request is
 * answered 503 with Retry-After (errors.ts: database_unavailable), and may be sent again as it is.
 * Plain TypeScript on both runtimes: the functions (Deno) and the local auth stand-in (Node).
 */

/** postgres.js's own connection errors, and the socket errors it passes on. */
const CLIENT_CODES = new Set([
  "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT",
  "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN",
]);

/**
 * SQLSTATEs: class 08 (connection exception), 53300 (too many connections), 57P01-57P03 (admin or
 * crash shutdown, cannot connect now), 57014 (a statement cancelled: a timeout while the database
 * is slow).
 */
const SERVER_STATE = /^(08[0-9A-Z]{3}|53300|57P0[1-3]|57014)$/;

/** How long a client should wait before sending the request again, in seconds. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

export function databaseUnavailable(e: unknown): boolean {
  const err = e as { code?: unknown; errno?: unknown; name?: unknown; cause?: unknown } | null;
  if (!err || typeof err !== "object") return false;
  const code = typeof err.code === "string" ? err.code : typeof err.errno === "string" ? err.errno : "";
  if (CLIENT_CODES.has(code) || SERVER_STATE.test(code)) return true;
  // Deno's socket errors are classes (Deno.errors.ConnectionRefused …) without a code.
  if (typeof err.name === "string" && /^(ConnectionRefused|ConnectionReset|ConnectionAborted|TimedOut|BrokenPipe|NotConnected)$/.test(err.name)) return true;
  return err.cause !== undefined && err.cause !== e && databaseUnavailable(err.cause);
}
