/**
 * An organization of the runs tests' own: a tenant admin (who approves), a project, an agent with
 * a published version, the organization's own OpenAI-compatible endpoint (the vendor fake) and
 * key, and one tool, `notify`, bound to a Slack webhook connection on the provider fake, saved
 * through the connectors function (checked live, credential in Vault). Its own, so that its
 * limits, budgets, policies and runs are nobody else's.
 */
import { randomUUID } from "node:crypto";
import type postgres from "postgres";
import { asMemberIn, stack } from "./stack.ts";

export interface RunOrg {
  org: string;
  project: string;
  agent: string;
  admin: string;
  connection: string;
  /** The Slack hook the tool's connection delivers to (the provider fake's path). */
  hookPath: string;
  /** Runs `work` as the tenant admin in the organization's context, as PostgREST runs their RPCs. */
  asAdmin<T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T>;
  /** Lets the tool's calls through without approval (an allow policy for its connection). */
  allowTool(): Promise<void>;
  /** Starts a run as the runtime with this prompt; its id. */
  start(prompt: string): Promise<string>;
}

export async function createRunOrg(
  sql: postgres.Sql,
  settings: {
    name: string; vendorBaseUrl: string; vendorKey: string; providerBase: string; slackHooks: Set<string>;
    /** The tool's connection: a Slack webhook (default), or the organization's own HTTPS endpoint (the fake's /hooks/). */
    customHooks?: Set<string>;
  },
): Promise<RunOrg> {
  const [org, project, agent, admin] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const slug = `${settings.name.toLowerCase()}-${org.slice(0, 8)}`;
  await sql`insert into public.organizations (id, name, slug) values (${org}, ${settings.name}, ${slug})`;
  await sql`insert into auth.users (id, email) values (${admin}, ${`admin@${slug}.test`})`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${admin}, 'tenant_admin')`;
  await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Operations', 'operations')`;
  await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Ops agent')`;
  const config = { model: "gpt-4o-mini", instructions: "Use your tools when asked." };
  const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                              values (${org}, ${project}, ${agent}, ${sql.json(config)}) returning id`;
  await sql`update public.agent_versions set published_at = now(), published_by = ${admin} where id = ${version.id}`;
  await sql`insert into public.model_provider_keys (org_id, provider, base_url, key_hint, secret_id, verified_at)
            values (${org}, 'openai', ${settings.vendorBaseUrl}, '…test', vault.create_secret(${settings.vendorKey}), now())`;

  // The tool's connection, saved as the platform would for the organization (checked live).
  const custom = settings.customHooks !== undefined;
  const hook = custom ? `mcp-${org.slice(0, 8)}-${randomUUID()}` : `T${org.slice(0, 8)}/B1/${randomUUID().replaceAll("-", "")}`;
  (custom ? settings.customHooks! : settings.slackHooks).add(hook);
  const hookPath = custom ? `/hooks/${hook}` : `/slack/services/${hook}`;
  const provider = custom ? "https_webhook" : "slack_webhook";
  const s = stack();
  const res = await fetch(`${s.functionsUrl}/connectors/connections`, {
    method: "POST",
    headers: { authorization: `Bearer ${s.serviceRoleKey}`, "content-type": "application/json" },
    body: JSON.stringify({ org_id: org, provider, display_name: "Ops alerts", credential: { url: `${settings.providerBase}${hookPath}` } }),
  });
  const saved = await res.json() as { connection?: { id: string }; error?: unknown };
  if (res.status !== 201 || !saved.connection) throw new Error(`saving the connection failed: ${res.status} ${JSON.stringify(saved)}`);
  const connection = saved.connection.id;
  await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id, scopes)
            values (${org}, ${project}, ${agent}, 'notify', ${provider}, ${connection}, ${sql.array(custom ? [] : ["incoming-webhook"])})`;

  const asAdmin = <T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> => asMemberIn(sql, admin, org, work);
  return {
    org, project, agent, admin, connection, hookPath, asAdmin,
    allowTool: async () => {
      await sql`insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
                values (${org}, ${project}, ${agent}, 'notify', 'allow', ${connection})`;
    },
    start: async (prompt: string) => {
      const [run] = await sql.begin(async (tx) => {
        await tx`select set_config('role', 'service_role', true)`;
        return await tx`select id from public.start_agent_run(${agent}, ${tx.json({ prompt })})`;
      });
      return run.id as string;
    },
  };
}
