/**
 * Approvals over the API (PostgREST RPCs, as clients call them) and the runtime's execution gate
 * (functions/_shared/approvals/gate.ts) under racing executors. The database rules themselves are
 * proven case by case in supabase/tests/database/030-approvals.test.sql.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openGate, recordOutcome } from "../../functions/_shared/approvals/gate.ts";
import { asService } from "../../functions/_shared/http/db.ts";
import { payloadSha256 } from "../../functions/_shared/json/canonical.ts";
import { type Client, accessToken, rest, signedIn, stack, superuser } from "../helpers/stack.ts";
import { ACME, ACME_RUN, GLOBEX } from "../helpers/fixtures.ts";

const sql = superuser();
let ada: Client;
let casey: Client;
let victor: Client;
let grace: Client;

beforeAll(async () => {
  [ada, casey, victor, grace] = await Promise.all(
    ["ada@acme.test", "casey@both.test", "victor@acme.test", "grace@globex.test"].map(signedIn),
  );
});
afterAll(async () => {
  await Promise.all([ada, casey, victor, grace].map((c) => c?.auth.signOut()));
  await sql.end();
});

/** An RPC through the gateway, as the service role (the agent runtime) or a signed-in member. */
async function rpc(fn: string, args: unknown, as: Client | "runtime", org?: string) {
  const token = as === "runtime" ? stack().serviceRoleKey : await accessToken(as);
  return rest(`rpc/${fn}`, { authorization: `Bearer ${token}`, ...(org ? { "x-org-id": org } : {}) },
    { method: "POST", body: typeof args === "string" ? args : JSON.stringify(args) });
}

/** Proposes an action as the runtime, in Acme's scheduled run. */
async function propose(payload: Record<string, unknown>, risk = "medium") {
  const { status, body } = await rpc("propose_action", { p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: payload, p_risk: risk }, "runtime");
  expect(status).toBe(200);
  return body as { id: string; payload_sha256: string; approval_sha256: string; canonical_payload: string; status: string };
}

describe("approvals over the API", () => {
  it("pins the request to the hash the TypeScript side computes for the same payload", async () => {
    const payload = { text: "Refund approved", channel: "#returns", amount: 10.5 };
    const request = await propose(payload);
    expect(request.status).toBe("pending");
    expect(request.payload_sha256).toBe(payloadSha256(payload));
    expect(request.canonical_payload).toBe('{"amount":10.5,"channel":"#returns","text":"Refund approved"}');
  });

  it("answers every refused decision with a 4xx and a stable code", async () => {
    const request = await propose({ text: "Close ticket 12" });
    const decide = (who: Client, org: string, hash: string) =>
      rpc("decide_action", { p_request_id: request.id, p_approval_sha256: hash, p_approve: true }, who, org);

    expect(await decide(victor, ACME, request.approval_sha256)).toMatchObject({ status: 403, body: { code: "approver_role_required" } });
    expect(await decide(grace, GLOBEX, request.approval_sha256)).toMatchObject({ status: 404, body: { code: "action_request_not_found" } });
    expect(await decide(ada, ACME, request.payload_sha256)).toMatchObject({ status: 409, body: { code: "stale_approval_hash" } });
    expect(await decide(ada, ACME, "not-a-hash")).toMatchObject({ status: 400, body: { code: "invalid_approval_hash" } });
    expect(await rpc("decide_action", "{not json", ada, ACME)).toMatchObject({ status: 400 });
    expect(await decide(ada, ACME, request.approval_sha256)).toMatchObject({ status: 200, body: { status: "approved" } });
  });

  it("lists pending approvals with the exact canonical payload and hash", async () => {
    const request = await propose({ b: [1, 2], a: "x" });
    const { data, error } = await ada.from("pending_approvals").select("canonical_payload, payload_sha256, awaiting_you")
      .eq("id", request.id).setHeader("x-org-id", ACME).single();
    expect(error).toBeNull();
    expect(data).toEqual({ canonical_payload: '{"a":"x","b":[1,2]}', payload_sha256: payloadSha256({ a: "x", b: [1, 2] }), awaiting_you: true });
  });

  it("refuses malformed proposals without writing anything", async () => {
    const [{ count: before }] = await sql`select count(*)::int from public.action_requests`;
    const bad = [
      { p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: [1] },
      { p_run_id: ACME_RUN, p_tool: "Slack Post", p_payload: {} },
      { p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: {}, p_expires_in_seconds: 10 },
      { p_run_id: ACME_RUN, p_tool: "slack.post_message", p_payload: { big: "x".repeat(70_000) } },
    ];
    const codes = [];
    for (const args of bad) {
      const { status, body } = await rpc("propose_action", args, "runtime");
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
      codes.push(body.code);
    }
    expect(codes).toEqual(["invalid_payload", "invalid_tool", "invalid_expiry", "payload_too_large"]);
    const [{ count: after }] = await sql`select count(*)::int from public.action_requests`;
    expect(after).toBe(before);
  });
});

/** Opens the gate as the runtime does (the service role, in one transaction). */
function openAs(runtime: postgres.Sql, requestId: string, payload: unknown) {
  return runtime.begin(async (tx) => {
    await asService(tx);
    return await openGate(tx, { requestId, payload });
  });
}

describe("the execution gate", () => {
  it("lets one of several racing runtimes through, exactly once", async () => {
    const payload = { channel: "#returns", text: "Refund 42 approved" };
    const request = await propose(payload);
    expect((await rpc("decide_action", { p_request_id: request.id, p_approval_sha256: request.approval_sha256, p_approve: true }, ada, ACME)).status).toBe(200);

    // Eight runtimes, each on its own connection, with the payload's keys in another order.
    const runtimes = Array.from({ length: 8 }, () => postgres(stack().dbUrl, { max: 1, onnotice: () => {} }));
    try {
      const results = await Promise.all(runtimes.map((rt) => openAs(rt, request.id, { text: payload.text, channel: payload.channel })));
      const through = results.filter((r) => r.ok);
      expect(through).toHaveLength(1);
      expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.reason)).toEqual(Array(7).fill("already_executed"));
      expect(through[0].ok && through[0].value.canonicalPayload).toBe(request.canonical_payload);
    } finally {
      await Promise.all(runtimes.map((rt) => rt.end()));
    }
    await sql.begin(async (tx) => {
      await asService(tx);
      await recordOutcome(tx, { requestId: request.id, delivered: true, detail: "delivered" });
    });

    const [row] = await sql`select status, outcome from public.action_requests where id = ${request.id}`;
    expect(row).toEqual({ status: "executed", outcome: "delivered" });
    await sql`select audit.seal(${ACME})`;
    const [{ refused }] = await sql`
      select count(*)::int as refused from audit.entries
       where org_id = ${ACME} and action = 'action_request.execution_refused' and target_id = ${request.id}`;
    expect(refused).toBe(7);
  });

  it("never lets a changed payload through", async () => {
    const request = await propose({ to: "ops@acme.test", amount: 100 });
    await rpc("decide_action", { p_request_id: request.id, p_approval_sha256: request.approval_sha256, p_approve: true }, ada, ACME);
    expect(await openAs(sql, request.id, { to: "ops@acme.test", amount: 1000 })).toEqual({ ok: false, reason: "payload_mismatch" });
    const [row] = await sql`select status from public.action_requests where id = ${request.id}`;
    expect(row.status).toBe("approved");
  });

  it("records a failed delivery once, with its outcome code", async () => {
    const request = await propose({ text: "will fail" });
    await rpc("decide_action", { p_request_id: request.id, p_approval_sha256: request.approval_sha256, p_approve: true }, ada, ACME);
    expect(await openAs(sql, request.id, { text: "will fail" })).toMatchObject({ ok: true });
    const record = () => sql.begin(async (tx) => {
      await asService(tx);
      await recordOutcome(tx, { requestId: request.id, delivered: false, detail: "delivery_error" });
    });
    await record();
    await expect(record()).rejects.toMatchObject({ code: "PGRST" });
    const [row] = await sql`select outcome, outcome_detail from public.action_requests where id = ${request.id}`;
    expect(row).toEqual({ outcome: "failed", outcome_detail: "delivery_error" });
  });
});
