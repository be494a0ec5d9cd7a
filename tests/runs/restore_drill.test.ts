/**
 * The restore drill (seed 000: "we test restore procedures on a regular schedule"): a dump taken
 * with `npm run backup`'s code while writes go on (tenant rows through their audit triggers, and
 * the sealer chaining them) is restored with `npm run restore`'s into a fresh cluster. The restored
 * database must hold a whole audit chain that verifies end to end, pass the isolation matrix, and
 * decrypt its Vault secrets with the root key, and not without it. The figures it prints (dump and
 * restore times, the dump's size) are the recovery objectives docs/operations.md reports.
 */
import { spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupDatabase, restoreDump } from "../../scripts/backup.ts";
import { type Stack, startOnFreePorts } from "../../scripts/stack/index.ts";
import { freePort } from "../../scripts/stack/ports.ts";
import { findPostgres, postgresUser, startPostgres, type PgServer } from "../../scripts/stack/postgres.ts";
import { startSealer } from "../../scripts/stack/sealer.ts";
import { loadState, writeRootKey } from "../../scripts/stack/state.ts";

const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_PROJECT = "1a000000-0000-4000-8000-00000000000a";
const GLOBEX = "0b000000-0000-4000-8000-00000000000b";
const sourceDir = mkdtempSync(join(tmpdir(), "gatehouse-backup-"));
const restoreDir = mkdtempSync(join(tmpdir(), "gatehouse-restore-"));
let source: Stack;
let restored: PgServer | null = null;

beforeAll(async () => {
  source = await startOnFreePorts({ root: process.cwd(), stateDir: sourceDir, databaseOnly: true });
}, 180_000);

afterAll(async () => {
  await restored?.stop();
  await source?.stop();
  rmSync(sourceDir, { recursive: true, force: true });
  rmSync(restoreDir, { recursive: true, force: true });
});

describe("the restore drill", () => {
  it("restores a dump taken under writes: the chain verifies, the isolation matrix passes, Vault decrypts with the root key only", async () => {
    const sql = postgres(source.info.dbUrl, { max: 4, onnotice: () => {} });
    const sealer = startSealer(source.info.dbUrl, { intervalMs: 50 });
    try {
      // Writes while the dump is taken: agents (audited by their triggers) in two organizations,
      // and a Vault secret.
      await sql`select vault.create_secret(${randomBytes(16).toString("hex")}, ${`drill-${randomUUID()}`}, 'restore drill')`;
      let writing = true;
      let written = 0;
      const writer = (async () => {
        while (writing) {
          await sql`insert into public.agents (org_id, project_id, name, description)
                    values (${ACME}, ${ACME_PROJECT}, ${`drill ${written}`}, 'written during the backup')`;
          await sql`insert into audit.records (org_id, action, target_type, target_id, payload)
                    values (${GLOBEX}, 'drill.written', 'drill', ${String(written)}, ${sql.json({ n: written })})`;
          written++;
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      const dump = await backupDatabase(source.info.dbUrl, join(sourceDir, "drill.dump"));
      await new Promise((r) => setTimeout(r, 200));
      writing = false;
      await writer;
      expect(written).toBeGreaterThan(10);

      // Into a fresh cluster, in a folder that holds the source's secrets (its root key among them).
      copyFileSync(join(sourceDir, "secrets.json"), join(restoreDir, "secrets.json"));
      const result = await restoreDump({ dump: dump.file, stateDir: restoreDir });
      expect(result.unopenable).toBe(0);
      console.log(`restore drill: ${written} writes went on during the dump; dump ${(dump.bytes / 1024 / 1024).toFixed(1)} MiB in ${dump.seconds.toFixed(1)} s, restore in ${result.seconds.toFixed(1)} s`);
      const state = loadState(restoreDir);
      restored = await startPostgres(findPostgres(), {
        dataDir: join(restoreDir, "pg"), port: await freePort(), password: state.postgresPassword, logFile: join(restoreDir, "logs", "postgres.log"),
      });
      const copy = postgres(restored.superuserUrl, { max: 1, onnotice: () => {} });
      try {
        // 1. Every chain verifies end to end, the writes taken mid-dump included.
        const chains = await copy`select h.org_id, v.ok, v.checked, v.reason from audit.heads h cross join lateral audit.verify_chain(h.org_id) v`;
        expect(chains.length).toBeGreaterThan(1);
        for (const c of chains) expect({ org: c.org_id, ok: c.ok, reason: c.reason }).toEqual({ org: c.org_id, ok: true, reason: null });
        const [{ agents }] = await copy`select count(*)::int as agents from public.agents where description = 'written during the backup'`;
        expect(agents).toBeGreaterThan(0);

        // 2. Vault decrypts with the root key: the health canary and every secret.
        const canary = async () => (await copy`select encode(sha256(convert_to(d.decrypted_secret, 'UTF8')), 'hex') = c.sha256 as ok
                                                from private.health_canary c join vault.decrypted_secrets d on d.id = c.secret_id`)[0]?.ok;
        expect(await canary()).toBe(true);
        const [{ n, opened }] = await copy`select count(*)::int as n, count(decrypted_secret)::int as opened from vault.decrypted_secrets`;
        expect(opened).toBe(n);

        // 3. The isolation matrix, on the restored database.
        await copy`create extension if not exists pgtap with schema extensions`;
        const url = new URL(restored.superuserUrl);
        const prove = spawnSync("pg_prove", ["--host", url.hostname, "--port", url.port, "--username", "postgres", "--dbname", "postgres",
          join(process.cwd(), "supabase/tests/database/900-isolation-matrix.test.sql")], {
          encoding: "utf8", env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password), PGSSLMODE: "disable" },
        });
        expect(prove.stdout + prove.stderr).toMatch(/All tests successful/);

        // 4. And not without the root key: another key opens nothing.
        writeRootKey(restoreDir, randomBytes(32).toString("hex"), postgresUser());
        await expect(canary()).rejects.toThrow();
        await expect(copy`select count(decrypted_secret) from vault.decrypted_secrets`).rejects.toThrow();
      } finally {
        await copy.end();
      }
    } finally {
      await sealer.stop();
      await sql.end();
    }
  }, 300_000);
});
