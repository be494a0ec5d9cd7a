/**
 * The customer-run monitor (scripts/audit_monitor.ts) against the stack, on an organization of its
 * own whose chain only this file writes to: the first run trusts a checkpoint signed by the given
 * key; the next one sees the chain extend it; then the log misbehaves, with checkpoints signed by
 * its own key (read from Vault, as a compromised log would sign): a split view (another root at a
 * size already trusted), a fork (history rewritten under a trusted size) and a log that shrank.
 * Each is an ALERT with exit status 1, and the state is left as it was.
 */
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkpointMessage, type SignedCheckpoint } from "../../functions/_shared/audit/verify.ts";
import { createMember } from "../helpers/console.ts";
import { ACME } from "../helpers/fixtures.ts";
import { accessToken, anonClient, type Client, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
const org = randomUUID();
const dir = mkdtempSync(join(tmpdir(), "gatehouse-audit-monitor-"));
const state = join(dir, "state.json");
let ada: Client;
let publicKey: string;

beforeAll(async () => {
  // A person of its own, the organization's only member, so that nobody else's view changes.
  const member = await createMember(sql, ACME, "project_viewer", "monitor");
  await sql`delete from public.organization_members where user_id = ${member.userId}`;
  await sql`insert into public.organizations (id, name, slug) values (${org}, 'Monitor Co', ${`monitor-${org.slice(0, 8)}`})`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${member.userId}, 'tenant_admin')`;
  await grow(4);
  ada = anonClient();
  const { error: signInError } = await ada.auth.signInWithPassword({ email: member.email, password: member.password });
  if (signInError) throw signInError;
  // The key a customer reads from audit_signing_keys (made on first use, so ask for a proof first).
  await fetch(`${stack().functionsUrl}/audit-proof?type=consistency&from=1`, { headers: { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": org } });
  const { data: keys, error } = await ada.rpc("audit_signing_keys");
  if (error || !keys?.length) throw new Error("no audit signing key is published");
  publicKey = keys.find((k) => k.retired_at === null)!.public_key;
});
afterAll(async () => {
  await ada?.auth.signOut();
  await sql.end();
  rmSync(dir, { recursive: true, force: true });
});

async function grow(n: number) {
  await sql`select audit.append(${org}, 'test.monitored', 'test', i::text, '{}') from generate_series(1, ${n}) i`;
  await sql`select audit.seal(${org})`;
}

async function monitor(...extra: string[]) {
  const run = spawnSync(process.execPath, ["--import", "tsx", "scripts/audit_monitor.ts", "--org", org, "--state", state, "--url", stack().functionsUrl, ...extra], {
    encoding: "utf8", env: { ...process.env, GATEHOUSE_TOKEN: await accessToken(ada) },
  });
  return { status: run.status, out: run.stdout + run.stderr };
}

/** A checkpoint body signed with the log's own key. */
async function signedByTheLog(body: Record<string, unknown>): Promise<SignedCheckpoint> {
  const [key] = await sql`select k.key_id, s.decrypted_secret as pkcs8
                            from audit.signing_keys k join vault.decrypted_secrets s on s.id = k.secret_id where k.retired_at is null`;
  const text = canonicalize({ ...body, key: key.key_id })!;
  const signature = sign(null, Buffer.from(checkpointMessage(text)), createPrivateKey({ key: Buffer.from(key.pkcs8, "base64"), format: "der", type: "pkcs8" }));
  return { checkpoint: text, signature: signature.toString("base64"), key_id: key.key_id, public_key: publicKey };
}

const readState = () => JSON.parse(readFileSync(state, "utf8"));

describe("the audit monitor", () => {
  it("trusts on first use with the published key, then sees the chain extend what it trusted", async () => {
    expect(await monitor()).toMatchObject({ status: 2, out: expect.stringContaining("the first run needs --public-key") });
    const first = await monitor("--public-key", publicKey);
    expect(first.out).toMatch(/^ok: first run; trusting the checkpoint of 5 entries/);
    expect(first.status).toBe(0);
    await grow(3);
    const next = await monitor();
    expect(next.out).toMatch(/^ok: the log extends what it signed before: 5 → 8 entries/);
    expect(next.status).toBe(0);
    expect(Object.keys(readState().seen).sort()).toEqual(["5", "8"]);
  });

  it("raises an alert for a split view, a fork and a log that shrank, and keeps its state", async () => {
    const good = readFileSync(state, "utf8");
    const trusted = JSON.parse(readState().trusted.checkpoint);
    const put = (patch: Record<string, unknown>) => writeFileSync(state, JSON.stringify({ ...JSON.parse(good), ...patch }));

    // Split view: the monitor saw size 8 with another root (a checkpoint signed for someone else).
    const other = await signedByTheLog({ ...trusted, root: "ab".repeat(32) });
    put({ trusted: other });
    const split = await monitor();
    expect(split.out).toMatch(/^ALERT: the audit log of .+ misbehaved: two signed checkpoints of size 8 state different roots \(a split view\)/);
    expect(split.status).toBe(1);
    // The same, learned from what it saw before rather than from the trusted checkpoint.
    put({ seen: { ...JSON.parse(good).seen, 8: "cd".repeat(32) } });
    expect((await monitor()).out).toMatch(/^ALERT: .+two signed checkpoints of size 8 state different roots \(a split view\): (cd){32} and [0-9a-f]{64}/);

    // A fork: what it trusted at size 6 is not a prefix of the tree the log shows now.
    const [e] = await sql`select encode(entry_hash, 'hex') as h from audit.entries where org_id = ${org} and seq = 6`;
    put({ trusted: await signedByTheLog({ ...trusted, head: e.h, root: "ef".repeat(32), size: 6 }) });
    expect((await monitor()).out).toMatch(/^ALERT: .+the tree of 8 entries does not extend the pinned tree of 6 \(history was rewritten: a fork\)/);

    // A log that shrank: it signed 20 entries, and now shows 8.
    put({ trusted: await signedByTheLog({ ...trusted, size: 20 }) });
    const shrank = await monitor();
    expect(shrank.out).toMatch(/^ALERT: .+fewer entries than the 20 it signed before/);
    expect(shrank.status).toBe(1);
    // A checkpoint signed by another key is never trusted.
    put({ trusted: { ...(await signedByTheLog(trusted)), signature: Buffer.alloc(64, 1).toString("base64") } });
    expect((await monitor()).out).toMatch(/^ALERT: .+the pinned checkpoint: the checkpoint's signature is not valid/);

    // After each alert the state is what the test put there: nothing is trusted behind the operator's back.
    writeFileSync(state, good);
    expect((await monitor()).status).toBe(0);
  });
});
