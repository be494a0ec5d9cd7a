/**
 * npm start: brings up the whole local stack with its data in .local/ (git-ignored), prints a
 * summary, and stops every child cleanly on Ctrl-C. A second start reuses the data.
 *   --reset   delete the database first and rebuild it from migrations and seed
 *   --exit    only (re)build the database, then stop (npm run db:reset = --reset --exit)
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildWeb } from "./build_web.ts";
import { readProjectConfig } from "./stack/config.ts";
import { StackError } from "./stack/errors.ts";
import { defaultPorts, runningStackIn, startStack } from "./stack/index.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const stateDir = join(root, ".local");
const args = new Set(process.argv.slice(2));
const unknown = [...args].filter((a) => a !== "--reset" && a !== "--exit");

function buildWebApp(): void {
  console.log("building the web app and the widget embed (vite)");
  if (!buildWeb(root)) throw new StackError("the web build failed (see above)");
}

async function main(): Promise<void> {
  if (unknown.length) throw new StackError(`unknown option ${unknown.join(" ")} (expected --reset, --exit)`);
  const config = readProjectConfig(root);
  const databaseOnly = args.has("--exit");
  // Another npm start runs on this data: refuse before anything is built or touched, so that its
  // console keeps its web/dist and its stack.json.
  const live = runningStackIn(stateDir);
  if (live !== null) throw new StackError(`another npm start (Postgres pid ${live}) is running on ${stateDir}: stop it first (Ctrl-C there)`);
  if (!databaseOnly) buildWebApp();
  const started = Date.now();
  const stack = await startStack({
    root,
    stateDir,
    ports: defaultPorts(config.api.port, config.db.port),
    reset: args.has("--reset"),
    databaseOnly,
    log: (line) => console.log(line),
  });
  const { info } = stack;
  if (databaseOnly) {
    await stack.stop();
    console.log(`database rebuilt from migrations and seed in ${stateDir}`);
    return;
  }

  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(`
Gatehouse local stack is up (${secs} s)
  API gateway   ${info.apiUrl}   (/rest/v1, /auth/v1, /functions/v1, web app at /)
  Health        ${info.functionsUrl}/health
  Models        ${info.functionsUrl}/model-gateway/v1  (OpenAI-compatible; upstream: ${info.modelStandIn ? `the local stand-in at ${info.modelStandIn.url}, deterministic replies, not a real model` : "the vendors"})
  Database      postgresql://postgres:***@127.0.0.1:${info.ports.db}/postgres  (PostgreSQL ${info.postgres.major}, ${info.postgres.source})
  Keys, URLs    ${join(stateDir, "stack.json")}  (anon key, service-role key, DB URL, JWT secret)
  Run worker    one process on graphile-worker (log: ${join(stateDir, "logs", "worker.log")})
  Webhooks      ${info.webhookReceiver ? `${info.webhookReceiver.url}/hooks/<any-name>  (LOCAL ONLY receiver for an https_webhook connection; what arrives: ${info.webhookReceiver.url}/)` : "—"}
  Logs          ${join(stateDir, "logs")}

Demo logins (local only; random per data folder):
${info.demoUsers.map((u) => `  ${u.email.padEnd(22)} ${u.password.padEnd(14)} ${u.memberships.map((m) => `${m.organization} (${m.role})`).join(", ")}`).join("\n")}

Press Ctrl-C to stop.`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping the stack`);
    await stack.stop();
    console.log("stopped");
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

main().catch((e: unknown) => {
  if (e instanceof StackError) {
    console.error(`gatehouse: ${e.message}`);
  } else {
    console.error(e);
  }
  process.exit(1);
});
