/**
 * Backups and restores of the local stack's database (seed 000: daily backups, point-in-time
 * recovery, restore procedures "tested on a regular schedule"; docs/operations.md#backups).
 *
 *   npm run backup [-- --out <file>]
 *     A consistent dump of the running stack's database (.local/stack.json): pg_dump in its custom
 *     format, every schema, taken from one snapshot while writes go on. Written mode 0600 to
 *     .local/backups/gatehouse-<time>.dump unless --out says where.
 *
 *   npm run restore -- <dump> [--state-dir <dir>] [--replace]
 *     Restores a dump into a fresh cluster in <dir>/pg (default .local, which `npm start` then
 *     serves): initdb, the platform layer (roles, Vault, the auth schema), pg_restore in one
 *     transaction, and the platform layer again, so that Vault reads this folder's root key. It
 *     refuses while a stack runs there, and refuses to overwrite a database unless --replace, which
 *     keeps the old one beside it as pg.before-restore-<time>.
 *
 * Neither holds the Vault root key: a dump's secrets are ciphertext, and they decrypt only under the
 * root key of the state folder they are restored into (its secrets.json). Keep the root key apart
 * from the dumps. tests/runs/restore_drill.test.ts restores a dump taken under writes and checks the
 * audit chain, the isolation matrix and Vault.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import postgres from "postgres";
import { readProjectConfig } from "./stack/config.ts";
import { StackError } from "./stack/errors.ts";
import { runningStackIn } from "./stack/index.ts";
import { applyPlatformLayer } from "./stack/platform.ts";
import { freePort } from "./stack/ports.ts";
import { findPostgres, initCluster, makeTraversable, postgresUser, startPostgres, type PgBinaries } from "./stack/postgres.ts";
import { loadState, writeRootKey } from "./stack/state.ts";

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** pg_dump and pg_restore beside the server binaries, so that their version matches it. */
function tool(bins: PgBinaries, name: "pg_dump" | "pg_restore"): string {
  const path = join(bins.bindir, name);
  if (!existsSync(path)) throw new StackError(`${name} is not beside the Postgres binaries in ${bins.bindir}: install postgresql-client-${bins.major} (npm run setup)`);
  return path;
}

function passwordEnv(url: string): NodeJS.ProcessEnv {
  return { ...process.env, PGPASSWORD: decodeURIComponent(new URL(url).password), PGSSLMODE: "disable" };
}

/** The URL without its password, as pg_dump and pg_restore take it (the password goes by PGPASSWORD). */
function withoutPassword(url: string): string {
  const u = new URL(url);
  u.password = "";
  return u.toString();
}

export interface BackupResult {
  file: string;
  bytes: number;
  seconds: number;
}

/** A consistent dump of the database at `dbUrl` (one snapshot) into `file`, mode 0600. */
export async function backupDatabase(dbUrl: string, file: string): Promise<BackupResult> {
  const started = performance.now();
  mkdirSync(dirname(file), { recursive: true });
  await run(tool(findPostgres(), "pg_dump"), ["--format=custom", "--compress=6", "--no-password", `--file=${file}`, withoutPassword(dbUrl)], {
    env: passwordEnv(dbUrl), maxBuffer: 64 * 1024 * 1024,
  });
  chmodSync(file, 0o600);
  return { file, bytes: statSync(file).size, seconds: (performance.now() - started) / 1000 };
}

export interface RestoreResult {
  dataDir: string;
  seconds: number;
  /** Where the database that was there before went (with --replace). */
  keptAs?: string;
  /** Vault secrets this folder's root key does not open (sealed under another): 0 when all restore. */
  unopenable: number;
}

/** Restores `dump` into a fresh cluster in `<stateDir>/pg`, with the state folder's secrets and root key. */
export async function restoreDump(opts: { dump: string; stateDir: string; replace?: boolean; log?: (line: string) => void }): Promise<RestoreResult> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  if (!existsSync(opts.dump)) throw new StackError(`no dump at ${opts.dump}`);
  const live = runningStackIn(opts.stateDir);
  if (live !== null) throw new StackError(`a stack (Postgres pid ${live}) runs on ${opts.stateDir}: stop npm start first`);
  mkdirSync(opts.stateDir, { recursive: true });
  makeTraversable(opts.stateDir);
  const dataDir = join(opts.stateDir, "pg");
  let keptAs: string | undefined;
  if (existsSync(dataDir)) {
    if (!opts.replace) throw new StackError(`${dataDir} already holds a database: pass --replace to restore over it (it is kept beside, not deleted)`);
    keptAs = `${dataDir}.before-restore-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    renameSync(dataDir, keptAs);
    log(`the database that was there is kept as ${keptAs}`);
  }
  const bins = findPostgres();
  const state = loadState(opts.stateDir);
  log(`creating a fresh cluster in ${dataDir}`);
  initCluster(bins, dataDir, state.postgresPassword);
  const rootKeyFile = writeRootKey(opts.stateDir, state.vaultRootKeyHex, postgresUser());
  mkdirSync(join(opts.stateDir, "logs"), { recursive: true });
  const pg = await startPostgres(bins, { dataDir, port: await freePort(), password: state.postgresPassword, logFile: join(opts.stateDir, "logs", "restore-postgres.log") });
  const sql = postgres(pg.superuserUrl, { max: 1, onnotice: () => {} });
  let unopenable = 0;
  try {
    const platform = {
      rootKeyFile,
      exposedSchemas: readProjectConfig(root).api.schemas,
      rolePasswords: { authenticator: state.authenticatorPassword, supabase_auth_admin: state.authAdminPassword },
    };
    // The roles the dump's grants and owners name, and the platform's schemas.
    await applyPlatformLayer(sql, platform);
    log(`restoring ${opts.dump}`);
    try {
      await run(tool(bins, "pg_restore"), [
        "--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-password",
        `--dbname=${withoutPassword(pg.superuserUrl)}`, opts.dump,
      ], { env: passwordEnv(pg.superuserUrl), maxBuffer: 64 * 1024 * 1024 });
    } catch (e) {
      const stderr = String((e as { stderr?: string }).stderr ?? "").trim().split("\n").slice(-3).join(" | ");
      throw new StackError(`pg_restore failed, and restored nothing (one transaction): ${stderr}`);
    }
    // The dump's Vault functions read the source's root key file: point them at this folder's.
    await applyPlatformLayer(sql, platform);
    // Secrets sealed under another root key restore as ciphertext nothing opens: say so now, not
    // when a connector first fails.
    const [count] = await sql`select not_under_current::int as n from vault._sealed_count()`;
    unopenable = count.n;
    if (unopenable > 0) {
      log(`${unopenable} Vault secret(s) do not open under this folder's root key: restore into a folder holding the source's secrets.json`);
    }
  } finally {
    await sql.end({ timeout: 2 });
    await pg.stop();
  }
  return { dataDir, seconds: (performance.now() - started) / 1000, unopenable, ...(keptAs ? { keptAs } : {}) };
}

function usage(message: string): never {
  console.error(`${message}\nusage: npm run backup [-- --out <file>]\n       npm run restore -- <dump> [--state-dir <dir>] [--replace]`);
  process.exit(2);
}

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  const flag = (name: string) => {
    const i = args.indexOf(name);
    if (i === -1) return undefined;
    const value = args[i + 1];
    if (!value || value.startsWith("--")) usage(`${name} needs a value`);
    args.splice(i, 2);
    return value;
  };
  if (command === "backup") {
    const out = flag("--out");
    if (args.length > 0) usage(`unknown argument ${args[0]}`);
    const stackFile = join(root, ".local", "stack.json");
    if (!existsSync(stackFile)) usage("no running stack (.local/stack.json): npm start first");
    const { dbUrl } = JSON.parse(readFileSync(stackFile, "utf8")) as { dbUrl: string };
    const file = resolve(out ?? join(root, ".local", "backups", `gatehouse-${new Date().toISOString().replace(/[:.]/g, "-")}.dump`));
    const result = await backupDatabase(dbUrl, file);
    console.log(`backup: ${result.file} (${(result.bytes / 1024 / 1024).toFixed(1)} MiB, ${result.seconds.toFixed(1)} s). It holds no Vault root key: keep .local/secrets.json apart from it.`);
  } else if (command === "restore") {
    const stateDir = resolve(flag("--state-dir") ?? join(root, ".local"));
    const replace = args.includes("--replace");
    const rest = args.filter((a) => a !== "--replace");
    if (rest.length !== 1) usage("name one dump to restore");
    const result = await restoreDump({ dump: resolve(rest[0]), stateDir, replace, log: (l) => console.log(`restore: ${l}`) });
    const next = stateDir === join(root, ".local") ? "npm start serves it" : "a stack started on that folder serves it";
    console.log(`restore: done in ${result.seconds.toFixed(1)} s into ${result.dataDir}; ${next}`);
  } else {
    usage(`unknown command ${command ?? "(none)"}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e instanceof StackError ? `gatehouse: ${e.message}` : e);
    process.exit(1);
  });
}
