/**
 * An organization of a test file's own, for the widget tests: a tenant admin, a project, an agent
 * with a published version, the organization's own OpenAI-compatible endpoint (a vendor fake) with
 * its key, and a widget key for the given origins (none when `origins` is null: the test turns it on). Its own, so that its limits, budgets and
 * transcripts are nobody else's.
 */
import { randomUUID } from "node:crypto";
import type postgres from "postgres";
import { asMemberIn } from "./stack.ts";

export interface WidgetOrg {
  org: string;
  agent: string;
  keyId: string;
  /** The publishable key (rotation changes it). */
  key: string;
  /** Runs `work` as the organization's tenant admin in its context, as PostgREST runs their RPCs. */
  asAdmin<T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T>;
}

export async function createWidgetOrg(
  sql: postgres.Sql,
  settings: { name: string; origins: string[] | null; vendorBaseUrl: string; vendorKey: string; instructions?: string },
): Promise<WidgetOrg> {
  const [org, project, agent, admin] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const slug = `${settings.name.toLowerCase()}-${org.slice(0, 8)}`;
  await sql`insert into public.organizations (id, name, slug) values (${org}, ${settings.name}, ${slug})`;
  await sql`insert into auth.users (id, email) values (${admin}, ${`admin@${slug}.test`})`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${admin}, 'tenant_admin')`;
  await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Storefront', 'storefront')`;
  await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Shop assistant')`;
  const config = { model: "gpt-4o-mini", instructions: settings.instructions ?? "Help shoppers." };
  const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                              values (${org}, ${project}, ${agent}, ${sql.json(config)}) returning id`;
  await sql`update public.agent_versions set published_at = now(), published_by = ${admin} where id = ${version.id}`;
  await sql`insert into public.model_provider_keys (org_id, provider, base_url, key_hint, secret_id, verified_at)
            values (${org}, 'openai', ${settings.vendorBaseUrl}, '…test', vault.create_secret(${settings.vendorKey}), now())`;
  const asAdmin = <T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> => asMemberIn(sql, admin, org, work);
  if (!settings.origins) return { org, agent, keyId: "", key: "", asAdmin };
  const origins = settings.origins;
  const [made] = await asAdmin((tx) => tx`select public.create_widget_key(${agent}, ${tx.array(origins)}) as v`);
  return { org, agent, keyId: made.v.id, key: made.v.key, asAdmin };
}
