/**
 * GET /functions/v1/audit-proof: RFC 6962 proofs of an organization's audit chain, each with the
 * signed checkpoint (format 1 and C2SP note) of the tree it is a proof in, so that a customer who
 * pinned a checkpoint learns whether today's chain extends it without downloading the chain, and
 * can check one entry without the rest (docs/audit.md, "Proofs").
 *   ?type=consistency&from=A[&to=B]   the tree of the first A entries is a prefix of the tree of B
 *                                     (default: the chain now)
 *   ?type=inclusion&seq=N[&size=S]    entry N (its hashed bytes and hashes) is leaf N-1 of the tree
 *                                     of S (default: the chain now)
 * Access is the export's: a member in X-Org-Id (or a personal access token with audit:read), or the
 * service role with ?org_id=. The checkpoint is signed for exactly the larger size (an earlier one
 * of that size if it was signed before). Proof hashes are lowercase hex.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { hexOf } from "../_shared/audit/merkle.ts";
import { consistencyFrom, inclusionOf, useNativeSha256 } from "../_shared/audit/proofs.ts";
import { auditReader } from "../_shared/audit/readers.ts";
import { functionApp } from "../_shared/http/app.ts";
import { asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, OrgHeader, refusals } from "../_shared/http/schemas.ts";

useNativeSha256();

const Size = z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const Query = z.strictObject({
  type: z.enum(["consistency", "inclusion"]),
  org_id: z.uuid().optional().describe("The service role names the organization here"),
  from: Size.optional().describe("consistency: the smaller tree's size (the pinned checkpoint's)"),
  to: Size.optional().describe("consistency: the larger tree's size; default the chain now"),
  seq: Size.optional().describe("inclusion: the entry"),
  size: Size.optional().describe("inclusion: the tree's size; default the chain now"),
}).refine((q) => q.type === "consistency" ? q.from !== undefined && q.seq === undefined && q.size === undefined
  : q.seq !== undefined && q.from === undefined && q.to === undefined, "consistency takes from (and to); inclusion takes seq (and size)");

const Checkpoint = z.object({
  checkpoint: z.string(), signature: z.string(), key_id: z.string(), public_key: z.string(), note: z.string().optional(),
});
const Consistency = z.object({ type: z.literal("consistency"), from: z.number(), to: z.number(), proof: z.array(z.string()), checkpoint: Checkpoint });
const Inclusion = z.object({
  type: z.literal("inclusion"), seq: z.number(), size: z.number(), proof: z.array(z.string()),
  entry: z.object({ seq: z.number(), prev_hash: z.string(), entry_hash: z.string(), canonical: z.string() }),
  checkpoint: Checkpoint,
});

const app = functionApp({
  name: "audit-proof",
  version: "1.0.0",
  description: "RFC 6962 inclusion and consistency proofs of an organization's audit chain, with the signed checkpoint they prove against.",
});

app.openapi(createRoute({
  method: "get", path: "/", summary: "A consistency or inclusion proof, with its signed checkpoint (a member in X-Org-Id, or the service role with ?org_id=)",
  request: { query: Query, headers: OrgHeader },
  responses: {
    200: { description: "The proof and the checkpoint of the larger tree", content: jsonContent(z.union([Consistency, Inclusion])) },
    ...refusals(400, 401, 403, 404, 416),
  },
}), async (c) => {
  const q = c.req.valid("query");
  const sql = db();
  const { orgId } = await auditReader(sql, c.req.raw, q.org_id);
  const answer = await sql.begin(async (tx) => {
    await asService(tx);
    await tx`select audit.seal(${orgId})`;
    const [{ head }] = await tx`select coalesce((select seq from audit.heads where org_id = ${orgId}), 0)::bigint as head`;
    const chain = Number(head);
    if (chain === 0) throw refuse("no_audit_chain");
    if (q.type === "consistency") {
      const to = q.to ?? chain;
      const from = q.from!;
      if (from > to || to > chain) throw refuse("range_not_satisfiable", `the chain holds entries 1 to ${chain}; no consistency proof from ${from} to ${to}`);
      const proof = (await consistencyFrom(tx, orgId, from, to)).map(hexOf);
      return { type: "consistency" as const, from, to, proof, checkpoint: await signCheckpoint(tx, orgId, { size: to }) };
    }
    const size = q.size ?? chain;
    const seq = q.seq!;
    if (seq > size || size > chain) throw refuse("range_not_satisfiable", `the chain holds entries 1 to ${chain}; entry ${seq} is not in a tree of ${size}`);
    const [entry] = await tx`
      select seq, encode(prev_hash, 'hex') as prev_hash, encode(entry_hash, 'hex') as entry_hash, canonical
        from audit.entries where org_id = ${orgId} and seq = ${seq}`;
    return {
      type: "inclusion" as const, seq, size, proof: (await inclusionOf(tx, orgId, seq, size)).map(hexOf),
      entry: { seq: Number(entry.seq), prev_hash: entry.prev_hash, entry_hash: entry.entry_hash, canonical: entry.canonical },
      checkpoint: await signCheckpoint(tx, orgId, { size }),
    };
  });
  return c.json(answer, 200);
});

Deno.serve(app.fetch);
