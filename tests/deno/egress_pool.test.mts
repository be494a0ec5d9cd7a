/**
 * The egress guard's kept-alive connections (functions/_shared/egress/pool.ts, EgressOptions
 * keepAlive), run in Deno against local servers:
 *   - requests to the same endpoint reuse one connection; without keepAlive each has its own;
 *   - a pooled connection carries only a request whose own check allows its address: when the name
 *     resolves elsewhere, a new (checked) connection is made, and a refused address is refused
 *     before any connection, pooled or new;
 *   - a pooled connection the server closed while it sat idle is retired, and one that fails under
 *     the next request sends it again, once, on a new connection;
 *   - a response not read to its end leaves its connection out of the pool.
 *
 * Run: node_modules/.bin/deno test --allow-net --allow-read --allow-write --allow-run=openssl --allow-env tests/deno/
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { EgressOptions } from "../../functions/_shared/egress/check.ts";
import { closeIdleConnections } from "../../functions/_shared/egress/pool.ts";
import { guardedFetch } from "../../functions/_shared/egress/transport.ts";

/** Options letting http through to exactly these loopback endpoints, as if they were public. */
function local(endpoints: string[], extra: EgressOptions = {}): EgressOptions {
  return { keepAlive: true, ...extra, testOnly: { endpoints, http: true } };
}

/** A local HTTP server that answers with the client port of the connection each request came on. */
function serve(hostname = "127.0.0.1", port = 0) {
  const connections: number[] = [];
  const server = Deno.serve({ hostname, port, onListen() {} }, (_req, info) => {
    connections.push(info.remoteAddr.port);
    return new Response(`from ${hostname}`);
  });
  return { port: server.addr.port, connections, distinct: () => new Set(connections).size, close: () => server.shutdown() };
}

async function get(url: string, options: EgressOptions): Promise<string> {
  const result = await guardedFetch(url, {}, options);
  assert.ok(result.ok, !result.ok ? `${result.reason}: ${result.message}` : "");
  return await result.value.response.text();
}

Deno.test("requests to one endpoint reuse one connection; without keepAlive each has its own", async () => {
  const server = serve();
  try {
    const url = `http://127.0.0.1:${server.port}/`;
    for (let i = 0; i < 3; i++) assert.equal(await get(url, local([`127.0.0.1:${server.port}`])), "from 127.0.0.1");
    assert.equal(server.connections.length, 3);
    assert.equal(server.distinct(), 1, "three requests, one connection");
    for (let i = 0; i < 2; i++) await get(url, local([`127.0.0.1:${server.port}`], { keepAlive: false }));
    assert.equal(server.distinct(), 3, "without keepAlive, a connection per request");
  } finally {
    closeIdleConnections();
    await server.close();
  }
});

Deno.test("a pooled connection carries only a request whose own check allows its address", async () => {
  const first = serve("127.0.0.1");
  const second = serve("127.0.0.2", first.port);
  let answer = ["127.0.0.1"];
  const resolve = () => Promise.resolve(answer);
  const endpoints = [`127.0.0.1:${first.port}`, `127.0.0.2:${first.port}`];
  const url = `http://api.gatehouse.example:${first.port}/`;
  try {
    assert.equal(await get(url, local(endpoints, { resolve })), "from 127.0.0.1");
    // The name now resolves elsewhere: the pooled connection to 127.0.0.1 is not used.
    answer = ["127.0.0.2"];
    assert.equal(await get(url, local(endpoints, { resolve })), "from 127.0.0.2");
    assert.equal(first.connections.length, 1);
    // And to an address the guard refuses: refused before any connection, the pool's included.
    answer = ["10.0.0.1"];
    const refused = await guardedFetch(url, {}, local(endpoints, { resolve }));
    assert.equal(!refused.ok && refused.reason, "egress_blocked_address");
    assert.equal(first.connections.length + second.connections.length, 2);
  } finally {
    closeIdleConnections();
    await first.close();
    await second.close();
  }
});

/**
 * A raw HTTP/1.1 server: the first connection answers its first request with keep-alive, then
 * drops the connection when the next request arrives on it (a server closing an idle connection as
 * the client reuses it); later connections answer normally. Counts the requests that arrived.
 */
function flakyServer(): Promise<{ port: number; requests: () => number; connections: () => number; close: () => void }> {
  let requests = 0;
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const n = ++connections;
    sockets.add(socket);
    let served = 0;
    socket.on("data", (chunk) => {
      if (!chunk.toString("latin1").includes("\r\n\r\n")) return;
      requests++;
      served++;
      if (n === 1 && served > 1) return void socket.destroy();
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
    });
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  });
  return new Promise((done) => {
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      done({
        port,
        requests: () => requests,
        connections: () => connections,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      });
    });
  });
}

Deno.test("a pooled connection that fails under the next request sends it again, once, on a new connection", async () => {
  const server = await flakyServer();
  const options = local([`127.0.0.1:${server.port}`]);
  try {
    assert.equal(await get(`http://127.0.0.1:${server.port}/a`, options), "ok");
    assert.equal(await get(`http://127.0.0.1:${server.port}/b`, options), "ok");
    assert.equal(server.connections(), 2, "the dropped connection was replaced");
    assert.equal(server.requests(), 3, "the second request was sent again after the pooled connection failed");
  } finally {
    closeIdleConnections();
    server.close();
  }
});

Deno.test("a connection the server closes while it sits idle leaves the pool", async () => {
  const server = await flakyServer();
  const options = local([`127.0.0.1:${server.port}`]);
  try {
    assert.equal(await get(`http://127.0.0.1:${server.port}/a`, options), "ok");
    server.close();  // every connection, the pooled one included, is closed by the server
    await new Promise((r) => setTimeout(r, 50));
    const refused = await guardedFetch(`http://127.0.0.1:${server.port}/b`, {}, options);
    // Nobody listens any more: a new connection is tried and refused, not the dead pooled one written to.
    assert.equal(!refused.ok && refused.reason, "egress_connect_failed");
    assert.equal(server.requests(), 1);
  } finally {
    closeIdleConnections();
  }
});

Deno.test("a response not read to its end leaves its connection out of the pool", async () => {
  const server = serve();
  const options = local([`127.0.0.1:${server.port}`], { stream: true });
  try {
    const first = await guardedFetch(`http://127.0.0.1:${server.port}/`, {}, options);
    assert.ok(first.ok);
    await first.value.response.body!.cancel();
    await get(`http://127.0.0.1:${server.port}/`, options);
    assert.equal(server.distinct(), 2, "the cancelled response's connection was not reused");
  } finally {
    closeIdleConnections();
    await server.close();
  }
});
