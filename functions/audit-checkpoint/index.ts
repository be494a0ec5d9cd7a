/**
 * POST /functions/v1/audit-checkpoint: signs a checkpoint of an organization's audit chain now.
 *   - a tenant admin: X-Org-Id names the organization;
 *   - the service role (the scheduler): body {"org_id": …} for one, or {} for every chain that grew
 *     since its last checkpoint.
 * Answers the signed checkpoint(s): {"checkpoints": [{checkpoint, signature, key_id, public_key, note}]}.
 * Each new checkpoint is then submitted to the witnesses configured (GATEHOUSE_AUDIT_WITNESSES;
 * _shared/audit/witness.ts), and "witnessed" says how each answered; a checkpoint's note carries
 * the cosignatures kept.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { useNativeSha256 } from "../_shared/audit/proofs.ts";
import type { SignedCheckpoint } from "../_shared/audit/verify.ts";
import { witnessCheckpoint, type WitnessOutcome, witnessesFrom } from "../_shared/audit/witness.ts";
import { testAllowanceFrom } from "../_shared/egress/allowance.ts";
import { configuration } from "../_shared/http/config.ts";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { asCaller, asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const MAX_BODY = 4096;

useNativeSha256();
/** The witnesses, and how to reach them (the egress guard, with its test-only allowance). */
const witnessing = configuration((get) => {
  const testOnly = testAllowanceFrom(get);
  return { witnesses: witnessesFrom(get), egress: { timeoutMs: 10_000, maxBytes: 16 * 1024, maxRedirects: 0, ...(testOnly ? { testOnly } : {}) } };
}, "audit_checkpoint_misconfigured");

const Body = z.strictObject({ org_id: z.uuid().optional().describe("The service role: one organization; omitted, every chain that grew") });
const Checkpoint = z.object({
  checkpoint: z.string().describe("The RFC 8785 body that was signed"),
  signature: z.string().describe("Ed25519 signature, base64"),
  key_id: z.string(),
  public_key: z.string().describe("Ed25519 public key, base64"),
  note: z.string().optional().describe("The same checkpoint as a C2SP signed note, with the witnesses' cosignatures"),
});
const Witnessed = z.object({
  org_id: z.uuid(), size: z.number().int(), witness: z.string(),
  outcome: z.enum(["cosigned", "refused", "unreachable", "invalid_cosignature"]), status: z.number().int().optional(),
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
    200: { description: "The signed checkpoints, and how the witnesses answered", content: jsonContent(z.object({ checkpoints: z.array(Checkpoint), witnessed: z.array(Witnessed) })) },
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
  const checkpoints: SignedCheckpoint[] = [];
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
  // After signing, outside its transaction: a witness that is down delays nothing but itself.
  const { witnesses, egress } = witnessing();
  const sizes = checkpoints.map((cp) => (JSON.parse(cp.checkpoint) as { size: number }).size);
  const witnessed: (WitnessOutcome & { org_id: string; size: number })[] = [];
  for (const [i, orgId] of orgIds.entries()) {
    for (const w of await witnessCheckpoint(sql, orgId, sizes[i], witnesses, egress)) witnessed.push({ org_id: orgId, size: sizes[i], ...w });
  }
  if (witnessed.some((w) => w.outcome === "cosigned")) {
    // The notes now carry the cosignatures kept.
    for (const [i, orgId] of orgIds.entries()) {
      const note: string | null = await sql.begin(async (tx) => {
        await asService(tx);
        const [row] = await tx`select audit.note_of(note, org_id, size) as note from audit.checkpoints where org_id = ${orgId} and size = ${sizes[i]}`;
        return (row?.note as string | undefined) ?? null;
      });
      if (note) checkpoints[i] = { ...checkpoints[i], note };
    }
  }
  return c.json({ checkpoints, witnessed }, 200);
});

Deno.serve(app.fetch);
