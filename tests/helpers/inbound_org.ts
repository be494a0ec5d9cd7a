/**
 * An organization of the inbound webhook tests' (and bench's) own: a tenant admin, a project, an
 * agent with a published version, a subscription made through create_webhook_subscription, and a
 * personal access token with webhooks:ingest bound to the project, made through
 * create_personal_access_token, both as the admin. Its own, so that the runs its deliveries start
 * count against nobody else's limits.
 */
import { randomUUID } from "node:crypto";
import type postgres from "postgres";
import { asMemberIn } from "./stack.ts";

export interface InboundOrg {
  org: string;
  project: string;
  agent: string;
  admin: string;
  /** Runs `work` as the tenant admin in the organization's context, as PostgREST runs their RPCs. */
  asAdmin<T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T>;
  /** Makes a token for the admin (scopes, and the project it is bound to, or none). */
  token(scopes: string[], project?: string | null): Promise<string>;
  /** Makes a subscription for the agent: v1 (its secret) or v1a (with the sender's public key). */
  subscription(scheme?: "v1" | "v1a", publicKey?: string): Promise<{ id: string; secret?: string }>;
}

export async function createInboundOrg(sql: postgres.Sql, name: string): Promise<InboundOrg> {
  const [org, project, agent, admin] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
  const slug = `${name.toLowerCase()}-${org.slice(0, 8)}`;
  await sql`insert into public.organizations (id, name, slug) values (${org}, ${name}, ${slug})`;
  await sql`insert into auth.users (id, email) values (${admin}, ${`admin@${slug}.test`})`;
  await sql`insert into public.organization_members (org_id, user_id, role) values (${org}, ${admin}, 'tenant_admin')`;
  await sql`insert into public.projects (id, org_id, name, slug) values (${project}, ${org}, 'Support', 'support')`;
  await sql`insert into public.agents (id, org_id, project_id, name) values (${agent}, ${org}, ${project}, 'Ticket agent')`;
  const [version] = await sql`insert into public.agent_versions (org_id, project_id, agent_id, config)
                              values (${org}, ${project}, ${agent}, ${sql.json({ model: "gpt-4o-mini", instructions: "Triage the ticket." })}) returning id`;
  await sql`update public.agent_versions set published_at = now(), published_by = ${admin} where id = ${version.id}`;

  const asAdmin = <T>(work: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> => asMemberIn(sql, admin, org, work);
  return {
    org, project, agent, admin, asAdmin,
    token: async (scopes, bound = project) =>
      await asAdmin(async (tx) => {
        const [{ made }] = await tx`select public.create_personal_access_token('inbound', ${scopes}::text[], 30, ${bound}) as made`;
        return (made as { token: string }).token;
      }),
    subscription: async (scheme = "v1", publicKey) =>
      await asAdmin(async (tx) => {
        const [{ made }] = await tx`select public.create_webhook_subscription(${agent}, 'Tickets', ${scheme}, ${publicKey ?? null}) as made`;
        return made as { id: string; secret?: string };
      }),
  };
}
