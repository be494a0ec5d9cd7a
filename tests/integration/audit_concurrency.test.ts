/**
 * Concurrent writers never fork an organization's audit chain or leave a gap in it: 16
 * connections append 500 events each to one organization, then the same load is spread over 8,
 * while sealers race each other: the stack's own loop, two more running audit.seal_pending() and
 * one running audit.seal() for each organization.
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

/**
 * WRITERS connections, each appending EVENTS_PER_WRITER events as the service role, while three
 * more connections seal as fast as they can; then whatever is left is sealed.
 */
async function appendConcurrently(orgs: string[], orgFor: (writer: number, event: number) => string): Promise<void> {
  const connect = () => postgres(stack().dbUrl, { max: 1, onnotice: () => {} });
  const writers = Array.from({ length: WRITERS }, connect);
  const sealers = Array.from({ length: 3 }, connect);
  let writing = true;
  let sealedByRacers = 0;
  try {
    // Two run the periodic sealer's call; one waits for each organization's head in turn, one
    // organization per transaction, as audit-export and audit-checkpoint do.
    const racing = sealers.map(async (sql, s) => {
      while (writing) {
        if (s < 2) {
          const [{ n }] = await sql`select audit.seal_pending(50)::int as n`;
          sealedByRacers += n;
        } else {
          for (const org of orgs) {
            const [{ n }] = await sql`select audit.seal(${org}, 50) as n`;
            sealedByRacers += n;
          }
        }
      }
    });
    await Promise.all(
      writers.map(async (sql, w) => {
        for (let i = 0; i < EVENTS_PER_WRITER; i++) {
          await sql.begin(async (tx) => {
            await tx`set local role service_role`;
            await tx`insert into audit.records (org_id, action, target_type, target_id, payload)
                     values (${orgFor(w, i)}, 'test.concurrent', 'writer', ${String(w)}, ${tx.json({ w, i })})`;
          });
        }
      }),
    ).finally(() => (writing = false));
    await Promise.all(racing);
    expect(sealedByRacers).toBeGreaterThan(0);
    for (const org of orgs) await admin`select audit.seal(${org})`;
  } finally {
    await Promise.all([...writers, ...sealers].map((sql) => sql.end()));
  }
}

async function chainOf(org: string) {
  const [summary] = await admin`
    select count(*)::int as entries, min(seq)::int as first, max(seq)::int as last,
           count(distinct prev_hash)::int as distinct_prev
      from audit.entries where org_id = ${org}`;
  // Each writer's events are chained in the order it committed them.
  const [{ reordered }] = await admin`
    select count(*)::int as reordered
      from (select (p.payload ->> 'i')::int < lag((p.payload ->> 'i')::int) over (partition by p.payload ->> 'w' order by e.seq) as earlier
              from audit.entries e join audit.records p on p.org_id = e.org_id and p.xid = e.record_xid and p.id = e.record_id where e.org_id = ${org}) t
     where earlier`;
  expect(reordered).toBe(0);
  const [{ pending }] = await admin`select count(*)::int as pending from audit.pending where org_id = ${org}`;
  expect(pending).toBe(0);
  const [verdict] = await admin`select ok, reason from audit.verify_chain(${org})`;
  return { ...summary, ...verdict };
}

describe("audit chain under concurrent writers", () => {
  it("seals only at READ COMMITTED, where each statement sees what the previous sealer committed", async () => {
    const [org] = await newOrgs(1);
    await admin`select audit.append(${org}, 'test.isolation', null, null)`;
    await expect(admin.begin("isolation level repeatable read", (tx) => tx`select audit.seal(${org})`))
      .rejects.toMatchObject({ code: "25000" });
    await admin`select audit.seal(${org})`;
    const [{ entries }] = await admin`select count(*)::int as entries from audit.entries where org_id = ${org}`;
    expect(entries).toBe(1);
  });

  it(`keeps one unbroken, gapless chain when ${WRITERS} connections write ${EVENTS_PER_WRITER} events each to one organization`, async () => {
    const [org] = await newOrgs(1);
    await appendConcurrently([org], () => org);
    const total = WRITERS * EVENTS_PER_WRITER;
    // distinct_prev = entries: no two entries claim the same predecessor, i.e. no fork.
    expect(await chainOf(org)).toEqual({ entries: total, first: 1, last: total, distinct_prev: total, ok: true, reason: null });
  }, 120_000);

  it("keeps each chain unbroken when the same load is spread over 8 organizations", async () => {
    const orgs = await newOrgs(8);
    await appendConcurrently(orgs, (w, i) => orgs[(w + i) % orgs.length]);
    const perOrg = (WRITERS * EVENTS_PER_WRITER) / orgs.length;
    for (const org of orgs) {
      expect(await chainOf(org)).toEqual({ entries: perOrg, first: 1, last: perOrg, distinct_prev: perOrg, ok: true, reason: null });
    }
  }, 120_000);
});
