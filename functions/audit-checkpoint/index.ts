/**
 * POST /functions/v1/audit-checkpoint: signs a checkpoint of an organization's audit chain now.
 *   - a tenant admin: X-Org-Id names the organization;
 *   - the service role (the scheduler): body {"org_id": …} for one, or {} for every chain that grew
 *     since its last checkpoint.
 * Answers the signed checkpoint(s): {"checkpoints": [{checkpoint, signature, key_id, public_key}]}.
 */
import { z } from "zod";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { callerOf, orgIdOf, requireOrgRole } from "../_shared/http/caller.ts";
import { db } from "../_shared/http/db.ts";
import { HttpError, readJsonBody, requireMethod, withErrors } from "../_shared/http/errors.ts";

const MAX_BODY = 4096;
const ServiceBody = z.strictObject({ org_id: z.uuid().optional() });

Deno.serve(withErrors(async (req) => {
  requireMethod(req, "POST");
  const caller = callerOf(req);
  const sql = db();
  let orgIds: string[];
  if (caller.kind === "user") {
    orgIds = [orgIdOf(req)];
  } else {
    const body = await readJsonBody(req, ServiceBody, MAX_BODY);
    if (!body.org_id) await sql`select audit.seal_pending()`;  // so that "grew" counts what is recorded
    orgIds = body.org_id
      ? [body.org_id]
      : (await sql`
          select h.org_id from audit.heads h
           where h.seq > coalesce((select max(c.size) from audit.checkpoints c where c.org_id = h.org_id), 0)`
        ).map((r) => r.org_id as string);
  }
  const checkpoints = [];
  for (const orgId of orgIds) {
    checkpoints.push(await sql.begin(async (tx) => {
      await requireOrgRole(tx, caller, orgId, "tenant_admin");
      await tx`select audit.seal(${orgId})`;
      const [head] = await tx`select seq from audit.heads where org_id = ${orgId}`;
      if (!head || Number(head.seq) === 0) throw new HttpError(404, "no_audit_chain", "this organization has no audit entries yet");
      return signCheckpoint(tx, orgId);
    }));
  }
  return Response.json({ checkpoints });
}));
