/**
 * The console, deployed next to hosted Supabase: one Node process that serves the built console
 * (web/dist, with index.html for every deep link) and the console server (/console, see
 * console.ts), with the security headers (deployed.ts). Run it behind TLS on the origin you give it:
 *
 *   CONSOLE_ORIGIN=https://console.example.com \
 *   SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=<anon key> \
 *   CONSOLE_COOKIE_SECRET=<32+ random bytes, base64> \
 *   CONSOLE_INACTIVITY_TIMEOUT=8h CONSOLE_TIMEBOX=24h PORT=8080 \
 *   npx tsx web/server/main.ts
 *
 * The timeouts should match the project's Auth settings ([auth.sessions] in config.toml), which
 * Supabase Auth enforces on its side. No service-role key: the console never needs one.
 */
import { getRequestListener } from "@hono/node-server";
import { createServer } from "node:http";
import { deployedConsoleApp } from "./deployed.ts";
import { parseDuration } from "../../scripts/stack/config.ts";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`console: set ${name}`);
    process.exit(1);
  }
  return value;
}

/** A duration setting ("8h", "30m") in seconds; unset is no limit. */
function seconds(name: string): number | null {
  const value = process.env[name];
  if (!value) return null;
  const ms = parseDuration(value);
  if (ms === null || ms <= 0) {
    console.error(`console: ${name} is not a duration such as 8h, 30m or 90s`);
    process.exit(1);
  }
  return Math.round(ms / 1000);
}

const origin = required("CONSOLE_ORIGIN");
const secret = required("CONSOLE_COOKIE_SECRET");
if (Buffer.from(secret, "base64").length < 32) {
  console.error("console: CONSOLE_COOKIE_SECRET must hold at least 32 random bytes (base64)");
  process.exit(1);
}

const app = deployedConsoleApp({
  supabaseUrl: required("SUPABASE_URL").replace(/\/+$/, ""),
  anonKey: required("SUPABASE_ANON_KEY"),
  origin,
  cookieSecret: secret,
  secureCookies: new URL(origin).protocol === "https:",
  inactivityTimeout: seconds("CONSOLE_INACTIVITY_TIMEOUT"),
  timebox: seconds("CONSOLE_TIMEBOX"),
});

const port = Number(process.env.PORT ?? 8080);
createServer(getRequestListener(app.fetch)).listen(port, () => console.log(`console: listening on ${port} for ${origin}`));
