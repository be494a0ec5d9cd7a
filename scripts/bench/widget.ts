/**
 * `npm run bench -- widget`: the whole widget path (session, then messages answered through the
 * model gateway's metering by the local stand-in, an instant upstream), on a throwaway stack:
 *
 *   1. messages per second, `--concurrency` visitors each sending messages one after another;
 *   2. database round trips per message, counted by pg_stat_statements (every statement the
 *      database ran for the messages); target ≤ 2 (widget_message_begin, widget_message_end);
 *   3. a burst of 100 concurrent messages from one visitor against a limit of `--limit` a minute,
 *      printing `admitted N of 100` (target: N = the limit).
 *
 * Exits non-zero when a target is missed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { startOnFreePorts } from "../stack/index.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
const CASEY = "c0000000-0000-4000-8000-000000000001";
const ORIGIN = "https://bench.shop.test";

export interface WidgetBenchOptions {
  messages: number;
  concurrency: number;
  limit: number;
}

export async function benchWidget(opts: WidgetBenchOptions): Promise<boolean> {
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const stack = await startOnFreePorts({ root, stateDir, log: () => {} });
  const sql = postgres(stack.info.dbUrl, { max: 2, onnotice: () => {} });
  try {
    await sql`create extension if not exists pg_stat_statements with schema extensions`;
    // Acme's limits out of the way; a fresh widget key for its agent, made by its project admin.
    await sql`update public.model_limits set allowed_models = null, monthly_budget_micro = 1000000000000, soft_budget_micro = null,
                     requests_per_minute = 100000, burst = 10000 where org_id = ${ACME}`;
    await sql`delete from public.model_caps where org_id = ${ACME}`;
    await sql`update public.widget_keys set disabled_at = now() where org_id = ${ACME}`;
    const [{ v: made }] = await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: CASEY, role: "authenticated" })}, true),
                      set_config('role', 'authenticated', true)`;
      await tx`select private.set_context(${ACME})`;
      return tx`select public.create_widget_key(${ACME_AGENT}, ${tx.array([ORIGIN])}) as v`;
    });
    await sql`update public.widget_keys set requests_per_minute = 100000, visitor_requests_per_minute = 10000, monthly_budget_micro = 1000000000000
               where id = ${made.id}`;

    const base = `${stack.info.functionsUrl}/widget/v1`;
    const post = async (path: string, body: unknown, token?: string) => {
      const res = await fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: ORIGIN, ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
      return (await res.json()) as Record<string, any>;
    };
    const session = async () => (await post("/sessions", { key: made.key })).session as string;
    const say = (token: string, conversation?: string) =>
      post("/messages", { content: "Do you ship to Norway?", ...(conversation ? { conversation_id: conversation } : {}) }, token);

    // Warm up (the workers' signing key, connections).
    const warm = await session();
    for (let i = 0; i < 10; i++) await say(warm);

    // 1. Throughput.
    const tokens = await Promise.all(Array.from({ length: opts.concurrency }, session));
    const perVisitor = Math.ceil(opts.messages / opts.concurrency);
    let answered = 0;
    const started = performance.now();
    await Promise.all(tokens.map(async (token) => {
      let conversation: string | undefined;
      for (let i = 0; i < perVisitor; i++) {
        const reply = await say(token, conversation);
        conversation = reply.conversation_id;
        if (reply.reply?.role === "assistant") answered++;
      }
    }));
    const seconds = (performance.now() - started) / 1000;
    console.log(`throughput: ${(answered / seconds).toFixed(1)} messages/s (${answered} answered by ${opts.concurrency} visitors in ${seconds.toFixed(2)} s)`);

    // 2. Round trips per message.
    const counted = 50;
    const token = await session();
    await sql`select extensions.pg_stat_statements_reset()`;
    let conversation: string | undefined;
    for (let i = 0; i < counted; i++) conversation = (await say(token, conversation)).conversation_id;
    const [{ statements }] = await sql`
      select coalesce(sum(s.calls), 0)::int as statements from extensions.pg_stat_statements s
       where s.dbid = (select oid from pg_database where datname = current_database())
         and s.query not ilike '%pg_stat_statements%' and s.query not ilike '%seal_pending%'`;
    const perMessage = statements / counted;
    console.log(`db round trips per message: ${perMessage.toFixed(2)} (${statements} statements for ${counted} messages; target ≤ 2)`);

    // 3. A burst from one visitor against their limit.
    await sql`update public.widget_keys set visitor_requests_per_minute = ${opts.limit} where id = ${made.id}`;
    const burst = await session();
    const replies = await Promise.all(Array.from({ length: 100 }, () => say(burst)));
    const admitted = replies.filter((r) => r.reply?.role === "assistant").length;
    const busy = replies.filter((r) => r.degraded === "busy").length;
    console.log(`burst: admitted ${admitted} of 100 (limit ${opts.limit} a minute per visitor; ${busy} told to slow down, none an error)`);

    return perMessage <= 2 && admitted === opts.limit && admitted + busy === 100;
  } finally {
    await sql.end();
    await stack.stop();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
