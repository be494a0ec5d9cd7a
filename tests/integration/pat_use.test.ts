/**
 * Personal access tokens in use (issue 26; docs/tokens.md), through the gateway and supabase-js as
 * a program would: `Authorization: Bearer gtp_…` on REST and the functions, the exchange, scopes,
 * revocation at once (the owner's removal or demotion included), expiry, and a secret scanner's
 * signed leak report. The database's half is pgTAP 121; that a bad checksum costs no query is
 * tests/deno/pat.test.mts and tests/unit/pat_gateway.test.ts.
 */
import { randomUUID, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClient } from "@supabase/supabase-js";
import { afterAll, describe, expect, it } from "vitest";
import ws from "ws";
import { ACME, ACME_AGENT, ACME_PROJECT } from "../helpers/fixtures.ts";
import { asMemberIn, signedIn, stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());
const { apiUrl, anonKey, serviceRoleKey } = stack();

/** A supabase-js client that sends `token` as its bearer, as a program holding a personal access token would. */
function withToken(token: string) {
  return createClient(apiUrl, anonKey, { accessToken: async () => token, realtime: { transport: ws as never } });
}

/** Makes a token for `userId` in Acme, as they would through the RPC (superuser session acting as them). */
async function tokenFor(userId: string, scopes: string[], projectId: string | null = null): Promise<{ id: string; token: string }> {
  return await asMemberIn(sql, userId, ACME, async (tx) => {
    const [{ made }] = await tx`select public.create_personal_access_token('test', ${scopes}::text[], 30, ${projectId}) as made`;
    return made as { id: string; token: string };
  });
}

/** A member of Acme of the test's own (so that removing or demoting them touches nobody else). */
async function newMember(role: "project_contributor" | "project_viewer"): Promise<string> {
  const id = randomUUID();
  await sql`insert into auth.users (id, email) values (${id}, ${`pat-${id.slice(0, 8)}@acme.test`})`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${ACME}, ${id}, ${role})`;
  return id;
}

/** The internal exchange, as the gateway (and the rest function) call it: with the service role's key. */
async function exchange(token: string): Promise<Response> {
  return await fetch(`${apiUrl}/functions/v1/tokens/exchange`, {
    method: "POST", headers: { authorization: `Bearer ${serviceRoleKey}`, "x-personal-access-token": token },
  });
}

describe("personal access tokens in use", () => {
  it("work on REST as Authorization: Bearer, reading what their scopes name and nothing else", async () => {
    const ada = await signedIn("ada@acme.test");
    const made = await ada.rpc("create_personal_access_token", { p_name: "Run reader", p_scopes: ["runs:read"] }).setHeader("x-org-id", ACME);
    expect(made.error).toBeNull();
    const bot = withToken((made.data as { token: string }).token);

    const runs = await bot.from("agent_runs").select("id, org_id");
    expect(runs.error).toBeNull();
    expect(runs.data!.length).toBeGreaterThan(0);
    expect(new Set(runs.data!.map((r) => r.org_id))).toEqual(new Set([ACME]));

    const agents = await bot.from("agents").select("id");
    expect([agents.status, agents.error?.code]).toEqual([403, "token_scope"]);
    const connections = await bot.from("connections").select("id");
    expect([connections.status, connections.error?.code]).toEqual([403, "token_route_not_allowed"]);
    const minted = await bot.rpc("create_personal_access_token", { p_name: "more", p_scopes: ["runs:read"] });
    expect(minted.error?.code).toBe("token_route_not_allowed");
    const started = await bot.rpc("start_agent_run", { p_agent_id: ACME_AGENT });
    expect([started.status, started.error?.code]).toEqual([403, "token_scope"]);
    // Its organization is the context; another is refused.
    const other = await bot.from("agent_runs").select("id").setHeader("x-org-id", randomUUID());
    expect(other.error?.code).toBe("token_org_mismatch");
    await ada.auth.signOut();
  });

  it("start a run with runs:write, as their owner, within their project", async () => {
    const casey = "c0000000-0000-4000-8000-000000000001";
    const { token } = await tokenFor(casey, ["runs:write", "runs:read"], ACME_PROJECT);
    const bot = withToken(token);
    const started = await bot.rpc("start_agent_run", { p_agent_id: ACME_AGENT, p_input: { from: "ci" } });
    expect(started.error).toBeNull();
    const run = started.data as { id: string; started_by: string; project_id: string };
    expect(run.started_by).toBe(casey);
    expect(run.project_id).toBe(ACME_PROJECT);
    await sql`select private.end_run(${run.id}, 'cancelled', 'cancelled')`;
  });

  it("are refused on a bad checksum at the gateway, and by the exchange", async () => {
    const { token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const wrong = token.slice(0, -1) + (token.endsWith("a") ? "b" : "a");
    const answer = await withToken(wrong).from("agent_runs").select("id");
    expect([answer.status, answer.error?.code]).toEqual([401, "token_invalid"]);
    const exchanged = await exchange(wrong);
    expect([exchanged.status, (await exchanged.json()).error.code]).toEqual([401, "token_invalid"]);
  });

  it("never get their holder an access token: Supabase Auth would take it as their owner's", async () => {
    const { token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const asHolder = await fetch(`${apiUrl}/functions/v1/tokens/exchange`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    expect([asHolder.status, (await asHolder.json()).error.code]).toEqual([403, "token_exchange_internal"]);
    const withAnon = await fetch(`${apiUrl}/functions/v1/tokens/exchange`, {
      method: "POST", headers: { authorization: `Bearer ${anonKey}`, "x-personal-access-token": token },
    });
    expect(withAnon.status).toBe(403);
    // Nor is the token itself anything to Auth: the gateway passes it on untouched, and Auth refuses it.
    const auth = await fetch(`${apiUrl}/auth/v1/user`, { headers: { apikey: anonKey, authorization: `Bearer ${token}` } });
    expect(auth.status).toBeGreaterThanOrEqual(401);
    expect(auth.status).toBeLessThan(500);
  });

  it("work on REST through the rest function, the path where the gateway takes JWTs only (hosted)", async () => {
    const { token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const runs = await fetch(`${apiUrl}/functions/v1/rest/agent_runs?select=id,org_id&limit=2`, { headers: { authorization: `Bearer ${token}` } });
    expect(runs.status).toBe(200);
    const rows = await runs.json() as { org_id: string }[];
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.org_id === ACME)).toBe(true);
    const agents = await fetch(`${apiUrl}/functions/v1/rest/agents?select=id`, { headers: { authorization: `Bearer ${token}` } });
    expect([agents.status, (await agents.json()).code]).toEqual([403, "token_scope"]);
    const start = await fetch(`${apiUrl}/functions/v1/rest/rpc/start_agent_run`, {
      method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ p_agent_id: ACME_AGENT }),
    });
    expect([start.status, (await start.json()).code]).toEqual([403, "token_scope"]);
    const wrong = token.slice(0, -1) + (token.endsWith("a") ? "b" : "a");
    const bad = await fetch(`${apiUrl}/functions/v1/rest/agent_runs`, { headers: { authorization: `Bearer ${wrong}` } });
    expect([bad.status, (await bad.json()).error.code]).toEqual([401, "token_invalid"]);
  });

  it("exchange (internally) for a 5-minute access token with their claims; first use is an audit entry", async () => {
    const { id, token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read", "agents:read"], ACME_PROJECT);
    const answer = await exchange(token);
    expect(answer.status).toBe(200);
    const body = await answer.json();
    expect(body.token_type).toBe("bearer");
    expect(body.expires_in).toBeGreaterThan(290);
    expect(body.expires_in).toBeLessThanOrEqual(300);
    const claims = JSON.parse(Buffer.from(body.access_token.split(".")[1], "base64url").toString());
    expect(claims).toMatchObject({ role: "authenticated", sub: "a0000000-0000-4000-8000-000000000001", aal: "aal1",
      pat: { id, org_id: ACME, project_id: ACME_PROJECT, scopes: ["runs:read", "agents:read"] } });
    expect(claims.session_id).toBeUndefined();
    await exchange(token);
    const [row] = await sql`select last_used_at from public.personal_access_tokens where id = ${id}`;
    expect(row.last_used_at).not.toBeNull();
    const [{ n }] = await sql`select count(*)::int as n from audit.records where action = 'personal_access_token.first_use' and target_id = ${id}`;
    expect(n).toBe(1);
    // The access token works like a user's: on REST with the anon key.
    const agents = await createClient(apiUrl, anonKey, { accessToken: async () => body.access_token, realtime: { transport: ws as never } })
      .from("agents").select("id, project_id");
    expect(agents.error).toBeNull();
    expect(agents.data!.every((a) => a.project_id === ACME_PROJECT)).toBe(true);
  });

  it("stop at once when revoked, whatever access token they were exchanged for", async () => {
    const { id, token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const { access_token } = await (await exchange(token)).json();
    const viaJwt = createClient(apiUrl, anonKey, { accessToken: async () => access_token, realtime: { transport: ws as never } });
    expect((await viaJwt.from("agent_runs").select("id").limit(1)).error).toBeNull();
    expect((await withToken(token).from("agent_runs").select("id").limit(1)).error).toBeNull();
    const ada = await signedIn("ada@acme.test");
    expect((await ada.rpc("revoke_personal_access_token", { p_token_id: id }).setHeader("x-org-id", ACME)).error).toBeNull();
    const after = await viaJwt.from("agent_runs").select("id").limit(1);
    expect([after.status, after.error?.code]).toEqual([401, "token_revoked"]);
    // The gateway still holds the exchanged access token: the database refuses it all the same.
    const viaGateway = await withToken(token).from("agent_runs").select("id").limit(1);
    expect([viaGateway.status, viaGateway.error?.code]).toEqual([401, "token_revoked"]);
    expect((await exchange(token)).status).toBe(401);
    await ada.auth.signOut();
  });

  it("stop in the same transaction that removes or demotes their owner", async () => {
    const demoted = await newMember("project_contributor");
    const removed = await newMember("project_contributor");
    const a = await tokenFor(demoted, ["runs:write", "runs:read"]);
    const b = await tokenFor(removed, ["runs:read"]);
    expect((await withToken(a.token).from("agent_runs").select("id").limit(1)).error).toBeNull();
    expect((await withToken(b.token).from("agent_runs").select("id").limit(1)).error).toBeNull();
    await sql.begin(async (tx) => {
      await tx`update public.organization_members set role = 'project_viewer' where org_id = ${ACME} and user_id = ${demoted}`;
      await tx`delete from public.organization_members where org_id = ${ACME} and user_id = ${removed}`;
      const rows = await tx`select revoked_reason from public.personal_access_tokens where id in (${a.id}, ${b.id}) order by revoked_reason`;
      expect(rows.map((r) => r.revoked_reason)).toEqual(["member_removed", "role_lowered"]);
    });
    const afterDemotion = await withToken(a.token).from("agent_runs").select("id").limit(1);
    expect([afterDemotion.status, afterDemotion.error?.code]).toEqual([401, "token_revoked"]);
    const afterRemoval = await withToken(b.token).from("agent_runs").select("id").limit(1);
    expect([afterRemoval.status, afterRemoval.error?.code]).toEqual([401, "token_revoked"]);
  });

  it("are refused once expired, and the expiry is an audit entry", async () => {
    const { id, token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    expect((await withToken(token).from("agent_runs").select("id").limit(1)).error).toBeNull();
    await sql`update public.personal_access_tokens set created_at = now() - interval '31 days', expires_at = now() - interval '1 second' where id = ${id}`;
    const held = await withToken(token).from("agent_runs").select("id").limit(1);
    expect([held.status, held.error?.code]).toEqual([401, "token_expired"]);
    const fresh = await exchange(token);
    expect([fresh.status, (await fresh.json()).error.code]).toEqual([401, "token_expired"]);
    const [{ n }] = await sql`select count(*)::int as n from audit.records where action = 'personal_access_token.expired' and target_id = ${id}`;
    expect(n).toBe(1);
  });

  it("reach a function only where it names their scope", async () => {
    const { token: auditor } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["audit:read"]);
    const { token: reader } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const exported = await fetch(`${apiUrl}/functions/v1/audit-export`, { headers: { authorization: `Bearer ${auditor}` } });
    expect(exported.status).toBe(200);
    expect((await exported.text()).split("\n")[0]).toContain(ACME);
    const withoutScope = await fetch(`${apiUrl}/functions/v1/audit-export`, { headers: { authorization: `Bearer ${reader}` } });
    expect([withoutScope.status, (await withoutScope.json()).error.code]).toEqual([403, "token_scope"]);
    // A function that names no scope takes no token (here, the domain verifier).
    const domains = await fetch(`${apiUrl}/functions/v1/domains/verify`, {
      method: "POST", headers: { authorization: `Bearer ${auditor}`, "x-org-id": ACME, "content-type": "application/json" },
      body: JSON.stringify({ domain: "acme.test" }),
    });
    expect([domains.status, (await domains.json()).error.code]).toEqual([403, "token_not_accepted"]);
  });
});

describe("a leaked token reported by a secret scanner", () => {
  // The local scanner's key, made by scripts/test.ts for this run (the tokens function trusts its public half).
  const reporter = () => (JSON.parse(readFileSync(process.env.GATEHOUSE_TEST_PROVIDERS_FILE!, "utf8")) as {
    leakReporter: { keyId: string; privateKey: string };
  }).leakReporter;
  const report = (body: string, headers: Record<string, string>) =>
    fetch(`${apiUrl}/functions/v1/tokens/leaked`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  const signed = (body: string) => ({
    "github-public-key-identifier": reporter().keyId,
    "github-public-key-signature": sign("sha256", Buffer.from(body), reporter().privateKey).toString("base64"),
  });

  it("is revoked, with an audit entry naming where it was found, when the report's signature verifies", async () => {
    const { id, token } = await tokenFor("a0000000-0000-4000-8000-000000000001", ["runs:read"]);
    const url = "https://github.com/octocat/hello-world/blob/main/.env";
    const body = JSON.stringify([{ token, type: "gatehouse_personal_access_token", url, source: "content" },
      { token: "gtp_notoursnotoursnotoursnotoursnotours", type: "gatehouse_personal_access_token", url, source: "content" }]);

    const unsigned = await report(body, {});
    expect([unsigned.status, (await unsigned.json()).error.code]).toEqual([400, "leak_report_signature_missing"]);
    const tampered = await report(body.replace("hello-world", "hello-there"), signed(body));
    expect([tampered.status, (await tampered.json()).error.code]).toEqual([401, "leak_report_signature_invalid"]);
    const unknownKey = await report(body, { ...signed(body), "github-public-key-identifier": "f".repeat(64) });
    expect([unknownKey.status, (await unknownKey.json()).error.code]).toEqual([401, "leak_report_signature_invalid"]);
    const [before] = await sql`select revoked_at from public.personal_access_tokens where id = ${id}`;
    expect(before.revoked_at).toBeNull();

    const answer = await report(body, signed(body));
    expect(answer.status).toBe(200);
    const feedback = await answer.json() as { token_hash: string; label: string }[];
    expect(feedback.map((f) => f.label)).toEqual(["true_positive", "false_positive"]);
    expect(JSON.stringify(feedback)).not.toContain(token);
    const [after] = await sql`select revoked_reason from public.personal_access_tokens where id = ${id}`;
    expect(after.revoked_reason).toBe("leaked");
    const [entry] = await sql`select payload from audit.records where action = 'personal_access_token.leak_reported' and target_id = ${id}`;
    expect(entry.payload).toMatchObject({ url, source: "content", was_revoked: false });
    const use = await withToken(token).from("agent_runs").select("id").limit(1);
    expect(use.error?.code).toMatch(/^token_(revoked|invalid)$/);
  });
});
