/**
 * The connectors function end to end: the real edge function in the throwaway stack calls local
 * provider servers (tests/helpers/providers.ts) through the egress guard, whose test allowance
 * admits their one loopback port and nothing else. Covers live verification, refusals, scopes,
 * OAuth2 with PKCE, refresh before expiry, revocation on disable (connection and agent), rate
 * limits and budgets, the audit trail of every call, and the sanitized result.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, accessToken, anonClient, rest, signedIn, stack, superuser } from "../helpers/stack.ts";
import { createMember } from "../helpers/console.ts";
import { type FakeProviders, startProviders } from "../helpers/providers.ts";
import type { Database } from "../../supabase/database.types.ts";
import { ACME, ACME_AGENT, ACME_PROJECT, ACME_RUN, GLOBEX, GLOBEX_AGENT, GLOBEX_CONNECTION } from "../helpers/fixtures.ts";

const sql = superuser();
let providers: FakeProviders;
let ada: Client;
let victor: Client;
let started: Date;
/** Every credential the tests hand out, to hunt for in answers and the audit chain. */
const secrets: string[] = [];
const secret = (s: string) => (secrets.push(s), s);

beforeAll(async () => {
  providers = await startProviders();
  [ada, victor] = await Promise.all(["ada@acme.test", "victor@acme.test"].map(signedIn));
  secrets.push(providers.oauthClient.secret);
  [{ now: started }] = await sql`select now()`;
});
afterAll(async () => {
  await Promise.all([ada, victor].map((c) => c?.auth.signOut()));
  await providers?.close();
  await sql.end();
});

/** Calls the connectors function as a member of Acme, the service role, or nobody. */
async function call(path: string, as: Client | "runtime" | null, body?: unknown, headers: Record<string, string> = {}) {
  const auth: Record<string, string> = as === null ? {} : { authorization: `Bearer ${as === "runtime" ? stack().serviceRoleKey : await accessToken(as)}` };
  const res = await fetch(`${stack().functionsUrl}/connectors/${path}`, {
    method: "POST",
    headers: { apikey: stack().anonKey, "content-type": "application/json", "x-org-id": ACME, ...auth, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body ?? {}),
  });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : null };
}

/** An RPC through PostgREST as the runtime or a member of Acme. */
async function rpc(fn: string, args: unknown, as: Client | "runtime") {
  const token = as === "runtime" ? stack().serviceRoleKey : await accessToken(as);
  return rest(`rpc/${fn}`, { authorization: `Bearer ${token}`, "x-org-id": ACME }, { method: "POST", body: JSON.stringify(args) });
}

/** An action of Acme's run, proposed by the runtime and approved by Ada. */
async function approved(tool: string, payload: unknown): Promise<{ id: string; payload: unknown }> {
  const proposed = await rpc("propose_action", { p_run_id: ACME_RUN, p_tool: tool, p_payload: payload, p_risk: "low" }, "runtime");
  expect(proposed.status).toBe(200);
  const decided = await rpc("decide_action", { p_request_id: proposed.body.id, p_approval_sha256: proposed.body.approval_sha256, p_approve: true }, ada);
  expect(decided.body).toMatchObject({ status: "approved" });
  return { id: proposed.body.id, payload };
}

const execute = (a: { id: string; payload: unknown }) => call(`actions/${a.id}/execute`, "runtime", { payload: a.payload });

/** Adds (as Ada, through RLS) a tool of Acme's agent, or rebinds it. */
async function tool(name: string, provider: Database["public"]["Enums"]["connector_provider"], scopes: string[], connectionId: string | null = null, agentId = ACME_AGENT) {
  const updated = await ada.from("agent_tools").update({ scopes, connection_id: connectionId, enabled: true })
    .eq("agent_id", agentId).eq("tool", name).select("id").setHeader("x-org-id", ACME);
  expect(updated.error).toBeNull();
  if (updated.data!.length > 0) return;
  const inserted = await ada.from("agent_tools")
    .insert({ project_id: ACME_PROJECT, agent_id: agentId, tool: name, provider, scopes, connection_id: connectionId })
    .setHeader("x-org-id", ACME);
  expect(inserted.error).toBeNull();
}

/** The organization's connector charges: how many, and their sum. */
async function connectorDebits(orgId: string): Promise<{ n: number; micro: number }> {
  const [row] = await sql`select count(*)::int as n, coalesce(sum(amount_micro), 0)::bigint as micro from public.credit_ledger
                           where org_id = ${orgId} and kind = 'usage_debit' and reason like 'Connector call%'`;
  return { n: row.n, micro: Number(row.micro) };
}

const connectionCount = async () => Number((await sql`select count(*) from public.connections`)[0].count);

describe("bad input", () => {
  it("answers every malformed or unauthorized request with a 4xx JSON code and writes nothing", async () => {
    const before = await connectionCount();
    const slack = { provider: "slack_webhook", display_name: "x", credential: { url: `${providers.base}/slack/services/none` } };
    expect(await call("connections", null, slack)).toMatchObject({ status: 401, body: { error: { code: expect.any(String) } } });
    expect(await call("connections", ada, "{not json")).toMatchObject({ status: 400, body: { error: { code: "invalid_json" } } });
    expect(await call("connections", ada, { ...slack, provider: 7 })).toMatchObject({ status: 400, body: { error: { code: "invalid_body" } } });
    expect(await call("connections", ada, { ...slack, surprise: true })).toMatchObject({ status: 400, body: { error: { code: "invalid_body" } } });
    expect(await call("connections", ada, { ...slack, display_name: "x".repeat(70_000) })).toMatchObject({ status: 413, body: { error: { code: "body_too_large" } } });
    expect(await call("connections", ada, slack, { "content-type": "text/plain" })).toMatchObject({ status: 415 });
    expect(await call("connections", ada, slack, { "x-org-id": "nope" })).toMatchObject({ status: 400, body: { error: { code: "context_invalid_org_id" } } });
    expect(await call("connections", ada, slack, { "x-org-id": GLOBEX })).toMatchObject({ status: 403, body: { error: { code: "context_not_a_member" } } });
    expect(await call("connections", victor, slack)).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
    expect(await call("connections", "runtime", slack)).toMatchObject({ status: 400, body: { error: { code: "missing_org_id" } } });
    expect(await call("nowhere", ada, {})).toMatchObject({ status: 404, body: { error: { code: "not_found" } } });
    expect(await call("connections/not-a-uuid/disable", ada, {})).toMatchObject({ status: 404 });
    expect(await call(`actions/${crypto.randomUUID()}/execute`, ada, { payload: {} })).toMatchObject({ status: 403, body: { error: { code: "runtime_only" } } });
    expect(await call(`actions/${crypto.randomUUID()}/execute`, "runtime", { payload: {} })).toMatchObject({ status: 404, body: { error: { code: "action_request_not_found" } } });
    // Another organization's connection or agent can't be disabled, even by id: RLS hides it from a
    // member, and the service role must name the row's own organization.
    expect(await call(`connections/${GLOBEX_CONNECTION}/disable`, ada, {})).toMatchObject({ status: 404, body: { error: { code: "connection_not_found" } } });
    expect(await call(`agents/${GLOBEX_AGENT}/disable`, ada, {})).toMatchObject({ status: 404, body: { error: { code: "agent_not_found" } } });
    expect(await call(`connections/${GLOBEX_CONNECTION}/disable`, "runtime", { org_id: ACME })).toMatchObject({ status: 404, body: { error: { code: "connection_not_found" } } });
    expect(await call(`agents/${GLOBEX_AGENT}/disable`, "runtime", { org_id: ACME })).toMatchObject({ status: 404, body: { error: { code: "agent_not_found" } } });
    expect((await sql`select status from public.connections where id = ${GLOBEX_CONNECTION}`)[0].status).toBe("active");
    expect((await sql`select disabled_at from public.agents where id = ${GLOBEX_AGENT}`)[0].disabled_at).toBeNull();
    const get = await fetch(`${stack().functionsUrl}/connectors/connections`, { headers: { authorization: `Bearer ${await accessToken(ada)}` } });
    expect(get.status).toBe(405);
    expect(await connectionCount()).toBe(before);
    expect(providers.requests).toHaveLength(0);
  });
});

describe("saving a connection", () => {
  it("checks a Slack webhook with a live test message, then keeps it in Vault only", async () => {
    const hook = secret(`T0001/B0001/${crypto.randomUUID().replaceAll("-", "")}`);
    providers.slackHooks.add(hook);
    const url = `${providers.base}/slack/services/${hook}`;
    const saved = await call("connections", ada, { provider: "slack_webhook", display_name: "Returns alerts", credential: { url } });
    expect(saved.status).toBe(201);
    expect(saved.body.connection).toMatchObject({ provider: "slack_webhook", status: "active", scopes: ["incoming-webhook"] });
    expect(saved.text).not.toContain(hook);
    expect(providers.requests.at(-1)).toMatchObject({ method: "POST", path: `/slack/services/${hook}` });

    const [stored] = await sql`select s.decrypted_secret from public.connections c join vault.decrypted_secrets s on s.id = c.secret_id where c.id = ${saved.body.connection.id}`;
    expect(JSON.parse(stored.decrypted_secret)).toEqual({ url });
    const { data } = await ada.from("connections").select("id, provider, display_name, scopes, status, config").setHeader("x-org-id", ACME);
    expect(JSON.stringify(data)).not.toContain(hook);
    expect(data!.find((c) => c.id === saved.body.connection.id)).toBeDefined();
    // The seeded Slack tool now calls through this connection.
    await tool("slack.post_message", "slack_webhook", ["incoming-webhook"], saved.body.connection.id);
    // A second connection can't take the same name: a clear 409, not a 500.
    const again = await call("connections", ada, { provider: "slack_webhook", display_name: "Returns alerts", credential: { url } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("already_exists");
  });

  it("checks Discord with its own webhook call and a custom endpoint with a test delivery", async () => {
    const discord = secret(`1234/${crypto.randomUUID()}`);
    providers.discordHooks.add(discord);
    const d = await call("connections", ada, { provider: "discord_webhook", display_name: "Discord ops", credential: { url: `${providers.base}/discord/api/webhooks/${discord}` } });
    expect(d.status).toBe(201);
    expect(providers.requests.at(-1)).toMatchObject({ method: "GET", path: `/discord/api/webhooks/${discord}` });
    const custom = secret(crypto.randomUUID());
    providers.customHooks.add(custom);
    const c = await call("connections", ada, { provider: "https_webhook", display_name: "Our CRM", credential: { url: `${providers.base}/hooks/${custom}` } });
    expect(c.status).toBe(201);
    expect(JSON.parse(providers.requests.at(-1)!.body)).toEqual({ type: "gatehouse.verification" });
  });

  it("refuses credentials the provider rejects, and saves nothing", async () => {
    const before = await connectionCount();
    const refusals = await Promise.all([
      call("connections", ada, { provider: "slack_webhook", display_name: "Gone", credential: { url: `${providers.base}/slack/services/T/B/revoked` } }),
      call("connections", ada, { provider: "discord_webhook", display_name: "Gone", credential: { url: `${providers.base}/discord/api/webhooks/1/nope` } }),
      call("connections", ada, { provider: "github", display_name: "Gone", credential: { token: "ghp_not_a_real_token_000000000000000000" } }),
      call("connections", ada, { provider: "notion", display_name: "Gone", credential: { token: "secret_not_real" } }),
    ]);
    for (const r of refusals) expect(r).toMatchObject({ status: 422, body: { error: { code: "connector_credential_rejected" } } });
    expect(await connectionCount()).toBe(before);
  });

  it("sends nothing to a URL the egress guard refuses, when saving, and charges nothing for it", async () => {
    const before = providers.requests.length;
    const debitsBefore = await connectorDebits(ACME);
    const cases: [string, string][] = [
      ["https://169.254.169.254/latest/meta-data/", "egress_metadata_host"],
      ["https://10.0.0.8/hook", "egress_blocked_address"],
      ["https://[::ffff:127.0.0.1]:443/hook", "egress_blocked_address"],
      ["https://127.0.0.1:4443/hook", "egress_blocked_address"],
      ["https://metadata.google.internal/computeMetadata/v1/", "egress_metadata_host"],
      [`http://127.0.0.1:${new URL(providers.base).port}/hooks/x`, "egress_scheme_not_allowed"],
    ];
    for (const [url, code] of cases) {
      const r = await call("connections", ada, { provider: "https_webhook", display_name: "Internal", credential: { url } });
      expect({ url, ...r.body?.error }).toMatchObject({ url, code });
      expect(r.status).toBe(422);
    }
    const wrongHost = await call("connections", ada, { provider: "slack_webhook", display_name: "x", credential: { url: "https://hooks.slack.com.evil.test/services/x" } });
    expect(wrongHost).toMatchObject({ status: 400, body: { error: { code: "invalid_credential" } } });
    expect(providers.requests.length).toBe(before);
    expect(await connectorDebits(ACME)).toEqual(debitsBefore);
  });

  it("holds a GitHub token to exactly the scopes the enabled tools need", async () => {
    await tool("github.create_issue", "github", ["repo"]);
    const save = (tokenScopes: string | null) => {
      const token = secret(`ghp_${crypto.randomUUID().replaceAll("-", "")}`);
      providers.githubTokens.set(token, tokenScopes);
      return call("connections", ada, { provider: "github", display_name: `GitHub ${token.slice(-6)}`, credential: { token } });
    };
    expect(await save("repo, admin:org")).toMatchObject({ status: 422, body: { error: { code: "connector_excess_scopes" } } });
    expect(await save("")).toMatchObject({ status: 422, body: { error: { code: "connector_missing_scopes" } } });
    const ok = await save("repo");
    expect(ok.status).toBe(201);
    expect(ok.body.connection.scopes).toEqual(["repo"]);
    await tool("github.create_issue", "github", ["repo"], ok.body.connection.id);

    const notion = secret(`secret_${crypto.randomUUID()}`);
    providers.notionTokens.add(notion);
    expect((await call("connections", ada, { provider: "notion", display_name: "Notion wiki", credential: { token: notion } })).status).toBe(201);
  });
});

describe("OAuth2", () => {
  let connectionId: string;
  const settings = () => ({
    authorize_url: `${providers.base}/oauth/authorize`,
    token_url: `${providers.base}/oauth/token`,
    revoke_url: `${providers.base}/oauth/revoke`,
    api_url: `${providers.base}/oauth/api`,
    client_id: providers.oauthClient.id,
    client_secret: providers.oauthClient.secret,
    redirect_uri: "https://admin.gatehouse.example/oauth/callback",
  });

  it("asks for exactly the enabled tools' scopes, and exchanges the code once, with PKCE", async () => {
    await tool("tickets.create", "oauth2", ["tickets:write", "tickets:read"]);
    const start = await call("oauth2/start", ada, { display_name: "Helpdesk", ...settings() });
    expect(start.status).toBe(201);
    expect(start.text).not.toContain(providers.oauthClient.secret);
    expect(start.body.scopes).toEqual(["tickets:read", "tickets:write"]);
    const consent = providers.authorize(start.body.authorization_url);
    expect(consent).toMatchObject({ state: start.body.state, scope: "tickets:read tickets:write" });

    expect(await call("oauth2/callback", ada, { state: "x".repeat(43), code: consent.code })).toMatchObject({ status: 400, body: { error: { code: "oauth_state_invalid" } } });
    const done = await call("oauth2/callback", ada, { state: consent.state, code: consent.code });
    expect(done.status).toBe(201);
    expect(done.body.connection).toMatchObject({ provider: "oauth2", scopes: ["tickets:read", "tickets:write"] });
    expect(new Date(done.body.connection.token_expires_at).getTime()).toBeGreaterThan(Date.now() + 3_000_000);
    for (const t of [...providers.accessTokens.keys(), ...providers.refreshTokens]) secrets.push(t);
    expect(await call("oauth2/callback", ada, { state: consent.state, code: consent.code })).toMatchObject({ status: 400, body: { error: { code: "oauth_state_invalid" } } });
    connectionId = done.body.connection.id;
    await tool("tickets.create", "oauth2", ["tickets:write", "tickets:read"], connectionId);
  });

  it("completes an authorization only for whoever started it, not for another admin of the organization", async () => {
    const other = await createMember(sql, ACME, "tenant_admin", "oauth-admin");
    try {
      const otherClient = anonClient();
      const { error } = await otherClient.auth.signInWithPassword({ email: other.email, password: other.password });
      if (error) throw error;
      const start = await call("oauth2/start", ada, { display_name: "Carried over", ...settings() });
      const consent = providers.authorize(start.body.authorization_url);
      expect(await call("oauth2/callback", otherClient, { state: consent.state, code: consent.code }))
        .toMatchObject({ status: 400, body: { error: { code: "oauth_state_invalid" } } });
      expect(providers.requests.filter((r) => r.path === "/oauth/token" && r.body.includes(consent.code))).toHaveLength(0);
    } finally {
      // Acme keeps its seeded tenant admins only (pgTAP counts on ada being the last one).
      await sql`delete from public.organization_members where user_id = ${other.userId}`;
    }
  });

  it("refuses provider settings that are malformed or point where the egress guard won't go", async () => {
    expect(await call("oauth2/start", ada, { display_name: "Bad", ...settings(), token_url: "not a url" }))
      .toMatchObject({ status: 400, body: { error: { code: "invalid_body" } } });
    expect(await call("oauth2/start", ada, { display_name: "Bad", ...settings(), token_url: "https://169.254.169.254/token" }))
      .toMatchObject({ status: 422, body: { error: { code: "egress_metadata_host" } } });
    expect(await call("oauth2/start", ada, { display_name: "Bad", ...settings(), authorize_url: "http://provider.example/authorize" }))
      .toMatchObject({ status: 400, body: { error: { code: "invalid_authorize_url" } } });
    // A viewer learns nothing: the role is checked before any URL is looked up.
    expect(await call("oauth2/start", victor, { display_name: "Bad", ...settings(), token_url: "https://169.254.169.254/token" }))
      .toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
  });

  it("refuses tokens granted more scopes than were asked for, and revokes them", async () => {
    providers.extraScopes = ["admin"];
    try {
      const start = await call("oauth2/start", ada, { display_name: "Greedy", ...settings() });
      const consent = providers.authorize(start.body.authorization_url);
      const done = await call("oauth2/callback", ada, { state: consent.state, code: consent.code });
      expect(done).toMatchObject({ status: 422, body: { error: { code: "connector_excess_scopes" } } });
      const lastAccess = [...providers.accessTokens.keys()].at(-1)!;
      secrets.push(lastAccess);
      expect(providers.revoked.has(lastAccess)).toBe(true);
    } finally {
      providers.extraScopes = [];
    }
  });

  it("refreshes an access token that is about to expire before delivering with it, once for racing deliveries", async () => {
    const [access] = [...providers.accessTokens.entries()].find(([, t]) => !providers.revoked.has(t.refreshToken))!;
    // The provider has already expired the token; the database says it has 30 seconds left.
    providers.accessTokens.get(access)!.expiresAt = Date.now() - 1;
    await sql`update public.connections set token_expires_at = now() + interval '30 seconds' where id = ${connectionId}`;
    const refreshes = () => providers.requests.filter((r) => r.path === "/oauth/token" && r.body.includes("grant_type=refresh_token")).length;
    const before = refreshes();

    // Two deliveries race; the provider rotates refresh tokens, so only one may refresh.
    const actions = [
      await approved("tickets.create", { method: "POST", path: "/tickets", body: { title: "Refund 1042" } }),
      await approved("tickets.create", { method: "POST", path: "/tickets", body: { title: "Refund 1043" } }),
    ];
    const results = await Promise.all(actions.map(execute));
    for (const result of results) expect(result).toMatchObject({ status: 200, body: { delivered: true, outcome: "delivered" } });
    expect(results[0].body.result).toMatchObject({ received: { title: "Refund 1042" } });
    expect(refreshes() - before).toBe(1);
    for (const t of [...providers.accessTokens.keys(), ...providers.refreshTokens]) secrets.push(t);
    const [c] = await sql`select token_expires_at from public.connections where id = ${connectionId}`;
    expect(c.token_expires_at.getTime()).toBeGreaterThan(Date.now() + 3_000_000);
  });

  it("revokes the tokens at the provider and deletes them from Vault when the connection is disabled", async () => {
    const [{ credential }] = await sql`select credential from private.connection_credential(${connectionId})`;
    const { access_token, refresh_token } = JSON.parse(credential);
    const later = await approved("tickets.create", { method: "POST", path: "/tickets", body: { title: "Too late" } });
    const r = await call(`connections/${connectionId}/disable`, ada, {});
    expect(r).toMatchObject({ status: 200, body: { revocation: "revoked", connection: { status: "disabled" } } });
    expect(providers.revoked.has(refresh_token) && providers.revoked.has(access_token)).toBe(true);
    expect(await sql`select 1 from vault.decrypted_secrets where decrypted_secret like ${"%" + access_token + "%"}`).toHaveLength(0);

    // An action approved for the connection ended with it.
    expect(await execute(later)).toMatchObject({ status: 409, body: { error: { code: "approval_target_changed" } } });
    const [request] = await sql`select status from public.action_requests where id = ${later.id}`;
    expect(request.status).toBe("withdrawn");
  });

  it("revokes and disables the connections only a disabled agent used, and keeps shared ones", async () => {
    const [agent] = await sql`
      insert into public.agents (org_id, project_id, name) values (${ACME}, ${ACME_PROJECT}, ${"Temp " + crypto.randomUUID()}) returning id`;
    await tool("tickets.sync", "oauth2", ["tickets:read"], null, agent.id);
    const start = await call("oauth2/start", ada, { display_name: "Temp helpdesk", ...settings() });
    const consent = providers.authorize(start.body.authorization_url);
    const own = (await call("oauth2/callback", ada, { state: consent.state, code: consent.code })).body.connection.id as string;
    for (const t of [...providers.accessTokens.keys(), ...providers.refreshTokens]) secrets.push(t);
    await tool("tickets.sync", "oauth2", ["tickets:read"], own, agent.id);
    const [shared] = await sql`select connection_id from public.agent_tools where org_id = ${ACME} and agent_id = ${ACME_AGENT} and tool = 'github.create_issue'`;
    await tool("github.read", "github", ["repo"], shared.connection_id, agent.id);

    expect(await call(`agents/${agent.id}/disable`, victor, {})).toMatchObject({ status: 404 });
    const r = await call(`agents/${agent.id}/disable`, ada, {});
    expect(r.status).toBe(200);
    expect(r.body.connections).toEqual([expect.objectContaining({ revocation: "revoked", connection: expect.objectContaining({ id: own, status: "disabled" }) })]);
    const statuses = await sql`select id, status from public.connections where id in (${own}, ${shared.connection_id})`;
    expect(Object.fromEntries(statuses.map((s) => [s.id, s.status]))).toEqual({ [own]: "disabled", [shared.connection_id]: "active" });
    const tools = await sql`select enabled from public.agent_tools where agent_id = ${agent.id}`;
    expect(tools.length === 2 && tools.every((t) => !t.enabled)).toBe(true);
    // Leave Acme's agents as the seed made them, for the pgTAP suites that run next.
    await sql`delete from public.agents where id = ${agent.id}`;
  });
});

describe("an approval pins where its action goes", () => {
  it("refuses at execution a tool rebound after its approval, and delivers nothing to either connection", async () => {
    const partner = secret(crypto.randomUUID());
    providers.customHooks.add(partner);
    const saved = await call("connections", ada, { provider: "https_webhook", display_name: `Partner ${partner.slice(0, 8)}`, credential: { url: `${providers.base}/hooks/${partner}` } });
    expect(saved.status).toBe(201);
    const [{ connection_id: slack }] = await sql`select connection_id from public.agent_tools where agent_id = ${ACME_AGENT} and tool = 'slack.post_message'`;
    const action = await approved("slack.post_message", { text: "Refund 1042 approved" });
    const sent = providers.requests.length;

    // The project admin points the tool of that name at the partner's webhook, then executes.
    const removed = await ada.from("agent_tools").delete().eq("agent_id", ACME_AGENT).eq("tool", "slack.post_message").setHeader("x-org-id", ACME);
    expect(removed.error).toBeNull();
    const recreated = await ada.from("agent_tools")
      .insert({ project_id: ACME_PROJECT, agent_id: ACME_AGENT, tool: "slack.post_message", provider: "https_webhook", connection_id: saved.body.connection.id })
      .setHeader("x-org-id", ACME);
    expect(recreated.error).toBeNull();
    expect(await execute(action)).toMatchObject({ status: 409, body: { error: { code: "approval_target_changed" } } });
    expect(providers.requests.length).toBe(sent);
    expect((await sql`select status from public.action_requests where id = ${action.id}`)[0].status).toBe("withdrawn");

    // Put back as it was for the tests that follow.
    await sql`delete from public.agent_tools where agent_id = ${ACME_AGENT} and tool = 'slack.post_message'`;
    await tool("slack.post_message", "slack_webhook", ["incoming-webhook"], slack);
  });
});

describe("an organization that requires two-factor authentication", () => {
  it("refuses a connection saved for a member without a factor, though the function writes it as the service role", async () => {
    const [org] = await sql`insert into public.organizations (name, slug, require_two_factor)
                            values ('Strict', ${"strict-" + crypto.randomUUID().slice(0, 8)}, true) returning id`;
    await sql`insert into public.organization_members (org_id, user_id, role)
              select ${org.id}, id, 'tenant_admin' from auth.users where email = 'ada@acme.test'`;
    try {
      const hook = secret(`T0009/B0009/${crypto.randomUUID().replaceAll("-", "")}`);
      providers.slackHooks.add(hook);
      const saved = await call("connections", ada, { provider: "slack_webhook", display_name: "Strict alerts", credential: { url: `${providers.base}/slack/services/${hook}` } },
        { "x-org-id": org.id });
      expect(saved).toMatchObject({ status: 403, body: { error: { code: "mfa_required" } } });
      expect(await sql`select 1 from public.connections where org_id = ${org.id}`).toHaveLength(0);
    } finally {
      await sql`delete from public.organizations where id = ${org.id}`.catch(() => {});
    }
  });
});

describe("the destination, derived twice", () => {
  it("refuses a credential that points elsewhere than the connection's pinned destination, even behind the database's back", async () => {
    const [{ connection_id: slack }] = await sql`select connection_id from public.agent_tools where agent_id = ${ACME_AGENT} and tool = 'slack.post_message'`;
    const [{ secret_id, credential }] = await sql`
      select c.secret_id, s.decrypted_secret as credential from public.connections c join vault.decrypted_secrets s on s.id = c.secret_id
       where c.id = ${slack}`;
    const action = await approved("slack.post_message", { text: "Where does this go?" });
    // The credential is replaced in Vault without the connection's row (and so its trigger) seeing it:
    // the database still says the old destination; the function derives the new one and refuses.
    await sql`select vault.update_secret(${secret_id}, ${JSON.stringify({ url: "https://exfil.example/slack/services/T0/B0/x" })})`;
    try {
      const sent = providers.requests.length;
      expect(await execute(action)).toMatchObject({ status: 409, body: { error: { code: "approval_target_changed" } } });
      expect(providers.requests.length).toBe(sent);
      expect((await sql`select status from public.action_requests where id = ${action.id}`)[0].status).toBe("approved");
    } finally {
      await sql`select vault.update_secret(${secret_id}, ${credential})`;
    }
  });
});

describe("run-scoped tokens", () => {
  it("execute their own run's approved actions, and no other run's", async () => {
    const mint = async (runId: string) =>
      (await rest("rpc/mint_run_token", { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": ACME },
        { method: "POST", body: JSON.stringify({ p_run_id: runId }) })).body.token as string;
    const [other] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                              values (${ACME}, ${ACME_PROJECT}, ${ACME_AGENT}, '3a000000-0000-4000-8000-00000000001a') returning id`;
    const action = await approved("slack.post_message", { text: "Sent with a run token" });
    const withToken = (token: string) => fetch(`${stack().functionsUrl}/connectors/actions/${action.id}/execute`, {
      method: "POST",
      headers: { apikey: stack().anonKey, authorization: `Bearer ${stack().anonKey}`, "content-type": "application/json", "x-run-token": token },
      body: JSON.stringify({ payload: action.payload }),
    });
    const sent = providers.requests.length;
    const foreign = await withToken(await mint(other.id));
    expect(foreign.status).toBe(404);
    expect(await foreign.json()).toMatchObject({ error: { code: "action_request_not_found" } });
    expect(providers.requests.length).toBe(sent);
    expect((await sql`select status from public.action_requests where id = ${action.id}`)[0].status).toBe("approved");
    const own = await withToken(await mint(ACME_RUN));
    expect(own.status).toBe(200);
    expect(await own.json()).toMatchObject({ delivered: true });
  });
});

describe("limits", () => {
  it("holds the approval back (unused) at the rate limit and at the budget cap", async () => {
    await sql`delete from private.connector_meters where org_id = ${ACME}`;
    await sql`update public.connector_limits set calls_per_minute = 2, monthly_budget_units = 100000 where org_id = ${ACME}`;
    try {
      const actions = [];
      for (let i = 0; i < 3; i++) actions.push(await approved("slack.post_message", { text: `Limit test ${i}` }));
      expect(await execute(actions[0])).toMatchObject({ status: 200, body: { delivered: true } });
      expect(await execute(actions[1])).toMatchObject({ status: 200, body: { delivered: true } });
      expect(await execute(actions[2])).toMatchObject({ status: 429, body: { error: { code: "connector_rate_limited" } } });
      expect((await sql`select status from public.action_requests where id = ${actions[2].id}`)[0].status).toBe("approved");

      // A new minute, but the month's budget has only the units already used.
      await sql`update private.connector_meters set minute_start = minute_start - interval '1 minute' where org_id = ${ACME}`;
      await sql`update public.connector_limits set monthly_budget_units = (select month_units from private.connector_meters where org_id = ${ACME}) where org_id = ${ACME}`;
      expect(await execute(actions[2])).toMatchObject({ status: 429, body: { error: { code: "connector_budget_exhausted" } } });

      await sql`update public.connector_limits set monthly_budget_units = 100000 where org_id = ${ACME}`;
      expect(await execute(actions[2])).toMatchObject({ status: 200, body: { delivered: true } });
      const delivered = providers.requests.filter((r) => r.body.includes("Limit test"));
      expect(delivered.map((r) => JSON.parse(r.body).text)).toEqual(["Limit test 0", "Limit test 1", "Limit test 2"]);
    } finally {
      await sql`update public.connector_limits set calls_per_minute = 60, monthly_budget_units = 100000 where org_id = ${ACME}`;
    }
  });

  it("charges the platform's price for a call of a tool a project admin priced at 0 units", async () => {
    const zero = await ada.from("agent_tools").update({ cost_units: 0 }).eq("agent_id", ACME_AGENT).eq("tool", "slack.post_message")
      .select("cost_units").setHeader("x-org-id", ACME);
    expect(zero.error).toBeNull();
    expect(zero.data).toEqual([{ cost_units: 0 }]);
    try {
      const [{ micro: price }] = await sql`select micro from private.billing_prices limit 1`;
      const before = await connectorDebits(ACME);
      expect(await execute(await approved("slack.post_message", { text: "Priced at zero" }))).toMatchObject({ status: 200, body: { delivered: true } });
      expect(await connectorDebits(ACME)).toEqual({ n: before.n + 1, micro: before.micro - Number(price) });
    } finally {
      await sql`update public.agent_tools set cost_units = 1 where org_id = ${ACME} and agent_id = ${ACME_AGENT} and tool = 'slack.post_message'`;
    }
  });

  it("refuses a prepaid organization without credits a connector action (402 credits_exhausted), sending nothing", async () => {
    const [{ mode, balance }] = await sql`select a.mode, coalesce(b.balance_micro, 0)::bigint as balance from public.billing_accounts a
                                          left join public.credit_balances b on b.org_id = a.org_id where a.org_id = ${ACME}`;
    expect(mode).toBe("prepaid");
    await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${ACME}, 'adjustment', ${-Number(balance)}, 'spent for the test')`;
    try {
      const action = await approved("slack.post_message", { text: "Without credits" });
      const before = providers.requests.length;
      expect(await execute(action)).toMatchObject({ status: 402, body: { error: { code: "credits_exhausted" } } });
      expect(providers.requests.length).toBe(before);
      expect((await sql`select status from public.action_requests where id = ${action.id}`)[0].status).toBe("approved");
    } finally {
      await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${ACME}, 'adjustment', ${Number(balance)}, 'restored after the test')`;
    }
  });

  it("lets one of several racing actions through on a prepaid balance that covers one call, and never overdraws", async () => {
    const [{ micro: price }] = await sql`select micro from private.billing_prices where item = 'connector_call'`;
    const [{ balance }] = await sql`select coalesce(sum(amount_micro), 0)::bigint as balance from public.credit_ledger where org_id = ${ACME}`;
    const adjust = async (micro: number, reason: string) => {
      if (micro !== 0) await sql`insert into public.credit_ledger (org_id, kind, amount_micro, reason) values (${ACME}, 'adjustment', ${micro}, ${reason})`;
    };
    await adjust(Number(price) - Number(balance), "one call left for the test");
    try {
      const actions = [];
      for (let i = 0; i < 6; i++) actions.push(await approved("slack.post_message", { text: `Last credit ${i}` }));
      const answers = await Promise.all(actions.map(execute));
      expect(answers.filter((a) => a.status === 200)).toHaveLength(1);
      expect(answers.filter((a) => a.status === 402 && a.body.error.code === "credits_exhausted")).toHaveLength(5);
      const [{ left }] = await sql`select coalesce(sum(amount_micro), 0)::bigint as left from public.credit_ledger where org_id = ${ACME}`;
      expect(Number(left)).toBe(0);
      expect(await sql`select 1 from private.connector_holds where org_id = ${ACME} and expires_at > now()`).toHaveLength(0);
    } finally {
      const [{ left }] = await sql`select coalesce(sum(amount_micro), 0)::bigint as left from public.credit_ledger where org_id = ${ACME}`;
      await adjust(Number(balance) - Number(left), "restored after the test");
    }
  });

  it("admits exactly the limit when calls race (checked and counted in one statement)", async () => {
    const pool = superuser();
    try {
      await pool`delete from private.connector_meters where org_id = ${GLOBEX}`;
      await pool`update public.connector_limits set calls_per_minute = 5 where org_id = ${GLOBEX}`;
      const answers = await Promise.all(Array.from({ length: 24 }, () => pool`select private.meter_connector_call(${GLOBEX}, 1) as refusal`));
      const refusals = answers.map(([r]) => r.refusal);
      expect(refusals.filter((r) => r === null)).toHaveLength(5);
      expect(refusals.filter((r) => r === "connector_rate_limited")).toHaveLength(19);
    } finally {
      await pool`update public.connector_limits set calls_per_minute = 30 where org_id = ${GLOBEX}`;
      await pool.end();
    }
  });
});

describe("what comes back and what is kept", () => {
  it("hands the agent a sanitized result: the connection's token never comes out", async () => {
    const action = await approved("github.create_issue", { method: "POST", path: "/repos/acme/returns/issues", body: { title: "Damaged parcel" } });
    const r = await execute(action);
    expect(r).toMatchObject({ status: 200, body: { delivered: true, http_status: 201, result: { number: 7 } } });
    const [{ credential }] = await sql`
      select f.credential from public.agent_tools t, private.connection_credential(t.connection_id) f
       where t.org_id = ${ACME} and t.agent_id = ${ACME_AGENT} and t.tool = 'github.create_issue'`;
    const token = JSON.parse(credential).token as string;
    expect(providers.requests.at(-1)!.authorization).toBe(`Bearer ${token}`);  // it did reach the provider
    expect(r.text).not.toContain(token);
    expect(r.text).toContain("[redacted]");
  });

  it("audits every provider call, with no credential and no body", async () => {
    await sql`select audit.seal(${ACME})`;
    const entries = await sql`
      select e.canonical, p.payload from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
       where e.org_id = ${ACME} and e.action = 'connector.call' and e.occurred_at >= ${started}`;
    const payloads = entries.map((e) => e.payload as Record<string, unknown>);
    const kinds = new Set(payloads.map((p) => `${p.kind}:${p.outcome}`));
    for (const k of ["verify:delivered", "verify:unauthorized", "deliver:delivered", "refresh:delivered", "revoke:delivered",
                     "deliver:connector_rate_limited", "deliver:connector_budget_exhausted"]) {
      expect(kinds).toContain(k);
    }
    const delivery = payloads.find((p) => p.kind === "deliver" && p.outcome === "delivered")!;
    expect(delivery).toMatchObject({ agent_id: ACME_AGENT, run_id: ACME_RUN, http_status: expect.any(Number), latency_ms: expect.any(Number) });
    expect(delivery.action_request_id).toEqual(expect.any(String));
    const everything = JSON.stringify(entries);
    expect(secrets.length).toBeGreaterThan(10);
    for (const s of secrets) expect(everything).not.toContain(s);
    expect(everything).not.toContain("Damaged parcel");
    expect(everything).not.toContain("Refund 1042");
  });
});

describe("a live check that takes a while", () => {
  /** Holds the provider's answer to `path` until the test has changed the caller's membership. */
  function holdAt(path: string) {
    let reached!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (release = r));
    providers.gate = async (p) => {
      if (p !== path) return;
      reached();
      await released;
    };
    return { arrived, release: () => { providers.gate = null; release(); } };
  }

  /** A tenant admin of Acme made for one case, signed in. */
  async function admin() {
    const made = await createMember(sql, ACME, "tenant_admin", "slow-admin");
    const client = anonClient();
    const { error } = await client.auth.signInWithPassword({ email: made.email, password: made.password });
    if (error) throw error;
    return { ...made, client };
  }

  const change = (how: "removed" | "demoted", userId: string) => how === "removed"
    ? sql`delete from public.organization_members where org_id = ${ACME} and user_id = ${userId}`
    : sql`update public.organization_members set role = 'project_viewer' where org_id = ${ACME} and user_id = ${userId}`;

  for (const how of ["removed", "demoted"] as const) {
    it(`saves no connection for an admin ${how} while the provider checked it`, async () => {
      const a = await admin();
      try {
        const hook = `slow-${crypto.randomUUID()}`;
        providers.slackHooks.add(hook);
        const held = holdAt(`/slack/services/${hook}`);
        const name = `Slow ${how} ${hook.slice(-6)}`;
        const saving = call("connections", a.client, { provider: "slack_webhook", display_name: name, credential: { url: `${providers.base}/slack/services/${hook}` } });
        await held.arrived;
        await change(how, a.userId);
        held.release();
        expect(await saving).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
        expect(await sql`select 1 from public.connections where display_name = ${name}`).toHaveLength(0);
      } finally {
        providers.gate = null;
        await sql`delete from public.organization_members where user_id = ${a.userId}`;
      }
    });

    it(`completes no OAuth2 authorization for an admin ${how} during the code exchange`, async () => {
      const a = await admin();
      try {
        const name = `Slow OAuth ${how} ${crypto.randomUUID().slice(-6)}`;
        const start = await call("oauth2/start", a.client, {
          display_name: name, authorize_url: `${providers.base}/oauth/authorize`, token_url: `${providers.base}/oauth/token`,
          revoke_url: `${providers.base}/oauth/revoke`, api_url: `${providers.base}/oauth/api`, client_id: providers.oauthClient.id,
          client_secret: providers.oauthClient.secret, redirect_uri: "https://admin.gatehouse.example/oauth/callback",
        });
        expect(start.status).toBe(201);
        const consent = providers.authorize(start.body.authorization_url);
        const held = holdAt("/oauth/token");
        const completing = call("oauth2/callback", a.client, { state: consent.state, code: consent.code });
        await held.arrived;
        await change(how, a.userId);
        held.release();
        expect(await completing).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
        expect(await sql`select 1 from public.connections where display_name = ${name}`).toHaveLength(0);
        // The tokens the exchange issued are not left live.
        const issued = [...providers.accessTokens.keys()].at(-1)!;
        expect(providers.revoked.has(issued)).toBe(true);
      } finally {
        providers.gate = null;
        await sql`delete from public.organization_members where user_id = ${a.userId}`;
      }
    });
  }
});

describe("the code sandbox (code.run)", () => {
  let sandboxId: string;
  const body = { provider: "sandbox", display_name: "Code sandbox", config: { backend: "bubblewrap", limits: { seconds: 2 } } };

  it("is connected by a tenant admin with settings and no credential, checks nothing outside, and pins its backend as the destination", async () => {
    const before = providers.requests.length;
    expect(await call("connections", victor, body)).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
    for (const config of [{ backend: "docker" }, { backend: "bubblewrap", limits: { seconds: 3600 } }, { backend: "bubblewrap", net: true }, null]) {
      expect(await call("connections", ada, { ...body, config })).toMatchObject({ status: 400, body: { error: { code: "invalid_sandbox_config" } } });
    }
    expect(await call("connections", ada, { ...body, credential: { token: "x" } })).toMatchObject({ status: 400, body: { error: { code: "invalid_credential" } } });
    const slack = { provider: "slack_webhook", display_name: "x", credential: { url: `${providers.base}/slack/services/none` }, config: {} };
    expect(await call("connections", ada, slack)).toMatchObject({ status: 400, body: { error: { code: "config_not_taken" } } });

    const saved = await call("connections", ada, body);
    expect(saved).toMatchObject({ status: 201, body: { connection: { provider: "sandbox", scopes: [], status: "active" } } });
    sandboxId = saved.body.connection.id;
    const [row] = await sql`select destination, config from public.connections where id = ${sandboxId}`;
    expect(row).toEqual({ destination: "sandbox:bubblewrap", config: { backend: "bubblewrap", limits: { seconds: 2 } } });
    expect(providers.requests.length).toBe(before);
  });

  it("pins the code that was approved: other code is refused, and the function, which runs no code, leaves the approval unused", async () => {
    await tool("code.run", "sandbox", [], sandboxId);
    try {
      const code = { runtime: "python", code: "print('approved')" };
      const action = await approved("code.run", code);
      const [request] = await sql`select canonical_payload, payload_sha256, provider, connection_id, destination from public.action_requests where id = ${action.id}`;
      const canonical = `{"code":"print('approved')","runtime":"python"}`;
      expect(request).toEqual({
        canonical_payload: canonical, payload_sha256: createHash("sha256").update(canonical).digest("hex"),
        provider: "sandbox", connection_id: sandboxId, destination: "sandbox:bubblewrap",
      });
      // The approved code, and no other: the gate compares the canonical hash.
      expect(await execute({ id: action.id, payload: { runtime: "python", code: "print('swapped')" } }))
        .toMatchObject({ status: 409, body: { error: { code: "payload_mismatch" } } });
      // Edge functions start no processes: the code waits, approved and unused, for a run worker.
      expect(await execute(action)).toMatchObject({ status: 409, body: { error: { code: "sandbox_unavailable" } } });
      const [after] = await sql`select status, executed_at from public.action_requests where id = ${action.id}`;
      expect(after).toEqual({ status: "approved", executed_at: null });
      const audit = await sql`select payload from audit.records where org_id = ${ACME} and action = 'connector.call'
                                 and payload->>'action_request_id' = ${action.id}`;
      expect(audit.map((a) => a.payload.outcome)).toEqual(["sandbox_unavailable"]);
      expect(JSON.stringify(audit)).not.toContain("approved')");
    } finally {
      await sql`update public.agent_tools set enabled = false where agent_id = ${ACME_AGENT} and tool = 'code.run'`;
    }
  });
});
