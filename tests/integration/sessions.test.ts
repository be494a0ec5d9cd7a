/**
 * Revocation held by the database: a user's access token that has not expired yet is refused at
 * once, by PostgREST and by the edge functions, when its session was signed out or timed out, or
 * its user was banned or deleted. Each case signs in a user made for it, checks that the token
 * works, changes one thing, and checks that the same token no longer does, on both paths.
 */
import { randomUUID } from "node:crypto";
import bcrypt from "bcryptjs";
import { afterAll, describe, expect, it } from "vitest";
import { ACME, ACME_AGENT, GLOBEX } from "../helpers/fixtures.ts";
import { accessToken, anonClient, rest, signedIn, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

/**
 * A new member of Acme (a project contributor: who may call the model gateway's routes), signed
 * in: their client, access token, user id and session id.
 */
async function member() {
  const email = `revocation-${randomUUID()}@acme.test`;
  const password = randomUUID();
  const [user] = await sql`insert into auth.users (id, email, email_confirmed_at, encrypted_password)
                           values (gen_random_uuid(), ${email}, now(), ${await bcrypt.hash(password, 4)}) returning id`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${ACME}, ${user.id}, 'project_contributor')`;
  const client = anonClient();
  const { error } = await client.auth.signInWithPassword({ email, password });
  if (error) throw error;
  const token = await accessToken(client);
  const sessionId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).session_id as string;
  return { client, token, userId: user.id as string, sessionId, email, password };
}

/** What PostgREST and an edge function answer the token. */
async function answers(token: string): Promise<{ rest: [number, string | undefined]; fn: [number, string | undefined] }> {
  const r = await rest("agents?select=id", { authorization: `Bearer ${token}`, "x-org-id": ACME });
  const f = await fetch(`${stack().functionsUrl}/model-gateway/v1/models`, {
    headers: { authorization: `Bearer ${token}`, "x-org-id": ACME, "x-agent-id": ACME_AGENT },
  });
  const fBody = await f.json();
  return { rest: [r.status, r.body?.code], fn: [f.status, fBody?.error?.code] };
}

describe("an unexpired access token stops working at once", () => {
  it("when its session is signed out", async () => {
    const m = await member();
    expect((await answers(m.token)).rest[0]).toBe(200);
    await m.client.auth.signOut();
    expect(await answers(m.token)).toEqual({ rest: [401, "session_revoked"], fn: [401, "session_revoked"] });
  });

  it("when its session times out", async () => {
    const m = await member();
    expect((await answers(m.token)).rest[0]).toBe(200);
    await sql`update auth.sessions set not_after = now() - interval '1 second' where id = ${m.sessionId}`;
    expect(await answers(m.token)).toEqual({ rest: [401, "session_revoked"], fn: [401, "session_revoked"] });
  });

  it("when its user is banned", async () => {
    const m = await member();
    expect((await answers(m.token)).rest[0]).toBe(200);
    await sql`update auth.users set banned_until = now() + interval '1 day' where id = ${m.userId}`;
    expect(await answers(m.token)).toEqual({ rest: [401, "user_disabled"], fn: [401, "user_disabled"] });
  });

  it("when its user is deleted", async () => {
    const m = await member();
    expect((await answers(m.token)).rest[0]).toBe(200);
    await sql`update auth.users set deleted_at = now() where id = ${m.userId}`;
    expect(await answers(m.token)).toEqual({ rest: [401, "user_disabled"], fn: [401, "user_disabled"] });
  });

  it("but not for a ban that has ended, nor when another session of the user ends", async () => {
    const m = await member();
    await sql`update auth.users set banned_until = now() - interval '1 second' where id = ${m.userId}`;
    expect((await answers(m.token)).rest[0]).toBe(200);
    const second = anonClient();
    const { error } = await second.auth.signInWithPassword({ email: m.email, password: m.password });
    expect(error).toBeNull();
    await second.auth.signOut({ scope: "local" });
    expect((await answers(m.token)).rest[0]).toBe(200);
    expect((await answers(m.token)).fn[0]).toBe(200);
  });
});

describe("a tenant admin ends a member's sessions", () => {
  const revoke = async (as: string, org: string, userId: string) => {
    const admin = await signedIn(as);
    const answer = await rest("rpc/revoke_member_sessions", { authorization: `Bearer ${await accessToken(admin)}`, "x-org-id": org },
      { method: "POST", body: JSON.stringify({ p_user_id: userId }) });
    await admin.auth.signOut();
    return answer;
  };

  it("at once, on every path, and audited", async () => {
    const m = await member();
    expect((await answers(m.token)).rest[0]).toBe(200);
    expect(await revoke("ada@acme.test", ACME, m.userId)).toMatchObject({ status: 200, body: 1 });
    expect(await answers(m.token)).toEqual({ rest: [401, "session_revoked"], fn: [401, "session_revoked"] });
    const [entry] = await sql`select actor, payload::text as payload from audit.records
                               where org_id = ${ACME} and action = 'member.sessions_revoked' and target_id = ${m.userId}`;
    expect(JSON.parse(entry.payload)).toEqual({ sessions: 1 });
    expect(entry.actor).toBe((await sql`select id from auth.users where email = 'ada@acme.test'`)[0].id);
  });

  it("only as a tenant admin, and only of their own organization's members", async () => {
    const m = await member();
    expect(await revoke("victor@acme.test", ACME, m.userId)).toMatchObject({ status: 403, body: { code: "forbidden" } });
    expect(await revoke("grace@globex.test", GLOBEX, m.userId)).toMatchObject({ status: 404, body: { code: "member_not_found" } });
    expect((await answers(m.token)).rest[0]).toBe(200);
  });
});
