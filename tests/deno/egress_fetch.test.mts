/**
 * The egress guard as a streaming `fetch` (functions/_shared/egress/fetch.ts), run in Deno:
 *   - a streamed body arrives as the server writes it, under the byte cap;
 *   - aborting the caller's signal, or cancelling the body, hangs up at once (the server sees it);
 *   - private and metadata addresses are refused with an EgressError, before any connection;
 *   - requests are normalized as fetch would (every body kind, Request inputs, null-body statuses);
 *   - the official OpenAI SDK works through it: a completion, a streamed completion, a refused URL.
 * Local servers stand in for the internet through the test-only allowance (loopback endpoints).
 *
 * Run: node_modules/.bin/deno test --allow-net --allow-read --allow-write --allow-run=openssl --allow-env tests/deno/
 * (the OpenAI SDK reads OPENAI_* variables when a client is made, hence --allow-env).
 */
import assert from "node:assert/strict";
import OpenAI, { APIConnectionError } from "openai";
import type { EgressOptions } from "../../functions/_shared/egress/check.ts";
import { EgressError, egressFailureOf, egressFetch } from "../../functions/_shared/egress/fetch.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Options letting http through to exactly these loopback ports, as if they were public. */
function local(ports: number[], extra: EgressOptions = {}): EgressOptions {
  return { ...extra, testOnly: { endpoints: ports.map((port) => `127.0.0.1:${port}`), http: true } };
}

/** Fails the test, instead of hanging it, when something does not happen in time. */
async function within<T>(ms: number, promise: Promise<T>, what = "it"): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

interface Seen {
  method: string;
  path: string;
  headers: Headers;
  body: Uint8Array;
}

/** A local HTTP server (Deno.serve) that records what reaches it. */
function serve(handler: (req: Request, body: Uint8Array) => Response | Promise<Response>) {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = new Uint8Array(await req.arrayBuffer());
    seen.push({ method: req.method, path: new URL(req.url).pathname, headers: req.headers, body });
    return handler(req, body);
  });
  return { port: server.addr.port, url: `http://127.0.0.1:${server.addr.port}`, seen, close: () => server.shutdown() };
}

/**
 * A raw HTTP server that answers every request with a chunked body it never ends: a chunk every
 * 20 ms, until a write fails because the client hung up. `hungUp` resolves with the time it did,
 * so a test sees the connection close from the server's side.
 */
function dripServer(chunk = "x".repeat(100)) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let sent = 0;
  let connections = 0;
  let hungUp!: (at: number) => void;
  const closed = new Promise<number>((r) => (hungUp = r));
  const handle = async (conn: Deno.Conn) => {
    try {
      const buffer = new Uint8Array(64 * 1024);
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buffer);
        if (n === null) return;
        head += decoder.decode(buffer.subarray(0, n));
      }
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"));
      for (;;) {
        await conn.write(encoder.encode(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
        sent++;
        await sleep(20);
      }
    } catch {
      hungUp(performance.now());
    } finally {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      handle(conn);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    closed,
    sent: () => sent,
    connections: () => connections,
    async close() {
      listener.close();
      await accepting;
    },
  };
}

/** Reads a stream to its end as text. */
async function text(body: ReadableStream<Uint8Array>): Promise<string> {
  let out = "";
  for await (const chunk of body) out += decoder.decode(chunk, { stream: true });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Streaming

Deno.test("a streamed body arrives as the server writes it: the first chunk is read before the last is sent", async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let lastSent = false;
  const server = serve(() => {
    let step = 0;
    return new Response(
      new ReadableStream({
        async pull(controller) {
          if (step++ === 0) return controller.enqueue(encoder.encode("first "));
          await released;
          lastSent = true;
          controller.enqueue(encoder.encode("last"));
          controller.close();
        },
      }),
    );
  });
  try {
    const response = await within(3000, egressFetch(local([server.port]))(`${server.url}/stream`), "the response head");
    assert.equal(response.status, 200);
    assert.equal(response.url, `${server.url}/stream`);
    const reader = response.body!.getReader();
    const first = await within(3000, reader.read(), "the first chunk");
    assert.equal(decoder.decode(first.value), "first ");
    assert.equal(lastSent, false);
    release();
    let rest = "";
    for (let next = await reader.read(); !next.done; next = await reader.read()) rest += decoder.decode(next.value);
    assert.equal(rest, "last");
  } finally {
    await server.close();
  }
});

Deno.test("a body read slowly, after the server has finished and closed, still arrives in full", async () => {
  const payload = "0123456789abcdef".repeat(16 * 1024);
  const server = serve(() => new Response(payload));
  try {
    const response = await egressFetch(local([server.port]))(`${server.url}/big`);
    await sleep(200);
    assert.equal(await response.text(), payload);
  } finally {
    await server.close();
  }
});

Deno.test("the byte cap errors the stream mid-way with egress_response_too_large, and hangs up", async () => {
  const server = dripServer("y".repeat(400));
  try {
    const response = await egressFetch(local([server.port], { maxBytes: 1000 }))(`http://127.0.0.1:${server.port}/`);
    const reader = response.body!.getReader();
    let received = 0;
    const failure = await within(3000, (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return null;
          received += value.byteLength;
        }
      } catch (e) {
        return e;
      }
    })(), "the cap");
    assert.ok(failure instanceof EgressError, String(failure));
    assert.ok(failure instanceof TypeError);
    assert.equal(failure.reason, "egress_response_too_large");
    assert.ok(received > 0 && received <= 1000, `${received} bytes before the cap`);
    await within(2000, server.closed, "the server seeing the connection close");
  } finally {
    await server.close();
  }
});

Deno.test("aborting the signal mid-stream errors the body with an AbortError and closes the connection at once", async () => {
  const server = dripServer();
  try {
    const controller = new AbortController();
    const response = await egressFetch(local([server.port]))(`http://127.0.0.1:${server.port}/`, { signal: controller.signal });
    const reader = response.body!.getReader();
    assert.ok((await reader.read()).value!.byteLength > 0);
    const abortedAt = performance.now();
    controller.abort();
    await assert.rejects(reader.read(), (e: unknown) => e instanceof DOMException && e.name === "AbortError");
    const closedAt = await within(2000, server.closed, "the server seeing the connection close");
    assert.ok(closedAt - abortedAt < 1000, `closed ${closedAt - abortedAt} ms after the abort`);
  } finally {
    await server.close();
  }
});

Deno.test("cancelling the body closes the connection at once", async () => {
  const server = dripServer();
  try {
    const response = await egressFetch(local([server.port]))(`http://127.0.0.1:${server.port}/`);
    const reader = response.body!.getReader();
    assert.ok((await reader.read()).value!.byteLength > 0);
    const cancelledAt = performance.now();
    await reader.cancel();
    const closedAt = await within(2000, server.closed, "the server seeing the connection close");
    assert.ok(closedAt - cancelledAt < 1000, `closed ${closedAt - cancelledAt} ms after the cancel`);
    const sent = server.sent();
    await sleep(100);
    assert.equal(server.sent(), sent, "the server is still streaming");
  } finally {
    await server.close();
  }
});

Deno.test("the deadline covers the streamed body too", async () => {
  const server = dripServer();
  try {
    const response = await egressFetch(local([server.port], { timeoutMs: 300 }))(`http://127.0.0.1:${server.port}/`);
    const started = performance.now();
    const failure = await within(3000, text(response.body!).then(() => null, (e) => e), "the deadline");
    assert.ok(failure instanceof EgressError, String(failure));
    assert.equal(failure.reason, "egress_timeout");
    assert.ok(performance.now() - started < 1000);
    await within(2000, server.closed, "the server seeing the connection close");
  } finally {
    await server.close();
  }
});

Deno.test("an abort before the response rejects as fetch does: the signal's AbortError, or a new one", async () => {
  const server = dripServer();
  const fetch = egressFetch(local([server.port]));
  const url = `http://127.0.0.1:${server.port}/`;
  try {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(fetch(url, { signal: controller.signal }), (e: unknown) => e === controller.signal.reason);

    const slow = new AbortController();
    const resolve = () => new Promise<string[]>(() => {});
    setTimeout(() => slow.abort(new Error("stop")), 50);
    await assert.rejects(
      egressFetch({ resolve })("https://slow.gatehouse.example/", { signal: slow.signal }),
      (e: unknown) => e instanceof DOMException && e.name === "AbortError",
    );
    assert.equal(server.connections(), 0);
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Refusals

Deno.test("private and metadata addresses are refused with an EgressError, and nothing is connected", async () => {
  const server = dripServer();
  const fetch = egressFetch(local([server.port + 1], { resolve: () => Promise.resolve(["10.1.2.3"]) }));
  try {
    for (
      const [url, reason] of [
        ["http://10.0.0.1/", "egress_blocked_address"],
        ["https://169.254.169.254/latest/meta-data/", "egress_metadata_host"],
        ["http://metadata.google.internal/computeMetadata/v1/", "egress_metadata_host"],
        ["https://private.gatehouse.example/", "egress_blocked_address"],
        [`http://127.0.0.1:${server.port}/`, "egress_blocked_address"],
        ["ftp://example.com/", "egress_scheme_not_allowed"],
      ]
    ) {
      const failure = await fetch(url).then(() => null, (e) => e);
      assert.ok(failure instanceof EgressError, `${url}: ${failure}`);
      assert.ok(failure instanceof TypeError);
      assert.equal(failure.reason, reason, `${url}: ${failure.message}`);
      assert.equal(egressFailureOf(new Error("wrapped", { cause: failure })), failure);
    }
    assert.equal(server.connections(), 0);
  } finally {
    await server.close();
  }
});

Deno.test("a redirect is followed after being checked, its body dropped; a refused one throws", async () => {
  const server = serve((req) => {
    const path = new URL(req.url).pathname;
    if (path === "/moved") return new Response("moved away", { status: 302, headers: { location: "/final" } });
    if (path === "/away") return new Response(null, { status: 302, headers: { location: "http://10.0.0.1/" } });
    if (path === "/loop") return new Response(null, { status: 302, headers: { location: "/loop" } });
    return new Response("final");
  });
  const fetch = egressFetch(local([server.port], { maxRedirects: 2 }));
  try {
    const moved = await fetch(`${server.url}/moved`);
    assert.equal(await moved.text(), "final");
    assert.equal(moved.redirected, true);
    assert.equal(moved.url, `${server.url}/final`);
    for (const path of ["/away", "/loop"]) {
      const failure = await fetch(`${server.url}${path}`).then(() => null, (e) => e);
      assert.equal(egressFailureOf(failure)?.reason, "egress_redirect_blocked", path);
    }
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// fetch's arguments and responses

Deno.test("every kind of request body is sent as bytes, with fetch's default content type", async () => {
  const server = serve(() => new Response("ok"));
  const fetch = egressFetch(local([server.port]));
  const url = `${server.url}/in`;
  try {
    const bodies: [BodyInit, string, string | null][] = [
      ["text", "text", "text/plain;charset=UTF-8"],
      [encoder.encode("bytes"), "bytes", null],
      [encoder.encode("buffer").buffer as ArrayBuffer, "buffer", null],
      [new URLSearchParams({ a: "1", b: "2" }), "a=1&b=2", "application/x-www-form-urlencoded;charset=UTF-8"],
      [new ReadableStream({ start: (c) => (c.enqueue(encoder.encode("str")), c.enqueue(encoder.encode("eam")), c.close()) }), "stream", null],
    ];
    for (const [body, sent, type] of bodies) {
      const response = await fetch(url, { method: "post", body, headers: { "x-kind": sent } });
      assert.equal(await response.text(), "ok");
      const seen = server.seen.at(-1)!;
      assert.equal(seen.method, "POST");
      assert.equal(decoder.decode(seen.body), sent);
      assert.equal(seen.headers.get("content-type"), type);
      assert.equal(seen.headers.get("x-kind"), sent);
    }
    const typed = await fetch(new URL(url), { method: "PUT", body: "{}", headers: { "content-type": "application/json" } });
    await typed.body?.cancel();
    assert.equal(server.seen.at(-1)!.headers.get("content-type"), "application/json");

    const request = new Request(url, { method: "POST", body: "from a Request", headers: { authorization: "Bearer t" } });
    await (await fetch(request)).text();
    const seen = server.seen.at(-1)!;
    assert.equal(decoder.decode(seen.body), "from a Request");
    assert.equal(seen.headers.get("authorization"), "Bearer t");
    assert.equal(seen.headers.get("accept-encoding"), "identity");
  } finally {
    await server.close();
  }
});

Deno.test("null-body statuses have a null body; error statuses are responses, not failures", async () => {
  const server = serve((req) => {
    const status = Number(new URL(req.url).pathname.slice(1));
    return new Response(status === 204 || status === 304 ? null : `status ${status}`, { status });
  });
  const fetch = egressFetch(local([server.port]));
  try {
    for (const status of [204, 304]) {
      const response = await fetch(`${server.url}/${status}`);
      assert.equal(response.status, status);
      assert.equal(response.body, null);
    }
    const missing = await fetch(`${server.url}/404`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), "status 404");
  } finally {
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// The OpenAI SDK

/** A stand-in for the OpenAI API: /v1/chat/completions, as JSON or as server-sent events. */
function openAiServer() {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let hungUp!: () => void;
  const closed = new Promise<void>((r) => (hungUp = r));
  const completion = (delta: Record<string, unknown>, finish: string | null) => ({
    id: "chatcmpl-test",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt-test",
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
  const server = serve((req, raw) => {
    if (new URL(req.url).pathname !== "/v1/chat/completions") return new Response("not found", { status: 404 });
    const body = JSON.parse(decoder.decode(raw));
    const last = String(body.messages.at(-1).content);
    if (!body.stream) {
      return Response.json({
        id: "chatcmpl-test",
        object: "chat.completion",
        created: 1,
        model: body.model,
        choices: [{ index: 0, message: { role: "assistant", content: `echo: ${last}` }, finish_reason: "stop" }],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      });
    }
    const event = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
    let step = 0;
    const endless = last === "forever";
    return new Response(
      new ReadableStream({
        async pull(controller) {
          step++;
          if (step === 1) return controller.enqueue(event(completion({ role: "assistant", content: "Hel" }, null)));
          if (endless) {
            await sleep(20);
            return controller.enqueue(event(completion({ content: "." }, null)));
          }
          await released;
          if (step === 2) return controller.enqueue(event(completion({ content: "lo" }, null)));
          if (step === 3) return controller.enqueue(event(completion({}, "stop")));
          controller.enqueue(encoder.encode("data: [DONE]\n\n"));
          controller.close();
        },
        cancel: () => hungUp(),
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  });
  return { ...server, release, closed };
}

function client(server: { url: string; port: number }, baseURL = `${server.url}/v1`) {
  return new OpenAI({ apiKey: "sk-test", baseURL, maxRetries: 0, fetch: egressFetch(local([server.port])) });
}

Deno.test("the OpenAI SDK: a completion through egressFetch", async () => {
  const server = openAiServer();
  try {
    const completion = await client(server).chat.completions.create({ model: "gpt-test", messages: [{ role: "user", content: "hi" }] });
    assert.equal(completion.choices[0].message.content, "echo: hi");
    const seen = server.seen.at(-1)!;
    assert.equal(seen.path, "/v1/chat/completions");
    assert.equal(seen.headers.get("authorization"), "Bearer sk-test");
    assert.equal(seen.headers.get("content-type"), "application/json");
  } finally {
    await server.close();
  }
});

Deno.test("the OpenAI SDK: a streamed completion arrives chunk by chunk", async () => {
  const server = openAiServer();
  try {
    const stream = await client(server).chat.completions.create({ model: "gpt-test", messages: [{ role: "user", content: "hi" }], stream: true });
    let content = "";
    let chunks = 0;
    await within(5000, (async () => {
      for await (const chunk of stream) {
        // The server sends nothing past the first chunk until it is read here.
        if (chunks++ === 0) server.release();
        content += chunk.choices[0]?.delta?.content ?? "";
      }
    })(), "the streamed completion");
    assert.equal(content, "Hello");
    assert.equal(chunks, 3);
  } finally {
    await server.close();
  }
});

Deno.test("the OpenAI SDK: breaking out of a streamed completion hangs up", async () => {
  const server = openAiServer();
  try {
    const stream = await client(server).chat.completions.create({ model: "gpt-test", messages: [{ role: "user", content: "forever" }], stream: true });
    let chunks = 0;
    for await (const _ of stream) if (++chunks === 3) break;
    await within(2000, server.closed, "the server seeing the client go away");
  } finally {
    await server.close();
  }
});

Deno.test("the OpenAI SDK: a private base URL is an APIConnectionError caused by an EgressError", async () => {
  const server = openAiServer();
  try {
    const failure = await client(server, "http://10.0.0.1/v1").chat.completions
      .create({ model: "gpt-test", messages: [{ role: "user", content: "hi" }] })
      .then(() => null, (e) => e);
    assert.ok(failure instanceof APIConnectionError, String(failure));
    assert.equal(egressFailureOf(failure)?.reason, "egress_blocked_address");
    assert.equal(server.seen.length, 0);
  } finally {
    await server.close();
  }
});
