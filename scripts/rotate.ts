/**
 * Key rotation (seed 000: secrets "rotate on a defined schedule and on demand if a compromise is
 * suspected"; docs/operations.md#key-rotation). Each rotation is recorded in every organization's
 * audit chain (private.record_platform_event).
 *
 *   npm run rotate -- audit-key        retire the key that signs checkpoints: the next checkpoint
 *                                      makes a new one (signed now, when the stack runs). Old keys
 *                                      stay published with their validity window, so old exports
 *                                      still verify.
 *   npm run rotate -- vault-root-key   re-encrypt every Vault secret under a new root key, with no
 *                                      downtime: the old key waits in vault_root.key.previous while
 *                                      secrets move over in batches (either key opens a secret
 *                                      meanwhile), then is deleted. Interrupted, it resumes.
 *   npm run rotate -- jwt-secret       a new JWT secret for the local stack (secrets.json): restart
 *                                      npm start to use it; every API key and token signed with the
 *                                      old one is refused from then on.
 *
 * Rotations of webhook signing secrets need no command: an inbound subscription rotates with a
 * grace period (docs/webhooks.md), and the Stripe webhook takes the new and the previous secret
 * (STRIPE_WEBHOOK_SECRETS) while Stripe rolls its endpoint's.
 */
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { StackError } from "./stack/errors.ts";
import { postgresUser } from "./stack/postgres.ts";
import { loadState, saveState } from "./stack/state.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

async function recordRotation(sql: postgres.Sql, action: string, payload: Record<string, unknown>): Promise<number> {
  const [{ chains }] = await sql`select private.record_platform_event(${action}, ${sql.json(payload as postgres.JSONValue)}) as chains`;
  return Number(chains);
}

export interface AuditKeyRotation {
  retired: string | null;
  /** The key that signs from now on, when a checkpoint was signed right away (the stack runs). */
  next: string | null;
  chains: number;
}

/**
 * Retires the checkpoints' signing key. With `checkpointUrl` and the service-role key, a checkpoint
 * of every chain is signed at once, which makes the new key; else the next scheduled one does.
 */
export async function rotateAuditKey(dbUrl: string, signNow?: { checkpointUrl: string; serviceRoleKey: string }): Promise<AuditKeyRotation> {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const retired = await sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext('audit.signing_keys'))`;
      const rows = await tx`update audit.signing_keys set retired_at = now() where retired_at is null returning key_id`;
      return rows[0]?.key_id as string | undefined ?? null;
    });
    const chains = await recordRotation(sql, "platform.audit_key_rotated", { retired_key_id: retired });
    let next: string | null = null;
    if (signNow) {
      const res = await fetch(signNow.checkpointUrl, {
        method: "POST", headers: { authorization: `Bearer ${signNow.serviceRoleKey}`, "content-type": "application/json" }, body: "{}",
      });
      if (!res.ok) throw new StackError(`the key is retired, but signing a checkpoint with a new one failed (${res.status}); the next scheduled checkpoint makes it`);
      const [row] = await sql`select key_id from audit.signing_keys where retired_at is null`;
      next = (row?.key_id as string | undefined) ?? null;
    }
    return { retired, next, chains };
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** Writes a key file the server reads (mode 0400, the server's OS user), atomically: readers see the old file or the new, never none. */
function writeKeyFile(path: string, hex: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  writeFileSync(tmp, hex + "\n", { mode: 0o400 });
  const who = postgresUser();
  if (who.uid !== undefined && who.gid !== undefined) chownSync(tmp, who.uid, who.gid);
  renameSync(tmp, path);
}

const readKey = (path: string) => (existsSync(path) ? readFileSync(path, "utf8").trim() : null);

export interface VaultRotation {
  reencrypted: number;
  /** Whether an interrupted rotation was finished rather than a new one started. */
  resumed: boolean;
  secrets: number;
  chains: number;
}

/**
 * Re-encrypts every Vault secret under a new root key, `batch` at a time, while the stack runs.
 * The previous key stays beside the current one (vault_root.key.previous) until no secret needs it.
 */
export async function rotateVaultRootKey(opts: { stateDir: string; dbUrl: string; batch?: number; log?: (line: string) => void }): Promise<VaultRotation> {
  const log = opts.log ?? (() => {});
  const current = join(opts.stateDir, "vault_root.key");
  const previous = `${current}.previous`;
  if (!existsSync(current)) throw new StackError(`no Vault root key at ${current}: is ${opts.stateDir} a stack's state folder?`);
  const state = loadState(opts.stateDir);
  const resumed = existsSync(previous);
  if (!resumed) {
    writeKeyFile(previous, readKey(current)!);
  }
  if (readKey(current) === readKey(previous)) {
    // The old key is kept beside; only now does the current one change (a crash before this point resumes here).
    const fresh = randomBytes(32).toString("hex");
    writeKeyFile(current, fresh);
    log("a new root key is in place; the previous one waits beside it");
  } else if (resumed) {
    log("resuming an interrupted rotation: the previous key is still beside the current one");
  }
  saveState(opts.stateDir, { ...state, vaultRootKeyHex: readKey(current)! });

  const sql = postgres(opts.dbUrl, { max: 1, onnotice: () => {} });
  try {
    let reencrypted = 0;
    for (;;) {
      const [{ n }] = await sql`select vault._reencrypt(${opts.batch ?? 200}) as n`;
      if (Number(n) === 0) break;
      reencrypted += Number(n);
      log(`re-encrypted ${reencrypted}`);
    }
    const [count] = await sql`select under_current, not_under_current from vault._sealed_count()`;
    if (Number(count.not_under_current) !== 0) {
      throw new StackError(`${count.not_under_current} secret(s) are still not sealed under the new key; the previous key stays until a rerun moves them`);
    }
    rmSync(previous, { force: true });
    const chains = await recordRotation(sql, "platform.vault_root_key_rotated", { reencrypted, secrets: Number(count.under_current) });
    return { reencrypted, resumed, secrets: Number(count.under_current), chains };
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/** A new JWT secret in the state folder; the running stack keeps the old one until it restarts. */
export async function rotateJwtSecret(opts: { stateDir: string; dbUrl: string }): Promise<{ chains: number }> {
  const state = loadState(opts.stateDir);
  saveState(opts.stateDir, { ...state, jwtSecret: randomBytes(48).toString("base64url") });
  const sql = postgres(opts.dbUrl, { max: 1, onnotice: () => {} });
  try {
    return { chains: await recordRotation(sql, "platform.jwt_secret_rotated", {}) };
  } finally {
    await sql.end({ timeout: 2 });
  }
}

async function main(): Promise<void> {
  const what = process.argv[2];
  const stateDir = join(root, ".local");
  const stackFile = join(stateDir, "stack.json");
  if (!["audit-key", "vault-root-key", "jwt-secret"].includes(what ?? "")) {
    console.error("usage: npm run rotate -- audit-key | vault-root-key | jwt-secret");
    process.exit(2);
  }
  if (!existsSync(stackFile)) {
    console.error("rotate: no running stack (.local/stack.json): npm start first");
    process.exit(2);
  }
  const info = JSON.parse(readFileSync(stackFile, "utf8")) as { dbUrl: string; functionsUrl: string; serviceRoleKey: string };
  if (what === "audit-key") {
    const r = await rotateAuditKey(info.dbUrl, { checkpointUrl: `${info.functionsUrl}/audit-checkpoint`, serviceRoleKey: info.serviceRoleKey });
    console.log(`rotate: audit key ${r.retired ?? "(none yet)"} retired; ${r.next ? `${r.next} signs from now on` : "the next checkpoint makes the new key"}; recorded in ${r.chains} chains`);
  } else if (what === "vault-root-key") {
    const r = await rotateVaultRootKey({ stateDir, dbUrl: info.dbUrl, log: (l) => console.log(`rotate: ${l}`) });
    console.log(`rotate: ${r.secrets} Vault secrets sealed under the new root key (${r.reencrypted} re-encrypted${r.resumed ? ", an interrupted rotation finished" : ""}); the old key is deleted; recorded in ${r.chains} chains`);
  } else {
    const r = await rotateJwtSecret({ stateDir, dbUrl: info.dbUrl });
    console.log(`rotate: a new JWT secret is in .local/secrets.json; restart npm start (Ctrl-C, npm start) to use it. Every API key and token signed with the old one is then refused. Recorded in ${r.chains} chains`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e instanceof StackError ? `rotate: ${e.message}` : e);
    process.exit(1);
  });
}
