/**
 * LOCAL-ONLY mailbox. No mail leaves this machine: the auth stand-in (auth.ts) renders Supabase
 * Auth's email templates (supabase/templates/, set in config.toml) and writes each message as one
 * JSON file under `<stateDir>/mail/` (.local/mail/ for npm start). Hosted deployments send real
 * email through Supabase Auth's SMTP; nothing here runs there.
 *
 * The gateway serves it under /_mail (no API key: the gateway listens on loopback only):
 *   GET /_mail                           an HTML page listing the messages, newest first
 *   GET /_mail/<id>                      one message
 *   GET /_mail/api/messages?to=<email>   the messages as JSON, newest first (for tests)
 * Anything else answers a JSON 404, and methods other than GET and HEAD a JSON 405.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";

/** One stored message. */
export interface MailMessage {
  id: string;
  to: string;
  subject: string;
  html: string;
  text: string;
  created_at: string;
}

/** Where the auth stand-in's mail goes. */
export interface Mailbox {
  /** Stores a message and returns it as stored. */
  send(message: { to: string; subject: string; html: string }): MailMessage;
  /** The messages, newest first; only those to `to` (case-insensitive) when given. */
  list(to?: string): MailMessage[];
  /** One message, or null. */
  get(id: string): MailMessage | null;
}

/**
 * The values a template may use, as Supabase Auth names them: {{ .SiteURL }}, {{ .TokenHash }},
 * {{ .Token }}, {{ .RedirectTo }}, {{ .Email }}, {{ .ConfirmationURL }} and {{ .Data.<key> }}
 * (the user's user_metadata).
 */
export interface TemplateValues {
  SiteURL: string;
  TokenHash: string;
  Token: string;
  RedirectTo: string;
  Email: string;
  ConfirmationURL: string;
  Data: Record<string, unknown>;
}

const ID = /^\d{13}-\d{4}-[0-9a-f]{8}$/;
let sequence = 0;

/** A mailbox over the JSON files in `dir` (created when missing). */
export function createMailbox(dir: string): Mailbox {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const read = (file: string): MailMessage | null => {
    try {
      return JSON.parse(readFileSync(join(dir, file), "utf8")) as MailMessage;
    } catch {
      return null;
    }
  };
  return {
    send({ to, subject, html }) {
      // Ids sort by time: milliseconds, then a per-process sequence for messages of the same one.
      sequence = (sequence + 1) % 10_000;
      const id = `${String(Date.now()).padStart(13, "0")}-${String(sequence).padStart(4, "0")}-${randomBytes(4).toString("hex")}`;
      const message: MailMessage = { id, to, subject, html, text: htmlToText(html), created_at: new Date().toISOString() };
      writeFileSync(join(dir, `${id}.json`), JSON.stringify(message, null, 2) + "\n", { mode: 0o600 });
      return message;
    },
    list(to) {
      const wanted = to?.toLowerCase();
      return readdirSync(dir)
        .filter((f) => f.endsWith(".json") && ID.test(f.slice(0, -5)))
        .sort()
        .reverse()
        .map(read)
        .filter((m): m is MailMessage => m !== null && (wanted === undefined || m.to.toLowerCase() === wanted));
    },
    get(id) {
      return ID.test(id) ? read(`${id}.json`) : null;
    },
  };
}

/**
 * Renders a Supabase Auth email template the way hosted Auth's Go html/template does for the
 * variables it knows: every value is HTML-escaped; inside an href or src value after its "?" (a
 * query string) the value is also percent-encoded (encodeURIComponent), so that a RedirectTo URL
 * survives as one query parameter; at the start of an href a URL whose scheme is not http, https
 * or mailto becomes "#ZgotmplZ". HTML comments are dropped, as html/template drops them. An
 * unknown variable renders empty.
 */
export function renderTemplate(source: string, values: TemplateValues): string {
  const body = source.replace(/<!--[\s\S]*?-->\s*/g, "");
  return body.replace(/\{\{\s*\.([A-Za-z]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}/g, (_match, name: string, key: string | undefined, offset: number) => {
    const raw = lookup(values, name, key);
    const inUrl = /\b(?:href|src)\s*=\s*(["'])([^"']*)$/i.exec(body.slice(0, offset));
    if (inUrl && /[?#]/.test(inUrl[2])) return escapeHtml(encodeURIComponent(raw));
    if (inUrl && inUrl[2] === "" && /^[a-z][a-z0-9+.-]*:/i.test(raw) && !/^(https?|mailto):/i.test(raw)) return "#ZgotmplZ";
    return escapeHtml(raw);
  });
}

/** Renders a subject line: plain text, so values are substituted as they are. */
export function renderSubject(source: string, values: TemplateValues): string {
  return source.replace(/\{\{\s*\.([A-Za-z]+)(?:\.([A-Za-z0-9_]+))?\s*\}\}/g, (_m, name: string, key: string | undefined) => lookup(values, name, key));
}

function lookup(values: TemplateValues, name: string, key: string | undefined): string {
  if (name === "Data") {
    const v = key === undefined ? undefined : values.Data[key];
    return v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
  }
  if (key !== undefined || !Object.hasOwn(values, name)) return "";
  const v = values[name as keyof Omit<TemplateValues, "Data">];
  return typeof v === "string" ? v : "";
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;" })[c]!);
}

function decodeEntities(s: string): string {
  return s.replace(/&(#\d+|#x[0-9a-f]+|amp|lt|gt|quot|apos|nbsp);/gi, (_m, e: string) => {
    const named: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };
    if (e[0] !== "#") return named[e.toLowerCase()];
    const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return String.fromCodePoint(code);
  });
}

/** A plain-text version of an email: links become "label: URL", tags go, paragraphs stay apart. */
function htmlToText(html: string): string {
  return decodeEntities(
    html
      .replace(/<(style|script|head)[^>]*>[\s\S]*?<\/\1>/gi, "")
      .replace(/<a\s[^>]*href\s*=\s*(["'])(.*?)\1[^>]*>([\s\S]*?)<\/a>/gi, (_m, _q, href: string, label: string) => `${label.replace(/<[^>]+>/g, "").trim()}: ${href}`)
      .replace(/<br\s*\/?>/gi, "\n")
      .replace(/<\/(p|div|h[1-6]|li|tr)>/gi, "\n\n")
      .replace(/<[^>]+>/g, ""),
  )
    .split("\n")
    .map((line) => line.trim())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** The gateway's handler for /_mail (`path` is what follows /_mail, "/" for the root). */
export function mailboxHandler(mailbox: Mailbox) {
  return async function handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendJson(res, 405, { error: { code: "method_not_allowed", message: "the local mailbox is read-only: use GET" } });
    }
    if (path === "/" || path === "") return sendHtml(res, 200, listPage(mailbox.list()));
    if (path === "/api/messages") {
      const to = query.get("to") ?? undefined;
      return sendJson(res, 200, mailbox.list(to));
    }
    const message = /^\/([^/]+)$/.exec(path) && mailbox.get(path.slice(1));
    if (message) return sendHtml(res, 200, messagePage(message));
    return sendJson(res, 404, { error: { code: "not_found", message: "no such message in the local mailbox" } });
  };
}

const BANNER = `<p class="banner"><strong>LOCAL ONLY mailbox.</strong> These are the emails the local auth stand-in
would have sent. Nothing was delivered; hosted Supabase sends real email.</p>`;

const STYLE = `<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }
  .banner { background: #fff3c4; border: 2px solid #b58a00; padding: .75rem 1rem; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; }
  iframe { width: 100%; height: 24rem; border: 1px solid #ccc; } pre { white-space: pre-wrap; background: #f6f6f6; padding: .75rem; }
</style>`;

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>${STYLE}</head><body>${BANNER}${body}</body></html>`;
}

function listPage(messages: MailMessage[]): string {
  const rows = messages
    .map((m) => `<tr><td>${escapeHtml(m.created_at)}</td><td>${escapeHtml(m.to)}</td><td><a href="/_mail/${m.id}">${escapeHtml(m.subject)}</a></td></tr>`)
    .join("");
  const table = messages.length
    ? `<table><thead><tr><th>sent</th><th>to</th><th>subject</th></tr></thead><tbody>${rows}</tbody></table>`
    : "<p>No messages yet.</p>";
  return layout("LOCAL ONLY mailbox", `<h1>Mailbox</h1>${table}`);
}

function messagePage(m: MailMessage): string {
  const links = [...m.html.matchAll(/href\s*=\s*(["'])(.*?)\1/gi)].map((x) => decodeEntities(x[2]));
  const linkList = links.length ? `<h2>Links</h2><ul>${links.map((l) => `<li><a href="${escapeHtml(l)}">${escapeHtml(l)}</a></li>`).join("")}</ul>` : "";
  return layout(
    m.subject,
    `<p><a href="/_mail">&larr; all messages</a></p><h1>${escapeHtml(m.subject)}</h1>
<p>To: ${escapeHtml(m.to)}<br>Sent: ${escapeHtml(m.created_at)}</p>
<iframe sandbox title="message" srcdoc="${escapeHtml(m.html)}"></iframe>${linkList}<h2>Text</h2><pre>${escapeHtml(m.text)}</pre>`,
  );
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    // The page has no script; a message's own HTML renders in a sandboxed frame.
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; base-uri 'none'; form-action 'none'",
  });
  res.end(html);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify(body));
}
