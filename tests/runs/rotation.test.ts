/**
 * Key rotation (scripts/rotate.ts, `npm run rotate`), each on a stack of its own:
 *   - the audit checkpoints' signing key: retired, a new one signs, the old one stays published
 *     with its window, and an export made before the rotation still verifies offline;
 *   - Vault's root key: every secret re-encrypted while readers keep reading (none fails), the old
 *     key opens nothing afterwards, a dump taken before no longer decrypts, and a rotation
 *     interrupted halfway finishes when run again;
 *   - the JWT secret: after the restart, API keys signed with the old one are refused;
 *   - each rotation is an entry in every organization's chain.
 * (Webhook secrets rotate with a grace overlap: inbound.test.ts and stripe_webhook.test.ts.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupDatabase, restoreDump } from "../../scripts/backup.ts";
import { rotateAuditKey, rotateJwtSecret, rotateVaultRootKey } from "../../scripts/rotate.ts";
import { type Stack, startOnFreePorts } from "../../scripts/stack/index.ts";
import { freePort } from "../../scripts/stack/ports.ts";
import { findPostgres, startPostgres } from "../../scripts/stack/postgres.ts";
import { loadState } from "../../scripts/stack/state.ts";

const ACME = "0a000000-0000-4000-8000-00000000000a";
const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-rotation-"));
const scratch = mkdtempSync(join(tmpdir(), "gatehouse-rotation-scratch-"));
let stack: Stack;
let sql: postgres.Sql;

beforeAll(async () => {
  stack = await startOnFreePorts({ root: process.cwd(), stateDir, worker: false });
  sql = postgres(stack.info.dbUrl, { max: 4, onnotice: () => {} });
}, 180_000);

afterAll(async () => {
  await sql?.end();
  await stack?.stop();
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(scratch, { recursive: true, force: true });
});

async function adaToken(): Promise<string> {
  const ada = stack.info.demoUsers.find((u) => u.email === "ada@acme.test")!;
  const res = await fetch(`${stack.info.apiUrl}/auth/v1/token?grant_type=password`, {
    method: "POST", headers: { apikey: stack.info.anonKey, "content-type": "application/json" }, body: JSON.stringify({ email: ada.email, password: ada.password }),
  });
  return ((await res.json()) as { access_token: string }).access_token;
}

async function exportAcme(token: string): Promise<string> {
  const res = await fetch(`${stack.info.functionsUrl}/audit-export`, { headers: { authorization: `Bearer ${token}`, "x-org-id": ACME } });
  expect(res.status).toBe(200);
  return await res.text();
}

function verifyOffline(text: string, publicKey: string) {
  const file = join(scratch, `export-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, text);
  const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_verify.ts", file, "--public-key", publicKey], { encoding: "utf8" });
  return { status: run.status, out: run.stdout + run.stderr };
}

describe("rotating the audit checkpoints' signing key", () => {
  it("signs with a new key from then on, keeps the old one published with its window, and old exports still verify", async () => {
    const service = { authorization: `Bearer ${stack.info.serviceRoleKey}`, "content-type": "application/json" };
    expect((await fetch(`${stack.info.functionsUrl}/audit-checkpoint`, { method: "POST", headers: service, body: "{}" })).status).toBe(200);
    const token = await adaToken();
    const before = await exportAcme(token);
    const oldKey = JSON.parse(before.trim().split("\n").at(-1)!) as { key_id: string; public_key: string };

    const rotation = await rotateAuditKey(stack.info.dbUrl, { checkpointUrl: `${stack.info.functionsUrl}/audit-checkpoint`, serviceRoleKey: stack.info.serviceRoleKey });
    expect(rotation.retired).toBe(oldKey.key_id);
    expect(rotation.next).toMatch(/.+/);
    expect(rotation.next).not.toBe(oldKey.key_id);

    const keys = await sql`select key_id, public_key, created_at, retired_at from public.audit_signing_keys()`;
    const old = keys.find((k) => k.key_id === oldKey.key_id)!;
    const current = keys.find((k) => k.key_id === rotation.next)!;
    expect(old.public_key).toBe(oldKey.public_key);
    expect(old.retired_at).not.toBeNull();
    expect(current.retired_at).toBeNull();
    expect(new Date(current.created_at).getTime()).toBeGreaterThanOrEqual(new Date(old.retired_at).getTime());

    // The export made before verifies against the retired key, as published; one made now against the new key.
    expect(verifyOffline(before, old.public_key)).toMatchObject({ status: 0, out: expect.stringMatching(/^ok: /) });
    const after = await exportAcme(token);
    expect(JSON.parse(after.trim().split("\n").at(-1)!).key_id).toBe(rotation.next);
    expect(verifyOffline(after, current.public_key)).toMatchObject({ status: 0, out: expect.stringMatching(/^ok: /) });
    expect(verifyOffline(after, old.public_key).status).not.toBe(0);
  }, 60_000);
});

describe("rotating Vault's root key", () => {
  const keyFile = join(stateDir, "vault_root.key");
  const opened = async () => (await sql`select count(*)::int as n, count(decrypted_secret)::int as opened from vault.decrypted_secrets`)[0];

  it("re-encrypts every secret while readers keep reading; the old key then opens nothing, and a dump taken before does not decrypt", async () => {
    await sql`select vault.create_secret(md5(i::text), 'rotation-' || i, 'rotation test') from generate_series(1, 400) i`;
    const oldKey = readFileSync(keyFile, "utf8").trim();
    const dumpBefore = await backupDatabase(stack.info.dbUrl, join(scratch, "before.dump"));
    const { n: secrets } = await opened();

    // Readers all along: a read that fails is downtime.
    let reading = true;
    let reads = 0;
    const failures: string[] = [];
    const readers = Array.from({ length: 2 }, async () => {
      while (reading && failures.length < 20) {
        try {
          const { n, opened: o } = await opened();
          if (o !== n) failures.push(`${o} of ${n} opened`);
          reads++;
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    });
    const rotation = await rotateVaultRootKey({ stateDir, dbUrl: stack.info.dbUrl, batch: 40 });
    reading = false;
    await Promise.all(readers);
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(3);
    expect(rotation).toMatchObject({ resumed: false, secrets });
    expect(rotation.reencrypted).toBe(secrets);

    const newKey = readFileSync(keyFile, "utf8").trim();
    expect(newKey).not.toBe(oldKey);
    expect(loadState(stateDir).vaultRootKeyHex).toBe(newKey);  // the next start writes the new key
    expect(existsSync(`${keyFile}.previous`)).toBe(false);
    expect(await opened()).toEqual({ n: secrets, opened: secrets });
    const [{ under_old }] = await sql`select count(*) filter (where vault._sealed_under(decode(${oldKey}, 'hex'), id, secret, nonce))::int as under_old from vault.secrets`;
    expect(under_old).toBe(0);

    // The dump from before the rotation, restored under the current key, opens nothing.
    const restoreDir = mkdtempSync(join(tmpdir(), "gatehouse-rotation-restore-"));
    writeFileSync(join(restoreDir, "secrets.json"), readFileSync(join(stateDir, "secrets.json")));
    const restoredBefore = await restoreDump({ dump: dumpBefore.file, stateDir: restoreDir });
    expect(restoredBefore.unopenable).toBe(secrets);  // the restore says so itself
    const pg = await startPostgres(findPostgres(), { dataDir: join(restoreDir, "pg"), port: await freePort(), password: loadState(restoreDir).postgresPassword, logFile: join(restoreDir, "pg.log") });
    const copy = postgres(pg.superuserUrl, { max: 1, onnotice: () => {} });
    try {
      await expect(copy`select count(decrypted_secret) from vault.decrypted_secrets`).rejects.toThrow(/failed authentication/);
    } finally {
      await copy.end();
      await pg.stop();
      rmSync(restoreDir, { recursive: true, force: true });
    }
  }, 120_000);

  it("finishes a rotation interrupted halfway when run again", async () => {
    const { n: secrets } = await opened();
    await expect(rotateVaultRootKey({
      stateDir, dbUrl: stack.info.dbUrl, batch: 50,
      log: (line) => {
        if (line.startsWith("re-encrypted")) throw new Error("interrupted");
      },
    })).rejects.toThrow("interrupted");
    // Halfway: both keys in place, every secret still opens.
    expect(existsSync(`${keyFile}.previous`)).toBe(true);
    expect(await opened()).toEqual({ n: secrets, opened: secrets });
    const [{ not_under_current }] = await sql`select not_under_current::int from vault._sealed_count()`;
    expect(not_under_current).toBeGreaterThan(0);

    const resumed = await rotateVaultRootKey({ stateDir, dbUrl: stack.info.dbUrl, batch: 50 });
    expect(resumed.resumed).toBe(true);
    expect(resumed.secrets).toBe(secrets);
    expect(existsSync(`${keyFile}.previous`)).toBe(false);
    expect(await opened()).toEqual({ n: secrets, opened: secrets });
  }, 60_000);
});

describe("rotating the JWT secret", () => {
  it("refuses the API keys signed with the old secret once the stack restarts, and records every rotation in every chain", async () => {
    const oldAnon = stack.info.anonKey;
    const oldToken = await adaToken();
    await rotateJwtSecret({ stateDir, dbUrl: stack.info.dbUrl });
    const [{ actions }] = await sql`select array_agg(action order by id) as actions from audit.records where org_id = ${ACME} and action like 'platform.%'`;
    expect(actions).toEqual(["platform.audit_key_rotated", "platform.vault_root_key_rotated", "platform.vault_root_key_rotated", "platform.jwt_secret_rotated"]);
    const [{ chains }] = await sql`select count(distinct org_id)::int as chains from audit.records where action = 'platform.jwt_secret_rotated'`;
    const [{ orgs }] = await sql`select count(*)::int as orgs from public.organizations`;
    expect(chains).toBe(orgs);

    await sql.end();
    await stack.stop();
    stack = await startOnFreePorts({ root: process.cwd(), stateDir, worker: false });
    sql = postgres(stack.info.dbUrl, { max: 4, onnotice: () => {} });
    expect(stack.info.anonKey).not.toBe(oldAnon);
    const rest = (apikey: string, bearer: string) => fetch(`${stack.info.restUrl}/organizations?select=id`, { headers: { apikey, authorization: `Bearer ${bearer}` } });
    const fresh = await rest(stack.info.anonKey, await adaToken());
    expect({ status: fresh.status, body: fresh.status === 200 ? "" : await fresh.text() }).toEqual({ status: 200, body: "" });
    // The old anon key is no API key any more, and a token the old secret signed fails its signature.
    expect((await rest(oldAnon, oldAnon)).status).toBe(401);
    const stale = await rest(stack.info.anonKey, oldToken);
    expect(stale.status).toBe(401);
    expect(await stale.text()).toMatch(/JW[ST]|signature/i);
  }, 120_000);
});
