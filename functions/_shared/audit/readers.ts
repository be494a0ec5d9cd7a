/**
 * Who may read an organization's audit chain through the functions (audit-export, audit-proof):
 * a member of it (X-Org-Id, or a personal access token with audit:read, whose organization it is),
 * or the service role naming it with ?org_id=. Checked in the database as the caller, project
 * viewer or above, before anything is read as the service role.
 */
import { type Caller, callerOf, orgIdOf } from "../http/caller.ts";
import { asCaller, type Sql } from "../http/db.ts";
import { refuse } from "../http/errors.ts";

/** The organization whose chain `req` may read, and who reads it (throws the refusal otherwise). */
export async function auditReader(sql: Sql, req: Request, queryOrgId: string | undefined): Promise<{ orgId: string; caller: Caller }> {
  const caller = callerOf(req, { tokenScope: "audit:read" });
  let orgId: string;
  if (caller.kind === "user") orgId = caller.token && req.headers.get("x-org-id") === null ? caller.token.orgId : orgIdOf(req);
  else if (queryOrgId) orgId = queryOrgId;
  else throw refuse("missing_org_id", "the service role names the organization with ?org_id=");
  await sql.begin((tx) => asCaller(tx, caller, orgId, { atLeast: "project_viewer" }));
  return { orgId, caller };
}
