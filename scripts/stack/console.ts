/**
 * The console server as the local gateway serves it (/console on the API port): the same server
 * a hosted deployment runs (web/server/main.ts), with the timeouts of config.toml's
 * [auth.sessions] and an activity-cookie key derived from the stack's own JWT secret. Cookies are
 * not Secure here only because the local stack speaks plain HTTP on 127.0.0.1.
 */
import { createHmac } from "node:crypto";
import { consoleListener } from "../../web/server/console.ts";
import { parseDuration, type ProjectConfig } from "./config.ts";

function seconds(duration: string | undefined): number | null {
  const ms = duration ? parseDuration(duration) : null;
  return ms ? Math.round(ms / 1000) : null;
}

/** The gateway's /console handler. */
export function localConsole(apiUrl: string, anonKey: string, jwtSecret: string, config: ProjectConfig) {
  const listener = consoleListener({
    supabaseUrl: apiUrl,
    anonKey,
    origin: apiUrl,
    cookieSecret: createHmac("sha256", jwtSecret).update("gatehouse console activity cookie").digest("base64"),
    secureCookies: false,
    inactivityTimeout: seconds(config.auth.sessions.inactivity_timeout),
    timebox: seconds(config.auth.sessions.timebox),
  });
  return (req: Parameters<typeof listener>[0], res: Parameters<typeof listener>[1]) => listener(req, res);
}
