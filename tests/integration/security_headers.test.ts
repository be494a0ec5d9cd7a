/**
 * The security headers (web/server/security_headers.ts) on everything the gateway serves, and on
 * the deployed console (web/server/deployed.ts); /.well-known/security.txt (RFC 9116) served as
 * the file the build renders.
 */
import { request } from "node:http";
import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { API_CSP, CONSOLE_CSP } from "../../web/server/security_headers.ts";
import { deployedConsoleApp } from "../../web/server/deployed.ts";
import { securityTxtConfig } from "../../scripts/security_txt.ts";
import { stack } from "../helpers/stack.ts";

const s = stack();

/** GET through the gateway with a Host header of our choosing (fetch won't send one). */
function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(s.apiUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const API = [
  ["PostgREST", "/rest/v1/agents?select=id", { apikey: s.anonKey }],
  ["a gateway refusal", "/rest/v1/agents", {}],
  ["a function", "/functions/v1/health", {}],
  ["the console server", "/console/session", {}],
  ["an absent service", "/storage/v1/object", {}],
] as const;

describe("security headers through the gateway", () => {
  it("gives the console's pages its strict CSP, never framed", async () => {
    for (const path of ["/", "/o/some/deep/link", "/widget.js"]) {
      const res = await get(path);
      expect(res.status, path).toBe(200);
      expect(res.headers["content-security-policy"], path).toBe(CONSOLE_CSP);
      expect(res.headers["x-frame-options"], path).toBe("DENY");
      expect(res.headers["x-content-type-options"], path).toBe("nosniff");
      expect(res.headers["referrer-policy"], path).toBe("no-referrer");
    }
    expect(CONSOLE_CSP).toMatch(/script-src 'self'(;|$)/);
    expect(CONSOLE_CSP).not.toMatch(/unsafe-eval|script-src[^;]*unsafe-inline/);
    expect(CONSOLE_CSP).toContain("frame-ancestors 'none'");
  });

  it("gives every other answer nosniff, no referrer and a CSP that loads nothing", async () => {
    for (const [what, path, headers] of API) {
      const res = await get(path, headers);
      expect(res.headers["x-content-type-options"], what).toBe("nosniff");
      expect(res.headers["referrer-policy"], what).toBe("no-referrer");
      expect(res.headers["content-security-policy"], what).toBe(API_CSP);
    }
  });

  it("adds HSTS when the host is not loopback, and never on loopback", async () => {
    for (const host of [new URL(s.apiUrl).host, "localhost:54321", "[::1]:54321", "console.localhost"]) {
      expect((await get("/", { host })).headers["strict-transport-security"], host).toBeUndefined();
    }
    for (const [what, path, headers] of [["the console", "/", {}], ...API] as const) {
      const res = await get(path, { ...headers, host: "console.example.com" });
      expect(res.headers["strict-transport-security"], what).toBe("max-age=63072000; includeSubDomains");
    }
  });

  it("puts them on the answer to a request its HTTP parser refuses", async () => {
    const url = new URL(s.apiUrl);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => socket.write("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"));
      let text = "";
      socket.on("data", (d) => (text += d.toString()));
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    expect(answer).toContain("x-content-type-options: nosniff");
    expect(answer).toContain(`content-security-policy: ${API_CSP}`);
  });
});

describe("/security", () => {
  it("serves the generated posture page, under the console's CSP, with no script", async () => {
    const res = await get("/security");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(res.headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(res.body).toContain("<h1>Security posture</h1>");
    expect(res.body).toContain("<h2>Honest gaps</h2>");
    expect(res.body).not.toMatch(/<script/i);
  });
});

describe("/.well-known/security.txt", () => {
  it("is served as text/plain with RFC 9116's fields, and an Expires more than 30 days ahead", async () => {
    const res = await get("/.well-known/security.txt");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("text/plain; charset=utf-8");
    const fields = new Map<string, string[]>();
    for (const line of res.body.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const m = /^([A-Za-z-]+): (.+)$/.exec(line);
      expect(m, line).not.toBeNull();
      fields.set(m![1], [...(fields.get(m![1]) ?? []), m![2]]);
    }
    expect(fields.get("Contact")?.length).toBeGreaterThan(0);
    expect(fields.get("Expires")).toEqual([securityTxtConfig().expires]);  // exactly one, as RFC 9116 requires
    expect(new Date(fields.get("Expires")![0]).getTime() - Date.now()).toBeGreaterThan(30 * 86_400_000);
    expect(fields.get("Policy")?.[0]).toMatch(/^https:\/\//);
    expect(fields.get("Preferred-Languages")).toEqual(["en"]);
  });
});

describe("the deployed console (web/server/main.ts)", () => {
  const app = deployedConsoleApp({
    supabaseUrl: s.apiUrl, anonKey: s.anonKey, origin: "https://console.example.com", cookieSecret: "test-secret-test-secret-test-secret",
    secureCookies: true, inactivityTimeout: null, timebox: null,
  });

  it("gives its pages and files the console's CSP, its server's answers the load-nothing one, HSTS on its host", async () => {
    for (const [path, csp] of [["/", CONSOLE_CSP], ["/o/x/runs", CONSOLE_CSP], ["/.well-known/security.txt", CONSOLE_CSP], ["/security", CONSOLE_CSP], ["/console/session", API_CSP]] as const) {
      const res = await app.fetch(new Request(`https://console.example.com${path}`, { headers: { host: "console.example.com" } }));
      await res.body?.cancel();
      expect(res.headers.get("content-security-policy"), path).toBe(csp);
      expect(res.headers.get("x-frame-options"), path).toBe("DENY");
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(res.headers.get("referrer-policy"), path).toBe("no-referrer");
      expect(res.headers.get("strict-transport-security"), path).toBe("max-age=63072000; includeSubDomains");
    }
    const local = await app.fetch(new Request("http://127.0.0.1:8080/", { headers: { host: "127.0.0.1:8080" } }));
    await local.body?.cancel();
    expect(local.headers.get("strict-transport-security")).toBeNull();
  });
});
