/**
 * The local API gateway: one port that routes like Supabase's (Kong) gateway.
 *   /rest/v1/*       -> PostgREST            (apikey required)
 *   /auth/v1/*       -> the auth stand-in    (apikey required)
 *   /functions/v1/*  -> the Deno edge router (JWT verified unless config.toml says verify_jwt = false)
 *   /console/*       -> the console server (cookie sessions; web/server/console.ts)
 *   /_mail/*         -> the local mailbox the auth stand-in writes to (LOCAL ONLY)
 *   /realtime/v1/*, /storage/v1/*, …  -> 404 not_available_locally (JSON): not run locally
 *   /*               -> the built console (web/dist), falling back to index.html for its deep links;
 *                       /.well-known/security.txt is a file there too (scripts/security_txt.ts), and
 *                       /security the posture page (security.html, scripts/posture.ts)
 * CORS is answered here for /rest/v1 and /auth/v1, as the hosted gateway does. Functions answer their
 * own (hosted Supabase adds no CORS headers to them): their preflights and headers pass through
 * untouched. The console's pages are never framed (CONSOLE_FRAMING_HEADERS). A function's body is
 * held to MAX_FUNCTION_BODY_BYTES here, and every answer given while the client is still sending
 * (a refused upload) waits for the rest of the request before the connection closes, so that the
 * client reads the answer instead of a reset, on every route. Every answer of the gateway's
 * own is JSON with a stable code: bad requests its HTTP parser rejects (oversized headers,
 * malformed framing) included, and header values that are not UTF-8 never reach an upstream.
 * One line per request goes to the log: time, method, path, status, milliseconds; never a
 * token, a query string or a body.
 */
import { appendFile, createReadStream, existsSync, statSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type Duplex, Transform } from "node:stream";
import { extname, join, normalize, sep } from "node:path";
import { createHash } from "node:crypto";
import { jwtVerify } from "jose";
import { patFormatValid } from "../../functions/_shared/pat/token.ts";
import { DATABASE_RETRY_AFTER_SECONDS } from "../../functions/_shared/http/unavailable.ts";
import { CONSOLE_FRAMING_HEADERS } from "../../web/server/console.ts";
import { API_CSP, CONSOLE_CSP, baseSecurityHeaders } from "../../web/server/security_headers.ts";

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
  ".txt": "text/plain; charset=utf-8",
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

/**
 * The most of a function request's body the gateway passes on. The functions' own limits are
 * smaller (the model gateway's 4 MiB is the largest); past this one the gateway answers the 413
 * itself, whatever the function would have done.
 */
const MAX_FUNCTION_BODY_BYTES = 8 * 1024 * 1024;

/**
 * How long the gateway keeps reading a request the answer did not need (a refused upload) before
 * the connection closes: in all, and without a byte (nginx's lingering_time and lingering_timeout).
 */
const LINGER_MS = 30_000;
const LINGER_IDLE_MS = 5_000;

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
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\ncontent-security-policy: ${API_CSP}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Makes every answer to `req` end only once the client has sent the whole request. An answer given
 * while the client is still sending (an upload refused as too large, by the gateway, a function or
 * the console) would otherwise close the connection over unread bytes, which the client sees as a
 * reset instead of the answer; the rest is read and dropped for at most LINGER_MS (LINGER_IDLE_MS
 * without a byte), then the connection closes. The answer itself is written at once, so a client
 * that reads while it sends has it in full.
 */
function endAfterRequest(req: IncomingMessage, res: ServerResponse): void {
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.end = ((...args: unknown[]) => {
    if (req.complete || req.destroyed) return end(...args);
    const [chunk, encoding] = args;
    if (chunk !== undefined && typeof chunk !== "function") res.write(chunk as Buffer, encoding as BufferEncoding);
    res.shouldKeepAlive = false;
    req.removeAllListeners("data");
    req.unpipe();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(total);
      clearTimeout(idle);
      end();
    };
    const stop = () => {
      finish();
      req.destroy();
    };
    const total = setTimeout(stop, LINGER_MS);
    let idle = setTimeout(stop, LINGER_IDLE_MS);
    req.on("data", () => {
      clearTimeout(idle);
      idle = setTimeout(stop, LINGER_IDLE_MS);
    });
    req.once("end", finish);
    req.once("close", finish);
    req.resume();
    return res;
  }) as typeof res.end;
}

/** The CORS headers of the gateway's own answers: none on a function's route (functions answer their own). */
function corsFor(req: IncomingMessage): Record<string, string> {
  return /^\/functions\/v1(\/|$|\?)/.test(req.url ?? "") ? {} : CORS_HEADERS;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...corsFor(res.req), "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

function gatewayError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message }, message });
}

function apiKeyOf(req: IncomingMessage, query: URLSearchParams): string | null {
  const header = req.headers.apikey;
  return (Array.isArray(header) ? header[0] : header) ?? query.get("apikey");
}

/**
 * Passes the request on to `port` and its answer back. With `cors`, the upstream's CORS headers are
 * replaced by the gateway's (PostgREST); without, they pass through untouched (functions). With
 * `maxBytes`, a streamed body that grows past it is cut and answered 413 here.
 */
function proxy(
  req: IncomingMessage,
  res: ServerResponse,
  target: { port: number; path: string; cors: boolean; maxBytes?: number },
  extraHeaders: Record<string, string> = {},
  body?: Buffer,
): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  }
  Object.assign(headers, extraHeaders, { host: `127.0.0.1:${target.port}`, "x-forwarded-proto": "http" });
  let answered = false;
  let refused = false;
  const upstream = httpRequest({ host: "127.0.0.1", port: target.port, method: req.method, path: target.path, headers }, (up) => {
    if (refused) return void up.resume();
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k) && !(target.cors && k.startsWith("access-control-"))) out[k] = v;
    }
    // An upstream that can't serve now (PostgREST without its database) says when to come back.
    if (up.statusCode === 503 && out["retry-after"] === undefined) out["retry-after"] = String(DATABASE_RETRY_AFTER_SECONDS);
    res.writeHead(up.statusCode ?? 502, target.cors ? { ...out, ...CORS_HEADERS } : out);
    // An upstream that answers before reading the whole body (a 413) gets no more of it: ending
    // the answer drops the rest (endAfterRequest), and the upstream request is let go.
    up.on("end", () => {
      answered = true;
      if (!req.complete) upstream.destroy();
    });
    up.pipe(res);
  });
  // A client that goes away mid-answer (a stream it stopped reading) takes the upstream request
  // with it, so that the function sees the cancellation.
  res.on("close", () => {
    if (!answered) upstream.destroy();
  });
  upstream.on("error", () => {
    if (refused) return;
    if (!res.headersSent) gatewayError(res, 502, "upstream_unavailable", "the upstream service is not answering");
    else if (!answered) res.destroy();
  });
  if (body) return void upstream.end(body);
  if (target.maxBytes === undefined) return void req.pipe(upstream);
  let size = 0;
  const limit = target.maxBytes;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      done(size > limit ? new RangeError("body too large") : null, chunk);
    },
  });
  counted.on("error", () => {
    req.unpipe(counted);
    if (res.headersSent) return;
    refused = true;
    upstream.destroy();
    gatewayError(res, 413, "body_too_large", `a function's body is limited to ${limit} bytes`);
  });
  req.pipe(counted).pipe(upstream);
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
  // A page of its own beside the console (/security: security.html), else the console's deep link.
  if ((!existsSync(file) || statSync(file).isDirectory()) && extname(file) === "" && existsSync(`${file}.html`)) file = `${file}.html`;
  else if (!existsSync(file) || statSync(file).isDirectory()) file = join(webDist, "index.html");
  if (!existsSync(file)) {
    return gatewayError(res, 404, "web_not_built", "the web app is not built: run npm run build:web");
  }
  res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", ...CONSOLE_FRAMING_HEADERS, "content-security-policy": CONSOLE_CSP });
  createReadStream(file).pipe(res);
}

/**
 * Personal access tokens at the door (docs/tokens.md). A request whose Authorization is
 * `Bearer gtp_…` to REST or a function goes on with the access token the tokens function exchanges
 * it for; a token whose checksum fails is refused here, before anything is asked of the database.
 * Exchanged tokens are kept until a minute before they expire (the database re-checks the token
 * row on every request, so a revocation still takes effect at once). The access token never goes
 * back to the caller: Supabase Auth would take it as the owner's. Hosted Supabase's gateway takes
 * JWTs only: there REST with a token goes through the rest function (/functions/v1/rest/…), which
 * does the same exchange inside.
 */
export class PatExchanger {
  private readonly cache = new Map<string, { authorization: string; until: number }>();
  constructor(private readonly edgePort: number, private readonly serviceRoleKey: string) {}

  /** The Authorization to send on for a `gtp_` bearer, or the refusal to answer (status and body). */
  async exchange(pat: string): Promise<{ authorization: string } | { status: number; code: string; message: string }> {
    if (!patFormatValid(pat)) return { status: 401, code: "token_invalid", message: "this is not a personal access token (its checksum does not hold)" };
    const key = createHash("sha256").update(pat).digest("hex");
    const kept = this.cache.get(key);
    if (kept && kept.until > Date.now()) return { authorization: kept.authorization };
    // The exchange is internal: the access token goes on to PostgREST or a function, never back to the caller.
    const answer = await fetch(`http://127.0.0.1:${this.edgePort}/tokens/exchange`, {
      method: "POST", headers: { authorization: `Bearer ${this.serviceRoleKey}`, "x-personal-access-token": pat },
    });
    const body = await answer.json() as { access_token: string; expires_at: number; error?: { code: string; message: string } };
    if (answer.status !== 200) return { status: answer.status, code: body.error?.code ?? "token_exchange_failed", message: body.error?.message ?? "the token could not be exchanged" };
    const { access_token, expires_at } = body;
    const authorization = `Bearer ${access_token}`;
    if (this.cache.size >= 1000) this.cache.clear();
    this.cache.set(key, { authorization, until: expires_at * 1000 - 60_000 });
    return { authorization };
  }
}

/** Starts the gateway and resolves once it listens. */
export async function startGateway(opts: GatewayOptions): Promise<Server> {
  const secret = new TextEncoder().encode(opts.jwtSecret);
  const apiKeys = new Set([opts.anonKey, opts.serviceRoleKey]);
  const pats = new PatExchanger(opts.edgePort, opts.serviceRoleKey);

  const server = createServer((req, res) => {
    const started = performance.now();
    endAfterRequest(req, res);
    // On every answer (web/server/security_headers.ts); a header the answer sets itself (a page's
    // own CSP: the console's, the mailbox's) takes precedence over these.
    for (const [name, value] of Object.entries({ ...baseSecurityHeaders(req.headers.host), "content-security-policy": API_CSP })) {
      res.setHeader(name, value);
    }
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
      return await localHandler(req, res, local[2] ?? "/", searchParams);
    }

    // Supabase's other services, which the local stack doesn't run: a JSON 404 that says so (with
    // CORS, so a browser's supabase-js reads it), never the console's page with a 200.
    const absent = /^\/(realtime|storage|graphql|pg-meta|analytics)\/v1(\/.*)?$/.exec(pathname);
    if (absent) {
      if (req.method === "OPTIONS") return void res.writeHead(204, CORS_HEADERS).end();
      res.writeHead(404, { "content-type": "application/json", ...CORS_HEADERS });
      res.end(JSON.stringify({ error: { code: "not_available_locally", message: `/${absent[1]}/v1 is not part of the local stack (docs/local-stack.md); it runs on hosted Supabase.` } }));
      return;
    }
    const api = /^\/(rest|auth|functions)\/v1(\/.*)?$/.exec(pathname);
    if (req.method === "OPTIONS" && api?.[1] !== "functions") {
      res.writeHead(204, CORS_HEADERS).end();
      return;
    }
    if (!api) {
      if (req.method !== "GET" && req.method !== "HEAD") return gatewayError(res, 405, "method_not_allowed", "use GET");
      return serveStatic(res, opts.webDist, pathname);
    }
    const [, service, rest = "/"] = api;
    const upstreamPath = rest + url.search;

    // A personal access token goes on as the access token it is exchanged for, to REST and to the
    // functions that verify JWTs. The others (tokens, inbound) take it as it is, as they do hosted.
    const patBearer = /^Bearer\s+(gtp_\S*)$/i.exec(req.headers.authorization ?? "")?.[1];
    const takesJwt = service === "rest" || (service === "functions" && opts.functionVerifiesJwt(rest.split("/")[1] ?? ""));
    if (patBearer && takesJwt && req.method !== "OPTIONS") {
      const swapped = await pats.exchange(patBearer);
      if ("status" in swapped) {
        // In the shape of the service's own errors: PostgREST's for REST, the functions' otherwise.
        if (service === "rest") return sendJson(res, swapped.status, { code: swapped.code, message: swapped.message, details: null, hint: null });
        return gatewayError(res, swapped.status, swapped.code, swapped.message);
      }
      req.headers.authorization = swapped.authorization;
    }

    if (service === "functions") {
      const name = rest.split("/")[1] ?? "";
      if (Number(req.headers["content-length"] ?? 0) > MAX_FUNCTION_BODY_BYTES) {
        return gatewayError(res, 413, "body_too_large", `a function's body is limited to ${MAX_FUNCTION_BODY_BYTES} bytes`);
      }
      // A preflight carries no credentials: the function answers it (and its CORS) itself.
      if (req.method !== "OPTIONS" && opts.functionVerifiesJwt(name)) {
        const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "")?.[1];
        if (!(await verifiesAsJwt(bearer, secret))) {
          return gatewayError(res, 401, "invalid_jwt", "a valid JWT is required in the Authorization header");
        }
      }
      return proxy(req, res, { port: opts.edgePort, path: upstreamPath, cors: false, maxBytes: MAX_FUNCTION_BODY_BYTES });
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
      return proxy(req, res, { port: opts.postgrestPort, path: upstreamPath, cors: true }, extra, form);
    }
    return proxy(req, res, { port: opts.postgrestPort, path: upstreamPath, cors: true }, extra);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => resolve());
  });
  return server;
}
