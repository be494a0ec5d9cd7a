/**
 * The model gateway end to end: the official OpenAI SDK (as an agent runtime or the console
 * playground would use it) calls the real edge function in the throwaway stack, which calls
 * wire-accurate OpenAI and Anthropic fakes (tests/helpers/models.ts) through the egress guard.
 * Covers both adapters streaming and not, exact metering and its audit entry, bring-your-own-key
 * (verified live, refused when invalid, never readable), allowlists, the guard refusing a private
 * base URL, the burst limit, budgets, upstream failures releasing the reservation, and a client
 * that disconnects mid-stream.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { inputTokenBound } from "../../functions/_shared/models/wire.ts";
import { standInReply } from "../../scripts/stack/model_upstream.ts";
import { ACME, ACME_AGENT, ACME_PROJECT, GLOBEX, GLOBEX_AGENT, GLOBEX_PROJECT } from "../helpers/fixtures.ts";
import { type ModelVendors, startModelVendors } from "../helpers/models.ts";
import { accessToken, anonClient, type Client, rest, signedIn, stack, superuser } from "../helpers/stack.ts";
import { createMember } from "../helpers/console.ts";

const sql = superuser();
let vendors: ModelVendors;
let ada: Client;
let casey: Client;
let victor: Client;
const base = () => `${stack().functionsUrl}/model-gateway/v1`;

// Prices of the catalog (micro-units per million tokens).
const PRICES: Record<string, [number, number]> = { "gpt-4o-mini": [150000, 600000], "claude-haiku-4-5": [1000000, 5000000], "gpt-4.1": [2000000, 8000000] };
const cost = (model: string, input: number, output: number) => Math.ceil((input * PRICES[model][0] + output * PRICES[model][1]) / 1e6);

beforeAll(async () => {
  vendors = await startModelVendors();
  [ada, casey, victor] = await Promise.all(["ada@acme.test", "casey@both.test", "victor@acme.test"].map(signedIn));
});
afterAll(async () => {
  await Promise.all([ada, casey, victor].map((c) => c?.auth.signOut()));
  await vendors?.close();
  await sql.end();
});
beforeEach(() => vendors.upstream.behave({ kind: "reply" }));

/** A new running run of Acme's or Globex's agent, so that each test has its own meters and burst state per run. */
async function newRun(org: "acme" | "globex"): Promise<string> {
  const [agent, project, orgId, version] = org === "acme"
    ? [ACME_AGENT, ACME_PROJECT, ACME, "3a000000-0000-4000-8000-00000000001a"]
    : [GLOBEX_AGENT, GLOBEX_PROJECT, GLOBEX, "3b000000-0000-4000-8000-00000000001b"];
  const [run] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id)
                          values (${orgId}, ${project}, ${agent}, ${version}) returning id`;
  return run.id;
}

/** The OpenAI SDK as the agent runtime of a run. */
function runtime(runId: string): OpenAI {
  return new OpenAI({ baseURL: base(), apiKey: stack().serviceRoleKey, defaultHeaders: { "x-run-id": runId }, maxRetries: 0 });
}

/** The OpenAI SDK as a member in the console playground. */
async function playground(member: Client, orgId: string, agentId: string): Promise<OpenAI> {
  return new OpenAI({ baseURL: base(), apiKey: await accessToken(member), defaultHeaders: { "x-org-id": orgId, "x-agent-id": agentId }, maxRetries: 0 });
}

/** The calls metered for a run, oldest first. */
async function callsOf(runId: string) {
  return await sql`select * from public.model_calls where run_id = ${runId} order by created_at`;
}

/** An organization's meter this month: spent, and spent plus reserved. */
async function orgMeter(orgId: string): Promise<{ committed: number; spent: number }> {
  const [m] = await sql`select committed_micro::int as committed, spent_micro::int as spent from private.model_meters
                         where scope = 'organization' and scope_id = ${orgId} and period = date_trunc('month', now())::date`;
  return m ? { committed: m.committed, spent: m.spent } : { committed: 0, spent: 0 };
}

/** What the gateway answered, as the SDK raised it. */
async function failure(p: Promise<unknown>): Promise<{ status: number; code: string; error: Record<string, unknown>; headers: Headers }> {
  try {
    await p;
  } catch (e) {
    const err = e as { status: number; code: string; error: Record<string, unknown>; headers: Headers };
    return { status: err.status, code: err.code, error: err.error, headers: err.headers };
  }
  throw new Error("the call succeeded");
}

const hello = [{ role: "system" as const, content: "Be brief." }, { role: "user" as const, content: "Where is my parcel?" }];
const expected = (maxTokens: number) => standInReply({ texts: hello.map((m) => m.content), maxTokens, label: "local stand-in model", lastUserText: hello[1].content });

async function settledAll(orgId: string): Promise<void> {
  // No reservation of the organization is left open.
  for (let i = 0; i < 50; i++) {
    const [{ open }] = await sql`select count(*)::int as open from private.model_reservations where org_id = ${orgId}`;
    if (open === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("a reservation stayed open");
}

describe("the OpenAI-compatible adapter", () => {
  it("answers a non-streamed call and meters exactly the vendor's usage", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    const answer = await runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 50 });
    const want = expected(50);
    expect(answer.choices[0].message.content).toBe(want.words.join(""));
    expect(answer.model).toBe("gpt-4o-mini");
    expect(answer.usage).toMatchObject({ prompt_tokens: want.inputTokens, completion_tokens: want.outputTokens });
    // The platform's key went upstream, with the vendor's model name and the cap.
    const sent = vendors.upstream.requests.at(-1)!;
    expect(sent).toMatchObject({ wire: "openai", apiKey: vendors.platformKeys.openai, body: { model: "gpt-4o-mini", max_tokens: 50 } });

    const [row] = await callsOf(run);
    expect(row).toMatchObject({
      org_id: ACME, project_id: ACME_PROJECT, agent_id: ACME_AGENT, provider: "openai", model: "gpt-4o-mini", key_source: "platform",
      stream: false, input_tokens: want.inputTokens, output_tokens: want.outputTokens, usage_estimated: false, outcome: "succeeded",
    });
    expect(Number(row.cost_micro)).toBe(cost("gpt-4o-mini", want.inputTokens, want.outputTokens));
    expect(Number(row.reserved_micro)).toBeGreaterThanOrEqual(Number(row.cost_micro));
    // Settled: the meter moved by the cost, and nothing stays reserved.
    const after = await orgMeter(ACME);
    expect(after.spent - before.spent).toBe(Number(row.cost_micro));
    expect(after.committed - before.committed).toBe(Number(row.cost_micro));
    // Audited as model.call, with the metered fields and without the prompt or the output.
    const [audit] = await sql`select action, payload::text as payload from audit.records where target_id = ${row.id}`;
    expect(audit.action).toBe("model.call");
    expect(JSON.parse(audit.payload)).toMatchObject({ input_tokens: want.inputTokens, output_tokens: want.outputTokens, model: "gpt-4o-mini" });
    expect(audit.payload).not.toContain("parcel");
    expect(audit.payload).not.toContain("stand-in");
  });

  it("streams, with the usage chunk when asked for, and meters the final usage", async () => {
    const run = await newRun("acme");
    const stream = await runtime(run).chat.completions.create({
      model: "gpt-4o-mini", messages: hello, max_tokens: 30, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
      expect(chunk.model).toBe("gpt-4o-mini");
    }
    const want = expected(30);
    expect(text).toBe(want.words.join(""));
    expect(chunks).toBeGreaterThan(want.words.length);
    expect(usage).toMatchObject({ prompt_tokens: want.inputTokens, completion_tokens: want.outputTokens });
    // Upstream always asks for usage, whatever the caller did.
    expect(vendors.upstream.requests.at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    await settledAll(ACME);
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ stream: true, input_tokens: want.inputTokens, output_tokens: want.outputTokens, outcome: "succeeded", usage_estimated: false });
  });

  it("streams without the usage chunk when the caller did not ask, and still meters it", async () => {
    const run = await newRun("acme");
    vendors.upstream.behave({ kind: "usage", input: 50, output: 20 });
    const stream = await runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 80, stream: true });
    for await (const chunk of stream) expect(chunk.usage ?? null).toBeNull();
    await settledAll(ACME);
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ input_tokens: 50, output_tokens: 20 });
    expect(Number(row.cost_micro)).toBe(cost("gpt-4o-mini", 50, 20));
  });

  it("charges a vendor's report of more than the reservation's bound at most the reservation", async () => {
    const run = await newRun("acme");
    vendors.upstream.behave({ kind: "usage", input: 123456, output: 80 });
    await runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 80 });
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ input_tokens: 123456, output_tokens: 80 });
    expect(Number(row.cost_micro)).toBe(Number(row.reserved_micro));
    expect(Number(row.reserved_micro)).toBe(cost("gpt-4o-mini", inputTokenBound(hello), 80));
  });

  it("lists the models the organization allows", async () => {
    const run = await newRun("acme");
    const ids: string[] = [];
    for await (const m of runtime(run).models.list()) ids.push(m.id);
    expect(ids).toEqual(["claude-haiku-4-5", "gpt-4o-mini"]);
    expect(await failure(runtime("00000000-0000-4000-8000-000000000000").models.list())).toMatchObject({ status: 404, code: "run_not_found" });
  });
});

describe("time spent in Gatehouse", () => {
  /** The Server-Timing metrics of an answer, by name. */
  const timings = (res: Response) => Object.fromEntries((res.headers.get("server-timing") ?? "").split(",").map((m) => {
    const [name, ...params] = m.trim().split(";");
    const dur = params.find((p) => p.startsWith("dur="));
    return [name, dur ? Number(dur.slice(4)) : NaN];
  }));
  const call = (runId: string, body: unknown) => fetch(`${base()}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack().serviceRoleKey}`, apikey: stack().anonKey, "x-run-id": runId, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

  it("says on every answer how long it spent in Gatehouse, apart from the vendor's share", async () => {
    const run = await newRun("acme");
    vendors.upstream.behave({ kind: "slow", chunkDelayMs: 300 });
    try {
      const answered = await call(run, { model: "gpt-4o-mini", messages: hello, max_tokens: 5 });
      expect(answered.status).toBe(200);
      await answered.text();
      const t = timings(answered);
      expect(t.vendor).toBeGreaterThanOrEqual(300);
      expect(t.gatehouse).toBeGreaterThanOrEqual(0);
      // The vendor's 300 ms are not Gatehouse's.
      expect(t.gatehouse).toBeLessThan(300);

      const streamed = await call(run, { model: "gpt-4o-mini", messages: hello, max_tokens: 2, stream: true });
      expect(streamed.status).toBe(200);
      await streamed.text();
      expect(timings(streamed).gatehouse).toBeGreaterThanOrEqual(0);
    } finally {
      vendors.upstream.behave({ kind: "reply" });
    }
    const refused = await call(run, "{not json");
    expect(refused.status).toBe(400);
    expect(timings(refused).gatehouse).toBeGreaterThanOrEqual(0);
  });
});

describe("bring-your-own-key and the Anthropic adapter", () => {
  const tenantKey = `sk-ant-tenant-${Math.random().toString(36).slice(2)}xyzw`;

  async function saveKey(member: Client, body: unknown) {
    const res = await fetch(`${stack().functionsUrl}/model-gateway/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${await accessToken(member)}`, "x-org-id": ACME, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  it("refuses a key the provider rejects, and keeps the one saved before", async () => {
    const [before] = await sql`select k.key_hint, s.decrypted_secret from public.model_provider_keys k join vault.decrypted_secrets s on s.id = k.secret_id
                                where k.org_id = ${ACME} and k.provider = 'anthropic'`;
    const answer = await saveKey(ada, { provider: "anthropic", api_key: "sk-ant-not-a-real-key-0000" });
    expect(answer).toMatchObject({ status: 422, body: { error: { code: "model_key_rejected" } } });
    const [after] = await sql`select k.key_hint, s.decrypted_secret from public.model_provider_keys k join vault.decrypted_secrets s on s.id = k.secret_id
                               where k.org_id = ${ACME} and k.provider = 'anthropic'`;
    expect(after).toEqual(before);
  });

  it("lets only a tenant admin save a key", async () => {
    vendors.keys.add(tenantKey);
    expect(await saveKey(casey, { provider: "anthropic", api_key: tenantKey })).toMatchObject({ status: 403, body: { error: { code: "forbidden" } } });
  });

  it("saves a key after a live check, and never returns it", async () => {
    vendors.keys.add(tenantKey);
    const checks = vendors.upstream.requests.length;
    const answer = await saveKey(ada, { provider: "anthropic", api_key: tenantKey });
    expect(answer.status).toBe(201);
    expect(answer.body.key).toMatchObject({ org_id: ACME, provider: "anthropic", key_hint: "…xyzw" });
    expect(JSON.stringify(answer.body)).not.toContain(tenantKey);
    // The live check: the provider's models list, with the tenant's key.
    expect(vendors.upstream.requests.slice(checks)).toEqual([expect.objectContaining({ wire: "anthropic", method: "GET", path: "/anthropic/v1/models", apiKey: tenantKey })]);
    // In Vault, and not readable by the organization's own admin.
    const { data, error } = await ada.from("model_provider_keys").select("*").eq("provider", "anthropic").setHeader("x-org-id", ACME);
    expect(data).toBeNull();
    expect(error?.code).toBe("42501");
    const { data: listed } = await ada.from("model_provider_keys").select("provider, key_hint, verified_at").setHeader("x-org-id", ACME);
    expect(JSON.stringify(listed)).not.toContain(tenantKey);
    const [{ n }] = await sql`select count(*)::int as n from public.model_provider_keys k join vault.decrypted_secrets s on s.id = k.secret_id
                               where k.org_id = ${ACME} and s.decrypted_secret = ${tenantKey}`;
    expect(n).toBe(1);
  });

  it("calls Anthropic with the organization's own key, streaming and not, and meters it as byok", async () => {
    const run = await newRun("acme");
    const client = runtime(run);
    // Four words of the reply: cut by max_tokens, which OpenAI's wire calls "length".
    const plain = await client.chat.completions.create({ model: "claude-haiku-4-5", messages: hello, max_tokens: 4 });
    const want = expected(4);
    expect(plain.choices[0]).toMatchObject({ message: { role: "assistant", content: want.words.join("") }, finish_reason: "length" });
    expect(plain.usage).toMatchObject({ prompt_tokens: want.inputTokens, completion_tokens: want.outputTokens });
    const sent = vendors.upstream.requests.at(-1)!;
    expect(sent).toMatchObject({ wire: "anthropic", path: "/anthropic/v1/messages", apiKey: tenantKey, body: { system: "Be brief.", max_tokens: 4 } });

    const stream = await client.chat.completions.create({
      model: "claude-haiku-4-5", messages: hello, max_tokens: 4, stream: true, stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish ??= chunk.choices[0]?.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(want.words.join(""));
    expect(finish).toBe("length");
    expect(usage).toMatchObject({ prompt_tokens: want.inputTokens, completion_tokens: want.outputTokens });
    await settledAll(ACME);
    const rows = await callsOf(run);
    expect(rows.map((r) => [r.provider, r.key_source, r.stream, r.input_tokens, r.output_tokens, r.outcome])).toEqual([
      ["anthropic", "byok", false, want.inputTokens, want.outputTokens, "succeeded"],
      ["anthropic", "byok", true, want.inputTokens, want.outputTokens, "succeeded"],
    ]);
    expect(Number(rows[0].cost_micro)).toBe(cost("claude-haiku-4-5", want.inputTokens, want.outputTokens));
  });

  it("refuses a base URL at a private address, when saving and when calling", async () => {
    vendors.keys.add(tenantKey);
    const saved = await saveKey(ada, { provider: "openai", api_key: tenantKey, base_url: "https://10.1.2.3/v1" });
    expect(saved).toMatchObject({ status: 502, body: { error: { code: "model_upstream_blocked" } } });
    // A row that slipped past (written directly): the call is refused too, and released.
    await sql`insert into public.model_provider_keys (org_id, provider, base_url, key_hint, secret_id, verified_at)
              values (${ACME}, 'openai', 'https://169.254.169.254/v1', '…test', vault.create_secret(${tenantKey}), now())`;
    try {
      const run = await newRun("acme");
      const before = await orgMeter(ACME);
      const seen = vendors.upstream.requests.length;
      expect(await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 })))
        .toMatchObject({ status: 502, code: "model_upstream_blocked" });
      expect(vendors.upstream.requests.length).toBe(seen);
      expect(await orgMeter(ACME)).toEqual(before);
      expect((await callsOf(run))[0]).toMatchObject({ outcome: "failed", error_code: "model_upstream_blocked", cost_micro: "0", key_source: "byok" });
    } finally {
      await sql`delete from vault.secrets where id in (select secret_id from public.model_provider_keys where org_id = ${ACME} and provider = 'openai')`;
      await sql`delete from public.model_provider_keys where org_id = ${ACME} and provider = 'openai'`;
    }
  });
});

describe("admission", () => {
  it("refuses a model outside the organization's allowlist before reserving anything", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    const seen = vendors.upstream.requests.length;
    expect(await failure(runtime(run).chat.completions.create({ model: "gpt-4.1", messages: hello })))
      .toMatchObject({ status: 403, code: "model_not_allowed" });
    expect(vendors.upstream.requests.length).toBe(seen);
    expect(await orgMeter(ACME)).toEqual(before);
    expect(await callsOf(run)).toHaveLength(0);
  });

  it("refuses a model outside the agent's allowlist", async () => {
    await sql`update public.model_caps set allowed_models = '{gpt-4.1}' where agent_id = ${GLOBEX_AGENT}`;
    try {
      const run = await newRun("globex");
      expect(await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
        .toMatchObject({ status: 403, code: "model_not_allowed" });
    } finally {
      await sql`update public.model_caps set allowed_models = null where agent_id = ${GLOBEX_AGENT}`;
    }
  });

  it("answers bad calls with OpenAI-shaped errors and stable codes", async () => {
    const run = await newRun("acme");
    const client = runtime(run);
    expect(await failure(client.chat.completions.create({ model: "no-such-model", messages: hello }))).toMatchObject({ status: 404, code: "model_not_found" });
    expect(await failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10_000_000 }))).toMatchObject({ status: 400, code: "invalid_body" });
    expect(await failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 100_000 }))).toMatchObject({ status: 400, code: "max_tokens_too_large" });
    const noRun = new OpenAI({ baseURL: base(), apiKey: stack().serviceRoleKey, maxRetries: 0 });
    expect(await failure(noRun.chat.completions.create({ model: "gpt-4o-mini", messages: hello }))).toMatchObject({ status: 400, code: "missing_run_id" });
    const unknownRun = runtime("00000000-0000-4000-8000-000000000000");
    expect(await failure(unknownRun.chat.completions.create({ model: "gpt-4o-mini", messages: hello }))).toMatchObject({ status: 404, code: "run_not_found" });
    await sql`update public.agent_runs set status = 'succeeded', ended_at = now() where id = ${run}`;
    const ended = await failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: hello }));
    expect(ended).toMatchObject({ status: 409, code: "run_not_active", error: { type: "invalid_request_error" } });
  });

  it("lets a project contributor call from the playground, and not a viewer or an outsider", async () => {
    const answer = await (await playground(casey, ACME, ACME_AGENT)).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 5 });
    expect(answer.choices[0].message.content).toBe(expected(5).words.join(""));
    const [row] = await sql`select * from public.model_calls where user_id = (select id from auth.users where email = 'casey@both.test') order by created_at desc limit 1`;
    expect(row).toMatchObject({ org_id: ACME, agent_id: ACME_AGENT, run_id: null, output_tokens: 5 });
    const [audit] = await sql`select actor from audit.records where target_id = ${row.id}`;
    expect(audit.actor).toBe(row.user_id);

    expect(await failure((await playground(victor, ACME, ACME_AGENT)).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toMatchObject({ status: 403, code: "forbidden" });
    expect(await failure((await playground(victor, GLOBEX, GLOBEX_AGENT)).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toMatchObject({ status: 403, code: "context_not_a_member" });
    // An agent of another organization, named in one's own: no such agent.
    expect(await failure((await playground(ada, ACME, GLOBEX_AGENT)).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toMatchObject({ status: 404, code: "agent_not_found" });
  });

  it("lists the models only to whoever may call them: a project contributor, not a viewer or an outsider", async () => {
    const ids: string[] = [];
    for await (const m of (await playground(casey, ACME, ACME_AGENT)).models.list()) ids.push(m.id);
    expect(ids).toContain("gpt-4o-mini");
    expect(await failure((await playground(victor, ACME, ACME_AGENT)).models.list())).toMatchObject({ status: 403, code: "forbidden" });
    expect(await failure((await playground(victor, GLOBEX, GLOBEX_AGENT)).models.list())).toMatchObject({ status: 403, code: "context_not_a_member" });
    expect(await failure((await playground(ada, ACME, GLOBEX_AGENT)).models.list())).toMatchObject({ status: 404, code: "agent_not_found" });
  });
});

describe("limits", () => {
  it("refuses a burst over the limit with 429 and retry_after, audited", async () => {
    await sql`update public.model_limits set requests_per_minute = 6, burst = 2 where org_id = ${GLOBEX}`;
    await sql`delete from private.model_rates where scope_id = ${GLOBEX}`;
    try {
      const client = runtime(await newRun("globex"));
      const call = () => client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 3 });
      await call();
      await call();
      const refused = await failure(call());
      expect(refused).toMatchObject({ status: 429, code: "model_rate_limited", error: { type: "rate_limit_error" } });
      expect(Number(refused.error.retry_after)).toBeGreaterThanOrEqual(1);
      expect(Number(refused.error.retry_after)).toBeLessThanOrEqual(10);
      expect(refused.headers.get("retry-after")).toBe(String(refused.error.retry_after));
      const [audit] = await sql`select payload::text as p from audit.records where org_id = ${GLOBEX} and action = 'model.refused' order by id desc limit 1`;
      expect(JSON.parse(audit.p)).toMatchObject({ reason: "model_rate_limited", refused_calls: 1 });
      // More refusals in the same minute are counted, not each written to the chain.
      const entries = async () => (await sql`select count(*)::int as n from audit.records where org_id = ${GLOBEX} and action = 'model.refused'`)[0].n;
      const written = await entries();
      for (let i = 0; i < 5; i++) expect(await failure(call())).toMatchObject({ status: 429 });
      expect(await entries()).toBe(written);
      expect((await sql`select refused from private.model_rates where org_id = ${GLOBEX} and scope = 'organization'`)[0].refused).toBe(5);
    } finally {
      await sql`update public.model_limits set requests_per_minute = 600, burst = 60 where org_id = ${GLOBEX}`;
      await sql`delete from private.model_rates where scope_id = ${GLOBEX}`;
    }
  });

  it("refuses a call the monthly budget can't cover with 402, reserving nothing", async () => {
    const before = await orgMeter(GLOBEX);
    // Room for a small call, not for one that may write 8,000 tokens.
    await sql`update public.model_limits set monthly_budget_micro = ${before.committed + 1000} where org_id = ${GLOBEX}`;
    try {
      const client = runtime(await newRun("globex"));
      await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 });
      const refused = await failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 8000 }));
      expect(refused).toMatchObject({ status: 402, code: "model_budget_exhausted", error: { scope: "organization", type: "insufficient_quota" } });
      const after = await orgMeter(GLOBEX);
      expect(after.committed).toBe(after.spent);
      expect(after.committed).toBeLessThanOrEqual(before.committed + 1000);
      const [audit] = await sql`select payload::text as p from audit.records where org_id = ${GLOBEX} and action = 'model.refused' order by id desc limit 1`;
      expect(JSON.parse(audit.p)).toMatchObject({ reason: "model_budget_exhausted", scope: "organization" });
    } finally {
      await sql`update public.model_limits set monthly_budget_micro = 50000000 where org_id = ${GLOBEX}`;
    }
  });

  it("never lets concurrent calls together overspend the budget", async () => {
    // 60 calls at once against a budget that fits 20 at their maximum cost, each of which uses
    // exactly its maximum: 20 are admitted, and spend ends at the budget, not past it.
    const maxTokens = 1000;
    const bound = inputTokenBound(hello);
    const each = cost("gpt-4o-mini", bound, maxTokens);
    const before = await orgMeter(GLOBEX);
    await sql`update public.model_limits set monthly_budget_micro = ${before.committed + 20 * each}, requests_per_minute = 100000, burst = 1000
               where org_id = ${GLOBEX}`;
    vendors.upstream.behave({ kind: "usage", input: bound, output: maxTokens });
    try {
      const client = runtime(await newRun("globex"));
      const outcomes = await Promise.allSettled(
        Array.from({ length: 60 }, () => client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: maxTokens })),
      );
      const admitted = outcomes.filter((o) => o.status === "fulfilled").length;
      const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [(o.reason as { code: string }).code] : []));
      expect(admitted).toBe(20);
      expect(new Set(refused)).toEqual(new Set(["model_budget_exhausted"]));
      await settledAll(GLOBEX);
      const after = await orgMeter(GLOBEX);
      expect(after.spent - before.spent).toBe(20 * each);
      expect(after.committed).toBe(before.committed + 20 * each);
    } finally {
      await sql`update public.model_limits set monthly_budget_micro = 50000000, requests_per_minute = 600, burst = 60 where org_id = ${GLOBEX}`;
    }
  });

  it("caps each run of an agent with its run budget", async () => {
    // Globex's agent: 1,000,000 micro-units per run (seeded); make it room for about one call
    // that writes 2,500 tokens (about 1,500 micro-units).
    await sql`update public.model_caps set run_budget_micro = 2000 where agent_id = ${GLOBEX_AGENT}`;
    try {
      const client = runtime(await newRun("globex"));
      const big = () => client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 2500 });
      vendors.upstream.behave({ kind: "usage", input: 100, output: 2500 });
      await big();
      expect(await failure(big())).toMatchObject({ status: 402, code: "model_budget_exhausted", error: { scope: "run" } });
      // Another run starts with its own budget.
      await runtime(await newRun("globex")).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 2500 });
    } finally {
      await sql`update public.model_caps set run_budget_micro = 1000000 where agent_id = ${GLOBEX_AGENT}`;
    }
  });

  it("records the soft threshold once per month when spend crosses it", async () => {
    const period = await sql`select date_trunc('month', now())::date as p`;
    await sql`delete from public.model_budget_events where org_id = ${GLOBEX} and period = ${period[0].p}`.catch(() => {});
    const spent = (await orgMeter(GLOBEX)).spent;
    await sql`update public.model_limits set soft_budget_micro = ${spent + 1} where org_id = ${GLOBEX}`;
    try {
      const client = runtime(await newRun("globex"));
      await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 });
      await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 });
      const events = await sql`select threshold_micro::int as t, spent_micro::int as s from public.model_budget_events
                                where org_id = ${GLOBEX} and period = ${period[0].p}`;
      expect(events).toHaveLength(1);
      expect(events[0].t).toBe(spent + 1);
      expect(events[0].s).toBeGreaterThan(spent);
    } finally {
      await sql`update public.model_limits set soft_budget_micro = null where org_id = ${GLOBEX}`;
    }
  });
});

describe("upstream failures and cancellations", () => {
  it("answers a vendor's 5xx with 502, meters the failed call and releases its reservation", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    vendors.upstream.behave({ kind: "status", status: 500 });
    const answer = await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 500 }));
    expect(answer).toMatchObject({ status: 502, code: "model_upstream_unavailable", error: { type: "api_error" } });
    expect(JSON.stringify(answer.error)).not.toMatch(/stack|at .*\.ts/);
    expect((await callsOf(run))[0]).toMatchObject({ outcome: "failed", error_code: "model_upstream_unavailable", cost_micro: "0", output_tokens: 0 });
    expect(await orgMeter(ACME)).toEqual(before);
  });

  it("charges the prompt of a call whose client hangs up before the answer", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    vendors.upstream.behave({ kind: "slow", chunkDelayMs: 1500 });
    const controller = new AbortController();
    const pending = runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 500 }, { signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await pending.catch(() => {});
    await settledAll(ACME);
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ outcome: "cancelled", usage_estimated: true, input_tokens: inputTokenBound(hello), output_tokens: 0 });
    expect(Number(row.cost_micro)).toBe(cost("gpt-4o-mini", inputTokenBound(hello), 0));
    expect((await orgMeter(ACME)).spent - before.spent).toBe(Number(row.cost_micro));
  });

  it("answers a vendor that never answers with 504 and charges the prompt it received", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    vendors.upstream.behave({ kind: "hang" });
    const answer = await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 500 }));
    expect(answer).toMatchObject({ status: 504, code: "model_upstream_timeout" });
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ outcome: "failed", error_code: "model_upstream_timeout", usage_estimated: true, input_tokens: inputTokenBound(hello), output_tokens: 0 });
    // The vendor bills a prompt it received, as when the client hangs up: at least the prompt's bound.
    expect(Number(row.cost_micro)).toBe(cost("gpt-4o-mini", inputTokenBound(hello), 0));
    const after = await orgMeter(ACME);
    expect({ committed: after.committed - before.committed, spent: after.spent - before.spent })
      .toEqual({ committed: Number(row.cost_micro), spent: Number(row.cost_micro) });
  });

  it("answers a request the vendor finds invalid with 400, released", async () => {
    const run = await newRun("acme");
    vendors.upstream.behave({ kind: "status", status: 400, message: "This model's maximum context length is 128000 tokens." });
    const answer = await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello }));
    expect(answer).toMatchObject({ status: 400, code: "model_request_rejected" });
    expect(JSON.stringify(answer.error)).not.toContain("context length");
    expect((await callsOf(run))[0]).toMatchObject({ outcome: "failed", error_code: "model_request_rejected", cost_micro: "0" });
  });

  it("answers a dropped connection with 502", async () => {
    const run = await newRun("acme");
    vendors.upstream.behave({ kind: "reset" });
    expect(await failure(runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages: hello }))).toMatchObject({ status: 502, code: "model_upstream_unavailable" });
  });

  it("settles what a stream used when the client disconnects mid-stream", async () => {
    const run = await newRun("acme");
    const before = await orgMeter(ACME);
    vendors.upstream.behave({ kind: "slow", chunkDelayMs: 150 });
    const aborted = vendors.upstream.stats.streamsAborted;
    const controller = new AbortController();
    const long = [{ role: "user" as const, content: "Please tell me, in as many words as you like, where my parcel is and when it arrives." }];
    const full = standInReply({ texts: [long[0].content], maxTokens: 200, label: "local stand-in model" }).words.join("");
    const stream = await runtime(run).chat.completions.create(
      { model: "gpt-4o-mini", messages: long, max_tokens: 200, stream: true },
      { signal: controller.signal },
    );
    let received = "";
    try {
      for await (const chunk of stream) {
        received += chunk.choices[0]?.delta?.content ?? "";
        if (received.split(" ").length > 3) controller.abort();
      }
    } catch {
      // The SDK raises the abort.
    }
    await settledAll(ACME);
    const [row] = await callsOf(run);
    expect(row).toMatchObject({ outcome: "cancelled", usage_estimated: true, stream: true });
    // No usage came: the output is bounded by the bytes received, at least what the client read
    // and well short of the whole answer; the prompt is charged at its bound.
    expect(row.output_tokens).toBeGreaterThanOrEqual(new TextEncoder().encode(received).byteLength);
    expect(row.output_tokens).toBeLessThan(new TextEncoder().encode(full).byteLength);
    expect(row.input_tokens).toBe(inputTokenBound(long));
    expect(Number(row.cost_micro)).toBeLessThan(Number(row.reserved_micro));
    const after = await orgMeter(ACME);
    expect(after.spent - before.spent).toBe(Number(row.cost_micro));
    expect(after.committed - before.committed).toBe(Number(row.cost_micro));
    // The upstream stream was cut too, not left running.
    for (let i = 0; i < 30 && vendors.upstream.stats.streamsAborted === aborted; i++) await new Promise((r) => setTimeout(r, 100));
    expect(vendors.upstream.stats.streamsAborted).toBe(aborted + 1);
  });
});

describe("remove_model_provider_key", () => {
  /** Two organizations of this test's own, each with its own OpenAI key; a tenant admin of both, and one of the second only. */
  async function twoOrganizations() {
    const [x, y] = [crypto.randomUUID(), crypto.randomUUID()];
    for (const org of [x, y]) {
      await sql`insert into public.organizations (id, name, slug) values (${org}, 'Keys', ${`keys-${org.slice(0, 8)}`})`;
      await sql`insert into public.model_provider_keys (org_id, provider, key_hint, secret_id, verified_at)
                values (${org}, 'openai', '…test', vault.create_secret(${`sk-${org}`}), now())`;
    }
    const both = await createMember(sql, x, "tenant_admin", "keys-both");
    await sql`insert into public.organization_members (org_id, user_id, role) values (${y}, ${both.userId}, 'tenant_admin')`;
    const yOnly = await createMember(sql, y, "tenant_admin", "keys-y");
    const signIn = async (m: { email: string; password: string }) => {
      const client = anonClient();
      const { error } = await client.auth.signInWithPassword({ email: m.email, password: m.password });
      if (error) throw error;
      return client;
    };
    return { x, y, both: await signIn(both), yOnly: await signIn(yOnly) };
  }
  const remove = async (member: Client, orgHeader: string | null, orgArgument: string) =>
    rest("rpc/remove_model_provider_key", { authorization: `Bearer ${await accessToken(member)}`, ...(orgHeader ? { "x-org-id": orgHeader } : {}) },
         { method: "POST", body: JSON.stringify({ p_provider: "openai", p_org_id: orgArgument }) });
  const keysOf = async (...orgs: string[]) =>
    (await sql`select org_id from public.model_provider_keys where org_id = any (${orgs}) order by org_id`).map((r) => r.org_id);

  it("refuses an organization argument that is not the context's, and removes neither key", async () => {
    const { x, y, both } = await twoOrganizations();
    expect(await remove(both, x, y)).toMatchObject({ status: 409, body: { code: "context_org_mismatch" } });
    expect(await keysOf(x, y)).toEqual([x, y].sort());
  });

  it("acts on the organization it names for that organization's admin, with or without the header", async () => {
    const { x, y, both, yOnly } = await twoOrganizations();
    expect(await remove(yOnly, null, y)).toMatchObject({ status: 200, body: true });
    expect(await keysOf(x, y)).toEqual([x]);
    expect(await remove(both, x, x)).toMatchObject({ status: 200, body: true });
    expect(await keysOf(x)).toEqual([]);
    // Not an admin (not even a member) of the organization named: refused.
    expect((await remove(yOnly, null, x)).status).toBe(403);
  });
});

describe("tool calling (the OpenAI wire, on both vendors)", () => {
  const weather: OpenAI.ChatCompletionTool = {
    type: "function",
    function: {
      name: "get_weather",
      description: "The weather in a city now",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  };
  const ask: OpenAI.ChatCompletionMessageParam[] = [
    { role: "system", content: "Use the tools." },
    { role: "user", content: 'use get_weather with {"city":"Paris"}' },
  ];
  const models = ["gpt-4o-mini", "claude-haiku-4-5"] as const;

  /** The run's one metered call, settled, charged exactly the usage the answer reported. */
  async function meteredOnce(run: string, model: string, usage: { prompt_tokens: number; completion_tokens: number }, stream: boolean) {
    await settledAll(ACME);
    const [row, ...more] = await callsOf(run);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ model, stream, outcome: "succeeded", usage_estimated: false, input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens });
    expect(Number(row.cost_micro)).toBe(cost(model, usage.prompt_tokens, usage.completion_tokens));
    return row;
  }

  it.each(models)("answers a tool call on %s, non-streamed, metered like any call", async (model) => {
    const run = await newRun("acme");
    const answer = await runtime(run).chat.completions.create({ model, messages: ask, tools: [weather], tool_choice: "auto", max_tokens: 100 });
    const choice = answer.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    expect(choice.message.tool_calls).toHaveLength(1);
    const [toolCall] = choice.message.tool_calls! as OpenAI.ChatCompletionMessageFunctionToolCall[];
    expect(toolCall).toMatchObject({ type: "function", function: { name: "get_weather" } });
    expect(toolCall.id).toMatch(/^(call|toolu)_[A-Za-z0-9]+$/);
    expect(JSON.parse(toolCall.function.arguments)).toEqual({ city: "Paris" });
    // The vendor was offered the tool in its own wire's shape.
    const sent = vendors.upstream.requests.at(-1)!.body as Record<string, unknown>;
    if (model.startsWith("claude")) {
      expect(sent).toMatchObject({ tools: [{ name: "get_weather", description: "The weather in a city now", input_schema: weather.function.parameters }], tool_choice: { type: "auto" } });
    } else {
      expect(sent).toMatchObject({ tools: [weather], tool_choice: "auto" });
    }
    await meteredOnce(run, model, answer.usage!, false);
  });

  it.each(models)("streams a tool call on %s that the SDK's stream helper assembles", async (model) => {
    const run = await newRun("acme");
    const stream = runtime(run).chat.completions.stream({
      model, messages: ask, tools: [weather], max_tokens: 100, stream_options: { include_usage: true },
    });
    let fragments = 0;
    stream.on("tool_calls.function.arguments.delta", () => fragments++);
    const final = await stream.finalChatCompletion();
    const choice = final.choices[0];
    expect(choice.finish_reason).toBe("tool_calls");
    const [toolCall] = choice.message.tool_calls! as OpenAI.ChatCompletionMessageFunctionToolCall[];
    expect(toolCall.function.name).toBe("get_weather");
    expect(toolCall.id).toMatch(/^(call|toolu)_[A-Za-z0-9]+$/);
    expect(JSON.parse(toolCall.function.arguments)).toEqual({ city: "Paris" });
    // The arguments came in fragments, as the vendors stream them.
    expect(fragments).toBeGreaterThan(1);
    await meteredOnce(run, model, final.usage!, true);
  });

  it.each(models)("completes a round trip on %s: the assistant's tool call and the tool's result give a text answer", async (model) => {
    const run = await newRun("acme");
    const client = runtime(run);
    const first = await client.chat.completions.create({ model, messages: ask, tools: [weather], max_tokens: 100 });
    const called = first.choices[0].message;
    const [toolCall] = called.tool_calls! as OpenAI.ChatCompletionMessageFunctionToolCall[];
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      ...ask,
      called,
      { role: "tool", tool_call_id: toolCall.id, content: "18°C and sunny" },
    ];
    const second = await client.chat.completions.create({ model, messages, tools: [weather], max_tokens: 100 });
    expect(second.choices[0].finish_reason).toBe("stop");
    expect(second.choices[0].message.content).toBe("[local stand-in model] The tool answered: 18°C and sunny");
    if (model.startsWith("claude")) {
      // Anthropic's wire: the call is a tool_use block, the result a tool_result block in a user turn.
      const sent = vendors.upstream.requests.at(-1)!.body as { messages: unknown[] };
      expect(sent.messages.slice(-2)).toEqual([
        { role: "assistant", content: [{ type: "tool_use", id: toolCall.id, name: "get_weather", input: { city: "Paris" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: toolCall.id, content: "18°C and sunny" }] },
      ]);
    }
    await settledAll(ACME);
    const rows = await callsOf(run);
    expect(rows.map((r) => r.outcome)).toEqual(["succeeded", "succeeded"]);
    expect(Number(rows[1].cost_micro)).toBe(cost(model, second.usage!.prompt_tokens, second.usage!.completion_tokens));
  });

  it("streams the text answer to a tool's result", async () => {
    const run = await newRun("acme");
    const stream = runtime(run).chat.completions.stream({
      model: "claude-haiku-4-5", max_tokens: 100,
      messages: [...ask, { role: "assistant", content: null, tool_calls: [{ id: "call_abc123", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
        { role: "tool", tool_call_id: "call_abc123", content: "rain" }],
    });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0].message.content).toBe("[local stand-in model] The tool answered: rain");
  });

  it("refuses malformed tools, tool choices and tool messages with 400, before anything is reserved", async () => {
    const run = await newRun("acme");
    const client = runtime(run);
    const call = (body: Record<string, unknown>) => failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: ask, max_tokens: 10, ...body } as never));
    const fn = (f: Record<string, unknown>) => [{ type: "function", function: { name: "get_weather", ...f } }];
    const bad: Record<string, unknown>[] = [
      { tools: fn({ name: "get weather!" }) },
      { tools: fn({ name: "x".repeat(65) }) },
      { tools: [{ type: "retrieval" }] },
      { tools: fn({ parameters: { type: "string" } }) },
      { tools: fn({ parameters: "{}" }) },
      { tools: fn({ description: "d".repeat(100_001) }) },
      { tools: [weather, weather] },
      { tools: Array.from({ length: 129 }, (_, i) => ({ type: "function", function: { name: `t${i}` } })) },
      { tools: [weather], tool_choice: "sometimes" },
      { tools: [weather], tool_choice: { type: "function", function: { name: "not_offered" } } },
      { tool_choice: "required" },
      { tools: [weather], parallel_tool_calls: "yes" },
      { messages: [...ask, { role: "tool", content: "18°C" }] },
      { messages: [...ask, { role: "tool", tool_call_id: "call_never_made", content: "18°C" }] },
      { messages: [...ask, { role: "assistant", content: null }] },
      { messages: [...ask, { role: "assistant", content: null, tool_calls: [{ id: "call 1", type: "function", function: { name: "get_weather", arguments: "{}" } }] }] },
      { messages: [...ask, { role: "assistant", content: null, tool_calls: [{ id: `call_${"a".repeat(200)}`, type: "function", function: { name: "get_weather", arguments: "{}" } }] }] },
      { messages: [...ask, { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "not json" } }] }] },
    ];
    for (const body of bad) {
      expect({ body, refused: await call(body) }).toMatchObject({ body, refused: { status: 400, code: "invalid_body" } });
    }
    expect(await callsOf(run)).toEqual([]);
  });
});

describe("the reservation's prompt bound with tools", () => {
  const big: OpenAI.ChatCompletionTool = {
    type: "function",
    function: { name: "search_orders", description: "Search the orders. ".repeat(2000), parameters: { type: "object", properties: { q: { type: "string" } } } },
  };

  it("reserves more for a call that offers tools than for the same call without", async () => {
    const run = await newRun("acme");
    const client = runtime(run);
    await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 });
    await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10, tools: [big] });
    const [without, withTools] = await callsOf(run);
    expect(Number(without.reserved_micro)).toBe(cost("gpt-4o-mini", inputTokenBound(hello), 10));
    // The tool's schema is at least 36,000 bytes, so at least that many tokens more.
    expect(Number(withTools.reserved_micro)).toBeGreaterThanOrEqual(cost("gpt-4o-mini", inputTokenBound(hello) + 36_000, 10));
  });

  it("counts a tool's result in the bound", async () => {
    const run = await newRun("acme");
    const result = "x".repeat(40_000);
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      ...hello,
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "search_orders", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "call_1", content: result },
    ];
    await runtime(run).chat.completions.create({ model: "gpt-4o-mini", messages, max_tokens: 10, tools: [big] });
    const [row] = await callsOf(run);
    expect(Number(row.reserved_micro)).toBeGreaterThanOrEqual(cost("gpt-4o-mini", inputTokenBound(hello) + 36_000 + 40_000, 10));
  });

  it("refuses with 402 a call whose tools the budget can't cover, when it could cover the call without them", async () => {
    const before = await orgMeter(GLOBEX);
    const withoutTools = cost("gpt-4o-mini", inputTokenBound(hello), 10);
    await sql`update public.model_limits set monthly_budget_micro = ${before.committed + withoutTools + 100} where org_id = ${GLOBEX}`;
    try {
      const client = runtime(await newRun("globex"));
      const refused = await failure(client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10, tools: [big] }));
      expect(refused).toMatchObject({ status: 402, code: "model_budget_exhausted" });
      // The same call without the tools fits.
      await client.chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 10 });
    } finally {
      await sql`update public.model_limits set monthly_budget_micro = 50000000 where org_id = ${GLOBEX}`;
    }
  });
});

describe("Anthropic's Messages wire at /v1/messages", () => {
  const models = ["claude-haiku-4-5", "gpt-4o-mini"] as const;
  /** @anthropic-ai/sdk, unchanged, as the agent runtime of a run. */
  const claudeSdk = (runId: string) =>
    new Anthropic({ baseURL: `${stack().functionsUrl}/model-gateway`, apiKey: stack().serviceRoleKey, defaultHeaders: { "x-run-id": runId }, maxRetries: 0 });
  const weather: Anthropic.Tool = { name: "get_weather", description: "The weather in a city now", input_schema: { type: "object", properties: { city: { type: "string" } } } };
  const ask: Anthropic.MessageParam[] = [{ role: "user", content: 'use get_weather with {"city":"Paris"}' }];

  async function meteredOnce(run: string, model: string, usage: { input_tokens: number; output_tokens: number }, stream: boolean) {
    await settledAll(ACME);
    const [row, ...more] = await callsOf(run);
    expect(more).toEqual([]);
    expect(row).toMatchObject({ model, stream, outcome: "succeeded", input_tokens: usage.input_tokens, output_tokens: usage.output_tokens });
    expect(Number(row.cost_micro)).toBe(cost(model, usage.input_tokens, usage.output_tokens));
  }

  it.each(models)("answers a message on %s, metered like any call", async (model) => {
    const run = await newRun("acme");
    const message = await claudeSdk(run).messages.create({ model, max_tokens: 50, system: "Be brief.", messages: [{ role: "user", content: "Where is my parcel?" }] });
    const want = expected(50);
    expect(message).toMatchObject({ type: "message", role: "assistant", model, stop_reason: "end_turn", content: [{ type: "text", text: want.words.join("") }] });
    expect(message.id).toMatch(/^msg_/);
    expect(message.usage).toMatchObject({ input_tokens: want.inputTokens, output_tokens: want.outputTokens });
    await meteredOnce(run, model, message.usage, false);
  });

  it.each(models)("streams a message on %s with Anthropic's events, metered", async (model) => {
    const run = await newRun("acme");
    const stream = claudeSdk(run).messages.stream({ model, max_tokens: 30, system: "Be brief.", messages: [{ role: "user", content: "Where is my parcel?" }] });
    const types: string[] = [];
    stream.on("streamEvent", (event) => types.push(event.type));
    const message = await stream.finalMessage();
    const want = expected(30);
    expect(message.content).toEqual([{ type: "text", text: want.words.join("") }]);
    expect(message.stop_reason).toBe("end_turn");
    expect(types[0]).toBe("message_start");
    expect(types.slice(1, 3)).toEqual(["content_block_start", "content_block_delta"]);
    expect(types.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
    expect(message.usage).toMatchObject({ input_tokens: want.inputTokens, output_tokens: want.outputTokens });
    await meteredOnce(run, model, message.usage, true);
  });

  it.each(models)("calls a tool on %s, streamed and not, and answers its result", async (model) => {
    const run = await newRun("acme");
    const client = claudeSdk(run);
    const called = await client.messages.create({ model, max_tokens: 100, messages: ask, tools: [weather], tool_choice: { type: "auto" } });
    expect(called.stop_reason).toBe("tool_use");
    const [use] = called.content as Anthropic.ToolUseBlock[];
    expect(use).toMatchObject({ type: "tool_use", name: "get_weather", input: { city: "Paris" } });
    const streamed = await client.messages.stream({ model, max_tokens: 100, messages: ask, tools: [weather] }).finalMessage();
    expect(streamed.stop_reason).toBe("tool_use");
    expect(streamed.content).toEqual([expect.objectContaining({ type: "tool_use", name: "get_weather", input: { city: "Paris" } })]);
    const answered = await client.messages.create({
      model, max_tokens: 100, tools: [weather],
      messages: [...ask, { role: "assistant", content: called.content }, { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18°C and sunny" }] }],
    });
    expect(answered.content).toEqual([{ type: "text", text: "[local stand-in model] The tool answered: 18°C and sunny" }]);
    await settledAll(ACME);
    expect((await callsOf(run)).map((r) => r.outcome)).toEqual(["succeeded", "succeeded", "succeeded"]);
  });

  it("holds a Messages call to the same budgets, counting its tools", async () => {
    const before = await orgMeter(GLOBEX);
    const withoutTools = cost("gpt-4o-mini", inputTokenBound(hello), 10);
    await sql`update public.model_limits set monthly_budget_micro = ${before.committed + withoutTools + 100} where org_id = ${GLOBEX}`;
    try {
      const client = claudeSdk(await newRun("globex"));
      const big: Anthropic.Tool = { name: "search_orders", description: "Search the orders. ".repeat(2000), input_schema: { type: "object" } };
      const refused = await failure(client.messages.create({ model: "gpt-4o-mini", max_tokens: 10, system: "Be brief.", messages: [{ role: "user", content: "Where is my parcel?" }], tools: [big] }));
      expect(refused.status).toBe(402);
      expect(refused.error).toMatchObject({ error: { code: "model_budget_exhausted" } });
    } finally {
      await sql`update public.model_limits set monthly_budget_micro = 50000000 where org_id = ${GLOBEX}`;
    }
  });

  it("refuses malformed Messages requests with 400, before anything is reserved", async () => {
    const run = await newRun("acme");
    const client = claudeSdk(run);
    const bad: Record<string, unknown>[] = [
      { messages: ask },
      { max_tokens: 10, messages: [{ role: "system", content: "hi" }] },
      { max_tokens: 10, messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_never", content: "x" }] }] },
      { max_tokens: 10, messages: ask, tools: [{ name: "bad name", input_schema: { type: "object" } }] },
      { max_tokens: 10, messages: ask, tools: [weather], tool_choice: { type: "tool", name: "not_offered" } },
      { max_tokens: 10, messages: ask, top_k: 5 },
    ];
    for (const body of bad) {
      const refused = await failure(client.messages.create({ model: "claude-haiku-4-5", ...body } as never));
      expect({ body, status: refused.status, error: refused.error }).toMatchObject({ body, status: 400, error: { error: { code: "invalid_body" } } });
    }
    expect(await callsOf(run)).toEqual([]);
  });
});

// Run-scoped tokens (issue 24, section 5): a runtime that holds only a run's token (and the public
// anon key) acts for exactly that run, metered to it; it can't act for another run or organization,
// can't act or renew once the run has ended, and can't mint tokens.
/** Casey (a contributor in both organizations) mints a token for a run, in an organization's context. */
async function mint(runId: string, org = ACME) {
  return rest("rpc/mint_run_token", { authorization: `Bearer ${await accessToken(casey)}`, "x-org-id": org },
    { method: "POST", body: JSON.stringify({ p_run_id: runId }) });
}

/** The OpenAI SDK as a runtime that holds only the run's token and the public anon key. */
function tokenRuntime(token: string, headers: Record<string, string> = {}): OpenAI {
  return new OpenAI({
    baseURL: `${stack().functionsUrl}/model-gateway/v1`, apiKey: stack().anonKey, maxRetries: 0,
    defaultHeaders: { "x-run-token": token, ...headers },
  });
}

async function refusal(p: Promise<unknown>): Promise<{ status: number; code: string }> {
  try {
    await p;
  } catch (e) {
    return { status: (e as { status: number }).status, code: (e as { code: string }).code };
  }
  throw new Error("the call was not refused");
}

const renew = (token: string) => fetch(`${stack().functionsUrl}/model-gateway/run-token/renew`, {
  method: "POST", headers: { authorization: `Bearer ${stack().anonKey}`, apikey: stack().anonKey, "x-run-token": token },
});

describe("run-scoped tokens", () => {
  it("acts for its run, metered to it, with no service-role key", async () => {
    const run = await newRun("acme");
    const minted = await mint(run);
    expect(minted.status).toBe(200);
    expect(minted.body.token).toMatch(/^ghr_[A-Za-z0-9_-]{43}$/);
    const answer = await tokenRuntime(minted.body.token).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 5 });
    expect(answer.choices[0].message.content).toBeTruthy();
    const calls = await sql`select org_id, agent_id from public.model_calls where run_id = ${run}`;
    expect(calls).toEqual([{ org_id: ACME, agent_id: ACME_AGENT }]);
    // Only its hash is kept.
    expect(await sql`select 1 from private.run_tokens where token_sha256 = ${minted.body.token}`).toHaveLength(0);
  });

  it("can't act for another run, nor be minted for another organization's run", async () => {
    const [run, other] = [await newRun("acme"), await newRun("acme")];
    const { body } = await mint(run);
    expect(await refusal(tokenRuntime(body.token, { "x-run-id": other }).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toEqual({ status: 403, code: "run_token_scope" });
    expect(await sql`select 1 from public.model_calls where run_id = ${other}`).toHaveLength(0);
    // Casey in Acme's context can't mint for Globex's run, though Casey contributes there too.
    const globex = await newRun("globex");
    expect(await mint(globex, ACME)).toMatchObject({ status: 404, body: { code: "run_not_found" } });
  });

  it("can't act or be renewed once its run has ended", async () => {
    const run = await newRun("acme");
    const { body } = await mint(run);
    await sql`update public.agent_runs set status = 'cancelled' where id = ${run}`;
    expect(await refusal(tokenRuntime(body.token).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toEqual({ status: 401, code: "run_token_invalid" });
    const renewed = await renew(body.token);
    expect(renewed.status).toBe(401);
    expect(await mint(run)).toMatchObject({ status: 409, body: { code: "run_not_active" } });
  });

  it("renews while its run is active: the new token works, the old one no longer does", async () => {
    const run = await newRun("acme");
    const { body } = await mint(run);
    const renewed = await renew(body.token);
    expect(renewed.status).toBe(200);
    const next = await renewed.json() as { token: string; run_id: string };
    expect(next.run_id).toBe(run);
    expect(next.token).not.toBe(body.token);
    expect(await refusal(tokenRuntime(body.token).chat.completions.create({ model: "gpt-4o-mini", messages: hello })))
      .toEqual({ status: 401, code: "run_token_invalid" });
    await tokenRuntime(next.token).chat.completions.create({ model: "gpt-4o-mini", messages: hello, max_tokens: 5 });
  });

  it("can't mint tokens: PostgREST takes it as no caller at all", async () => {
    const run = await newRun("acme");
    const { body } = await mint(run);
    const asToken = await rest("rpc/mint_run_token", { authorization: `Bearer ${body.token}`, "x-org-id": ACME },
      { method: "POST", body: JSON.stringify({ p_run_id: run }) });
    expect(asToken.status).toBe(401);
    const asAnon = await rest("rpc/mint_run_token", { authorization: `Bearer ${stack().anonKey}`, "x-run-token": body.token },
      { method: "POST", body: JSON.stringify({ p_run_id: run }) });
    expect(asAnon.status).toBeGreaterThanOrEqual(400);
    expect(asAnon.status).toBeLessThan(500);
    expect(JSON.stringify([asToken.body, asAnon.body])).not.toMatch(/ghr_/);
  });
});
