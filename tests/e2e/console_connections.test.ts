/**
 * Connecting through the console in Chromium, against the local provider fakes on the port npm test
 * reserves for this file (tests/helpers/providers.ts): a customer's HTTPS webhook that passes its
 * live check, and the whole OAuth2 flow, from "Start authorization" through the provider's consent
 * redirect back to the console, the code exchanged with PKCE by the connectors function, and then
 * the connection disabled with its tokens revoked at the provider; and code execution turned on
 * with a sandbox connection. In an organization made for the
 * file, so that no other test's tools change the scopes asked for.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, signIn, suiteBrowser } from "../helpers/browser.ts";
import { createMember } from "../helpers/console.ts";
import { ACME } from "../helpers/fixtures.ts";
import { type FakeProviders, startProviders } from "../helpers/providers.ts";
import { stack, superuser } from "../helpers/stack.ts";

const db = superuser();
const browser = suiteBrowser();
let providers: FakeProviders;
let org = "";
let admin: { email: string; password: string; userId: string };

beforeAll(async () => {
  providers = await startProviders({ for: "console" });
  const m = await createMember(db, ACME, "project_viewer", "connections");
  await db`delete from public.organization_members where user_id = ${m.userId}`;
  const [created] = await db`insert into public.organizations (name, slug) values ('Connect Co', ${`connect-${randomUUID().slice(0, 8)}`}) returning id`;
  org = created.id;
  await db`insert into public.organization_members (org_id, user_id, role) values (${org}, ${m.userId}, 'tenant_admin')`;
  admin = m;
});
afterAll(() => db.end());

describe("connecting through the console", () => {
  it("connects a webhook that passes its live check, and an OAuth2 provider through its consent redirect, then disables it with revocation", { timeout: 90_000 }, async () => {
    // The fakes' certificate is signed by this run's own CA, which Chromium doesn't know.
    const page = await (await browser().newContext({ ignoreHTTPSErrors: true })).newPage();
    await signIn(page, admin.email, admin.password, `/o/${org}/connections`);
    await page.getByRole("heading", { name: "Connections of Connect Co" }).waitFor();

    const hook = randomUUID();
    providers.customHooks.add(hook);
    const direct = page.getByRole("form", { name: "Connect a webhook or token" });
    await direct.getByRole("combobox").selectOption("https_webhook");
    await direct.getByLabel("Display name").fill("Order events");
    await direct.getByLabel("Webhook URL").fill(`${providers.base}/hooks/${hook}`);
    await direct.getByRole("button", { name: "Verify and connect" }).click();
    await page.getByRole("status").getByText(/Connected Order events: the provider accepted the credential in a live check/).waitFor();
    expect(providers.requests.some((r) => r.method === "POST" && r.path === `/hooks/${hook}`)).toBe(true);
    await page.getByRole("table", { name: "Connections" }).getByText("Order events").waitFor();
    expect(await page.content()).not.toContain(hook);

    const oauth = page.getByRole("form", { name: "Connect with OAuth2" });
    await oauth.getByLabel("Display name").fill("Helpdesk");
    await oauth.getByLabel("Authorize URL").fill(`${providers.base}/oauth/authorize`);
    await oauth.getByLabel("Token URL").fill(`${providers.base}/oauth/token`);
    await oauth.getByLabel("Revoke URL (optional)").fill(`${providers.base}/oauth/revoke`);
    await oauth.getByLabel("API URL").fill(`${providers.base}/oauth/api`);
    await oauth.getByLabel("Client ID").fill(providers.oauthClient.id);
    await oauth.getByLabel("Client secret").fill(providers.oauthClient.secret);
    await oauth.getByRole("button", { name: "Start authorization" }).click();
    // Out to the provider, whose consent sends the browser back here with the code.
    await page.getByRole("status").getByText(/Connected Helpdesk with scopes/).waitFor();
    expect(new URL(page.url()).search).toBe("");
    const [row] = await db`select status, provider from public.connections where org_id = ${org} and display_name = 'Helpdesk'`;
    expect(row).toEqual({ status: "active", provider: "oauth2" });
    expect(providers.requests.filter((r) => r.path === "/oauth/token")).toHaveLength(1);
    expect(await page.content()).not.toContain(providers.oauthClient.secret);
    // The list refetches once the connection is saved (slowly when the whole suite runs at once).
    await page.getByRole("table", { name: "Connections" }).getByText("Helpdesk").waitFor({ timeout: 60_000 });
    await checkScreen(page, "connections-connected");

    await page.getByRole("button", { name: "Disable Helpdesk" }).click();
    await answerDialog(page, "Disable Helpdesk?", { confirm: "Yes, disable Helpdesk" });
    await page.getByRole("status").getByText(/Disabled Helpdesk/).waitFor();
    expect(providers.revoked.size).toBeGreaterThan(0);
    const [after] = await db`select status from public.connections where org_id = ${org} and display_name = 'Helpdesk'`;
    expect(after.status).toBe("disabled");
    await page.context().close();
  });

  it("turns code execution on with a sandbox connection and tighter limits, which an agent's tool can then be bound to", { timeout: 90_000 }, async () => {
    const page = await (await browser().newContext()).newPage();
    await signIn(page, admin.email, admin.password, `/o/${org}/connections`);
    const form = page.getByRole("form", { name: "Turn on code execution" });
    await form.getByLabel("Wall-clock limit").selectOption("5");
    await form.getByLabel("Memory limit").selectOption("128");
    await form.getByRole("button", { name: "Connect the sandbox" }).click();
    await page.getByRole("status").getByText(/Connected Code sandbox: bind an agent's tool/).waitFor();
    const table = page.getByRole("table", { name: "Connections" });
    await table.getByText("runs on bubblewrap: 5 s, 128 MiB, 64 processes, no network").waitFor();
    const [row] = await db`select provider, destination, config, scopes from public.connections where org_id = ${org} and display_name = 'Code sandbox'`;
    expect(row).toEqual({ provider: "sandbox", destination: "sandbox:bubblewrap", config: { backend: "bubblewrap", limits: { seconds: 5, memory_mib: 128 } }, scopes: [] });
    await checkScreen(page, "connections-sandbox");

    // An agent's code action on it: the approval page shows the program as it will run.
    const [project] = await db`insert into public.projects (org_id, name, slug) values (${org}, 'Analytics', 'analytics') returning id`;
    const [agent] = await db`insert into public.agents (org_id, project_id, name) values (${org}, ${project.id}, 'Analyst') returning id`;
    const [version] = await db`insert into public.agent_versions (org_id, project_id, agent_id, config)
                               values (${org}, ${project.id}, ${agent.id}, ${db.json({ model: "gpt-4o-mini" })}) returning id`;
    await db`update public.agent_versions set published_at = now(), published_by = ${admin.userId} where id = ${version.id}`;
    const [run] = await db`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, status, input, deadline_at)
                           values (${org}, ${project.id}, ${agent.id}, ${version.id}, 'running', ${db.json({ prompt: "sum the column" })},
                                   now() + interval '10 minutes') returning id`;
    const [{ connection_id: sandbox }] = await db`select id as connection_id from public.connections where org_id = ${org} and provider = 'sandbox'`;
    await db`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
             values (${org}, ${project.id}, ${agent.id}, 'code.run', 'sandbox', ${sandbox})`;
    const program = { runtime: "python", code: "import csv\nprint(sum(int(r[0]) for r in csv.reader(open('data.csv'))))  # \u202e", files: { "data.csv": "1\n2\n" } };
    const [request] = await db.begin(async (tx) => {
      await tx`select set_config('role', 'service_role', true)`;
      return await tx`select id from public.propose_action(${run.id}, 'code.run', ${tx.json(program)}, 'low')`;
    });
    await page.goto(`${stack().apiUrl}/o/${org}/approvals/${request.id}`);
    await page.getByRole("heading", { name: "The code, as it will run" }).waitFor();
    expect(await page.getByLabel("The code (main.py)").textContent()).toBe("import csv\nprint(sum(int(r[0]) for r in csv.reader(open('data.csv'))))  # \\u202e");
    expect(await page.getByLabel("Input file data.csv").textContent()).toBe("1\n2\n");
    await page.getByText("Invisible characters in the payload").waitFor();
    await checkScreen(page, "approval-code");
    await page.goto(`${stack().apiUrl}/o/${org}/connections`);

    await page.getByRole("button", { name: "Disable Code sandbox" }).click();
    await answerDialog(page, "Disable Code sandbox?", { confirm: "Yes, disable Code sandbox" });
    await page.getByRole("status").getByText(/Disabled Code sandbox: code execution is off/).waitFor();
    const [after] = await db`select status from public.connections where org_id = ${org} and display_name = 'Code sandbox'`;
    expect(after.status).toBe("disabled");
    // The code waiting for approval on it is withdrawn with it.
    expect((await db`select status from public.action_requests where id = ${request.id}`)[0].status).toBe("withdrawn");
    await page.context().close();
  });
});
