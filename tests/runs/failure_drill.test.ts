/**
 * The failure drill (seed 002: "a failing dependency degrades gracefully"): the database of a
 * running stack is stopped. While it is down, every edge function answers a request that needs it
 * with a 503 JSON error and Retry-After, as do REST, auth and the console server; the gateway keeps
 * serving the console's pages and its own answers, and health says "down". Then the database comes
 * back, and without a restart of anything every route answers again and the run worker runs a run.
 * It has a stack of its own (on free ports, in a temporary folder), so it runs with the runs suite.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Stack, startOnFreePorts } from "../../scripts/stack/index.ts";
import { patChecksum } from "../../functions/_shared/pat/token.ts";

const ACME = "0a000000-0000-4000-8000-00000000000a";
const ACME_AGENT = "2a000000-0000-4000-8000-00000000000a";
const STRIPE_WEBHOOK_SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-drill-"));
let stack: Stack;
let userToken = "";

beforeAll(async () => {
  stack = await startOnFreePorts({
    root: process.cwd(), stateDir,
    functionsEnv: { STRIPE_SECRET_KEY: `sk_test_${randomBytes(12).toString("hex")}`, STRIPE_WEBHOOK_SECRETS: STRIPE_WEBHOOK_SECRET },
  });
  const ada = stack.info.demoUsers.find((u) => u.email === "ada@acme.test")!;
  const res = await fetch(`${stack.info.apiUrl}/auth/v1/token?grant_type=password`, {
    method: "POST", headers: { apikey: stack.info.anonKey, "content-type": "application/json" },
    body: JSON.stringify({ email: ada.email, password: ada.password }),
  });
  userToken = ((await res.json()) as { access_token: string }).access_token;
}, 180_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

const pat = () => {
  const body = randomBytes(30).toString("base64").replace(/[^0-9A-Za-z]/g, "").padEnd(30, "x").slice(0, 30);
  return `gtp_${body}${patChecksum(body)}`;
};
const widgetKey = () => {
  const body = `ghw_${randomBytes(24).toString("base64url")}`;
  return `${body}_${createHash("sha256").update(body).digest("hex").slice(0, 6)}`;
};

/** One request per edge function that needs the database to answer. */
function functionRequests(): Record<string, { method: string; path: string; headers?: Record<string, string>; body?: string }> {
  const user = { authorization: `Bearer ${userToken}`, "x-org-id": ACME, "content-type": "application/json" };
  const service = { authorization: `Bearer ${stack.info.serviceRoleKey}`, "content-type": "application/json" };
  const stripeBody = JSON.stringify({ id: "evt_drill", object: "event", type: "customer.updated", data: { object: {} }, created: Math.floor(Date.now() / 1000), livemode: false });
  return {
    "audit-checkpoint": { method: "POST", path: "", headers: service, body: "{}" },
    "audit-export": { method: "GET", path: "", headers: user },
    "audit-proof": { method: "GET", path: "?type=inclusion&seq=1", headers: user },
    billing: { method: "GET", path: "/plans", headers: user },
    connectors: { method: "POST", path: "/connections", headers: user, body: JSON.stringify({ provider: "https_webhook", display_name: "Drill", credential: { url: "https://example.com/hook" } }) },
    domains: { method: "POST", path: "/verify-pending", headers: service, body: "{}" },
    health: { method: "GET", path: "" },
    inbound: { method: "POST", path: `/${crypto.randomUUID()}`, headers: { authorization: `Bearer ${pat()}`, "content-type": "application/json" }, body: "{}" },
    invitations: { method: "POST", path: "", headers: user, body: JSON.stringify({ email: "drill@acme.test", role: "project_viewer" }) },
    mcp: { method: "POST", path: "", headers: { authorization: `Bearer ${pat()}`, "content-type": "application/json", accept: "application/json, text/event-stream" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }) },
    "model-gateway": { method: "GET", path: "/v1/models", headers: { ...user, "x-agent-id": ACME_AGENT } },
    rest: { method: "GET", path: "/agents", headers: { authorization: `Bearer ${pat()}` } },
    "stripe-webhook": {
      method: "POST", path: "", body: stripeBody,
      headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload: stripeBody, secret: STRIPE_WEBHOOK_SECRET }) },
    },
    tokens: { method: "POST", path: "/exchange", headers: { ...service, "x-personal-access-token": pat() } },
    widget: { method: "POST", path: "/v1/sessions", headers: { "content-type": "application/json", origin: "https://shop.example.com", "x-widget-key": widgetKey() }, body: JSON.stringify({ key: widgetKey() }) },
    "widget-preview": { method: "POST", path: "", headers: user, body: JSON.stringify({ key_id: crypto.randomUUID(), content: "hi" }) },
  };
}

async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  let json: { error?: { code?: string }; code?: string; error_code?: string; status?: string } | null = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: the assertion below says so
  }
  return { status: res.status, retryAfter: res.headers.get("retry-after"), json, text };
}

describe("the failure drill: the database stops while the stack runs", () => {
  it("answers 503 JSON with Retry-After on every route that needs it, keeps the gateway up, and recovers by itself", async () => {
    const { apiUrl, functionsUrl, anonKey } = stack.info;
    const requests = functionRequests();
    // Every function is in the drill: a new one fails this line until it is added above.
    const functions = readdirSync("functions").filter((f) => !f.startsWith("_") && statSync(join("functions", f)).isDirectory()).sort();
    expect(Object.keys(requests).sort()).toEqual(functions);
    expect((await call(`${functionsUrl}/health`)).status).toBe(200);

    await stack.database.stop();
    const problems: string[] = [];
    const expect503 = (what: string, r: Awaited<ReturnType<typeof call>>) => {
      if (r.status !== 503 || !r.json || !r.retryAfter || !/^\d+$/.test(r.retryAfter)) {
        problems.push(`${what}: ${r.status} retry-after=${r.retryAfter} ${r.text.slice(0, 160)}`);
      }
    };
    for (const [name, req] of Object.entries(requests)) {
      expect503(`functions/${name}`, await call(`${functionsUrl}/${name}${req.path}`, { method: req.method, headers: req.headers, body: req.body }));
    }
    expect503("REST", await call(`${apiUrl}/rest/v1/agents?select=id`, { headers: { apikey: anonKey, authorization: `Bearer ${userToken}` } }));
    expect503("auth", await call(`${apiUrl}/auth/v1/token?grant_type=password`, {
      method: "POST", headers: { apikey: anonKey, "content-type": "application/json" }, body: JSON.stringify({ email: "ada@acme.test", password: "wrong" }),
    }));
    expect(problems).toEqual([]);
    const health = await call(`${functionsUrl}/health`);
    expect(health.json?.status).toBe("down");
    // The gateway itself stays up: the console's pages, security.txt, liveness.
    expect((await call(`${apiUrl}/`)).status).toBe(200);
    expect((await call(`${apiUrl}/.well-known/security.txt`)).status).toBe(200);
    expect((await call(`${functionsUrl}/health/live`)).status).toBe(200);

    await stack.database.start();
    const returned = Date.now();
    // Nothing is restarted: each route answers again on its own.
    const deadline = Date.now() + 90_000;
    const recovered = async () => {
      const checks = await Promise.all([
        call(`${functionsUrl}/health`).then((r) => r.status === 200),
        call(`${apiUrl}/rest/v1/agents?select=id`, { headers: { apikey: anonKey, authorization: `Bearer ${userToken}` } }).then((r) => r.status === 200),
        call(`${functionsUrl}/billing/plans`, { headers: requests.billing.headers }).then((r) => r.status === 200),
      ]);
      return checks.every(Boolean);
    };
    while (!(await recovered())) {
      if (Date.now() > deadline) throw new Error("the stack did not recover within 90 s of the database's return");
      await new Promise((r) => setTimeout(r, 1000));
    }
    console.log(`failure drill: every route answered again ${((Date.now() - returned) / 1000).toFixed(1)} s after the database returned`);
    // The run worker too: a run started now is picked up and finished.
    const sql = postgres(stack.info.dbUrl, { max: 1, onnotice: () => {} });
    try {
      const [run] = await sql.begin(async (tx) => {
        await tx`select set_config('role', 'service_role', true)`;
        return await tx`select id from public.start_agent_run(${ACME_AGENT}, ${tx.json({ prompt: "Say hello after the drill." })})`;
      });
      let status = "";
      while (!["succeeded", "failed", "budget_exhausted", "timed_out"].includes(status)) {
        if (Date.now() > deadline + 30_000) throw new Error(`the run is still ${status}`);
        await new Promise((r) => setTimeout(r, 250));
        [{ status }] = await sql`select status::text from public.agent_runs where id = ${run.id}`;
      }
      expect(status).toBe("succeeded");
    } finally {
      await sql.end();
    }
  }, 240_000);
});
