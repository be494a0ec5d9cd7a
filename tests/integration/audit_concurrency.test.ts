/**
 * Concurrent writers never fork an organization's audit chain or leave a gap in it: 16
 * connections append 500 events each to one organization, then the same load is spread over 8.
 * Throughput (one organization vs many, chained vs plain insert) is `npm run bench -- audit`'s job.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { stack, superuser } from "../helpers/stack.ts";

const WRITERS = 16;
const EVENTS_PER_WRITER = 500;

const admin = superuser();
afterAll(() => admin.end());

async function newOrgs(count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, () => randomUUID());
  for (const id of ids) {
    await admin`insert into public.organizations (id, name, slug) values (${id}, 'Concurrency', ${`conc-${id.slice(0, 8)}`})`;
  }
  return ids;
}

/** WRITERS connections, each appending EVENTS_PER_WRITER events as the service role. */
async function appendConcurrently(orgFor: (writer: number, event: number) => string): Promise<void> {
  const writers = Array.from({ length: WRITERS }, () => postgres(stack().dbUrl, { max: 1, onnotice: () => {} }));
  try {
    await Promise.all(
      writers.map(async (sql, w) => {
        for (let i = 0; i < EVENTS_PER_WRITER; i++) {
          await sql.begin(async (tx) => {
            await tx`set local role service_role`;
            await tx`select audit.append(${orgFor(w, i)}::uuid, 'test.concurrent', 'writer', ${String(w)}, ${tx.json({ w, i })})`;
          });
        }
      }),
    );
  } finally {
    await Promise.all(writers.map((sql) => sql.end()));
  }
}

async function chainOf(org: string) {
  const [summary] = await admin`
    select count(*)::int as entries, min(seq)::int as first, max(seq)::int as last,
           count(distinct prev_hash)::int as distinct_prev
      from audit.entries where org_id = ${org}`;
  // Time never runs backwards along the chain (an entry's time is read once its seq is taken).
  const [{ backwards }] = await admin`
    select count(*)::int as backwards
      from (select occurred_at < lag(occurred_at) over (order by seq) as earlier from audit.entries where org_id = ${org}) t
     where earlier`;
  expect(backwards).toBe(0);
  const [verdict] = await admin`select ok, reason from audit.verify_chain(${org})`;
  return { ...summary, ...verdict };
}

describe("audit chain under concurrent writers", () => {
  it(`keeps one unbroken, gapless chain when ${WRITERS} connections write ${EVENTS_PER_WRITER} events each to one organization`, async () => {
    const [org] = await newOrgs(1);
    await appendConcurrently(() => org);
    const total = WRITERS * EVENTS_PER_WRITER;
    // distinct_prev = entries: no two entries claim the same predecessor, i.e. no fork.
    expect(await chainOf(org)).toEqual({ entries: total, first: 1, last: total, distinct_prev: total, ok: true, reason: null });
  }, 120_000);

  it("keeps each chain unbroken when the same load is spread over 8 organizations", async () => {
    const orgs = await newOrgs(8);
    await appendConcurrently((w, i) => orgs[(w + i) % orgs.length]);
    const perOrg = (WRITERS * EVENTS_PER_WRITER) / orgs.length;
    for (const org of orgs) {
      expect(await chainOf(org)).toEqual({ entries: perOrg, first: 1, last: perOrg, distinct_prev: perOrg, ok: true, reason: null });
    }
  }, 120_000);
});
