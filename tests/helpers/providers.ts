/**
 * Local provider servers for the connector tests: one HTTPS server on the loopback port that
 * scripts/test.ts reserved and allowed (and no other) for the throwaway stack's edge functions,
 * with a certificate its run-specific CA signed. It speaks just enough of each provider:
 *
 *   /slack/services/<hook>                 Slack incoming webhook (404 no_service when unknown)
 *   /discord/api/webhooks/<id>/<token>     Discord webhook: GET describes it, POST delivers
 *   /hooks/<hook>                          a customer's own HTTPS endpoint
 *   /github/user, /github/repos/...        GitHub REST: who am I (X-OAuth-Scopes), and calls
 *   /notion/v1/users/me                    Notion: who am I
 *   /oauth/authorize, /oauth/token, /oauth/revoke, /oauth/api/...   a generic OAuth2 provider (code + PKCE,
 *                                          refresh, RFC 7009; /oauth/authorize consents at once and redirects back)
 *
 * Every request is recorded (`requests`) so that tests can see what reached the provider.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";

export interface ProviderRequest {
  method: string;
  path: string;
  authorization: string | null;
  body: string;
}

interface Grant {
  scope: string;
  challenge: string;
  redirectUri: string;
}

interface AccessToken {
  expiresAt: number;
  refreshToken: string;
}

export interface FakeProviders {
  base: string;
  requests: ProviderRequest[];
  slackHooks: Set<string>;
  discordHooks: Set<string>;
  customHooks: Set<string>;
  /** GitHub tokens and the scopes each reports (null: a fine-grained token, no header). */
  githubTokens: Map<string, string | null>;
  notionTokens: Set<string>;
  /** OAuth2 client credentials the token endpoint accepts. */
  oauthClient: { id: string; secret: string };
  /** Lifetime of the access tokens the OAuth2 provider issues, in seconds. */
  accessTokenSeconds: number;
  /** Extra scopes the OAuth2 provider grants beyond those asked for (a misbehaving provider). */
  extraScopes: string[];
  accessTokens: Map<string, AccessToken>;
  refreshTokens: Set<string>;
  revoked: Set<string>;
  /** Runs before each request is answered: a test holds the answer (a slow live check) until it resolves. */
  gate: ((path: string) => Promise<void> | void) | null;
  /** Consents to an authorization URL as a user would, answering the code the redirect carries. */
  authorize(authorizationUrl: string): { code: string; state: string; scope: string };
  close(): Promise<void>;
}

/** The reserved port and certificate, from the file scripts/test.ts wrote. */
function settings(): { port: number; consoleProviderPort: number; mcpProviderPort: number; cert: string; key: string } {
  const file = process.env.GATEHOUSE_TEST_PROVIDERS_FILE;
  if (!file) throw new Error("the connector tests run under npm test, which starts local provider servers' allowance (GATEHOUSE_TEST_PROVIDERS_FILE is unset)");
  return JSON.parse(readFileSync(file, "utf8"));
}

const b64url = (b: Buffer) => b.toString("base64url");
const token = (prefix: string) => `${prefix}_${randomBytes(18).toString("hex")}`;

/**
 * Starts the providers on the connector tests' port, or (`for: "console"`, `"mcp"`) on the one reserved
 * for the console's browser tests or the MCP endpoint's, so that two test files never share a server.
 */
export async function startProviders(opts: { for?: "connectors" | "console" | "mcp" } = {}): Promise<FakeProviders> {
  const { port: connectorsPort, consoleProviderPort, mcpProviderPort, cert, key } = settings();
  const port = opts.for === "console" ? consoleProviderPort : opts.for === "mcp" ? mcpProviderPort : connectorsPort;
  const grants = new Map<string, Grant>();
  const p: FakeProviders = {
    base: `https://127.0.0.1:${port}`,
    requests: [],
    slackHooks: new Set(),
    discordHooks: new Set(),
    customHooks: new Set(),
    githubTokens: new Map(),
    notionTokens: new Set(),
    oauthClient: { id: "gatehouse-test-client", secret: token("client_secret") },
    accessTokenSeconds: 3600,
    extraScopes: [],
    accessTokens: new Map(),
    refreshTokens: new Set(),
    revoked: new Set(),
    gate: null,
    authorize(authorizationUrl) {
      const url = new URL(authorizationUrl);
      const q = url.searchParams;
      if (q.get("response_type") !== "code" || q.get("client_id") !== p.oauthClient.id) throw new Error("not an authorization request of our client");
      if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) throw new Error("no PKCE S256 challenge");
      const code = token("code");
      grants.set(code, { scope: q.get("scope") ?? "", challenge: q.get("code_challenge")!, redirectUri: q.get("redirect_uri")! });
      return { code, state: q.get("state")!, scope: q.get("scope") ?? "" };
    },
    close: () => new Promise((done) => server.close(() => done())),
  };

  const issue = (scope: string) => {
    const access = token("access");
    const refresh = token("refresh");
    p.accessTokens.set(access, { expiresAt: Date.now() + p.accessTokenSeconds * 1000, refreshToken: refresh });
    p.refreshTokens.add(refresh);
    return { access_token: access, token_type: "Bearer", expires_in: p.accessTokenSeconds, refresh_token: refresh, scope };
  };

  const server: Server = createServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const path = new URL(req.url ?? "/", p.base).pathname;
      await p.gate?.(path);
      const authorization = req.headers.authorization ?? null;
      p.requests.push({ method: req.method ?? "", path, authorization, body });
      const send = (status: number, answer: unknown, headers: Record<string, string> = {}) => {
        const text = typeof answer === "string" ? answer : JSON.stringify(answer);
        res.writeHead(status, { "content-type": typeof answer === "string" ? "text/plain" : "application/json", ...headers });
        res.end(text);
      };
      const bearer = authorization?.match(/^Bearer (.+)$/)?.[1] ?? null;
      let m: RegExpMatchArray | null;

      if ((m = path.match(/^\/slack\/services\/(.+)$/)) && req.method === "POST") {
        return p.slackHooks.has(m[1]) ? send(200, "ok") : send(404, "no_service");
      }
      if ((m = path.match(/^\/discord\/api\/webhooks\/(.+)$/))) {
        if (!p.discordHooks.has(m[1])) return send(401, { message: "Invalid Webhook Token", code: 50027 });
        return req.method === "GET" ? send(200, { id: m[1].split("/")[0], type: 1, name: "gatehouse" }) : send(204, "");
      }
      if ((m = path.match(/^\/hooks\/(.+)$/)) && req.method === "POST") {
        return p.customHooks.has(m[1]) ? send(200, { received: true }) : send(404, { error: "unknown hook" });
      }
      if (path.startsWith("/github/")) {
        if (!bearer || !p.githubTokens.has(bearer)) return send(401, { message: "Bad credentials" });
        const scopes = p.githubTokens.get(bearer);
        const headers: Record<string, string> = scopes === null || scopes === undefined ? {} : { "x-oauth-scopes": scopes };
        if (path === "/github/user" && req.method === "GET") return send(200, { login: "gatehouse-bot", id: 1 }, headers);
        // A careless API that echoes the caller's credential back: the sanitizer must catch it.
        return send(201, { number: 7, path, echoed_authorization: authorization, note: `created with ${bearer}` }, headers);
      }
      if (path === "/notion/v1/users/me") {
        return bearer && p.notionTokens.has(bearer) && req.headers["notion-version"]
          ? send(200, { object: "user", type: "bot", name: "Gatehouse" })
          : send(401, { object: "error", code: "unauthorized" });
      }
      if (path === "/oauth/authorize" && req.method === "GET") {
        // The consent screen a person would click through, approved at once: back to the client
        // with the code (for browser tests; the connector tests call authorize() directly).
        try {
          const consent = p.authorize(`${p.base}${req.url}`);
          const back = new URL(grants.get(consent.code)!.redirectUri);
          back.searchParams.set("code", consent.code);
          back.searchParams.set("state", consent.state);
          res.writeHead(302, { location: back.href }).end();
        } catch (e) {
          send(400, { error: "invalid_request", error_description: (e as Error).message });
        }
        return;
      }
      if (path === "/oauth/token" && req.method === "POST") {
        const expected = `Basic ${Buffer.from(`${p.oauthClient.id}:${p.oauthClient.secret}`).toString("base64")}`;
        if (authorization !== expected) return send(401, { error: "invalid_client" });
        const form = new URLSearchParams(body);
        if (form.get("grant_type") === "authorization_code") {
          const grant = grants.get(form.get("code") ?? "");
          grants.delete(form.get("code") ?? "");
          const verifier = form.get("code_verifier") ?? "";
          if (!grant || grant.redirectUri !== form.get("redirect_uri") || b64url(createHash("sha256").update(verifier).digest()) !== grant.challenge) {
            return send(400, { error: "invalid_grant" });
          }
          return send(200, issue([grant.scope, ...p.extraScopes].filter(Boolean).join(" ")));
        }
        if (form.get("grant_type") === "refresh_token") {
          const refresh = form.get("refresh_token") ?? "";
          if (!p.refreshTokens.has(refresh) || p.revoked.has(refresh)) return send(400, { error: "invalid_grant" });
          p.refreshTokens.delete(refresh);  // rotation: a refresh token works once
          return send(200, issue(""));
        }
        return send(400, { error: "unsupported_grant_type" });
      }
      if (path === "/oauth/revoke" && req.method === "POST") {
        const expected = `Basic ${Buffer.from(`${p.oauthClient.id}:${p.oauthClient.secret}`).toString("base64")}`;
        if (authorization !== expected) return send(401, { error: "invalid_client" });
        const revoked = new URLSearchParams(body).get("token") ?? "";
        p.revoked.add(revoked);
        // Revoking a refresh token revokes the access tokens issued with it.
        for (const [access, t] of p.accessTokens) if (t.refreshToken === revoked) p.revoked.add(access);
        return send(200, "");
      }
      if (path.startsWith("/oauth/api/")) {
        const t = bearer ? p.accessTokens.get(bearer) : undefined;
        if (!bearer || !t || p.revoked.has(bearer)) return send(401, { error: "invalid_token" });
        if (t.expiresAt <= Date.now()) return send(401, { error: "invalid_token", error_description: "expired" });
        return send(200, { ok: true, path, received: body ? JSON.parse(body) : null });
      }
      send(404, { error: "no such endpoint" });
    });
  });
  await new Promise<void>((done, failed) => server.once("error", failed).listen(port, "127.0.0.1", () => done()));
  return p;
}
