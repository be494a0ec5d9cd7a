/**
 * The local API gateway: one port that routes like Supabase's (Kong) gateway.
 *   /rest/v1/*       -> PostgREST            (apikey required)
 *   /auth/v1/*       -> the auth stand-in    (apikey required)
 *   /functions/v1/*  -> the Deno edge router (JWT verified unless config.toml says verify_jwt = false)
 *   /console/*       -> the console server (cookie sessions; web/server/console.ts)
 *   /_mail/*         -> the local mailbox the auth stand-in writes to (LOCAL ONLY)
 *   /*               -> the built console (web/dist), falling back to index.html for its deep links
 * CORS is answered here for every route, as the hosted gateway does. Every answer of the gateway's
 * own is JSON with a stable code: bad requests its HTTP parser rejects (oversized headers,
 * malformed framing) included, and header values that are not UTF-8 never reach an upstream.
 * One line per request goes to the log: time, method, path, status, milliseconds; never a
 * token, a query string or a body.
 */
import { appendFile, createReadStream, existsSync, statSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { extname, join, normalize, sep } from "node:path";
import { jwtVerify } from "jose";

const CORS_HEADERS: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
  "access-control-allow-headers":
    "authorization, x-client-info, apikey, content-type, content-profile, accept-profile, prefer, range, x-org-id, x-project-id, x-supabase-api-version",
  "access-control-expose-headers": "content-range, content-location, x-supabase-api-version",
  "access-control-max-age": "3600",
};

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "host"]);

const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".map": "application/json",
};

interface GatewayOptions {
  port: number;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  postgrestPort: number;
  edgePort: number;
  webDist: string;
  functionVerifiesJwt: (name: string) => boolean;
  auth: (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => Promise<void>;
  /** The local mailbox (LOCAL ONLY), under /_mail: the path after /_mail is passed on. */
  mailbox?: (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => Promise<void>;
  /** The console server, under /console: the path after /console is passed on. */
  console?: (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => Promise<void>;
  /** Where the per-request lines go. */
  logFile: string;
}

/** What the gateway's HTTP parser refuses, as statuses and codes (Node's parser error codes). */
const PARSER_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, "headers_too_large", "the request headers are too large"],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "request_timeout", "the request took too long to arrive"],
};

/** The most a client may still send after the gateway has answered (a refused upload is read and dropped up to this). */
const MAX_DRAIN_BYTES = 16 * 1024 * 1024;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** True when every header value is UTF-8 (Node reads header bytes as latin1; PostgREST chokes on the rest). */
function headersAreUtf8(req: IncomingMessage): boolean {
  for (let i = 1; i < req.rawHeaders.length; i += 2) {
    const value = req.rawHeaders[i];
    if (!/[^\x00-\x7f]/.test(value)) continue;
    try {
      utf8.decode(Buffer.from(value, "latin1"));
    } catch {
      return false;
    }
  }
  return true;
}

/** Answers a connection whose request the HTTP parser rejected: JSON, and the connection closes. */
function answerParserError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, message] = PARSER_ERRORS[err.code ?? ""] ?? [400, "bad_request", "the request is not valid HTTP/1.1"];
  const body = JSON.stringify({ error: { code, message }, message });
  socket.end(
    `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 408 ? "Request Timeout" : "Bad Request"}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Once an answer is on its way while the client is still sending (an upload refused as too
 * large, say), reads and drops the rest of the body so the client sees the answer instead of a
 * reset, then closes the connection.
 */
function drainRest(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  res.shouldKeepAlive = false;
  let drained = 0;
  req.removeAllListeners("data");
  req.unpipe();
  req.on("data", (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > MAX_DRAIN_BYTES) req.destroy();
  });
  req.resume();
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...CORS_HEADERS, "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
  drainRest(res.req, res);
}

function gatewayError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message }, message });
}

function apiKeyOf(req: IncomingMessage, query: URLSearchParams): string | null {
  const header = req.headers.apikey;
  return (Array.isArray(header) ? header[0] : header) ?? query.get("apikey");
}

function proxy(req: IncomingMessage, res: ServerResponse, port: number, path: string, extraHeaders: Record<string, string> = {}, body?: Buffer): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  }
  Object.assign(headers, extraHeaders, { host: `127.0.0.1:${port}`, "x-forwarded-proto": "http" });
  let answered = false;
  const upstream = httpRequest({ host: "127.0.0.1", port, method: req.method, path, headers }, (up) => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k) && !k.startsWith("access-control-")) out[k] = v;
    }
    res.writeHead(up.statusCode ?? 502, { ...out, ...CORS_HEADERS });
    // An upstream that answers before reading the whole body (a 413) gets no more of it; the
    // client's rest is drained here, so that it reads the answer rather than a reset.
    drainRest(req, res);
    up.on("end", () => (answered = true));
    up.pipe(res);
  });
  // A client that goes away mid-answer (a stream it stopped reading) takes the upstream request
  // with it, so that the function sees the cancellation.
  res.on("close", () => {
    if (!answered) upstream.destroy();
  });
  upstream.on("error", () => {
    if (!res.headersSent) gatewayError(res, 502, "upstream_unavailable", "the upstream service is not answering");
    else if (!answered) res.destroy();
  });
  if (body) upstream.end(body);
  else req.pipe(upstream);
}

/** The most of a form body the gateway reads to check it (PostgREST's own limit is far larger than any form we take). */
const MAX_FORM_BYTES = 1024 * 1024;

/**
 * Whether a form body (application/x-www-form-urlencoded) decodes to UTF-8. PostgREST answers a
 * bare 500 to one that doesn't (a percent-escaped byte such as %ae), so the gateway refuses it.
 */
function formIsUtf8(body: Buffer): boolean {
  const text = body.toString("latin1");
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const escaped = text[i] === "%" && /^[0-9a-f]{2}$/i.test(text.slice(i + 1, i + 3));
    bytes.push(escaped ? parseInt(text.slice(i + 1, i + 3), 16) : text.charCodeAt(i));
    if (escaped) i += 2;
  }
  try {
    utf8.decode(Uint8Array.from(bytes));
    return true;
  } catch {
    return false;
  }
}

/** The request's body, or null when it is longer than `limit`. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        resolve(null);
      } else chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
    // A client gone before the end of its body gets nothing (its answer goes nowhere anyway).
    req.on("close", () => {
      if (!req.complete) resolve(null);
    });
  });
}

async function verifiesAsJwt(token: string | undefined, secret: Uint8Array): Promise<boolean> {
  if (!token) return false;
  try {
    await jwtVerify(token, secret, { algorithms: ["HS256"] });
    return true;
  } catch {
    return false;
  }
}

function serveStatic(res: ServerResponse, webDist: string, pathname: string): void {
  let rel: string;
  try {
    rel = normalize(decodeURIComponent(pathname)).replace(/^([/\\])+/, "");
  } catch {
    return gatewayError(res, 400, "bad_path", "malformed path");
  }
  const root = join(webDist, sep);
  let file = join(webDist, rel);
  if (!file.startsWith(root) && file !== webDist) return gatewayError(res, 404, "not_found", "not found");
  if (!existsSync(file) || statSync(file).isDirectory()) file = join(webDist, "index.html");
  if (!existsSync(file)) {
    return gatewayError(res, 404, "web_not_built", "the web app is not built: run npm run build:web");
  }
  res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "x-content-type-options": "nosniff" });
  createReadStream(file).pipe(res);
}

/** Starts the gateway and resolves once it listens. */
export async function startGateway(opts: GatewayOptions): Promise<Server> {
  const secret = new TextEncoder().encode(opts.jwtSecret);
  const apiKeys = new Set([opts.anonKey, opts.serviceRoleKey]);

  const server = createServer((req, res) => {
    const started = performance.now();
    res.once("close", () => {
      const path = (req.url ?? "/").split("?")[0];
      const line = `${new Date().toISOString()} ${req.method} ${path} ${res.statusCode} ${Math.round(performance.now() - started)}ms\n`;
      appendFile(opts.logFile, line, () => {});
    });
    void route(req, res).catch(() => {
      if (!res.headersSent) gatewayError(res, 500, "gateway_error", "the gateway failed unexpectedly");
      else res.destroy();
    });
  });
  server.on("clientError", answerParserError);

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway.local");
    const { pathname, searchParams } = url;
    if (!headersAreUtf8(req)) return gatewayError(res, 400, "invalid_header", "a header value is not UTF-8");
    // The console and the mailbox are same-origin pages: no CORS for them.
    const local = /^\/(_mail|console)(\/.*)?$/.exec(pathname);
    const localHandler = local && (local[1] === "_mail" ? opts.mailbox : opts.console);
    if (local && localHandler) {
      await localHandler(req, res, local[2] ?? "/", searchParams);
      // What the handler did not read of a refused upload is read and dropped, as for every answer.
      return drainRest(req, res);
    }

    if (req.method === "OPTIONS") {
      res.writeHead(204, CORS_HEADERS).end();
      return;
    }

    const api = /^\/(rest|auth|functions)\/v1(\/.*)?$/.exec(pathname);
    if (!api) {
      if (req.method !== "GET" && req.method !== "HEAD") return gatewayError(res, 405, "method_not_allowed", "use GET");
      return serveStatic(res, opts.webDist, pathname);
    }
    const [, service, rest = "/"] = api;
    const upstreamPath = rest + url.search;

    if (service === "functions") {
      const name = rest.split("/")[1] ?? "";
      if (opts.functionVerifiesJwt(name)) {
        const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1];
        if (!(await verifiesAsJwt(bearer, secret))) {
          return gatewayError(res, 401, "invalid_jwt", "a valid JWT is required in the Authorization header");
        }
      }
      return proxy(req, res, opts.edgePort, upstreamPath);
    }

    const apiKey = apiKeyOf(req, searchParams);
    if (!apiKey) return gatewayError(res, 401, "no_api_key", "No API key found in request");
    if (!apiKeys.has(apiKey)) return gatewayError(res, 401, "invalid_api_key", "Invalid API key");

    if (service === "auth") return opts.auth(req, res, rest, searchParams);
    // Like the hosted gateway: without an Authorization header, the API key is the bearer.
    const extra: Record<string, string> = req.headers.authorization ? {} : { authorization: `Bearer ${apiKey}` };
    if (/^application\/x-www-form-urlencoded/i.test(req.headers["content-type"] ?? "")) {
      const form = await readBody(req, MAX_FORM_BYTES);
      if (!form) return gatewayError(res, 413, "body_too_large", "the form body is too large");
      if (!formIsUtf8(form)) return gatewayError(res, 400, "invalid_body", "the form body does not decode to UTF-8");
      return proxy(req, res, opts.postgrestPort, upstreamPath, extra, form);
    }
    return proxy(req, res, opts.postgrestPort, upstreamPath, extra);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => resolve());
  });
  return server;
}
