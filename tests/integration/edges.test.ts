/**
 * The edges of the stack answer bad input with a 4xx JSON error, never a 500, an empty body or a
 * reset: the gateway's own HTTP parser, header bytes that are not UTF-8, uploads refused before
 * they are fully sent, tokens that are validly signed but name no uuid, strings Postgres can't
 * hold. (tests/integration/fuzz.test.ts throws generated input at every route.)
 */
import { readdirSync, readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { accessToken, anonClient, signedIn, stack, stackFile } from "../helpers/stack.ts";
import { ACME } from "../helpers/fixtures.ts";

const s = stack();
const ada = await signedIn("ada@acme.test");
afterAll(() => ada.auth.signOut());

/** Sends raw bytes to the gateway and reads the raw answer (until the server closes or 3 s pass). */
function raw(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(s.ports.api, "127.0.0.1", () => socket.write(bytes));
    let answer = "";
    socket.on("data", (b) => (answer += b.toString("latin1")));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
    socket.setTimeout(3000, () => {
      socket.destroy();
      resolve(answer);
    });
  });
}

/** The status and JSON body of a raw HTTP answer. */
function parsed(answer: string): { status: number; body: any } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]);
  const body = answer.slice(answer.indexOf("\r\n\r\n") + 4);
  return { status, body: JSON.parse(body) };
}

/** A token signed with the project's secret, with the claims given. */
function forged(claims: Record<string, unknown>): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ role: "authenticated", ...claims }).setProtectedHeader({ alg: "HS256" }).setIssuedAt(now).setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(s.jwtSecret));
}

describe("the gateway's own answers", () => {
  it("answers Supabase's services the local stack doesn't run with a JSON 404, which supabase-js reports as such", async () => {
    for (const path of ["/realtime/v1/websocket", "/storage/v1/object/list/avatars", "/storage/v1/bucket"]) {
      const res = await fetch(`${s.apiUrl}${path}`, { headers: { apikey: s.anonKey } });
      expect(res.status, path).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      expect(await res.json()).toMatchObject({ error: { code: "not_available_locally" } });
    }
    const { error } = await anonClient().storage.from("avatars").list();
    expect(error?.message ?? "").not.toMatch(/JSON|Unexpected token/);
    expect(error).toBeTruthy();
  });

  it("answers headers too large for its parser with a JSON 431", async () => {
    const answer = await raw(`GET /rest/v1/ HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(parsed(answer)).toMatchObject({ status: 431, body: { error: { code: "headers_too_large" } } });
    expect(answer.toLowerCase()).toContain("connection: close");
  });

  it("answers malformed framing with a JSON 400", async () => {
    const answer = await raw("POST /rest/v1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    expect(parsed(answer)).toMatchObject({ status: 400, body: { error: { code: "bad_request" } } });
    expect(parsed(await raw("NOT HTTP AT ALL\r\n\r\n"))).toMatchObject({ status: 400 });
  });

  it("refuses header values that are not UTF-8 before any upstream sees them", async () => {
    const bytes = Buffer.concat([
      Buffer.from(`GET /rest/v1/organizations HTTP/1.1\r\nHost: x\r\nConnection: close\r\napikey: ${s.anonKey}\r\nX-Org-Id: `),
      Buffer.from([0xff, 0xfe, 0x41]),
      Buffer.from("\r\n\r\n"),
    ]);
    expect(parsed(await raw(bytes))).toMatchObject({ status: 400, body: { error: { code: "invalid_header" } } });
  });

  it("refuses a form body that does not decode to UTF-8 before PostgREST sees it", async () => {
    const res = await fetch(`${s.restUrl}/rpc/verify_audit_chain`, {
      method: "POST",
      headers: { apikey: s.serviceRoleKey, authorization: `Bearer ${s.serviceRoleKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: "p=%ae",
    });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_body");
  });

  it("lets the client read a 413 for an upload refused before it was all sent", async () => {
    const token = await accessToken(ada);
    const big = Buffer.alloc(4 * 1024 * 1024, "a");
    const cases: { url: string; headers: Record<string, string>; code: string }[] = [
      // A function that refuses on the declared length, and one that stops reading a chunked body.
      { url: `${s.functionsUrl}/connectors/connections`, headers: { authorization: `Bearer ${token}`, "x-org-id": ACME, "content-length": String(big.length) }, code: "body_too_large" },
      { url: `${s.functionsUrl}/connectors/connections`, headers: { authorization: `Bearer ${token}`, "x-org-id": ACME }, code: "body_too_large" },
      // The auth stand-in and the console server, in the gateway's own process.
      { url: `${s.apiUrl}/auth/v1/token?grant_type=password`, headers: { apikey: s.anonKey }, code: "request_too_large" },
      { url: `${s.apiUrl}/console/session`, headers: { origin: s.apiUrl, cookie: "gh-csrf=t", "x-csrf-token": "t" }, code: "body_too_large" },
      // A form body, which the gateway reads itself before PostgREST.
      { url: `${s.restUrl}/rpc/verify_audit_chain`, headers: { apikey: s.anonKey, "content-type": "application/x-www-form-urlencoded" }, code: "body_too_large" },
    ];
    for (const c of cases) {
      const answer = await upload(c.url, { "content-type": "application/json", ...c.headers }, big);
      expect(answer.status, c.url).toBe(413);
      const body = JSON.parse(answer.text);
      expect(body.error?.code ?? body.error_code, c.url).toBe(c.code);
    }
  });

  it("answers a 20 MB body on every function route with a JSON 413, declared or chunked, never a reset", async () => {
    const token = await accessToken(ada);
    const big = Buffer.alloc(20 * 1024 * 1024, "a");
    const routes = await functionRoutes(token);
    expect(routes.map((r) => r.path)).toEqual(expect.arrayContaining(["/connectors/connections", "/widget/v1/sessions", "/model-gateway/v1/chat/completions"]));
    for (const route of routes) {
      for (const declared of [true, false]) {
        const url = `${s.functionsUrl}${route.path}`;
        const headers: Record<string, string> = {
          "content-type": "application/json", authorization: `Bearer ${token}`, "x-org-id": ACME, origin: "https://shop.example.test",
          ...(declared ? { "content-length": String(big.length) } : { "transfer-encoding": "chunked" }),
        };
        const answer = await sendAllThenRead(url, headers, big, route.method).catch((e: Error) => ({ status: 0, text: `reset: ${e.message}` }));
        const label = `${route.method} ${route.path} (${declared ? "declared" : "chunked"})`;
        expect(answer.status, `${label}: ${answer.text.slice(0, 200)}`).toBe(413);
        expect(JSON.parse(answer.text).error.code, label).toBe("body_too_large");
      }
    }
  }, 180_000);
});

/**
 * Sends the whole request (a client that reads its answer only once it has sent everything, as
 * many do), then reads the answer until the server closes; a reset while sending or reading rejects.
 */
function sendAllThenRead(url: string, headers: Record<string, string>, body: Buffer, method: string): Promise<{ status: number; text: string }> {
  const { hostname, port, pathname, search } = new URL(url);
  const chunked = headers["transfer-encoding"] === "chunked";
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let answer = Buffer.alloc(0);
    socket.on("data", (b: Buffer) => (answer = Buffer.concat([answer, b])));
    socket.on("error", reject);
    socket.on("end", () => {
      const text = answer.toString("utf8");
      const head = text.slice(0, text.indexOf("\r\n\r\n"));
      let rest = text.slice(text.indexOf("\r\n\r\n") + 4);
      if (/^transfer-encoding:\s*chunked/im.test(head)) rest = rest.replace(/^[0-9a-f]+\r\n/i, "").replace(/\r\n0\r\n\r\n$/, "");
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), text: rest });
    });
    const lines = [`${method} ${pathname}${search} HTTP/1.1`, `host: ${hostname}:${port}`, "connection: close",
                   ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
    const parts: Buffer[] = [Buffer.from(lines.join("\r\n") + "\r\n\r\n")];
    for (let at = 0; at < body.length; at += 65536) {
      const chunk = body.subarray(at, at + 65536);
      parts.push(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")]) : chunk);
    }
    if (chunked) parts.push(Buffer.from("0\r\n\r\n"));
    let i = 0;
    const next = () => {
      while (i < parts.length) {
        if (!socket.write(parts[i++])) return void socket.once("drain", next);
      }
    };
    socket.once("connect", next);
  });
}

/** Every route of every function that takes a body (from each function's OpenAPI document), path parameters filled in. */
async function functionRoutes(token: string): Promise<{ method: string; path: string }[]> {
  const names = readdirSync("functions", { withFileTypes: true }).filter((d) => d.isDirectory() && !d.name.startsWith("_")).map((d) => d.name);
  const routes: { method: string; path: string }[] = [];
  for (const name of names) {
    const res = await fetch(`${s.functionsUrl}/${name}/openapi.json`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 200) {
      await res.body?.cancel();
      routes.push({ method: "POST", path: `/${name}` });
      continue;
    }
    const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const method of Object.keys(operations)) {
        if (!["post", "put", "patch"].includes(method)) continue;
        routes.push({ method: method.toUpperCase(), path: path.replace(/\{[^}]+\}/g, crypto.randomUUID()) });
      }
    }
  }
  return routes;
}

/** POSTs `body` in 64 KiB writes (chunked unless a content-length is given) and reads the answer; a reset rejects. */
function upload(url: string, headers: Record<string, string>, body: Buffer, method = "POST"): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      let text = "";
      res.on("data", (c) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    let at = 0;
    const next = () => {
      while (at < body.length) {
        const chunk = body.subarray(at, at + 65536);
        at += chunk.length;
        if (!req.write(chunk)) return void req.once("drain", next);
      }
      req.end();
    };
    next();
  });
}

describe("validly signed tokens that name no uuid", () => {
  it("are refused as 401 by the functions", async () => {
    for (const claims of [{ sub: "not-a-uuid" }, { sub: crypto.randomUUID(), session_id: "nope" }]) {
      const res = await fetch(`${s.functionsUrl}/audit-export`, { headers: { authorization: `Bearer ${await forged(claims)}`, "x-org-id": ACME } });
      expect(res.status).toBe(401);
      expect((await res.json()).error.code).toBe("invalid_token");
    }
  });

  it("are refused as 401 by the auth stand-in", async () => {
    for (const claims of [{ sub: "not-a-uuid", session_id: crypto.randomUUID() }, { sub: crypto.randomUUID(), session_id: "nope" }]) {
      const res = await fetch(`${s.apiUrl}/auth/v1/user`, { headers: { apikey: s.anonKey, authorization: `Bearer ${await forged(claims)}` } });
      expect(res.status).toBe(401);
      expect((await res.json()).error_code).toBe("bad_jwt");
    }
  });
});

describe("function bodies", () => {
  it("refuse NUL characters, unpaired surrogates and deep nesting at the JSON boundary", async () => {
    const token = await accessToken(ada);
    const send = (text: string) => fetch(`${s.functionsUrl}/connectors/connections`, {
      method: "POST", headers: { authorization: `Bearer ${token}`, "x-org-id": ACME, "content-type": "application/json" }, body: text,
    }).then(async (r) => ({ status: r.status, body: await r.json() }));
    expect(await send('{"provider":"github","display_name":"a\\u0000b","credential":{}}')).toMatchObject({ status: 400, body: { error: { code: "invalid_text" } } });
    expect(await send('{"provider":"github","display_name":"\\ud800","credential":{}}')).toMatchObject({ status: 400, body: { error: { code: "invalid_text" } } });
    expect(await send('{"\\u0000":1}')).toMatchObject({ status: 400, body: { error: { code: "invalid_text" } } });
    expect(await send("[".repeat(100) + "]".repeat(100))).toMatchObject({ status: 400, body: { error: { code: "json_too_deep" } } });
  });
});

describe("the API's refusals are 4xx", () => {
  const asAda = async () => ({ apikey: s.anonKey, authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ACME, "content-type": "application/json" });
  const call = async (method: string, path: string, headers: Record<string, string>, body?: unknown) => {
    const res = await fetch(`${s.restUrl}/${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, body: await res.json() };
  };

  it("answers RPCs that find nothing with a 404 and a code", async () => {
    expect(await call("POST", "rpc/accept_invitation", await asAda(), { p_token: "nope" })).toMatchObject({ status: 404, body: { code: "invitation_not_found" } });
    expect(await call("POST", "rpc/purge_audit_payload", await asAda(), { p_seq: 999_999_999, p_reason: "test" }))
      .toMatchObject({ status: 404, body: { code: "audit_payload_not_found" } });
  });

  it("answers writes to read-only views with a 4xx", async () => {
    for (const [method, path] of [["POST", "audit_log"], ["PATCH", "audit_log?seq=eq.1"], ["DELETE", "audit_log?seq=eq.1"], ["POST", "pending_approvals"]] as const) {
      const r = await call(method, path, await asAda(), method === "DELETE" ? undefined : { action: "x" });
      expect(r.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${method} ${path}`).toBeLessThan(500);
    }
    expect(await call("POST", "audit_log", await asAda(), { action: "x" })).toMatchObject({ status: 403, body: { code: "42501" } });
  });

  it("lets the service role read pending approvals", async () => {
    const r = await call("GET", "pending_approvals?select=*&limit=1", { apikey: s.serviceRoleKey });
    expect(r.status).toBe(200);
    expect(Array.isArray(r.body)).toBe(true);
  });

  it("refuses times Postgres can't hold in function queries", async () => {
    const res = await fetch(`${s.functionsUrl}/audit-export?from=0000-01-01T00:00:00Z`, { headers: { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ACME } });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe("invalid_query");
  });
});

describe("request logs", () => {
  it("the gateway and the auth stand-in log one line per request, without tokens, keys or queries", async () => {
    const token = await accessToken(ada);
    const marker = `/rest/v1/agents-${randomMarker()}`;
    await (await fetch(`${s.apiUrl}${marker}?apikey=${s.anonKey}&select=secret-query`, { headers: { authorization: `Bearer ${token}` } })).body?.cancel();
    await (await fetch(`${s.apiUrl}/auth/v1/user`, { headers: { apikey: s.anonKey, authorization: `Bearer ${token}` } })).body?.cancel();
    const logs = join(dirname(stackFile()), "logs");
    // The lines are appended as each response closes.
    await new Promise((r) => setTimeout(r, 200));
    const gateway = readFileSync(join(logs, "gateway.log"), "utf8");
    const auth = readFileSync(join(logs, "auth.log"), "utf8");
    expect(gateway).toMatch(new RegExp(`^\\S+ GET ${marker} \\d{3} \\d+ms$`, "m"));
    expect(auth).toMatch(/^\S+ GET \/user 200 \d+ms$/m);
    for (const text of [gateway, auth]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(s.anonKey);
      expect(text).not.toContain("secret-query");
    }
  });
});

function randomMarker(): string {
  return Math.random().toString(36).slice(2, 10);
}
