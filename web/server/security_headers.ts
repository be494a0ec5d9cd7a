/**
 * The security headers on everything Gatehouse serves over HTTP: the local gateway
 * (scripts/stack/gateway.ts) puts them on every answer, and the deployed console
 * (web/server/main.ts) on its own.
 *   - X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer on every answer;
 *   - Strict-Transport-Security whenever the host is not loopback (a browser ignores it over plain
 *     HTTP, and a local stack on 127.0.0.1 must not pin HTTPS for localhost's other ports);
 *   - a Content-Security-Policy: the console's (CONSOLE_CSP) on its pages and files, and on any
 *     other answer that names none itself (JSON from the APIs) one that lets it load nothing and
 *     be framed nowhere (API_CSP).
 * tests/integration/security_headers.test.ts checks each route through the gateway, and the e2e
 * suite fails on any CSP violation on a console screen.
 */

/**
 * The console's policy: scripts only from its own origin (no inline script, no eval), nothing
 * framed and never framed, no plugins, no <base>, forms only to itself, connections only to its
 * own origin (the console server, /console). Styles allow inline: Mantine writes its CSS variables
 * into a <style> element and style attributes at run time.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-src 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** For answers that are data, not pages (the APIs' JSON): load nothing, be framed nowhere. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";

/** Two years, subdomains included: what hstspreload.org asks for. */
export const HSTS = "max-age=63072000; includeSubDomains";

/** Whether `host` (a Host header: name and maybe port) is this machine. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return true;
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  return name === "localhost" || name.endsWith(".localhost") || name === "::1" || /^127(\.\d{1,3}){3}$/.test(name);
}

/** The headers every answer carries, for a request to `host`. */
export function baseSecurityHeaders(host: string | undefined): Record<string, string> {
  return {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    ...(isLoopbackHost(host) ? {} : { "strict-transport-security": HSTS }),
  };
}
