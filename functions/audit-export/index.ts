/**
 * GET /functions/v1/audit-export: streams an organization's audit chain as JSON Lines (format in
 * functions/_shared/audit/export.ts), ending with a signed checkpoint of the last entry exported.
 *   - a member: X-Org-Id names the organization;
 *   - the service role: ?org_id=….
 * Range, all optional: ?from_seq=&to_seq= (entry numbers) or ?from=&to= (ISO 8601 times); the
 * default is the whole chain. Verify the file offline with `npm run audit:verify -- <file>`.
 */
import { z } from "zod";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { EXPORT_FORMAT, type ExportHeader } from "../_shared/audit/export.ts";
import { callerOf, orgIdOf, requireOrgRole } from "../_shared/http/caller.ts";
import { db } from "../_shared/http/db.ts";
import { HttpError, requireMethod, withErrors } from "../_shared/http/errors.ts";

const Query = z.strictObject({
  org_id: z.uuid().optional(),
  from_seq: z.coerce.number().int().min(1).optional(),
  to_seq: z.coerce.number().int().min(1).optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
}).refine((q) => !((q.from_seq || q.to_seq) && (q.from || q.to)), "give entry numbers or times, not both");

const BATCH = 500;

Deno.serve(withErrors(async (req) => {
  requireMethod(req, "GET");
  const caller = callerOf(req);
  const parsed = Query.safeParse(Object.fromEntries(new URL(req.url).searchParams));
  if (!parsed.success) {
    throw new HttpError(400, "invalid_query", parsed.error.issues.map((i) => i.message).join("; "));
  }
  const q = parsed.data;
  let orgId: string;
  if (caller.kind === "user") orgId = orgIdOf(req);
  else if (q.org_id) orgId = q.org_id;
  else throw new HttpError(400, "missing_org_id", "the service role names the organization with ?org_id=");

  const sql = db();
  const { header, checkpoint } = await sql.begin(async (tx) => {
    await requireOrgRole(tx, caller, orgId, "project_viewer");
    await tx`select audit.seal(${orgId})`;  // what was recorded up to now is in the export
    const [range] = await tx`
      select coalesce(${q.from_seq ?? null}::bigint,
                      (select min(seq) from audit.entries where org_id = ${orgId} and occurred_at >= ${q.from ?? null}::timestamptz),
                      case when ${q.from ?? null}::timestamptz is null then 1 end) as from_seq,
             coalesce(${q.to_seq ?? null}::bigint,
                      (select max(seq) from audit.entries where org_id = ${orgId} and occurred_at <= ${q.to ?? null}::timestamptz),
                      case when ${q.to ?? null}::timestamptz is null then (select seq from audit.heads where org_id = ${orgId}) end) as to_seq,
             (select seq from audit.heads where org_id = ${orgId}) as head`;
    const head = Number(range.head ?? 0);
    if (head === 0) throw new HttpError(404, "no_audit_chain", "this organization has no audit entries yet");
    const from = Number(range.from_seq);
    const to = Number(range.to_seq);
    if (range.from_seq === null || range.to_seq === null || from > to || to > head) {
      throw new HttpError(416, "range_not_satisfiable", `the chain holds entries 1 to ${head}; the range selects none of them`);
    }
    const checkpoint = await signCheckpoint(tx, orgId, { size: to });
    const [{ frontier }] = await tx`
      select coalesce(array_agg(encode(f, 'hex') order by i), '{}') as frontier
        from unnest(audit.frontier_at(${orgId}, ${from - 1})) with ordinality as x (f, i)`;
    const header: ExportHeader = { type: "header", format: EXPORT_FORMAT, org: orgId, from_seq: from, to_seq: to, frontier };
    return { header, checkpoint };
  });

  const encoder = new TextEncoder();
  const line = (value: unknown) => encoder.encode(JSON.stringify(value) + "\n");
  const batches = sql`
    select e.seq, encode(e.prev_hash, 'hex') as prev_hash, encode(e.entry_hash, 'hex') as entry_hash,
           e.canonical, p.payload::text as payload
      from audit.entries e
      left join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
     where e.org_id = ${orgId} and e.seq between ${header.from_seq} and ${header.to_seq}
     order by e.seq`.cursor(BATCH)[Symbol.asyncIterator]();
  // One batch per pull: the client's pace sets the database's, and memory holds one batch at most.
  let headerSent = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!headerSent) {
          headerSent = true;
          controller.enqueue(line(header));
          return;
        }
        const next = await batches.next();
        if (!next.done) {
          for (const r of next.value) {
            controller.enqueue(line({
              type: "entry", seq: Number(r.seq), prev_hash: r.prev_hash, entry_hash: r.entry_hash,
              canonical: r.canonical, payload: r.payload,
            }));
          }
          return;
        }
        controller.enqueue(line({ type: "checkpoint", ...checkpoint }));
        controller.close();
      } catch {
        // The status line has gone out; a cut stream lacks its checkpoint, which the verifier reports.
        console.error("audit-export: stream aborted");
        controller.error(new Error("export aborted"));
      }
    },
    async cancel() {
      // The client went away: end the cursor, which frees its connection.
      await batches.return?.();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "application/x-ndjson",
      "content-disposition": `attachment; filename="audit-${orgId}-${header.from_seq}-${header.to_seq}.jsonl"`,
    },
  });
}));
