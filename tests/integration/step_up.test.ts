/**
 * Step-up for privileged writes (issue 23) over the real API: a tenant admin who has enrolled TOTP
 * and signs in with a password alone (aal1) can change nothing that decides who may approve, on
 * any path: PostgREST writes, security-definer RPCs, and an edge function acting for them. The
 * rules themselves are proven table by table, from the catalog, in
 * supabase/tests/database/032-step-up-writes.test.sql.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMember } from "../helpers/console.ts";
import { ACME, ACME_PROJECT } from "../helpers/fixtures.ts";
import { enrollTotp, stepUp } from "../helpers/mfa.ts";
import { type Client, accessToken, anonClient, rest, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
let admin: { email: string; password: string; userId: string };
let factor: { factorId: string; secret: string };
let aal1: Client;

async function signIn(): Promise<Client> {
  const client = anonClient();
  const { error } = await client.auth.signInWithPassword({ email: admin.email, password: admin.password });
  if (error) throw error;
  return client;
}

beforeAll(async () => {
  admin = await createMember(sql, ACME, "tenant_admin", "stepup");
  const enrolling = await signIn();
  factor = await enrollTotp(enrolling);
  // Verifying ended the admin's other aal1 sessions; this one starts after, with the password only.
  aal1 = await signIn();
});
afterAll(async () => {
  await sql`delete from public.organization_members where user_id = ${admin.userId}`.catch(() => {});
  await sql.end();
});

/** A PostgREST call as the aal1 session, in Acme's context. */
async function asAdmin(path: string, init: RequestInit & { prefer?: string } = {}) {
  return rest(path, { authorization: `Bearer ${await accessToken(aal1)}`, "x-org-id": ACME, prefer: init.prefer ?? "return=representation" }, init);
}

describe("an aal1 session of an admin who has a second factor", () => {
  it("can't add an approver: no invitation, no domain rule change, no promotion", async () => {
    const [before] = await sql`select count(*)::int as n from public.invitations where org_id = ${ACME}`;
    expect(await asAdmin("rpc/create_invitation", { method: "POST", body: JSON.stringify({ p_email: "mole@acme.test", p_role: "project_admin" }) }))
      .toMatchObject({ status: 403, body: { code: "step_up_required" } });
    expect(await asAdmin(`organizations?id=eq.${ACME}`, { method: "PATCH", body: JSON.stringify({ restrict_to_verified_domains: false }) }))
      .toMatchObject({ status: 403, body: { code: "step_up_required" } });
    const viewer = await createMember(sql, ACME, "project_viewer", "promoted");
    expect(await asAdmin(`organization_members?user_id=eq.${viewer.userId}`, { method: "PATCH", body: JSON.stringify({ role: "tenant_admin" }) }))
      .toMatchObject({ status: 403, body: { code: "step_up_required" } });
    const [after] = await sql`select count(*)::int as n from public.invitations where org_id = ${ACME}`;
    expect(after.n).toBe(before.n);
    const [member] = await sql`select role from public.organization_members where user_id = ${viewer.userId}`;
    expect(member.role).toBe("project_viewer");
  });

  it("can't change what an edge function changes for it either", async () => {
    const [agent] = await sql`insert into public.agents (org_id, project_id, name) values (${ACME}, ${ACME_PROJECT}, ${"Step-up " + crypto.randomUUID()}) returning id`;
    await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider) values (${ACME}, ${ACME_PROJECT}, ${agent.id}, 'notes.write', 'https_webhook')`;
    const res = await fetch(`${stack().functionsUrl}/connectors/agents/${agent.id}/disable`, {
      method: "POST",
      headers: { apikey: stack().anonKey, authorization: `Bearer ${await accessToken(aal1)}`, "content-type": "application/json", "x-org-id": ACME },
      body: "{}",
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: "step_up_required" } });
    const [tool] = await sql`select enabled from public.agent_tools where agent_id = ${agent.id}`;
    expect(tool.enabled).toBe(true);
    await sql`delete from public.agents where id = ${agent.id}`;
  });

  it("makes the change once it verifies its second factor", async () => {
    await stepUp(aal1, factor.factorId, factor.secret);
    const invited = await asAdmin("rpc/create_invitation", { method: "POST", body: JSON.stringify({ p_email: `hire-${crypto.randomUUID()}@acme.test`, p_role: "project_viewer" }) });
    expect(invited.status).toBe(200);
  });
});
