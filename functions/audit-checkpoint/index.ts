/**
 * POST /functions/v1/audit-checkpoint: signs a checkpoint of an organization's audit chain now.
 *   - a tenant admin: X-Org-Id names the organization;
 *   - the service role (the scheduler): body {"org_id": …} for one, or {} for every chain that grew
 *     since its last checkpoint.
 * Answers the signed checkpoint(s): {"checkpoints": [{checkpoint, signature, key_id, public_key}]}.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { asCaller, asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const MAX_BODY = 4096;

const Body = z.strictObject({ org_id: z.uuid().optional().describe("The service role: one organization; omitted, every chain that grew") });
const Checkpoint = z.object({
  checkpoint: z.string().describe("The RFC 8785 body that was signed"),
  signature: z.string().describe("Ed25519 signature, base64"),
  key_id: z.string(),
  public_key: z.string().describe("Ed25519 public key, base64"),
});

const app = functionApp({
  name: "audit-checkpoint",
  version: "2.0.0",
  description: "Signs Ed25519 checkpoints (size, head hash, RFC 6962 root) of organizations' audit chains.",
});
app.use(jsonBody(MAX_BODY));

app.openapi(createRoute({
  method: "post", path: "/", summary: "Sign a checkpoint now (tenant admin in X-Org-Id, or the service role)",
  request: {
    headers: OrgHeader,
    body: { content: jsonContent(Body), required: false },
  },
  responses: {
    200: { description: "The signed checkpoints", content: jsonContent(z.object({ checkpoints: z.array(Checkpoint) })) },
    ...refusals(400, 401, 403, 404, 413, 415),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  const body = c.req.valid("json");
  const sql = db();
  let orgIds: string[];
  if (caller.kind === "user") {
    if (body.org_id !== undefined) throw refuse("invalid_body", "members name the organization with X-Org-Id, not org_id");
    orgIds = [orgIdOf(c.req.raw)];
  } else if (body.org_id) {
    orgIds = [body.org_id];
  } else {
    orgIds = await sql.begin(async (tx) => {
      await asService(tx);
      await tx`select audit.seal_pending()`;  // so that "grew" counts what is recorded
      const grown = await tx`
        select h.org_id from audit.heads h
         where h.seq > coalesce((select max(k.size) from audit.checkpoints k where k.org_id = h.org_id), 0)`;
      return grown.map((r) => r.org_id as string);
    });
  }
  const checkpoints = [];
  for (const orgId of orgIds) {
    await sql.begin((tx) => asCaller(tx, caller, orgId, { atLeast: "tenant_admin" }));
    checkpoints.push(await sql.begin(async (tx) => {
      await asService(tx);
      await tx`select audit.seal(${orgId})`;
      const [head] = await tx`select seq from audit.heads where org_id = ${orgId}`;
      if (!head || Number(head.seq) === 0) throw refuse("no_audit_chain");
      return await signCheckpoint(tx, orgId);
    }));
  }
  return c.json({ checkpoints }, 200);
});

Deno.serve(app.fetch);
