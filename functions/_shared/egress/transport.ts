/**
 * The egress guard's transport: the only way Gatehouse sends a request to a URL it did not write
 * itself (customer webhooks, provider endpoints). Invariant 4: no outbound request reaches a
 * non-public address. What is refused is in check.ts and policy.ts.
 *
 * - The connection goes to an address that was checked, by address (never by name), so a second
 *   DNS answer can't move it; TLS still verifies the certificate against the hostname (SNI).
 * - Redirects are followed only after the new URL passes every check again, at most
 *   `maxRedirects` hops; a cross-origin hop forwards no caller header but a few harmless ones.
 * - The whole exchange (lookup, connect, request, response body) has one deadline, and the body is
 *   read up to a byte cap and no further.
 * - The body is read in full before guardedFetch returns, or, with `stream`, handed over as a
 *   stream as soon as the final response's head arrives; the cap and the deadline still hold, and
 *   the connection is destroyed when the stream fails or its reader cancels it.
 * - With `keepAlive`, a connection that ended its exchange cleanly waits in pool.ts for the next
 *   request to one of the addresses that request's own check allows; otherwise it is closed.
 */
import http from "node:http";
import net from "node:net";
import tls from "node:tls";
import {
  abortFailure,
  checkTarget,
  DEFAULT_TIMEOUT_MS,
  type EgressCode,
  type EgressFailure,
  type EgressOptions,
  type EgressResult,
  fail,
  type Target,
} from "./check.ts";
import { poolKey, release, takeIdle } from "./pool.ts";

/**
 * An egress failure thrown rather than returned: what a streamed body errors with, and what
 * egressFetch (fetch.ts) throws. A TypeError, as fetch's network failures are.
 */
export class EgressError extends TypeError {
  readonly reason: EgressCode;

  constructor(reason: EgressCode, message: string) {
    super(message);
    this.name = "EgressError";
    this.reason = reason;
  }
}

/** The request guardedFetch sends. */
export interface EgressRequest {
  method?: string;
  headers?: HeadersInit;
  body?: string | Uint8Array | null;
  signal?: AbortSignal;
}

/**
 * The final response, with the URL and the address it came from. Its body was read in full (up to
 * maxBytes), or with `stream` is still arriving: a stream that errors with an EgressError.
 */
export interface EgressResponse {
  response: Response;
  url: string;
  address: string;
  redirects: number;
}

const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS = 3;

/** Opens a TCP (and TLS) connection to one checked address; TLS verifies the hostname, not the address. */
function connectTo(target: Target, address: string, caCerts: string[] | undefined, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((done, failed) => {
    const socket = target.secure
      ? tls.connect({
        host: address,
        port: target.port,
        ...(target.literal ? {} : { servername: target.hostname }),
        ALPNProtocols: ["http/1.1"],
        ...(caCerts ? { ca: caCerts } : {}),
      })
      : net.connect({ host: address, port: target.port });
    const onAbort = () => {
      socket.destroy();
      failed(signal.reason);
    };
    const onError = (e: Error) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      failed(e);
    };
    socket.once(target.secure ? "secureConnect" : "connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      // From here the HTTP request reports errors; this only keeps a late one from crashing the isolate.
      socket.on("error", () => {});
      done(socket);
    });
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Connects to the checked addresses in turn, and to nothing else. */
async function connectPinned(
  target: Target,
  caCerts: string[] | undefined,
  signal: AbortSignal,
): Promise<EgressResult<{ socket: net.Socket; address: string }>> {
  let last = "no address to connect to";
  for (const address of target.addresses) {
    if (signal.aborted) return abortFailure(signal);
    try {
      return { ok: true, value: { socket: await connectTo(target, address, caCerts, signal), address } };
    } catch (e) {
      if (signal.aborted) return abortFailure(signal);
      last = (e as Error)?.message ?? String(e);
    }
  }
  return fail("egress_connect_failed", `could not connect to ${target.hostname}: ${last}`);
}

/** A request ready to send: method, headers (without the ones the guard sets) and body bytes. */
interface Outgoing {
  method: string;
  headers: Headers;
  body: Uint8Array | null;
}

/** A response whose head has arrived; its body is still on the connection. */
interface Incoming {
  status: number;
  rawHeaders: string[];
  /** The body as it arrives, up to maxBytes; errors with an EgressError. */
  body: ReadableStream<Uint8Array<ArrayBuffer>>;
  /** Hangs up without reading the rest of the body (nothing once the exchange is over). */
  drop(): void;
}

// Headers the guard sets itself (or that would let a caller reframe the request).
const GUARD_HEADERS = ["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"];

function prepare(init: EgressRequest): EgressResult<Outgoing> {
  const method = (init.method ?? "GET").toUpperCase();
  if (!/^[!#$%&'*+.^_`|~0-9A-Z-]+$/.test(method) || method === "CONNECT") {
    return fail("egress_invalid_request", `${init.method} is not a method the guard sends`);
  }
  let headers: Headers;
  try {
    headers = new Headers(init.headers);
  } catch {
    return fail("egress_invalid_request", "the request headers are not valid");
  }
  for (const name of GUARD_HEADERS) headers.delete(name);
  const body = init.body == null ? null : typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
  if (body && (method === "GET" || method === "HEAD")) return fail("egress_invalid_request", `a ${method} request has no body`);
  return { ok: true, value: { method, headers, body } };
}

function concat(chunks: Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/**
 * One HTTP/1.1 exchange over an open connection. Resolves once the response head has arrived, with
 * the body as a stream fed from the socket (paused while the reader is behind). The exchange ends
 * once: when the body ends, passes maxBytes, fails, is cancelled, or the signal aborts; a failure
 * before the head resolves the promise, a later one errors the body. The connection goes with it.
 */
function exchange(
  socket: net.Socket,
  target: Target,
  outgoing: Outgoing,
  maxBytes: number,
  signal: AbortSignal,
  keep: ((socket: net.Socket) => void) | null,
): Promise<EgressResult<Incoming>> {
  return new Promise((done) => {
    // Set once the head has arrived; from then on, the end of the exchange is told to the body.
    let body: ReadableStreamDefaultController<Uint8Array<ArrayBuffer>> | null = null;
    let over = false;
    // Whether the connection may carry another request once this one ends cleanly.
    let reusable = false;
    const hangUp = () => {
      over = true;
      signal.removeEventListener("abort", onAbort);
      request.destroy();
      socket.destroy();
    };
    const finish = (failure?: EgressFailure) => {
      if (over) return;
      if (!failure && reusable && keep) {
        over = true;
        signal.removeEventListener("abort", onAbort);
        keep(socket);
      } else {
        hangUp();
      }
      if (!body) done(failure ?? fail("egress_request_failed", "the exchange ended without a response"));
      else if (failure) body.error(new EgressError(failure.reason, failure.message));
      else body.close();
    };
    const onAbort = () => finish(abortFailure(signal));
    const tooLarge = () => fail("egress_response_too_large", `the response is larger than ${maxBytes} bytes`);

    const headers: Record<string, string> = Object.fromEntries(outgoing.headers);
    headers.host = target.authority;
    headers.connection = keep ? "keep-alive" : "close";
    if (outgoing.body) headers["content-length"] = String(outgoing.body.byteLength);
    const request = http.request({
      method: outgoing.method,
      path: `${target.url.pathname}${target.url.search}`,
      headers,
      createConnection: () => socket,
    });
    request.on("error", (e: Error) => finish(fail("egress_request_failed", `the request failed: ${e.message}`)));
    request.on("response", (response: http.IncomingMessage) => {
      reusable = keep !== null && response.statusCode !== 101 && !/\bclose\b/i.test(String(response.headers.connection ?? ""));
      const declared = Number(response.headers["content-length"]);
      if (declared > maxBytes) return finish(tooLarge());
      const stream = new ReadableStream<Uint8Array<ArrayBuffer>>({
        start: (controller) => void (body = controller),
        pull: () => void response.resume(),
        cancel: hangUp,
      });
      let total = 0;
      response.on("data", (chunk: Uint8Array) => {
        if (over) return;
        total += chunk.byteLength;
        if (total > maxBytes) return finish(tooLarge());
        body!.enqueue(new Uint8Array(chunk));
        if (body!.desiredSize! <= 0) response.pause();
      });
      response.on("end", () => {
        // Reused only when the request went out whole and the response was read to its end.
        reusable &&= request.writableFinished && response.complete;
        finish();
      });
      response.on("error", (e: Error) => finish(fail("egress_request_failed", `the response failed: ${e.message}`)));
      response.on("close", () => finish(fail("egress_request_failed", "the connection closed before the response ended")));
      done({ ok: true, value: { status: response.statusCode ?? 0, rawHeaders: response.rawHeaders, body: stream, drop: hangUp } });
    });
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    request.end(outgoing.body ?? undefined);
  });
}

/** Reads a body to its end (the stream itself keeps to maxBytes and the deadline). */
async function readAll(body: ReadableStream<Uint8Array>): Promise<EgressResult<Uint8Array<ArrayBuffer>>> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { ok: true, value: concat(chunks, total) };
      chunks.push(value);
      total += value.byteLength;
    }
  } catch (e) {
    return e instanceof EgressError ? fail(e.reason, e.message) : fail("egress_request_failed", "the response could not be read");
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
// Request-body headers (Fetch standard), dropped when a redirect turns the request into a GET.
const BODY_HEADERS = ["content-type", "content-encoding", "content-language", "content-location"];
// The only caller headers a cross-origin redirect carries: nothing that could be a credential.
const CROSS_ORIGIN_HEADERS = new Set(["accept", "accept-language", "content-language", "content-type", "user-agent"]);

/** The request for the next hop, following the Fetch standard's method rewrite. */
function redirected(outgoing: Outgoing, status: number, from: URL, to: URL): Outgoing {
  let { method, body } = outgoing;
  const headers = new Headers(outgoing.headers);
  if ((status === 303 && method !== "HEAD") || ((status === 301 || status === 302) && method === "POST")) {
    method = "GET";
    body = null;
    for (const name of BODY_HEADERS) headers.delete(name);
  }
  if (from.origin !== to.origin) {
    for (const name of [...headers.keys()]) if (!CROSS_ORIGIN_HEADERS.has(name)) headers.delete(name);
  }
  return { method, headers, body };
}

function headerOf(incoming: Incoming, name: string): string | null {
  for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) {
    if (incoming.rawHeaders[i].toLowerCase() === name) return incoming.rawHeaders[i + 1];
  }
  return null;
}

function responseOf(incoming: Incoming, body: BodyInit | null): EgressResult<Response> {
  try {
    const headers = new Headers();
    for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) headers.append(incoming.rawHeaders[i], incoming.rawHeaders[i + 1]);
    return { ok: true, value: new Response(NULL_BODY.has(incoming.status) ? null : body, { status: incoming.status, headers }) };
  } catch {
    return fail("egress_request_failed", "the response is not valid HTTP");
  }
}

/**
 * Sends a request through the guard: checks the URL from scratch, connects only to an address it
 * checked (TLS verified against the hostname), follows redirects only after checking each new URL
 * again, and reads the body up to maxBytes, all within timeoutMs. With `stream`, it returns at the
 * final response's head and the body streams in under the same cap and deadline. Never throws for
 * network or policy failures; the failure's code says what happened.
 */
export async function guardedFetch(
  url: string | URL,
  init: EgressRequest = {},
  options: EgressOptions = {},
): Promise<EgressResult<EgressResponse>> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const deadline = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
  const prepared = prepare(init);
  if (!prepared.ok) return prepared;
  let outgoing = prepared.value;
  let next: string | URL = url;

  for (let hop = 0;; hop++) {
    const checked = await checkTarget(next, options, signal);
    if (!checked.ok) {
      if (hop === 0 || checked.reason === "egress_timeout" || checked.reason === "egress_aborted") return checked;
      return fail("egress_redirect_blocked", `redirect ${hop} was refused: ${checked.message} (${checked.reason})`);
    }
    const target = checked.value;
    const caCerts = options.testOnly?.caCerts;
    // An idle connection to an address this lookup checked, when keep-alive is asked for; else a new one.
    const reused = options.keepAlive ? takeIdle(target, caCerts) : null;
    let connected: EgressResult<{ socket: net.Socket; address: string }> = reused
      ? { ok: true, value: reused }
      : await connectPinned(target, caCerts, signal);
    if (!connected.ok) return connected;
    const keep = (address: string) => options.keepAlive ? (socket: net.Socket) => release(poolKey(target, address, caCerts), socket) : null;
    let exchanged = await exchange(connected.value.socket, target, outgoing, maxBytes, signal, keep(connected.value.address));
    // A pooled connection the server closed while it sat idle fails before any answer: the request
    // goes again, once, on a new connection.
    if (!exchanged.ok && reused && exchanged.reason === "egress_request_failed" && !signal.aborted) {
      connected = await connectPinned(target, caCerts, signal);
      if (!connected.ok) return connected;
      exchanged = await exchange(connected.value.socket, target, outgoing, maxBytes, signal, keep(connected.value.address));
    }
    if (!exchanged.ok) return exchanged;
    const incoming = exchanged.value;
    const where = REDIRECTS.has(incoming.status) ? headerOf(incoming, "location") : null;

    // Buffered, every body is read in full, a redirect's too. Streamed, only the final response
    // keeps its body; any other is dropped with its connection.
    let body: BodyInit | null = null;
    if (!options.stream) {
      const read = await readAll(incoming.body);
      if (!read.ok) return read;
      body = read.value;
    } else if (where === null && !NULL_BODY.has(incoming.status)) {
      body = incoming.body;
    } else {
      incoming.drop();
    }

    if (where === null) {
      const response = responseOf(incoming, body);
      if (!response.ok) {
        incoming.drop();
        return response;
      }
      return { ok: true, value: { response: response.value, url: target.url.href, address: connected.value.address, redirects: hop } };
    }
    if (hop >= maxRedirects) {
      return fail("egress_redirect_blocked", maxRedirects === 0 ? "redirects are not followed" : `more than ${maxRedirects} redirects`);
    }
    let to: URL;
    try {
      to = new URL(where, target.url);
    } catch {
      return fail("egress_redirect_blocked", `redirect ${hop + 1} is to an invalid URL`);
    }
    outgoing = redirected(outgoing, incoming.status, target.url, to);
    next = to;
  }
}
