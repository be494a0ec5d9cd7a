/**
 * The egress guard (functions/_shared/egress/guard.ts), run in Deno as in production:
 *   - the URL corpus (tests/deno/egress_corpus.ts) through checkUrl;
 *   - DNS rebinding: the connection goes to the address that was checked, never to a second answer;
 *   - TLS: the certificate is verified against the hostname while the connection goes to the address;
 *   - redirects: every hop is checked again; credentials never follow a cross-origin hop;
 *   - response size and total time limits.
 * Local servers stand in for the internet through the test-only allowance (loopback endpoints).
 *
 * Run: node_modules/.bin/deno test --allow-all tests/deno/
 * (.mts keeps this file out of tsc and vitest, which include tests/**\/*.ts; Deno type-checks it.)
 */
import assert from "node:assert/strict";
import { checkUrl, type EgressOptions } from "../../functions/_shared/egress/check.ts";
import { guardedFetch } from "../../functions/_shared/egress/transport.ts";
import { allowed, blocked, names } from "./egress_corpus.ts";

/**
 * A throwaway CA and a server certificate it signed for `tls.gatehouse.example` only (no IP
 * address), made fresh for each run with openssl, so that no private key lives in the repository.
 * The CA's key is deleted once the leaf is signed.
 */
async function testCertificates(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-egress-" });
  const openssl = async (...args: string[]) => {
    const { success, stderr } = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    if (!success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
  };
  try {
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
      "-subj", "/CN=Gatehouse egress test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
    await openssl("req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=tls.gatehouse.example");
    await Deno.writeTextFile(`${dir}/ext.cnf`,
      "subjectAltName=DNS:tls.gatehouse.example\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
    await openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf");
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    return { ca: await read("ca.pem"), cert: await read("leaf.pem"), key: await read("leaf.key") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
const { ca: CA, cert: CERT, key: KEY } = await testCertificates();

/** A resolver answering from a table, counting its calls. */
function tableResolver(table: Record<string, string[]>) {
  const calls: string[] = [];
  const resolve = (hostname: string) => {
    calls.push(hostname);
    return hostname in table ? Promise.resolve(table[hostname]) : Promise.reject(new Error(`NXDOMAIN ${hostname}`));
  };
  return { resolve, calls };
}

interface Seen {
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

/** A local HTTP(S) server that records what reaches it. */
function serve(
  handler: (req: Request) => Response | Promise<Response>,
  options: { hostname?: string; port?: number; tls?: boolean } = {},
) {
  const seen: Seen[] = [];
  const server = Deno.serve({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    onListen() {},
    ...(options.tls ? { cert: CERT, key: KEY } : {}),
  }, async (req) => {
    const url = new URL(req.url);
    seen.push({ method: req.method, path: url.pathname, headers: req.headers, body: await req.text() });
    return handler(req);
  });
  return { port: server.addr.port, seen, close: () => server.shutdown() };
}

/** Options letting http through to exactly these loopback endpoints, as if they were public. */
function local(endpoints: string[], extra: EgressOptions = {}): EgressOptions {
  return { ...extra, testOnly: { endpoints, http: true, ...extra.testOnly } };
}

// ---------------------------------------------------------------------------------------------
// The corpus

for (const c of blocked) {
  Deno.test(`refuses ${c.url} with ${c.code}: ${c.why}`, async () => {
    const result = await checkUrl(c.url, { resolve: tableResolver(names).resolve });
    assert.equal(result.ok, false, `${c.url} was allowed`);
    if (!result.ok) assert.equal(result.reason, c.code, `${c.url}: ${result.message}`);
  });
}

for (const c of allowed) {
  Deno.test(`allows ${c.url}: ${c.why}`, async () => {
    const result = await checkUrl(c.url, { resolve: tableResolver(names).resolve });
    assert.ok(result.ok, `${c.url} was refused: ${!result.ok && `${result.reason} ${result.message}`}`);
    assert.deepEqual(result.value.addresses, c.addresses);
  });
}

Deno.test("the corpus holds at least 50 refused and 10 allowed URLs", () => {
  assert.ok(blocked.length >= 50, `${blocked.length} refused`);
  assert.ok(allowed.length >= 10, `${allowed.length} allowed`);
});

Deno.test("literal addresses never reach the resolver", async () => {
  const resolver = tableResolver(names);
  for (const url of [...blocked, ...allowed].map((c) => c.url)) {
    const host = URL.canParse(url) ? new URL(url).hostname : "";
    if (!/^\[|^\d+\.\d+\.\d+\.\d+$/.test(host)) continue;
    await checkUrl(url, { resolve: resolver.resolve });
  }
  assert.deepEqual(resolver.calls, []);
});

Deno.test("the default resolver (Deno.resolveDns) fails closed for a name that does not resolve", async () => {
  const result = await checkUrl("https://does-not-exist.gatehouse.example/", { timeoutMs: 3000 });
  assert.equal(result.ok, false);
  assert.ok(!result.ok && ["egress_unresolvable", "egress_timeout"].includes(result.reason), !result.ok ? result.reason : "");
});

Deno.test("the test allowance accepts only loopback endpoints", async () => {
  for (const endpoint of ["10.0.0.1:80", "169.254.169.254:80", "8.8.8.8:443", "[fd00:ec2::254]:80", "localhost:80", "127.0.0.1"]) {
    await assert.rejects(() => checkUrl("https://example.com/", { testOnly: { endpoints: [endpoint] } }), TypeError, endpoint);
  }
});

Deno.test("a loopback server is refused without the test allowance, and never contacted", async () => {
  const server = serve(() => new Response("reached"));
  try {
    const url = `http://127.0.0.1:${server.port}/`;
    const plain = await guardedFetch(url);
    assert.equal(!plain.ok && plain.reason, "egress_scheme_not_allowed");
    const httpOnly = await guardedFetch(url, {}, { testOnly: { endpoints: [], http: true } });
    assert.equal(!httpOnly.ok && httpOnly.reason, "egress_blocked_address");
    const otherPort = await guardedFetch(url, {}, local([`127.0.0.1:${server.port + 1}`]));
    assert.equal(!otherPort.ok && otherPort.reason, "egress_blocked_address");
    assert.equal(server.seen.length, 0);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// DNS rebinding

Deno.test("a rebinding resolver's second answer is never used: the request goes to the checked address", async () => {
  const checked = serve(() => new Response("checked"), { hostname: "127.0.0.1" });
  const rebound = serve(() => new Response("rebound"), { hostname: "127.0.0.2", port: checked.port });
  let calls = 0;
  const resolve = () => Promise.resolve(++calls === 1 ? ["127.0.0.1"] : ["127.0.0.2"]);
  try {
    const result = await guardedFetch(
      `http://rebind.gatehouse.example:${checked.port}/hook`,
      { method: "POST", body: "payload" },
      local([`127.0.0.1:${checked.port}`], { resolve }),
    );
    assert.ok(result.ok, !result.ok ? `${result.reason}: ${result.message}` : "");
    assert.equal(await result.value.response.text(), "checked");
    assert.equal(result.value.address, "127.0.0.1");
    assert.equal(calls, 1, "the guard resolved the name more than once");
    assert.equal(checked.seen.length, 1);
    assert.equal(checked.seen[0].body, "payload");
    assert.equal(checked.seen[0].headers.get("host"), `rebind.gatehouse.example:${checked.port}`);
    assert.equal(rebound.seen.length, 0, "the request reached the rebound (blocked) address");
  } finally {
    await checked.close();
    await rebound.close();
  }
});

Deno.test("a rebinding resolver that answers the blocked address first is refused before any connection", async () => {
  const checked = serve(() => new Response("checked"), { hostname: "127.0.0.1" });
  const rebound = serve(() => new Response("rebound"), { hostname: "127.0.0.2", port: checked.port });
  let calls = 0;
  const resolve = () => Promise.resolve(++calls === 1 ? ["127.0.0.2"] : ["127.0.0.1"]);
  try {
    const result = await guardedFetch(`http://rebind.gatehouse.example:${checked.port}/`, {}, local([`127.0.0.1:${checked.port}`], { resolve }));
    assert.equal(!result.ok && result.reason, "egress_blocked_address");
    assert.equal(checked.seen.length + rebound.seen.length, 0);
  } finally {
    await checked.close();
    await rebound.close();
  }
});

Deno.test("when a checked address refuses the connection, the next checked address is tried, and nothing else", async () => {
  const server = serve(() => new Response("second"), { hostname: "127.0.0.1" });
  let calls = 0;
  const resolve = () => Promise.resolve(++calls === 1 ? ["127.0.0.3", "127.0.0.1"] : ["127.0.0.2"]);
  try {
    const result = await guardedFetch(
      `http://two.gatehouse.example:${server.port}/`,
      {},
      local([`127.0.0.3:${server.port}`, `127.0.0.1:${server.port}`], { resolve }),
    );
    assert.ok(result.ok, !result.ok ? `${result.reason}: ${result.message}` : "");
    assert.equal(result.value.address, "127.0.0.1");
    assert.equal(calls, 1);
    assert.equal(server.seen.length, 1);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// TLS: connect to the address, verify the certificate against the name

Deno.test("https goes to the checked address and verifies the certificate against the hostname", async () => {
  const server = serve(() => new Response("secure"), { tls: true });
  const { resolve } = tableResolver({ "tls.gatehouse.example": ["127.0.0.1"], "other.gatehouse.example": ["127.0.0.1"] });
  const options = { resolve, testOnly: { endpoints: [`127.0.0.1:${server.port}`], caCerts: [CA] } };
  try {
    const good = await guardedFetch(`https://tls.gatehouse.example:${server.port}/`, {}, options);
    assert.ok(good.ok, !good.ok ? `${good.reason}: ${good.message}` : "");
    assert.equal(await good.value.response.text(), "secure");
    assert.equal(server.seen[0].headers.get("host"), `tls.gatehouse.example:${server.port}`);

    const wrongName = await guardedFetch(`https://other.gatehouse.example:${server.port}/`, {}, options);
    assert.equal(!wrongName.ok && wrongName.reason, "egress_connect_failed");

    const byAddress = await guardedFetch(`https://127.0.0.1:${server.port}/`, {}, options);
    assert.equal(!byAddress.ok && byAddress.reason, "egress_connect_failed", "a certificate for a name must not pass for an address");

    const untrusted = await guardedFetch(`https://tls.gatehouse.example:${server.port}/`, {}, { resolve, testOnly: { endpoints: [`127.0.0.1:${server.port}`] } });
    assert.equal(!untrusted.ok && untrusted.reason, "egress_connect_failed");

    const plainHttp = await guardedFetch(`http://tls.gatehouse.example:${server.port}/`, {}, options);
    assert.equal(!plainHttp.ok && plainHttp.reason, "egress_scheme_not_allowed");

    assert.equal(server.seen.length, 1);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Redirects

Deno.test("redirects to metadata, private, unlisted loopback or credentialed URLs are refused", async () => {
  const bystander = serve(() => new Response("bystander"));
  const server = serve((req) => {
    const to = new URL(req.url).searchParams.get("to")!;
    return new Response(null, { status: 302, headers: { location: to } });
  });
  const { resolve } = tableResolver({ "internal.gatehouse.example": ["192.168.0.10"] });
  const options = local([`127.0.0.1:${server.port}`], { resolve });
  try {
    for (
      const [to, inner] of [
        ["http://169.254.169.254/latest/meta-data/", "egress_metadata_host"],
        ["http://metadata.google.internal/computeMetadata/v1/", "egress_metadata_host"],
        ["http://10.0.0.1/", "egress_blocked_address"],
        [`http://127.0.0.1:${bystander.port}/`, "egress_blocked_address"],
        [`http://[::1]:${server.port}/`, "egress_blocked_address"],
        [`http://internal.gatehouse.example:${server.port}/`, "egress_blocked_address"],
        [`http://user:pass@127.0.0.1:${server.port}/`, "egress_userinfo"], // secretlint-disable-line -- the userinfo the guard refuses
        ["gopher://127.0.0.1:6379/_FLUSHALL", "egress_scheme_not_allowed"],
      ]
    ) {
      const result = await guardedFetch(`http://127.0.0.1:${server.port}/?to=${encodeURIComponent(to)}`, {}, options);
      assert.equal(!result.ok && result.reason, "egress_redirect_blocked", to);
      assert.ok(!result.ok && result.message.includes(inner), `${to}: ${!result.ok && result.message}`);
    }
    assert.equal(bystander.seen.length, 0);
  } finally {
    await server.close();
    await bystander.close();
  }
});

Deno.test("a redirect to an allowed URL is followed after being checked, with the Fetch standard's method rules", async () => {
  const server = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/moved") return new Response(null, { status: 302, headers: { location: "/final" } });
    if (path === "/see-other") return new Response(null, { status: 303, headers: { location: "/final" } });
    if (path === "/temporary") return new Response(null, { status: 307, headers: { location: "/final" } });
    return new Response(`final ${req.method}`);
  });
  const options = local([`127.0.0.1:${server.port}`]);
  const base = `http://127.0.0.1:${server.port}`;
  try {
    const get = await guardedFetch(`${base}/moved`, {}, options);
    assert.ok(get.ok);
    assert.equal(await get.value.response.text(), "final GET");
    assert.equal(get.value.url, `${base}/final`);
    assert.equal(get.value.redirects, 1);

    const seeOther = await guardedFetch(`${base}/see-other`, { method: "POST", body: "x", headers: { "content-type": "text/plain" } }, options);
    assert.ok(seeOther.ok);
    const afterSeeOther = server.seen.at(-1)!;
    assert.equal(afterSeeOther.method, "GET");
    assert.equal(afterSeeOther.body, "");
    assert.equal(afterSeeOther.headers.get("content-type"), null);

    const temporary = await guardedFetch(`${base}/temporary`, { method: "POST", body: "kept" }, options);
    assert.ok(temporary.ok);
    assert.equal(server.seen.at(-1)!.method, "POST");
    assert.equal(server.seen.at(-1)!.body, "kept");

    const notFollowed = await guardedFetch(`${base}/moved`, {}, { ...options, maxRedirects: 0 });
    assert.equal(!notFollowed.ok && notFollowed.reason, "egress_redirect_blocked");
  } finally {
    await server.close();
  }
});

Deno.test("a cross-origin redirect carries no credentials or custom headers", async () => {
  const landing = serve(() => new Response("landed"));
  const origin = serve(() => new Response(null, { status: 307, headers: { location: `http://127.0.0.1:${landing.port}/in` } }));
  const options = local([`127.0.0.1:${origin.port}`, `127.0.0.1:${landing.port}`]);
  try {
    const result = await guardedFetch(`http://127.0.0.1:${origin.port}/out`, {
      method: "POST",
      body: "{}",
      headers: { authorization: "Bearer secret", "x-api-key": "secret", cookie: "s=secret", accept: "application/json", "content-type": "application/json" },
    }, options);
    assert.ok(result.ok);
    assert.equal(origin.seen[0].headers.get("x-api-key"), "secret");
    const forwarded = landing.seen[0].headers;
    assert.equal(forwarded.get("authorization"), null);
    assert.equal(forwarded.get("x-api-key"), null);
    assert.equal(forwarded.get("cookie"), null);
    assert.equal(forwarded.get("accept"), "application/json");
    assert.equal(landing.seen[0].body, "{}");
  } finally {
    await origin.close();
    await landing.close();
  }
});

Deno.test("a redirect loop stops after maxRedirects", async () => {
  const server = serve(() => new Response(null, { status: 302, headers: { location: "/again" } }));
  try {
    const result = await guardedFetch(`http://127.0.0.1:${server.port}/`, {}, local([`127.0.0.1:${server.port}`], { maxRedirects: 3 }));
    assert.equal(!result.ok && result.reason, "egress_redirect_blocked");
    assert.equal(server.seen.length, 4);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Size and time

Deno.test("a body over maxBytes is refused, whether declared or streamed, and reading stops", async () => {
  let streamed = 0;
  const server = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/exact") return new Response("x".repeat(1000));
    if (path === "/declared") return new Response("x".repeat(1001));
    const chunk = new Uint8Array(16 * 1024);
    return new Response(new ReadableStream({
      pull(controller) {
        streamed += chunk.byteLength;
        controller.enqueue(chunk);
      },
    }));
  });
  const options = local([`127.0.0.1:${server.port}`], { maxBytes: 1000, timeoutMs: 5000 });
  try {
    const exact = await guardedFetch(`http://127.0.0.1:${server.port}/exact`, {}, options);
    assert.ok(exact.ok);
    assert.equal((await exact.value.response.arrayBuffer()).byteLength, 1000);

    const declared = await guardedFetch(`http://127.0.0.1:${server.port}/declared`, {}, options);
    assert.equal(!declared.ok && declared.reason, "egress_response_too_large");

    const endless = await within(2000, guardedFetch(`http://127.0.0.1:${server.port}/endless`, {}, options));
    assert.equal(!endless.ok && endless.reason, "egress_response_too_large");
    await new Promise((r) => setTimeout(r, 100));
    const after = streamed;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(streamed, after, "the server is still streaming to the guard");
  } finally {
    await server.close();
  }
});

/** A raw TCP server: `silent` accepts and never writes; `drip` sends headers, then a byte every 50 ms. */
function rawServer(mode: "silent" | "drip") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      if (mode === "silent") continue;
      (async () => {
        const write = (text: string) => conn.write(new TextEncoder().encode(text));
        await write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        for (;;) {
          await new Promise((r) => setTimeout(r, 50));
          await write("1\r\nx\r\n");
        }
      })().catch(() => {});
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    connections: () => conns.length,
    async close() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting.catch(() => {});
      await new Promise((r) => setTimeout(r, 60));
    },
  };
}

/** Fails the test, instead of hanging it, when the guard does not give up by itself. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the guard did not give up within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "a server that never answers, or answers too slowly, times out",
  // If the guard failed to time out, its hung socket would outlive the test; the assertion says why.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const silent = rawServer("silent");
    const drip = rawServer("drip");
    const options = local([`127.0.0.1:${silent.port}`, `127.0.0.1:${drip.port}`], { timeoutMs: 300 });
    try {
      const hang = await within(2000, guardedFetch(`http://127.0.0.1:${silent.port}/`, {}, options));
      assert.equal(!hang.ok && hang.reason, "egress_timeout");
      assert.equal(silent.connections(), 1);

      const slow = await within(2000, guardedFetch(`http://127.0.0.1:${drip.port}/`, {}, options));
      assert.equal(!slow.ok && slow.reason, "egress_timeout");
      assert.equal(drip.connections(), 1);
    } finally {
      await silent.close();
      await drip.close();
    }
  },
});

Deno.test("a resolver that hangs times out, and a caller's abort is reported as such", async () => {
  const resolve = () => new Promise<string[]>(() => {});
  const hung = await checkUrl("https://slow.gatehouse.example/", { resolve, timeoutMs: 100 });
  assert.equal(!hung.ok && hung.reason, "egress_timeout");

  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  const aborted = await guardedFetch("https://slow.gatehouse.example/", { signal: controller.signal }, { resolve });
  assert.equal(!aborted.ok && aborted.reason, "egress_aborted");
});

Deno.test("requests the guard would have to reframe are refused", async () => {
  const server = serve(() => new Response("ok"));
  const options = local([`127.0.0.1:${server.port}`]);
  const url = `http://127.0.0.1:${server.port}/`;
  try {
    assert.equal((await guardedFetch(url, { method: "GET", body: "x" }, options) as { reason?: string }).reason, "egress_invalid_request");
    assert.equal((await guardedFetch(url, { method: "CONNECT" }, options) as { reason?: string }).reason, "egress_invalid_request");
    assert.equal((await guardedFetch(url, { method: "GE T" }, options) as { reason?: string }).reason, "egress_invalid_request");
    const framed = await guardedFetch(url, { method: "POST", body: "abc", headers: { host: "evil.example", "content-length": "99", "transfer-encoding": "chunked" } }, options);
    assert.ok(framed.ok);
    assert.equal(server.seen.at(-1)!.headers.get("host"), `127.0.0.1:${server.port}`);
    assert.equal(server.seen.at(-1)!.body, "abc");
  } finally {
    await server.close();
  }
});
