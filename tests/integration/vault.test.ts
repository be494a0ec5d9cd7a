import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { stack, stackFile, superuser } from "../helpers/stack.ts";

const s = stack();
const sql = superuser();
afterAll(() => sql.end());

function pgDump(args: string[]): string {
  const local = join(s.postgres.bindir, "pg_dump");
  const url = new URL(s.dbUrl);
  return execFileSync(existsSync(local) ? local : "pg_dump", ["--host", url.hostname, "--port", url.port, "--username", "postgres", "--dbname", "postgres", ...args], {
    env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) },
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** Creates a secret as service_role (the only client role allowed to) and returns its id. */
async function createSecret(plaintext: string): Promise<string> {
  return await sql.begin(async (tx) => {
    await tx`set local role service_role`;
    const [row] = await tx<{ id: string }[]>`select vault.create_secret(${plaintext}, ${"test-" + randomBytes(6).toString("hex")}) as id`;
    return row.id;
  });
}

async function decryptAsServiceRole(id: string): Promise<string> {
  return await sql.begin(async (tx) => {
    await tx`set local role service_role`;
    const [row] = await tx<{ decrypted_secret: string }[]>`select decrypted_secret from vault.decrypted_secrets where id = ${id}`;
    return row.decrypted_secret;
  });
}

describe("vault", () => {
  it("a dump of vault.secrets contains no plaintext", async () => {
    const plaintext = `xoxb-plaintext-canary-${randomBytes(12).toString("hex")}`; // secretlint-disable-line -- a random canary, never a real token
    const id = await createSecret(plaintext);
    expect(await decryptAsServiceRole(id)).toBe(plaintext); // the secret is really there
    const tableDump = pgDump(["--data-only", "--table=vault.secrets"]);
    expect(tableDump).toContain(id);
    expect(tableDump).not.toContain(plaintext);
    expect(tableDump).not.toContain(Buffer.from(plaintext).toString("base64"));
    expect(tableDump).not.toContain(Buffer.from(plaintext).toString("hex"));
  });

  it("keeps the root key out of the database: a full dump does not contain it", () => {
    const rootKey = readFileSync(join(dirname(stackFile()), "vault_root.key"), "utf8").trim();
    expect(rootKey).toMatch(/^[0-9a-f]{64}$/);
    const fullDump = pgDump([]);
    expect(fullDump).not.toContain(rootKey);
  });

  it("refuses to decrypt a tampered ciphertext (authenticated encryption)", async () => {
    const id = await createSecret("tamper-me");
    const [{ secret }] = await sql<{ secret: string }[]>`select secret from vault.secrets where id = ${id}`;
    const raw = Buffer.from(secret, "base64");
    raw[0] ^= 0x01;
    await sql`update vault.secrets set secret = ${raw.toString("base64")} where id = ${id}`;
    await expect(decryptAsServiceRole(id)).rejects.toThrow(/failed authentication/);
    // A secret that can't be opened would break every later read of vault.decrypted_secrets.
    await sql`delete from vault.secrets where id = ${id}`;
  });

  it("binds each ciphertext to its row: a ciphertext moved to another row does not decrypt", async () => {
    const a = await createSecret("secret-a");
    const b = await createSecret("secret-b");
    await sql`update vault.secrets t set secret = src.secret, nonce = src.nonce from vault.secrets src where src.id = ${a} and t.id = ${b}`;
    expect(await decryptAsServiceRole(a)).toBe("secret-a");
    await expect(decryptAsServiceRole(b)).rejects.toThrow(/failed authentication/);
    await sql`delete from vault.secrets where id in (${a}, ${b})`;
  });

  it("update_secret re-encrypts under a fresh nonce", async () => {
    const id = await createSecret("v1");
    const [before] = await sql<{ nonce: Buffer }[]>`select nonce from vault.secrets where id = ${id}`;
    await sql.begin(async (tx) => {
      await tx`set local role service_role`;
      await tx`select vault.update_secret(${id}, ${"v2"})`;
    });
    const [after] = await sql<{ nonce: Buffer }[]>`select nonce from vault.secrets where id = ${id}`;
    expect(Buffer.compare(before.nonce, after.nonce)).not.toBe(0);
    expect(await decryptAsServiceRole(id)).toBe("v2");
  });
});
