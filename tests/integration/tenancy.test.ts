/**
 * The organization context over HTTP: X-Org-Id / X-Project-Id go through PostgREST's
 * db-pre-request (private.check_request), which validates them against membership before the
 * query runs. The database side of the same rules is in supabase/tests/database/011-context.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, accessToken, anonClient, rest, signedIn, superuser } from "../helpers/stack.ts";
import { ACME, ACME_PROJECT, GLOBEX, GLOBEX_PROJECT } from "../helpers/fixtures.ts";

const sql = superuser();
let ada: Client;
let casey: Client;
let victor: Client;

beforeAll(async () => {
  [ada, casey, victor] = await Promise.all([
    signedIn("ada@acme.test"),
    signedIn("casey@both.test"),
    signedIn("victor@acme.test"),
  ]);
});

afterAll(async () => {
  await Promise.all([ada, casey, victor].map((c) => c?.auth.signOut()));
  await sql.end();
});

describe("organization context through X-Org-Id", () => {
  it("shows no tenant rows without a context", async () => {
    const { data, error } = await ada.from("agents").select("name");
    expect(error).toBeNull();
    expect(data).toEqual([]);
  });

  it("shows a member of two organizations only the organization in context", async () => {
    const inAcme = await casey.from("agents").select("name").setHeader("x-org-id", ACME);
    const inGlobex = await casey.from("agents").select("name").setHeader("x-org-id", GLOBEX);
    expect(inAcme.data!.map((a) => a.name)).toEqual(["Returns assistant"]);
    expect(inGlobex.data!.map((a) => a.name)).toEqual(["Ticket triage"]);
    const orgs = await casey.from("organizations").select("slug").setHeader("x-org-id", ACME);
    expect(orgs.data!.map((o) => o.slug)).toEqual(["acme"]);
  });

  it("accepts context headers in any letter case", async () => {
    const { data, error } = await casey
      .from("agents")
      .select("name")
      .setHeader("x-org-id", ACME.toUpperCase())
      .setHeader("x-project-id", ACME_PROJECT.toUpperCase());
    expect(error).toBeNull();
    expect(data!.map((a) => a.name)).toEqual(["Returns assistant"]);
  });

  it("refuses an organization the caller does not belong to with 403 before the query runs", async () => {
    const res = await rest("agents?select=name", { authorization: `Bearer ${await accessToken(ada)}`, "x-org-id": GLOBEX });
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: "context_not_a_member" });
  });

  it("answers malformed context headers with 400 and a stable code", async () => {
    const auth = { authorization: `Bearer ${await accessToken(ada)}` };
    const badOrg = await rest("agents", { ...auth, "x-org-id": "acme' or 1=1 --" });
    expect(badOrg).toMatchObject({ status: 400, body: { code: "context_invalid_org_id" } });
    const badProject = await rest("agents", { ...auth, "x-org-id": ACME, "x-project-id": "nope" });
    expect(badProject).toMatchObject({ status: 400, body: { code: "context_invalid_project_id" } });
    const orphanProject = await rest("agents", { ...auth, "x-project-id": ACME_PROJECT });
    expect(orphanProject).toMatchObject({ status: 400, body: { code: "context_project_without_org" } });
  });

  it("refuses a project of another organization as the context project", async () => {
    const res = await rest("agents", {
      authorization: `Bearer ${await accessToken(casey)}`,
      "x-org-id": ACME,
      "x-project-id": GLOBEX_PROJECT,
    });
    expect(res).toMatchObject({ status: 403, body: { code: "context_project_not_in_org" } });
  });

  it("asks anon to sign in instead of setting a context", async () => {
    const res = await rest("agents", { "x-org-id": ACME });
    expect(res).toMatchObject({ status: 401, body: { code: "context_requires_sign_in" } });
    const { error } = await anonClient().from("agents").select("id");
    expect(error?.code).toBe("42501");
  });

  it("refuses a write without a context with a clear error and writes nothing", async () => {
    const { error } = await ada
      .from("agents")
      .insert({ org_id: ACME, project_id: ACME_PROJECT, name: "No context" });
    expect(error?.code).toBe("42501");
    expect(error?.message).toMatch(/no organization context/);
    const { data } = await ada.from("agents").select("name").eq("name", "No context").setHeader("x-org-id", ACME);
    expect(data).toEqual([]);
  });

  it("refuses a row for another organization than the one in context", async () => {
    const { error } = await casey
      .from("agents")
      .insert({ org_id: GLOBEX, project_id: GLOBEX_PROJECT, name: "Crossed" })
      .setHeader("x-org-id", ACME);
    expect(error?.code).toBe("context_org_mismatch");
    const [{ count }] = await sql`select count(*)::int from public.agents where name = 'Crossed'`;
    expect(count).toBe(0);
  });

  it("lets a definer RPC write another organization's rows while a context is set (create_organization)", async () => {
    const slug = `ctx-${Date.now()}`;
    const { data: created, error } = await ada.rpc("create_organization", { p_name: "Made in Acme's context", p_slug: slug }).setHeader("x-org-id", ACME);
    expect(error).toBeNull();
    const [member] = await sql`select role from public.organization_members where org_id = ${created as unknown as string}`;
    expect(member.role).toBe("tenant_admin");
    await sql`delete from public.organizations where slug = ${slug}`;
  });

  it("fills org_id (and project_id) in from the context, so the body need not repeat them", async () => {
    const name = `From context ${Date.now()}`;
    const inOrg = await casey.from("agents").insert({ project_id: ACME_PROJECT, name }).select("org_id, project_id").single().setHeader("x-org-id", ACME);
    expect(inOrg.error).toBeNull();
    expect(inOrg.data).toEqual({ org_id: ACME, project_id: ACME_PROJECT });
    const inProject = await casey.from("agents").insert({ name: `${name} 2` }).select("org_id, project_id").single()
      .setHeader("x-org-id", ACME).setHeader("x-project-id", ACME_PROJECT);
    expect(inProject.error).toBeNull();
    expect(inProject.data).toEqual({ org_id: ACME, project_id: ACME_PROJECT });
    const crossed = await casey.from("agents").insert({ project_id: GLOBEX_PROJECT, name: `${name} 3` })
      .setHeader("x-org-id", ACME).setHeader("x-project-id", ACME_PROJECT);
    expect(crossed.error?.code).toBe("context_project_mismatch");
    await sql`delete from public.agents where name like ${name + "%"}`;
  });

  it("lets a contributor create an agent in context, and a viewer only read it", async () => {
    const name = `Agent ${Date.now()}`;
    const created = await casey
      .from("agents")
      .insert({ org_id: ACME, project_id: ACME_PROJECT, name })
      .select("id")
      .single()
      .setHeader("x-org-id", ACME);
    expect(created.error).toBeNull();
    const seen = await victor.from("agents").select("name").eq("id", created.data!.id).setHeader("x-org-id", ACME);
    expect(seen.data).toEqual([{ name }]);
    const edit = await victor
      .from("agents")
      .update({ description: "viewer was here" })
      .eq("id", created.data!.id)
      .select()
      .setHeader("x-org-id", ACME);
    expect(edit.data).toEqual([]);
    const removed = await ada.from("agents").delete().eq("id", created.data!.id).select("id").setHeader("x-org-id", ACME);
    expect(removed.data).toHaveLength(1);
  });

  it("narrows project-scoped tables to X-Project-Id", async () => {
    const { data } = await ada
      .from("agent_versions")
      .select("version")
      .order("version")
      .setHeader("x-org-id", ACME)
      .setHeader("x-project-id", ACME_PROJECT);
    expect(data!.map((v) => v.version)).toEqual([1, 2]);
  });
});

describe("membership RPCs over HTTP", () => {
  it("invites through create_invitation and never exposes the token hash", async () => {
    const invite = await ada
      .rpc("create_invitation", { p_email: `http-${Date.now()}@acme.test`, p_role: "project_viewer" })
      .setHeader("x-org-id", ACME);
    expect(invite.error).toBeNull();
    expect(invite.data).toMatch(/^[0-9a-f]{64}$/);
    const hashes = await ada.from("invitations").select("token_hash").setHeader("x-org-id", ACME);
    expect(hashes.error?.code).toBe("42501");
  });

  it("refuses an invitation from a non-admin with 403", async () => {
    const { error, status } = await casey
      .rpc("create_invitation", { p_email: "friend@acme.test", p_role: "tenant_admin" })
      .setHeader("x-org-id", ACME);
    expect(status).toBe(403);
    expect(error?.message).toMatch(/only a tenant_admin/);
  });
});
