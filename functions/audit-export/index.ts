/**
 * GET /functions/v1/audit-export: streams an organization's audit chain as JSON Lines (format in
 * functions/_shared/audit/verify.ts), ending with a signed checkpoint of the last entry exported.
 *   - a member: X-Org-Id names the organization;
 *   - the service role: ?org_id=….
 * Range, all optional: ?from_seq=&to_seq= (entry numbers) or ?from=&to= (ISO 8601 times); the
 * default is the whole chain. Verify the file offline with `npm run audit:verify -- <file>`.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { signCheckpoint } from "../_shared/audit/checkpoint.ts";
import { EXPORT_FORMAT, type ExportHeader, type SignedCheckpoint } from "../_shared/audit/verify.ts";
import { auditReader } from "../_shared/audit/readers.ts";
import { functionApp } from "../_shared/http/app.ts";
import type { Caller } from "../_shared/http/caller.ts";
import { asCaller, asService, db, type Sql } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { OrgHeader, refusals } from "../_shared/http/schemas.ts";

/** An ISO 8601 time Postgres can hold (years 1 to 9999; year 0 and earlier are out of its range). */
const Time = z.iso.datetime({ offset: true }).refine((t) => Number(t.slice(0, 4)) >= 1, "the year must be 0001 or later")
  .describe("ISO 8601 time, years 1 to 9999");

const Query = z.strictObject({
  org_id: z.uuid().optional().describe("The service role names the organization here"),
  from_seq: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  to_seq: z.coerce.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  from: Time.optional(),
  to: Time.optional(),
}).refine((q) => !((q.from_seq || q.to_seq) && (q.from || q.to)), "give entry numbers or times, not both");

/** Entries read per batch: the client's pace sets the database's, and memory holds one batch at most. */
const BATCH = 500;

const app = functionApp({
  name: "audit-export",
  version: "2.0.0",
  description: "Streams an organization's audit chain as JSON Lines with a signed checkpoint, for offline verification.",
});

app.openapi(createRoute({
  method: "get", path: "/", summary: "Export the audit chain (a member in X-Org-Id, or the service role with ?org_id=)",
  request: { query: Query, headers: OrgHeader },
  responses: {
    200: { description: "application/x-ndjson: a header line, one line per entry, a signed checkpoint line (format gatehouse-audit-export/1)" },
    ...refusals(400, 401, 403, 404, 416),
  },
}), async (c) => {
  const q = c.req.valid("query");
  const sql = db();
  const { orgId, caller } = await auditReader(sql, c.req.raw, q.org_id);  // a personal access token reads with audit:read
  const { header, checkpoint } = await sql.begin(async (tx) => {
    await asService(tx);
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
    if (head === 0) throw refuse("no_audit_chain");
    const from = Number(range.from_seq);
    const to = Number(range.to_seq);
    if (range.from_seq === null || range.to_seq === null || from > to || to > head) {
      throw refuse("range_not_satisfiable", `the chain holds entries 1 to ${head}; the range selects none of them`);
    }
    const checkpoint = await signCheckpoint(tx, orgId, { size: to });
    const [{ frontier }] = await tx`
      select coalesce(array_agg(encode(f, 'hex') order by i), '{}') as frontier
        from unnest(audit.frontier_at(${orgId}, ${from - 1})) with ordinality as x (f, i)`;
    const header: ExportHeader = { type: "header", format: EXPORT_FORMAT, org: orgId, from_seq: from, to_seq: to, frontier };
    return { header, checkpoint };
  });

  return c.body(exportBody({ sql, caller }, { header, checkpoint }), 200, {
    "content-type": "application/x-ndjson",
    "content-disposition": `attachment; filename="audit-${orgId}-${header.from_seq}-${header.to_seq}.jsonl"`,
  });
});

Deno.serve(app.fetch);

type Batches = AsyncIterator<readonly Record<string, unknown>[]>;

/**
 * The export's body: the header, the entries (read in batches as the caller, under RLS, in one
 * transaction held while the client reads), then the checkpoint. A cut stream lacks its
 * checkpoint, which the verifier reports.
 */
function exportBody(reader: { sql: Sql; caller: Caller }, range: { header: ExportHeader; checkpoint: SignedCheckpoint }): ReadableStream<Uint8Array> {
  const { sql, caller } = reader;
  const { header, checkpoint } = range;
  const encoder = new TextEncoder();
  const line = (value: unknown) => encoder.encode(JSON.stringify(value) + "\n");
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  const open = () => new Promise<Batches>((resolve, reject) => {
    sql.begin(async (tx) => {
      await asCaller(tx, caller, header.org);
      resolve(tx`
        select e.seq, encode(e.prev_hash, 'hex') as prev_hash, encode(e.entry_hash, 'hex') as entry_hash,
               e.canonical, p.payload::text as payload
          from audit.entries e
          left join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id
         where e.org_id = ${header.org} and e.seq between ${header.from_seq} and ${header.to_seq}
         order by e.seq`.cursor(BATCH)[Symbol.asyncIterator]());
      await end;
    }).catch(reject);
  });
  let batches: Batches | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!batches) {
          controller.enqueue(line(header));
          batches = await open();
          return;
        }
        const next = await batches.next();
        if (!next.done) {
          for (const r of next.value) {
            controller.enqueue(line({
              type: "entry", seq: Number(r.seq), prev_hash: r.prev_hash, entry_hash: r.entry_hash, canonical: r.canonical, payload: r.payload,
            }));
          }
          return;
        }
        controller.enqueue(line({ type: "checkpoint", ...checkpoint }));
        controller.close();
        ended();
      } catch {
        console.error("audit-export: stream aborted");
        controller.error(new Error("export aborted"));
        ended();
      }
    },
    async cancel() {
      // The client went away: end the cursor and the transaction, which frees the connection.
      await batches?.return?.();
      ended();
    },
  });
}
