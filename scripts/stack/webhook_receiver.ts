/**
 * LOCAL-ONLY webhook receiver, so that a connector can be tried without leaving the machine: an
 * admin saves an `https_webhook` connection to `<url>/hooks/<anything>`, watches its live check
 * arrive, approves an action, and sees the delivery, byte for byte. The egress guard refuses
 * loopback addresses; `npm start` admits this one receiver by the same explicit development
 * allowance it gives the local model stand-in (scripts/stack/index.ts), and nothing else private.
 * Hosted deployments have no such receiver and no allowance.
 *
 *   POST|PUT|PATCH /hooks/<path>    recorded, answered 200 {"ok": true}
 *   GET /                           an HTML page of what arrived, newest first
 *   GET /api/requests               the same as JSON (for tests)
 * Anything else answers a JSON 404. Bodies are kept up to 64 KiB, in memory only (the last 200).
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface ReceivedHook {
  id: string;
  method: string;
  path: string;
  content_type: string | null;
  body: string;
  received_at: string;
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedHook[];
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;
const KEEP = 200;

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startWebhookReceiver(options: { port?: number } = {}): Promise<WebhookReceiver> {
  const received: ReceivedHook[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://receiver.local");
    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (url.pathname.startsWith("/hooks/") && ["POST", "PUT", "PATCH"].includes(req.method ?? "")) {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      req.on("end", () => {
        received.unshift({
          id: randomUUID(), method: req.method!, path: url.pathname, content_type: req.headers["content-type"] ?? null,
          body: Buffer.concat(chunks).toString("utf8"), received_at: new Date().toISOString(),
        });
        received.splice(KEEP);
        json(200, { ok: true });
      });
      return;
    }
    if (req.method === "GET" && url.pathname === "/api/requests") return json(200, { requests: received });
    if (req.method === "GET" && url.pathname === "/") {
      const rows = received.map((r) => `<tr><td>${escape(r.received_at)}</td><td>${escape(r.method)} ${escape(r.path)}</td><td><pre>${escape(r.body)}</pre></td></tr>`).join("");
      res.writeHead(200, {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'",
      });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Local webhook receiver (LOCAL ONLY)</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}td{border-bottom:1px solid #ccc;padding:.4rem;vertical-align:top}pre{margin:0;white-space:pre-wrap;word-break:break-all}</style></head>
<body><h1>Local webhook receiver</h1><p>LOCAL ONLY. Save an <code>https_webhook</code> connection to <code>${escape(`${receiverUrl()}/hooks/any-name`)}</code>; its live check and every delivery show here, newest first.</p>
<table><thead><tr><th>Received</th><th>Request</th><th>Body</th></tr></thead><tbody>${rows || '<tr><td colspan="3">Nothing yet.</td></tr>'}</tbody></table></body></html>`);
      return;
    }
    json(404, { error: { code: "not_found", message: "POST to /hooks/<anything>; GET / lists what arrived" } });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const receiverUrl = () => `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url: receiverUrl(),
    received,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
