/**
 * The local API gateway: one port that routes like Supabase's (Kong) gateway.
 *   /rest/v1/*       -> PostgREST            (apikey required)
 *   /auth/v1/*       -> the auth stand-in    (apikey required)
 *   /functions/v1/*  -> the Deno edge router (JWT verified unless config.toml says verify_jwt = false)
 *   /env.json        -> the public URL and anon key for the web app (the anon key is public by design)
 *   /*               -> the built web app (web/dist), falling back to index.html
 * CORS is answered here for every route, as the hosted gateway does.
 */
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
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
  publicUrl: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  postgrestPort: number;
  edgePort: number;
  webDist: string;
  functionVerifiesJwt: (name: string) => boolean;
  auth: (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => Promise<void>;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { ...CORS_HEADERS, "content-type": "application/json" }).end(JSON.stringify(body));
}

function gatewayError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message }, message });
}

function apiKeyOf(req: IncomingMessage, query: URLSearchParams): string | null {
  const header = req.headers.apikey;
  return (Array.isArray(header) ? header[0] : header) ?? query.get("apikey");
}

function proxy(req: IncomingMessage, res: ServerResponse, port: number, path: string, extraHeaders: Record<string, string> = {}): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  }
  Object.assign(headers, extraHeaders, { host: `127.0.0.1:${port}`, "x-forwarded-proto": "http" });
  const upstream = httpRequest({ host: "127.0.0.1", port, method: req.method, path, headers }, (up) => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(up.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k) && !k.startsWith("access-control-")) out[k] = v;
    }
    res.writeHead(up.statusCode ?? 502, { ...out, ...CORS_HEADERS });
    up.pipe(res);
  });
  upstream.on("error", () => {
    if (!res.headersSent) gatewayError(res, 502, "upstream_unavailable", "the upstream service is not answering");
    else res.destroy();
  });
  req.pipe(upstream);
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
    void route(req, res).catch(() => {
      if (!res.headersSent) gatewayError(res, 500, "gateway_error", "the gateway failed unexpectedly");
      else res.destroy();
    });
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway.local");
    const { pathname, searchParams } = url;
    if (req.method === "OPTIONS") {
      res.writeHead(204, CORS_HEADERS).end();
      return;
    }

    const api = /^\/(rest|auth|functions)\/v1(\/.*)?$/.exec(pathname);
    if (!api) {
      if (pathname === "/env.json") return sendJson(res, 200, { supabaseUrl: opts.publicUrl, anonKey: opts.anonKey });
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
    return proxy(req, res, opts.postgrestPort, upstreamPath, extra);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, "127.0.0.1", () => resolve());
  });
  return server;
}
