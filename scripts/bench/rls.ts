/**
 * `npm run bench -- rls`: 1,000 organizations × 1,000 agents. The same tenant queries run as a
 * signed-in member with the organization context set (RLS doing the filtering) and as service_role
 * with an explicit org_id filter, interleaved, on a throwaway database. The target (median ratio
 * ≤ 1.2) is set on the tenant query, a page of agents; the whole list and a bare count are also
 * printed, to show how the fixed per-statement cost of RLS (one membership lookup) weighs on
 * smaller and larger queries.
 */
import postgres from "postgres";
import { median, percentile, withThrowawayDatabase } from "./common.ts";

export interface RlsOptions {
  orgs: number;
  rows: number;
  iterations: number;
  explain: boolean;
}

/** One tenant query, written once for each side. */
interface TenantQuery {
  name: string;
  /** The query the ≤ 1.2 target is set on. */
  target: boolean;
  /** Run as the member: RLS adds the organization filter. */
  member: string;
  /** Run as service_role: the caller filters by org_id itself ($1). */
  service: string;
}

const QUERIES: TenantQuery[] = [
  {
    name: "tenant query: first page of agents by name (50 rows)",
    target: true,
    member: "select id, project_id, name from public.agents order by name limit 50",
    service: "select id, project_id, name from public.agents where org_id = $1 order by name limit 50",
  },
  {
    name: "also: all agents of the organization (1,000 rows)",
    target: false,
    member: "select id, project_id, name from public.agents",
    service: "select id, project_id, name from public.agents where org_id = $1",
  },
  {
    name: "also: count of the organization's agents",
    target: false,
    member: "select count(*) from public.agents",
    service: "select count(*) from public.agents where org_id = $1",
  },
];

async function seed(sql: postgres.Sql, opts: RlsOptions): Promise<void> {
  // One member (a project contributor) and one project per organization; ids are derived from the
  // organization number so the benchmark can name them without a lookup.
  await sql.begin(async (tx) => {
    await tx`
      insert into auth.users (id, email, email_confirmed_at)
      select ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, format('member%s@bench.test', n), now()
        from generate_series(1, ${opts.orgs}) n`;
    await tx`
      insert into public.organizations (id, name, slug)
      select ('10000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, format('Bench %s', n), format('bench-%s', n)
        from generate_series(1, ${opts.orgs}) n`;
    await tx`
      insert into public.organization_members (org_id, user_id, role)
      select ('10000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
             ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'project_contributor'
        from generate_series(1, ${opts.orgs}) n`;
    await tx`
      insert into public.projects (id, org_id, name, slug)
      select ('20000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
             ('10000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'Main', 'main'
        from generate_series(1, ${opts.orgs}) n`;
    // Fixture rows, not actions: keep a million of them out of the audit chain (throwaway database).
    await tx`alter table public.agents disable trigger audit`;
    await tx`
      insert into public.agents (org_id, project_id, name)
      select ('10000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
             ('20000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, format('agent %s', r)
        from generate_series(1, ${opts.orgs}) n, generate_series(1, ${opts.rows}) r`;
    await tx`alter table public.agents enable trigger audit`;
  });
  await sql`vacuum analyze`;
}

function ids(n: number) {
  const hex = n.toString(16).padStart(12, "0");
  return { user: `00000000-0000-4000-8000-${hex}`, org: `10000000-0000-4000-8000-${hex}` };
}

// postgres.js honours `simple` at runtime; its type declarations omit it.
const PREPARED = { prepare: true, simple: false } as postgres.UnsafeQueryOptions;

/**
 * Times one statement inside an open transaction, in milliseconds. Both sides run as named
 * prepared statements, as PostgREST's are (postgres.js would otherwise send a statement without
 * parameters through the simple protocol, re-planning it on every call).
 */
async function timed(tx: postgres.TransactionSql, query: string, params: string[]): Promise<{ ms: number; rows: number }> {
  const start = process.hrtime.bigint();
  const rows = await tx.unsafe(query, params, PREPARED);
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, rows: rows.length };
}

type Run = (tx: postgres.TransactionSql, query: string, params: string[]) => Promise<{ ms: number; rows: number }>;

async function asMember(sql: postgres.Sql, n: number, query: string, run: Run = timed) {
  const { user, org } = ids(n);
  return sql.begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: user, role: "authenticated" })}, true)`;
    await tx`set local role authenticated`;
    await tx`select private.set_context(${org})`;
    return run(tx, query, []);
  });
}

async function asService(sql: postgres.Sql, n: number, query: string, run: Run = timed) {
  const { org } = ids(n);
  return sql.begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ role: "service_role" })}, true)`;
    await tx`set local role service_role`;
    return run(tx, query, [org]);
  });
}

/** Prints a statement's plan (with its actual timings) instead of timing it. */
const explain: Run = async (tx, query, params) => {
  const plan = await tx.unsafe(`explain (analyze, costs off, buffers) ${query}`, params);
  console.log(plan.map((r) => `    ${r["QUERY PLAN"]}`).join("\n"));
  return { ms: 0, rows: 0 };
};

/** Runs the RLS benchmark; true when the tenant query is within target. */
export async function benchRls(opts: RlsOptions): Promise<boolean> {
  return withThrowawayDatabase(async (dbUrl) => {
  const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
  try {
    const seedStart = Date.now();
    await seed(sql, opts);
    console.log(`seeded ${opts.orgs} organizations × ${opts.rows} agents in ${((Date.now() - seedStart) / 1000).toFixed(1)} s`);

    let met = false;
    for (const query of QUERIES) {
      if (opts.explain) {
        console.log(`${query.name}\n  member:`);
        await asMember(sql, 1, query.member, explain);
        console.log("  service_role:");
        await asService(sql, 1, query.service, explain);
      }
      const member: number[] = [];
      const service: number[] = [];
      const warmup = Math.min(50, opts.iterations);
      for (let i = 0; i < warmup + opts.iterations; i++) {
        const n = 1 + Math.floor(Math.random() * opts.orgs);
        // Alternate which side goes first, so neither always gets the warmer cache.
        let m, s;
        if (i % 2 === 0) {
          m = await asMember(sql, n, query.member);
          s = await asService(sql, n, query.service);
        } else {
          s = await asService(sql, n, query.service);
          m = await asMember(sql, n, query.member);
        }
        if (m.rows !== s.rows) throw new Error(`${query.name}: member saw ${m.rows} rows, service_role ${s.rows} (org ${n})`);
        if (i >= warmup) {
          member.push(m.ms);
          service.push(s.ms);
        }
      }
      const ratio = median(member) / median(service);
      if (query.target) met = ratio <= 1.2;
      console.log(
        `${query.name}\n  member (RLS + context):         median ${median(member).toFixed(3)} ms, p95 ${percentile(member, 95).toFixed(3)} ms` +
          `\n  service_role (explicit org_id): median ${median(service).toFixed(3)} ms, p95 ${percentile(service, 95).toFixed(3)} ms` +
          `\n  median ratio ${ratio.toFixed(3)}${query.target ? " (target ≤ 1.2)" : ""}`,
      );
    }
    return met;
  } finally {
    await sql.end();
  }
  });
}
