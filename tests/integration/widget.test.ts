/**
 * The widget function end to end, as an embed on a customer's page would call it (fetch with an
 * Origin header), against a wire-accurate model fake of its own: an organization made for this
 * file, whose agent answers through the organization's own OpenAI-compatible endpoint (the
 * fake, on the loopback port scripts/test.ts allowed for it). Covers keys off by default, origin
 * locking, session expiry and key rotation, each rate limit under a concurrent burst,
 * transcripts and their isolation, review items, and the polite fallback when the model fails.
 */
import { createHash, randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type ModelVendors, startModelVendors } from "../helpers/models.ts";
import { createMember } from "../helpers/console.ts";
import { accessToken, anonClient, type Client, signedIn, stack, superuser } from "../helpers/stack.ts";
import { createWidgetOrg, type WidgetOrg } from "../helpers/widget_org.ts";

const sql = superuser();
let vendors: ModelVendors;
let ada: Client;
let initech: WidgetOrg;
const ORIGIN = "https://shop.initech.test";
const vendorKey = `sk-initech-${randomUUID()}`;

const base = () => `${stack().functionsUrl}/widget/v1`;

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${base()}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  let json: Record<string, any> | null = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, text, body: json as Record<string, any> };
}

/** A session for the page's origin. */
async function session(origin = ORIGIN, key = initech.key): Promise<string> {
  const answer = await post("/sessions", { key }, { origin });
  expect(answer.status).toBe(201);
  return answer.body.session;
}

const say = (token: string, content: string, extra: Record<string, unknown> = {}, origin = ORIGIN) =>
  post("/messages", { content, ...extra }, { origin, authorization: `Bearer ${token}` });

beforeAll(async () => {
  vendors = await startModelVendors("widget");
  vendors.keys.add(vendorKey);
  ada = await signedIn("ada@acme.test");
  initech = await createWidgetOrg(sql, { name: "Initech", origins: [ORIGIN], vendorBaseUrl: vendors.openaiBaseUrl, vendorKey });
});
afterAll(async () => {
  await ada?.auth.signOut();
  await vendors?.close();
  await sql.end();
});
beforeEach(() => vendors.upstream.behave({ kind: "reply" }));

describe("sessions", () => {
  it("are refused for a key that does not exist: an agent without a key has no widget", async () => {
    expect(await post("/sessions", { key: "ghw_" + "a".repeat(32) + "_000000" }, { origin: ORIGIN })).toMatchObject({ status: 401, body: { error: { code: "widget_key_invalid" } } });
  });

  it("are given only to an allowed origin, and never without one", async () => {
    expect(await post("/sessions", { key: initech.key })).toMatchObject({ status: 403, body: { error: { code: "widget_origin_required" } } });
    expect(await post("/sessions", { key: initech.key }, { origin: "https://evil.test" })).toMatchObject({ status: 403, body: { error: { code: "widget_origin_not_allowed" } } });
    expect(await post("/sessions", { key: initech.key }, { origin: `${ORIGIN}.evil.test` })).toMatchObject({ status: 403 });
    expect(await post("/sessions", { key: initech.key }, { origin: "null" })).toMatchObject({ status: 403 });
    const answer = await post("/sessions", { key: initech.key }, { origin: ORIGIN });
    expect(answer.status).toBe(201);
    expect(answer.body.expires_in).toBeLessThanOrEqual(900);
  });

  it("renew with the same visitor, so a conversation outlives its session", async () => {
    const first = await post("/sessions", { key: initech.key }, { origin: ORIGIN });
    const said = await say(first.body.session, "Hello");
    const renewed = await post("/sessions", { key: initech.key, renew: first.body.session }, { origin: ORIGIN });
    expect(renewed.body.visitor_id).toBe(first.body.visitor_id);
    const again = await say(renewed.body.session, "Still there?", { conversation_id: said.body.conversation_id });
    expect(again).toMatchObject({ status: 200, body: { conversation_id: said.body.conversation_id } });
    // Renewal is for the page it was issued to: another origin, or no valid token, is a new visitor.
    const forged = await post("/sessions", { key: initech.key, renew: "not-a-token" }, { origin: ORIGIN });
    expect(forged.body.visitor_id).not.toBe(first.body.visitor_id);
  });

  it("stop working on an origin the key no longer allows", async () => {
    const token = await session();
    expect((await say(token, "hello")).status).toBe(200);
    await sql`update public.widget_keys set allowed_origins = '{https://elsewhere.initech.test}' where id = ${initech.keyId}`;
    try {
      expect(await say(token, "hello")).toMatchObject({ status: 403, body: { error: { code: "widget_origin_not_allowed" } } });
    } finally {
      await sql`update public.widget_keys set allowed_origins = ${sql.array([ORIGIN])} where id = ${initech.keyId}`;
    }
  });

  it("can't be used from another origin", async () => {
    const token = await session();
    expect(await say(token, "hello", {}, "https://evil.test")).toMatchObject({ status: 403, body: { error: { code: "widget_origin_mismatch" } } });
    expect(await post("/messages", { content: "hello" }, { authorization: `Bearer ${token}` })).toMatchObject({ status: 403 });
  });

  it("expire", async () => {
    const [{ secret }] = await sql`select private.widget_signing_secret() as secret`;
    const [key] = await sql`select version from public.widget_keys where id = ${initech.keyId}`;
    const expired = await new SignJWT({ typ: "widget_session", kid: initech.keyId, ver: key.version, org: initech.org, agent: initech.agent, origin: ORIGIN })
      .setProtectedHeader({ alg: "HS256" }).setSubject(randomUUID()).setIssuedAt(Math.floor(Date.now() / 1000) - 1200)
      .setExpirationTime(Math.floor(Date.now() / 1000) - 600).sign(new TextEncoder().encode(secret));
    expect(await say(expired, "hello")).toMatchObject({ status: 401, body: { error: { code: "widget_session_expired" } } });
    expect(await say("not-a-token", "hello")).toMatchObject({ status: 401, body: { error: { code: "widget_session_invalid" } } });
    // A token signed with another key is not ours.
    const forged = await new SignJWT({ typ: "widget_session", kid: initech.keyId, ver: key.version, org: initech.org, agent: initech.agent, origin: ORIGIN })
      .setProtectedHeader({ alg: "HS256" }).setSubject(randomUUID()).setExpirationTime("5m").sign(new TextEncoder().encode("guessed"));
    expect(await say(forged, "hello")).toMatchObject({ status: 401, body: { error: { code: "widget_session_invalid" } } });
  });
});

describe("proof of work", () => {
  it("when a key asks for it, gives a session only for a solved challenge", async () => {
    await sql`update public.widget_keys set proof_of_work_bits = 8, allowed_origins = ${sql.array([ORIGIN, "https://m.initech.test"])} where id = ${initech.keyId}`;
    try {
      const asked = await post("/sessions", { key: initech.key }, { origin: ORIGIN });
      expect(asked).toMatchObject({ status: 428, body: { error: { code: "proof_of_work_required", bits: 8 } } });
      const challenge = asked.body.error.challenge as string;
      expect(await post("/sessions", { key: initech.key, pow: { challenge, nonce: "wrong" } }, { origin: ORIGIN })).toMatchObject({ status: 428 });
      // A challenge is for the origin it was given to, even another allowed one.
      const nonce = solve(challenge, 8);
      expect(await post("/sessions", { key: initech.key, pow: { challenge, nonce } }, { origin: "https://m.initech.test" })).toMatchObject({ status: 428 });
      const answer = await post("/sessions", { key: initech.key, pow: { challenge, nonce } }, { origin: ORIGIN });
      expect(answer.status).toBe(201);
      // Each challenge opens one session.
      expect(await post("/sessions", { key: initech.key, pow: { challenge, nonce } }, { origin: ORIGIN })).toMatchObject({ status: 428 });
    } finally {
      await sql`update public.widget_keys set proof_of_work_bits = 0, allowed_origins = ${sql.array([ORIGIN])} where id = ${initech.keyId}`;
    }
  });
});

/** A nonce for which SHA-256(challenge + ":" + nonce) starts with `bits` zero bits. */
function solve(challenge: string, bits: number): string {
  for (let n = 0; ; n++) {
    const digest = createHash("sha256").update(`${challenge}:${n}`).digest();
    let zeros = 0;
    for (const byte of digest) {
      if (byte === 0) {
        zeros += 8;
        continue;
      }
      zeros += Math.clz32(byte) - 24;
      break;
    }
    if (zeros >= bits) return String(n);
  }
}

describe("messages", () => {
  it("are answered by the agent's published version through the model gateway, and kept as a transcript", async () => {
    const token = await session();
    const first = await say(token, "Do you ship to Norway?");
    expect(first).toMatchObject({ status: 200, body: { reply: { role: "assistant", content: "[local stand-in model] You said: Do you ship to Norway?" } } });
    const sent = vendors.upstream.requests.at(-1)!;
    expect(sent).toMatchObject({ wire: "openai", apiKey: vendorKey, body: { model: "gpt-4o-mini", messages: [{ role: "system", content: "Help shoppers." }, { role: "user", content: "Do you ship to Norway?" }] } });
    const conversation = first.body.conversation_id;
    const second = await say(token, "And to Sweden?", { conversation_id: conversation });
    expect(second.body.conversation_id).toBe(conversation);
    // The second call carried the conversation so far.
    expect((vendors.upstream.requests.at(-1)!.body as { messages: unknown[] }).messages).toHaveLength(4);

    const messages = await sql`select role, content, model_call_id from public.widget_messages where conversation_id = ${conversation} order by created_at`;
    expect(messages.map((m) => m.role)).toEqual(["visitor", "assistant", "visitor", "assistant"]);
    const [call] = await sql`select * from public.model_calls where id = ${messages[1].model_call_id}`;
    expect(call).toMatchObject({ org_id: initech.org, agent_id: initech.agent, run_id: null, key_source: "byok", outcome: "succeeded" });
    // Another organization's members don't see it.
    const { data } = await ada.from("widget_messages").select("id").eq("conversation_id", conversation).setHeader("x-org-id", "0a000000-0000-4000-8000-00000000000a");
    expect(data).toEqual([]);
  });

  it("streams the answer as server-sent events", async () => {
    const token = await session();
    const answer = await say(token, "Is it in stock?", { stream: true });
    const events = answer.text.trim().split("\n\n").map((e) => JSON.parse(e.replace(/^data: /, "")));
    expect(events.slice(0, -1).map((e) => e.delta).join("")).toBe("[local stand-in model] You said: Is it in stock?");
    expect(events.at(-1)).toMatchObject({ done: true, conversation_id: expect.any(String) });
    const [last] = await sql`select role, content from public.widget_messages where conversation_id = ${events.at(-1).conversation_id} order by created_at desc limit 1`;
    expect(last).toMatchObject({ role: "assistant", content: "[local stand-in model] You said: Is it in stock?" });
  });

  it("raise an escalation when the visitor asks for a person, and a lead when they leave an email", async () => {
    const token = await session();
    const answer = await say(token, "Can I talk to a human? My email is jo@initech.test");
    const items = await sql`select kind, status, lead_email from public.review_items where conversation_id = ${answer.body.conversation_id} order by kind`;
    expect(items).toEqual([
      { kind: "escalation", status: "open", lead_email: null },
      { kind: "lead", status: "open", lead_email: "jo@initech.test" },
    ]);
  });

  it("store no lead the queue can't hold, and never fail for it", async () => {
    const answer = await say(await session(), `Reach me at jo@${"a".repeat(250)}.example.com`);
    expect(answer).toMatchObject({ status: 200, body: { reply: { role: "assistant" } } });
    expect(await sql`select 1 from public.review_items where conversation_id = ${answer.body.conversation_id}`).toHaveLength(0);
  });

  it("answer politely when the model fails, and tell the team", async () => {
    const token = await session();
    vendors.upstream.behave({ kind: "status", status: 500 });
    const answer = await say(token, "Where is my order?");
    expect(answer).toMatchObject({ status: 200, body: { degraded: "unavailable", reply: { role: "notice" } } });
    expect(answer.text).not.toMatch(/500|error|stack/i);
    const items = await sql`select kind, summary from public.review_items where conversation_id = ${answer.body.conversation_id}`;
    expect(items).toEqual([{ kind: "escalation", summary: "The widget could not answer (model_upstream_unavailable)." }]);
    const [call] = await sql`select outcome, cost_micro from public.model_calls where id = (
                               select model_call_id from public.widget_messages where conversation_id = ${answer.body.conversation_id} and role = 'notice')`;
    expect(call).toEqual({ outcome: "failed", cost_micro: "0" });
  });

  it("hold answers for review when the key says so: a draft for the team, a note for the visitor", async () => {
    await sql`update public.widget_keys set hold_answers = true where id = ${initech.keyId}`;
    try {
      const answer = await say(await session(), "Can I get a discount?", { stream: true });
      const [event] = answer.text.trim().split("\n\n").map((e) => JSON.parse(e.replace(/^data: /, "")));
      expect(event).toMatchObject({ held: true, done: true, reply: { role: "notice", content: "Thanks! Someone from the team will look at this and reply here." } });
      expect(answer.text).not.toContain("You said");
      const [draft] = await sql`select kind, summary, status from public.review_items where conversation_id = ${event.conversation_id}`;
      expect(draft).toEqual({ kind: "draft", summary: "[local stand-in model] You said: Can I get a discount?", status: "open" });
      const history = await sql`select status from public.review_item_events where item_id = (
                                  select id from public.review_items where conversation_id = ${event.conversation_id})`;
      expect(history.map((h) => h.status)).toEqual(["open"]);
    } finally {
      await sql`update public.widget_keys set hold_answers = false where id = ${initech.keyId}`;
    }
  });

  it("answer politely when a prepaid organization is out of credits, keeping the refusal's own code", async () => {
    const prepaid = await createWidgetOrg(sql, { name: "Prepaid", origins: [ORIGIN], vendorBaseUrl: vendors.openaiBaseUrl, vendorKey });
    // On the platform's key (no key of its own), prepaid, and no credits.
    await sql`delete from public.model_provider_keys where org_id = ${prepaid.org}`;
    await sql`insert into public.billing_accounts (org_id, mode) values (${prepaid.org}, 'prepaid')`;
    const answer = await say(await session(ORIGIN, prepaid.key), "Anything on sale?");
    expect(answer).toMatchObject({ status: 200, body: { degraded: "unavailable", code: "credits_exhausted", reply: { role: "notice" } } });
    const [item] = await sql`select summary from public.review_items where conversation_id = ${answer.body.conversation_id}`;
    expect(item.summary).toBe("The widget could not answer (credits_exhausted).");
  });

  it("answer politely when the key's budget is spent", async () => {
    await sql`update public.widget_keys set monthly_budget_micro = 0 where id = ${initech.keyId}`;
    try {
      const answer = await say(await session(), "Anything on sale?");
      expect(answer).toMatchObject({ status: 200, body: { degraded: "unavailable", reply: { role: "notice" } } });
      const [item] = await sql`select summary from public.review_items where conversation_id = ${answer.body.conversation_id}`;
      expect(item.summary).toBe("The widget could not answer (model_budget_exhausted).");
    } finally {
      await sql`update public.widget_keys set monthly_budget_micro = 1000000 where id = ${initech.keyId}`;
    }
  });
});

describe("rate limits", () => {
  it("admit exactly a visitor's limit from a concurrent burst", async () => {
    await sql`update public.widget_keys set visitor_requests_per_minute = 5, requests_per_minute = 1000 where id = ${initech.keyId}`;
    try {
      const token = await session();
      const answers = await Promise.all(Array.from({ length: 20 }, () => say(token, "hi")));
      expect(answers.every((a) => a.status === 200)).toBe(true);
      expect(answers.filter((a) => a.body.reply.role === "assistant")).toHaveLength(5);
      expect(answers.filter((a) => a.body.degraded === "busy")).toHaveLength(15);
    } finally {
      await sql`update public.widget_keys set visitor_requests_per_minute = 10, requests_per_minute = 60 where id = ${initech.keyId}`;
    }
  });

  it("admit exactly the key's limit from many visitors at once", async () => {
    await sql`update public.widget_keys set visitor_requests_per_minute = 100, requests_per_minute = 7 where id = ${initech.keyId}`;
    await sql`delete from private.model_rates where scope = 'widget_key' and scope_id = ${initech.keyId}`;
    try {
      const tokens = await Promise.all(Array.from({ length: 20 }, () => session()));
      const answers = await Promise.all(tokens.map((t) => say(t, "hi")));
      expect(answers.filter((a) => a.body.reply.role === "assistant")).toHaveLength(7);
    } finally {
      await sql`update public.widget_keys set visitor_requests_per_minute = 10, requests_per_minute = 60 where id = ${initech.keyId}`;
      await sql`delete from private.model_rates where scope = 'widget_key' and scope_id = ${initech.keyId}`;
    }
  });

  it("admit exactly the agent's limit (the model gateway's) from many visitors at once", async () => {
    const [project] = await sql`select project_id from public.agents where id = ${initech.agent}`;
    await sql`insert into public.model_caps (org_id, project_id, agent_id, requests_per_minute)
              values (${initech.org}, ${project.project_id}, ${initech.agent}, 4)`;
    await sql`update public.widget_keys set visitor_requests_per_minute = 100, requests_per_minute = 1000 where id = ${initech.keyId}`;
    try {
      const tokens = await Promise.all(Array.from({ length: 12 }, () => session()));
      const answers = await Promise.all(tokens.map((t) => say(t, "hi")));
      expect(answers.filter((a) => a.body.reply.role === "assistant")).toHaveLength(4);
      expect(answers.filter((a) => a.body.degraded === "busy")).toHaveLength(8);
    } finally {
      await sql`delete from public.model_caps where agent_id = ${initech.agent}`;
      await sql`delete from private.model_rates where scope = 'agent' and scope_id = ${initech.agent}`;
      await sql`update public.widget_keys set visitor_requests_per_minute = 10, requests_per_minute = 60 where id = ${initech.keyId}`;
    }
  });
  it("keep no rate state and no rows for messages the key's limit refuses, however many fresh sessions send them", async () => {
    await sql`update public.widget_keys set visitor_requests_per_minute = 100, requests_per_minute = 2 where id = ${initech.keyId}`;
    await sql`delete from private.model_rates where scope = 'widget_key' and scope_id = ${initech.keyId}`;
    const counts = async () => {
      const [row] = await sql`select (select count(*)::int from private.model_rates where org_id = ${initech.org}) as rates,
                                     (select count(*)::int from public.widget_conversations where org_id = ${initech.org}) as conversations,
                                     (select count(*)::int from public.widget_messages where org_id = ${initech.org}) as messages`;
      return row;
    };
    try {
      // The key's minute is spent by two visitors.
      for (let i = 0; i < 2; i++) expect((await say(await session(), "hi")).body.reply.role).toBe("assistant");
      const before = await counts();
      const tokens = await Promise.all(Array.from({ length: 15 }, () => session()));
      const answers = await Promise.all(tokens.map((t) => say(t, "hi")));
      expect(answers.every((a) => a.status === 200 && a.body.degraded === "busy")).toBe(true);
      expect(await counts()).toEqual(before);
    } finally {
      await sql`update public.widget_keys set visitor_requests_per_minute = 10, requests_per_minute = 60 where id = ${initech.keyId}`;
      await sql`delete from private.model_rates where scope = 'widget_key' and scope_id = ${initech.keyId}`;
    }
  });

  it("keep no rate state and no rows for messages the agent's limit (the model gateway's) refuses", async () => {
    const [project] = await sql`select project_id from public.agents where id = ${initech.agent}`;
    await sql`insert into public.model_caps (org_id, project_id, agent_id, requests_per_minute)
              values (${initech.org}, ${project.project_id}, ${initech.agent}, 2)`;
    await sql`update public.widget_keys set visitor_requests_per_minute = 100, requests_per_minute = 1000 where id = ${initech.keyId}`;
    const counts = async () => {
      const [row] = await sql`select (select count(*)::int from private.model_rates where org_id = ${initech.org}) as rates,
                                     (select count(*)::int from public.widget_conversations where org_id = ${initech.org}) as conversations,
                                     (select count(*)::int from public.widget_messages where org_id = ${initech.org}) as messages`;
      return row;
    };
    try {
      for (let i = 0; i < 2; i++) expect((await say(await session(), "hi")).body.reply.role).toBe("assistant");
      const before = await counts();
      const tokens = await Promise.all(Array.from({ length: 10 }, () => session()));
      const answers = await Promise.all(tokens.map((t) => say(t, "hi")));
      expect(answers.every((a) => a.status === 200 && a.body.degraded === "busy")).toBe(true);
      expect(await counts()).toEqual(before);
    } finally {
      await sql`delete from public.model_caps where agent_id = ${initech.agent}`;
      await sql`delete from private.model_rates where scope = 'agent' and scope_id = ${initech.agent}`;
      await sql`update public.widget_keys set visitor_requests_per_minute = 10, requests_per_minute = 60 where id = ${initech.keyId}`;
    }
  });
});

describe("CORS", () => {
  /** A browser's preflight through the gateway, as a page on `origin` sends it before a POST. */
  const preflight = (origin: string, path = "/sessions") =>
    fetch(`${base()}${path}`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });

  it("answers a messages preflight with exactly the origin a live key allows, and gives any other origin nothing", async () => {
    for (const path of ["/sessions", "/messages"]) {
      const allowed = await preflight(ORIGIN, path);
      expect(allowed.status, path).toBeLessThan(300);
      expect(allowed.headers.get("access-control-allow-origin"), path).toBe(ORIGIN);
      expect(allowed.headers.get("vary") ?? "", path).toMatch(/origin/i);
    }
    for (const origin of ["https://evil.test", `${ORIGIN}.evil.test`, "http://shop.initech.test", "null"]) {
      const refused = await preflight(origin, "/messages");
      expect(refused.headers.get("access-control-allow-origin"), origin).toBeNull();
    }
  });

  it("lets any origin reach /sessions, with no credential, to be refused there and the refusal noted for the key's owner", async () => {
    const open = await preflight("https://copycat.test");
    expect(open.headers.get("access-control-allow-origin")).toBe("https://copycat.test");
    expect(open.headers.get("access-control-allow-credentials")).toBeNull();
    expect((await preflight("null")).headers.get("access-control-allow-origin")).toBeNull();
    const refused = await fetch(`${base()}/sessions`, {
      method: "POST", headers: { "content-type": "application/json", origin: "https://copycat.test" }, body: JSON.stringify({ key: initech.key }),
    });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("widget_origin_not_allowed");
    const [noted] = await sql`select reason, times from public.widget_refusals where widget_key_id = ${initech.keyId} and origin = 'https://copycat.test'`;
    expect(noted).toEqual({ reason: "widget_origin_not_allowed", times: "1" });
  });

  it("never reflects an arbitrary origin on messages, on refusals too; an allowed origin reads its own answers", async () => {
    const send = (path: string, body: unknown, headers: Record<string, string>) =>
      fetch(`${base()}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
    const refusals = [
      await send("/messages", { content: "hi" }, { origin: "https://evil.test", authorization: "Bearer nope" }),
      await send("/nowhere", {}, { origin: "https://evil.test" }),
    ];
    for (const r of refusals) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.headers.get("access-control-allow-origin")).toBeNull();
    }
    const ok = await send("/sessions", { key: initech.key }, { origin: ORIGIN });
    expect(ok.status).toBe(201);
    expect(ok.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    // A refusal to an allowed origin is readable by its page (the embed renews on a 401).
    const expired = await send("/messages", { content: "hi" }, { origin: ORIGIN, authorization: "Bearer nope" });
    expect(expired.status).toBe(401);
    expect(expired.headers.get("access-control-allow-origin")).toBe(ORIGIN);
  });
});

describe("key changes", () => {
  it("refuse to renew a session across a rotation: the old key's visitor and conversation end with it", async () => {
    const first = await post("/sessions", { key: initech.key }, { origin: ORIGIN });
    const said = await say(first.body.session, "Hello before the rotation");
    expect(said.status).toBe(200);
    const [rotated] = await initech.asAdmin((tx) => tx`select public.rotate_widget_key(${initech.keyId}) as v`);
    initech.key = rotated.v.key;
    expect(await post("/sessions", { key: initech.key, renew: first.body.session }, { origin: ORIGIN }))
      .toMatchObject({ status: 401, body: { error: { code: "widget_renewal_refused" } } });
    // The old session can't go on, and a fresh one is a new visitor, who can't reach the old conversation.
    expect(await say(first.body.session, "Still there?", { conversation_id: said.body.conversation_id })).toMatchObject({ status: 401 });
    const fresh = await post("/sessions", { key: initech.key }, { origin: ORIGIN });
    expect(fresh.body.visitor_id).not.toBe(first.body.visitor_id);
    expect(await say(fresh.body.session, "Hi", { conversation_id: said.body.conversation_id })).toMatchObject({ status: 404 });
    // Even a session of the new version carrying the old visitor (signed with the widget key, as
    // only the function can) does not reach a conversation from before the rotation: the database says so.
    const [{ secret }] = await sql`select private.widget_signing_secret() as secret`;
    const carried = await new SignJWT({ typ: "widget_session", kid: initech.keyId, ver: rotated.v.version, org: initech.org, agent: initech.agent, origin: ORIGIN })
      .setProtectedHeader({ alg: "HS256" }).setSubject(first.body.visitor_id).setIssuedAt().setExpirationTime("5m")
      .sign(new TextEncoder().encode(secret));
    expect(await say(carried, "Still me", { conversation_id: said.body.conversation_id }))
      .toMatchObject({ status: 404, body: { error: { code: "widget_conversation_not_found" } } });
  });

  it("end sessions at once: rotation, then disabling", async () => {
    const token = await session();
    expect((await say(token, "hi")).status).toBe(200);
    const [rotated] = await initech.asAdmin((tx) => tx`select public.rotate_widget_key(${initech.keyId}) as v`);
    expect(await say(token, "hi")).toMatchObject({ status: 401, body: { error: { code: "widget_session_expired" } } });
    expect(await post("/sessions", { key: initech.key }, { origin: ORIGIN })).toMatchObject({ status: 401 });
    initech.key = rotated.v.key;
    const fresh = await session();
    expect((await say(fresh, "hi")).status).toBe(200);
    await sql`update public.widget_keys set disabled_at = now() where id = ${initech.keyId}`;
    expect(await say(fresh, "hi")).toMatchObject({ status: 401, body: { error: { code: "widget_session_expired" } } });
    expect(await post("/sessions", { key: initech.key }, { origin: ORIGIN })).toMatchObject({ status: 401, body: { error: { code: "widget_key_invalid" } } });
  });
});

describe("a preview from the console (widget-preview)", () => {
  // The key changes above end with the key off: on again, for the preview.
  beforeAll(async () => {
    await sql`update public.widget_keys set disabled_at = null where id = ${initech.keyId}`;
  });

  /** An access token of a new member of Initech with `role`. */
  async function memberToken(role: string): Promise<string> {
    const m = await createMember(sql, initech.org, role, `preview-${role}`);
    const client = anonClient();
    const { error } = await client.auth.signInWithPassword({ email: m.email, password: m.password });
    if (error) throw error;
    return await accessToken(client);
  }
  async function preview(token: string, body: unknown, org = initech.org) {
    const res = await fetch(`${stack().functionsUrl}/widget-preview`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, apikey: stack().anonKey, "x-org-id": org, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() as Record<string, any> };
  }

  it("answers a project member through the widget's own path, on the console's origin, and goes on with the conversation", async () => {
    const token = await memberToken("project_contributor");
    const first = await preview(token, { key_id: initech.keyId, content: "Do you price-match?" });
    expect(first.status).toBe(200);
    expect(first.body.reply).toEqual({ role: "assistant", content: expect.stringContaining("Do you price-match?") });
    const second = await preview(token, { key_id: initech.keyId, content: "And gift wrap?", conversation_id: first.body.conversation_id, visitor_id: first.body.visitor_id });
    expect(second.body.conversation_id).toBe(first.body.conversation_id);
    const [conversation] = await sql`select origin, (select count(*)::int from public.widget_messages m where m.conversation_id = c.id) as messages
                                       from public.widget_conversations c where c.id = ${first.body.conversation_id}`;
    expect(conversation).toEqual({ origin: new URL(stack().apiUrl).origin, messages: 4 });
    // Metered like any chat: the model calls are the key's.
    const [{ calls }] = await sql`select count(*)::int as calls from public.model_calls where org_id = ${initech.org} and started_at > now() - interval '1 minute'`;
    expect(calls).toBeGreaterThanOrEqual(2);
    // A visitor's conversation (whose ids a member can read) can't be written into from the console.
    const visitor = await say(await session(), "A visitor's question");
    const [theirs] = await sql`select visitor_id from public.widget_conversations where id = ${visitor.body.conversation_id}`;
    const intruding = await preview(token, { key_id: initech.keyId, content: "injected", conversation_id: visitor.body.conversation_id, visitor_id: theirs.visitor_id });
    expect(intruding.body.error?.code).toBe("widget_conversation_not_found");
    expect((await sql`select count(*)::int as n from public.widget_messages where conversation_id = ${visitor.body.conversation_id} and content = 'injected'`)[0].n).toBe(0);
    // No origin was added to the key: the console's origin still can't open a session.
    expect((await post("/sessions", { key: initech.key }, { origin: new URL(stack().apiUrl).origin })).status).toBe(403);
  });

  it("refuses a viewer, another organization, a key that is off, and a caller who isn't signed in", async () => {
    expect((await preview(await memberToken("project_viewer"), { key_id: initech.keyId, content: "hi" })).body.error.code).toBe("widget_key_not_found");
    const adaToken = await accessToken(ada);
    expect((await preview(adaToken, { key_id: initech.keyId, content: "hi" })).body.error.code).toBe("context_not_a_member");
    const other = await preview(adaToken, { key_id: initech.keyId, content: "hi" }, "0a000000-0000-4000-8000-00000000000a");
    expect(other.body.error.code).toBe("widget_key_not_found");
    const anon = await preview(stack().anonKey, { key_id: initech.keyId, content: "hi" });
    expect(anon.status).toBe(401);
    const contributor = await memberToken("project_contributor");
    expect((await preview(contributor, { key_id: initech.keyId, content: "" })).status).toBe(400);
    await sql`update public.widget_keys set disabled_at = now() where id = ${initech.keyId}`;
    expect((await preview(contributor, { key_id: initech.keyId, content: "hi" })).body.error.code).toBe("widget_key_not_found");
  });
});
