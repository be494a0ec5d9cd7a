/**
 * The deployed console's whole app (web/server/main.ts runs it): the console server under
 * /console (console.ts), the built console from web/dist with index.html for every deep link, and
 * the security headers on every answer (security_headers.ts).
 */
import { serveStatic } from "@hono/node-server/serve-static";
import { Hono } from "hono";
import { consoleApp, framingHeaders, type ConsoleOptions } from "./console.ts";
import { API_CSP, CONSOLE_CSP, baseSecurityHeaders } from "./security_headers.ts";

export function deployedConsoleApp(opts: ConsoleOptions, dist = "web/dist"): Hono {
  const app = new Hono();
  // Every answer: nosniff, no referrer, HSTS off loopback; the console's CSP on its pages and
  // files (/.well-known/security.txt too), the load-nothing one on the console server's JSON.
  // Registered first, so that it runs last on the way out.
  app.use("*", async (c, next) => {
    await next();
    // c.header, not a new c.res: Hono's res setter copies the old answer's headers over the new one's.
    for (const [name, value] of Object.entries(baseSecurityHeaders(c.req.header("host")))) c.header(name, value);
    c.header("content-security-policy", c.req.path === "/console" || c.req.path.startsWith("/console/") ? API_CSP : CONSOLE_CSP);
  });
  // The console's pages too, not only the console server's answers: never framed by another site.
  app.use("*", framingHeaders);
  app.route("/", consoleApp(opts));
  // The posture page (scripts/posture.ts), public like security.txt.
  app.get("/security", serveStatic({ root: dist, path: "security.html" }));
  app.use("/*", serveStatic({ root: dist }));
  app.get("/*", serveStatic({ root: dist, path: "index.html" }));
  return app;
}
