/**
 * Inbound webhooks (issue 26; docs/webhooks.md) through the gateway, as a sender would call them:
 * each refusal on its own (and that it starts nothing), a delivery signed with the standardwebhooks
 * package's own sign(), v1a with Ed25519, one run for a retried delivery, rotation's overlap and its
 * end, and refusals recorded at most once a minute. The database's half is pgTAP 122.
 */
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInboundOrg, type InboundOrg } from "../helpers/inbound_org.ts";
import { stack, superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());
const { apiUrl } = stack();

let org: InboundOrg;
let sub: { id: string; secret: string };
let token: string;
beforeAll(async () => {
  org = await createInboundOrg(sql, "Inbound");
  const made = await org.subscription("v1");
  sub = { id: made.id, secret: made.secret! };
  token = await org.token(["webhooks:ingest"]);
});

/** The headers of a delivery signed with `secret` by the standardwebhooks package. */
function signed(secret: string, body: string, options: { id?: string; at?: Date } = {}): Record<string, string> {
  const id = options.id ?? `msg_${randomUUID()}`;
  const at = options.at ?? new Date();
  return { "webhook-id": id, "webhook-timestamp": String(Math.floor(at.getTime() / 1000)), "webhook-signature": new Webhook(secret).sign(id, at, body) };
}

async function deliver(body: string, headers: Record<string, string>, options: { token?: string | null; subscription?: string } = {}) {
  const bearer = options.token === undefined ? token : options.token;
  const res = await fetch(`${apiUrl}/functions/v1/inbound/${options.subscription ?? sub.id}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}), ...headers },
    body,
  });
  return { status: res.status, body: await res.json() as { error?: { code: string; run_id?: string }; run_id?: string; delivery_id?: string; status?: string } };
}

async function runsOf(orgId: string): Promise<number> {
  const [{ n }] = await sql`select count(*)::int as n from public.agent_runs where org_id = ${orgId}`;
  return n;
}

describe("an inbound webhook", () => {
  it("accepts a delivery signed with the standardwebhooks package's sign(), starting a run with the body as input", async () => {
    const body = JSON.stringify({ ticket: 1042, subject: "Refund request" });
    const headers = signed(sub.secret, body);
    const answer = await deliver(body, headers);
    expect(answer.status).toBe(202);
    expect(answer.body.status).toBe("queued");
    const [run] = await sql`select input, started_by, agent_id from public.agent_runs where id = ${answer.body.run_id!}`;
    expect(run.input).toEqual({ body: { ticket: 1042, subject: "Refund request" },
      webhook: { subscription_id: sub.id, webhook_id: headers["webhook-id"], sent_at: expect.any(String) } });
    expect(run.started_by).toBe(org.admin);
    expect(run.agent_id).toBe(org.agent);
    const [delivery] = await sql`select outcome, body_bytes from public.webhook_deliveries where id = ${answer.body.delivery_id!}`;
    expect(delivery).toEqual({ outcome: "accepted", body_bytes: Buffer.byteLength(body) });
    // The body stays out of the chain.
    const [{ n }] = await sql`select count(*)::int as n from audit.records where org_id = ${org.org} and payload::text like '%Refund request%'`;
    expect(n).toBe(0);
  });

  describe("refuses, starting nothing,", () => {
    const body = JSON.stringify({ ticket: 7 });
    const refused = async (answer: Awaited<ReturnType<typeof deliver>>, status: number, code: string, runsBefore: number) => {
      expect([answer.status, answer.body.error?.code]).toEqual([status, code]);
      expect(await runsOf(org.org)).toBe(runsBefore);
    };

    it("a delivery without a token", async () => {
      const before = await runsOf(org.org);
      await refused(await deliver(body, signed(sub.secret, body), { token: null }), 401, "missing_auth", before);
    });

    it("a wrong token: a bad checksum, or one that is not ours", async () => {
      const before = await runsOf(org.org);
      const wrong = token.slice(0, -1) + (token.endsWith("a") ? "b" : "a");
      await refused(await deliver(body, signed(sub.secret, body), { token: wrong }), 401, "token_invalid", before);
      await refused(await deliver(body, signed(sub.secret, body), { token: "not-a-token" }), 401, "token_invalid", before);
    });

    it("a token of another project, of every project, or without webhooks:ingest", async () => {
      const before = await runsOf(org.org);
      const other = randomUUID();
      await sql`insert into public.projects (id, org_id, name, slug) values (${other}, ${org.org}, 'Other', ${`other-${other.slice(0, 8)}`})`;
      await refused(await deliver(body, signed(sub.secret, body), { token: await org.token(["webhooks:ingest"], other) }), 403, "inbound_token_project", before);
      await refused(await deliver(body, signed(sub.secret, body), { token: await org.token(["webhooks:ingest"], null) }), 403, "inbound_token_project", before);
      await refused(await deliver(body, signed(sub.secret, body), { token: await org.token(["runs:write"]) }), 403, "token_scope", before);
    });

    it("a subscription of another organization (as if it did not exist)", async () => {
      const elsewhere = await createInboundOrg(sql, "Elsewhere");
      const theirs = await elsewhere.subscription("v1");
      const before = await runsOf(elsewhere.org);
      await refused(await deliver(body, signed(theirs.secret!, body), { subscription: theirs.id }), 404, "inbound_subscription_not_found", await runsOf(org.org));
      expect(await runsOf(elsewhere.org)).toBe(before);
    });

    it("a bad signature", async () => {
      const before = await runsOf(org.org);
      const otherSecret = `whsec_${Buffer.from(randomUUID()).toString("base64")}`;
      await refused(await deliver(body, signed(otherSecret, body)), 401, "inbound_signature_invalid", before);
      await refused(await deliver(body, { ...signed(sub.secret, body), "webhook-signature": "v1,AAAA" }), 401, "inbound_signature_invalid", before);
    });

    it("a body changed after signing", async () => {
      const before = await runsOf(org.org);
      await refused(await deliver(JSON.stringify({ ticket: 8 }), signed(sub.secret, body)), 401, "inbound_signature_invalid", before);
    });

    it("missing headers", async () => {
      const before = await runsOf(org.org);
      const { "webhook-signature": _, ...unsigned } = signed(sub.secret, body);
      await refused(await deliver(body, unsigned), 400, "inbound_headers_missing", before);
    });

    it("a timestamp too old", async () => {
      const before = await runsOf(org.org);
      await refused(await deliver(body, signed(sub.secret, body, { at: new Date(Date.now() - 6 * 60_000) })), 400, "inbound_timestamp_too_old", before);
    });

    it("a timestamp too far ahead", async () => {
      const before = await runsOf(org.org);
      await refused(await deliver(body, signed(sub.secret, body, { at: new Date(Date.now() + 6 * 60_000) })), 400, "inbound_timestamp_too_new", before);
    });

    it("a replayed webhook-id, naming the run the first delivery started", async () => {
      const headers = signed(sub.secret, body);
      const first = await deliver(body, headers);
      expect(first.status).toBe(202);
      const before = await runsOf(org.org);
      const again = await deliver(body, headers);
      await refused(again, 409, "inbound_replayed", before);
      expect(again.body.error?.run_id).toBe(first.body.run_id);
    });

    it("an oversized body", async () => {
      const before = await runsOf(org.org);
      const big = JSON.stringify({ text: "x".repeat(49 * 1024) });
      await refused(await deliver(big, signed(sub.secret, big)), 413, "body_too_large", before);
    });
  });

  it("starts exactly one run for a delivery retried at once", async () => {
    const body = JSON.stringify({ ticket: 99 });
    const headers = signed(sub.secret, body);
    const answers = await Promise.all(Array.from({ length: 5 }, () => deliver(body, headers)));
    expect(answers.map((a) => a.status).sort()).toEqual([202, 409, 409, 409, 409]);
    const [{ n }] = await sql`select count(*)::int as n from public.agent_runs where org_id = ${org.org}
                                and input -> 'webhook' ->> 'webhook_id' = ${headers["webhook-id"]}`;
    expect(n).toBe(1);
  });

  it("verifies with the old and the new secret while a rotation's grace lasts, and with the new one only after", async () => {
    const rotated = await org.asAdmin(async (tx) => {
      const [{ r }] = await tx`select public.rotate_webhook_secret(${sub.id}, 60) as r`;
      return r as { secret: string; previous_valid_until: string };
    });
    const body = JSON.stringify({ ticket: 5 });
    expect((await deliver(body, signed(sub.secret, body))).status).toBe(202);
    expect((await deliver(body, signed(rotated.secret, body))).status).toBe(202);
    // A sender that signs with both (Standard Webhooks' space-separated list) is accepted too.
    const both = signed(rotated.secret, body);
    const oldSig = new Webhook(sub.secret).sign(both["webhook-id"], new Date(Number(both["webhook-timestamp"]) * 1000), body);
    expect((await deliver(body, { ...both, "webhook-signature": `${oldSig} ${both["webhook-signature"]}` })).status).toBe(202);

    // The grace period ends.
    await sql`update public.webhook_subscriptions set previous_valid_until = now() - interval '1 second' where id = ${sub.id}`;
    const old = await deliver(body, signed(sub.secret, body));
    expect([old.status, old.body.error?.code]).toEqual([401, "inbound_signature_invalid"]);
    expect((await deliver(body, signed(rotated.secret, body))).status).toBe(202);
    sub.secret = rotated.secret;
  });

  it("takes v1a deliveries signed with the sender's Ed25519 key", async () => {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    const v1a = await org.subscription("v1a", `whpk_${raw.toString("base64")}`);
    const body = JSON.stringify({ status: "degraded" });
    const id = `msg_${randomUUID()}`;
    const ts = String(Math.floor(Date.now() / 1000));
    const signature = sign(null, Buffer.from(`${id}.${ts}.${body}`), privateKey).toString("base64");
    const headers = { "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": `v1a,${signature}` };
    expect((await deliver(body, headers, { subscription: v1a.id })).status).toBe(202);
    const other = generateKeyPairSync("ed25519").privateKey;
    const forged = { ...headers, "webhook-id": `msg_${randomUUID()}` };
    forged["webhook-signature"] = `v1a,${sign(null, Buffer.from(`${forged["webhook-id"]}.${ts}.${body}`), other).toString("base64")}`;
    const refused = await deliver(body, forged, { subscription: v1a.id });
    expect([refused.status, refused.body.error?.code]).toEqual([401, "inbound_signature_invalid"]);
  });

  it("records refusals with their reason, at most once a minute per reason, so a flood can't fill the chain", async () => {
    const flooded = await org.subscription("v1");
    const body = JSON.stringify({ ticket: 1 });
    for (let i = 0; i < 6; i++) {
      const answer = await deliver(body, { ...signed(flooded.secret!, body), "webhook-signature": "v1,AAAA" }, { subscription: flooded.id });
      expect(answer.status).toBe(401);
    }
    const entries = await sql`select payload from audit.records where org_id = ${org.org} and action = 'webhook.refused' and target_id = ${flooded.id}`;
    expect(entries.map((e) => e.payload.reason)).toEqual(["inbound_signature_invalid"]);
    const rows = await sql`select outcome, times from public.webhook_deliveries where subscription_id = ${flooded.id}`;
    expect(rows).toEqual([{ outcome: "inbound_signature_invalid", times: 6 }]);
  });
});
