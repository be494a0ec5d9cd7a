import { afterAll, describe, expect, it } from "vitest";
import { anonClient, signedIn, stack, superuser } from "../helpers/stack.ts";

const s = stack();

async function json(res: Response): Promise<any> {
  expect(res.headers.get("content-type")).toMatch(/application\/json/);
  return res.json();
}

describe("gateway", () => {
  it("serves PostgREST at /rest/v1 to the anon key", async () => {
    const res = await fetch(`${s.restUrl}/`, { headers: { apikey: s.anonKey } });
    expect(res.status).toBe(200);
    await res.body?.cancel();
  });

  it("refuses /rest/v1 without an API key with a JSON error", async () => {
    const res = await fetch(`${s.restUrl}/organizations`);
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("no_api_key");
  });

  it("refuses an API key that is not one of the project's", async () => {
    const res = await fetch(`${s.restUrl}/organizations`, { headers: { apikey: "not-a-key" } });
    expect(res.status).toBe(401);
    expect((await json(res)).error.code).toBe("invalid_api_key");
  });

  it("answers CORS preflights for the API", async () => {
    const res = await fetch(`${s.restUrl}/organizations`, {
      method: "OPTIONS",
      headers: { origin: "http://example.test", "access-control-request-method": "GET", "access-control-request-headers": "apikey, authorization, x-org-id" },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")).toMatch(/apikey/);
    expect(res.headers.get("access-control-allow-headers")).toMatch(/x-org-id/);
  });

  it("adds CORS headers to proxied responses", async () => {
    const res = await fetch(`${s.restUrl}/`, { headers: { apikey: s.anonKey, origin: "http://example.test" } });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    await res.body?.cancel();
  });

  it("serves the web app at / with the index as SPA fallback", async () => {
    for (const path of ["/", "/some/client/route"]) {
      const res = await fetch(`${s.apiUrl}${path}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/<div id="root">/);
    }
  });

  it("does not serve files outside the web build", async () => {
    for (const path of ["/..%2f..%2fpackage.json", "/%2e%2e/%2e%2e/package.json", "/../.local/stack.json"]) {
      const res = await fetch(`${s.apiUrl}${path}`);
      const body = await res.text();
      expect(body).not.toMatch(/"devDependencies"|jwtSecret/);
    }
  });

  it("serves the console's page for its deep links, and no key with it", async () => {
    const res = await fetch(`${s.apiUrl}/o/${crypto.randomUUID()}/approvals/${crypto.randomUUID()}`);
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain('<div id="root">');
    expect(page).not.toContain(s.anonKey);
  });
});

describe("edge functions", () => {
  it("health reports the database up and its own version", async () => {
    const res = await fetch(`${s.functionsUrl}/health`);
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.database.status).toBe("up");
    expect(body.database.version).toMatch(/^\d+/);
    expect(body.function).toMatchObject({ name: "health", version: expect.any(String) });
  });

  it("health reports each dependency apart, public and without a secret or an address", async () => {
    const res = await fetch(`${s.functionsUrl}/health`);
    const text = await res.text();
    const body = JSON.parse(text);
    expect(res.status).toBe(200);
    expect(body.checks).toMatchObject({
      vault: { status: "ok" },
      sealer: { status: "ok", unsealed: expect.any(Number) },
      checkpoints: { status: expect.stringMatching(/^(ok|degraded)$/) },
      run_queue: { depth: expect.any(Number) },
      purges: { pending: expect.any(Number) },
      model_providers: { openai: expect.stringMatching(/^(not_)?configured$/), anthropic: expect.stringMatching(/^(not_)?configured$/) },
      stripe: expect.stringMatching(/^(not_)?configured$/),
    });
    expect(body.database.latency_ms).toBeGreaterThanOrEqual(0);
    for (const secret of [s.serviceRoleKey, s.anonKey, s.jwtSecret, "127.0.0.1", "postgresql://", "sk_", "whsec_"]) expect(text).not.toContain(secret);
    // Gathered at most every 5 s, whoever asks: a second call at once gets the same checks.
    const again = await (await fetch(`${s.functionsUrl}/health`)).json();
    expect(again.checks_as_of).toBe(body.checks_as_of);
    expect(Date.now() - Date.parse(body.checks_as_of)).toBeLessThan(6_000);
    const live = await fetch(`${s.functionsUrl}/health/live`);
    expect(live.status).toBe(200);
    expect((await live.json()).status).toBe("live");
  });

  it("health is degraded, still serving, while a ready job waits past a minute in the run queue", async () => {
    const sql = superuser();
    try {
      const [job] = await sql`select id from graphile_worker.add_job('health_drill_no_such_task', '{}'::json, run_at => now() - interval '5 minutes')`;
      try {
        // The checks are gathered at most every 5 s: wait for a gathering after the job was queued.
        const queued = Date.now();
        let res: Response;
        let body: { status: string; checks_as_of: string; checks: { run_queue: { status: string; oldest_queued_seconds: number } } };
        do {
          await new Promise((r) => setTimeout(r, 500));
          res = await fetch(`${s.functionsUrl}/health`);
          body = await res.json();
        } while (Date.parse(body.checks_as_of) < queued && Date.now() - queued < 10_000);
        expect(res.status).toBe(200);
        expect(body.status).toBe("degraded");
        expect(body.checks.run_queue.status).toBe("degraded");
        expect(body.checks.run_queue.oldest_queued_seconds).toBeGreaterThan(250);
      } finally {
        await sql`select graphile_worker.permanently_fail_jobs(array[${job.id}]::bigint[], 'health test')`;
        await sql`delete from graphile_worker._private_jobs where id = ${job.id}`;
      }
    } finally {
      await sql.end();
    }
  });

  it("health is degraded while a workspace purge has been unfinished for more than 15 minutes", async () => {
    const sql = superuser();
    const org = crypto.randomUUID();
    try {
      // A purge that started an hour ago and never finished (no worker runs in this suite).
      await sql`insert into private.workspace_terminations (org_id, reason, requested_at) values (${org}, 'breach', now() - interval '1 hour')`;
      const inserted = Date.now();
      let body: { status: string; checks_as_of: string; checks: { purges: { status: string; pending: number; oldest_pending_seconds: number } } };
      do {
        await new Promise((r) => setTimeout(r, 500));
        body = await (await fetch(`${s.functionsUrl}/health`)).json();
      } while (Date.parse(body.checks_as_of) < inserted && Date.now() - inserted < 10_000);
      expect(body.status).toBe("degraded");
      expect(body.checks.purges.status).toBe("degraded");
      expect(body.checks.purges.pending).toBeGreaterThanOrEqual(1);
      expect(body.checks.purges.oldest_pending_seconds).toBeGreaterThan(3500);
    } finally {
      await sql`delete from private.workspace_terminations where org_id = ${org}`;
      await sql.end();
    }
  });

  it("health refuses other methods with a JSON error", async () => {
    const res = await fetch(`${s.functionsUrl}/health`, { method: "POST", body: "{" });
    expect(res.status).toBe(405);
    expect((await json(res)).error.code).toBe("method_not_allowed");
  });

  it("requires a valid JWT for functions that verify it (the default)", async () => {
    const missing = await fetch(`${s.functionsUrl}/no-such-function`);
    expect(missing.status).toBe(401);
    expect((await json(missing)).error.code).toBe("invalid_jwt");
    const forged = await fetch(`${s.functionsUrl}/no-such-function`, {
      headers: { authorization: `Bearer ${s.anonKey.slice(0, -4)}AAAA` },
    });
    expect(forged.status).toBe(401);
    const valid = await fetch(`${s.functionsUrl}/no-such-function`, { headers: { authorization: `Bearer ${s.anonKey}` } });
    expect(valid.status).toBe(404);
    expect((await json(valid)).error.code).toBe("function_not_found");
  });
});

describe("auth stand-in (supabase-js unchanged)", () => {
  const ada = s.demoUsers.find((u) => u.email === "ada@acme.test")!;

  it("signs in with a seeded user's password and returns a session with GoTrue's claims", async () => {
    const client = anonClient();
    const { data, error } = await client.auth.signInWithPassword({ email: ada.email, password: ada.password });
    expect(error).toBeNull();
    expect(data.session?.access_token).toBeTruthy();
    const claims = JSON.parse(Buffer.from(data.session!.access_token.split(".")[1], "base64url").toString());
    expect(claims).toMatchObject({ sub: data.user!.id, role: "authenticated", aud: "authenticated", email: ada.email });
    expect(claims.session_id).toEqual(expect.any(String));
    expect(claims.exp).toBeGreaterThan(Date.now() / 1000);
  });

  it("refuses a wrong password and an unknown email alike", async () => {
    const client = anonClient();
    const wrong = await client.auth.signInWithPassword({ email: ada.email, password: "wrong-password" });
    const unknown = await client.auth.signInWithPassword({ email: "nobody@acme.test", password: "whatever" });
    expect(wrong.error?.code).toBe("invalid_credentials");
    expect(unknown.error?.code).toBe("invalid_credentials");
    expect(wrong.data.session).toBeNull();
  });

  it("returns the user, refreshes with rotation, and signs out", async () => {
    const client = await signedIn(ada.email);
    const user = await client.auth.getUser();
    expect(user.data.user?.email).toBe(ada.email);

    const before = (await client.auth.getSession()).data.session!;
    const refreshed = await client.auth.refreshSession();
    expect(refreshed.error).toBeNull();
    expect(refreshed.data.session!.refresh_token).not.toBe(before.refresh_token);

    const { error } = await client.auth.signOut();
    expect(error).toBeNull();
    // The access token is still unexpired, but its session is gone (supabase-js maps GoTrue's
    // session_not_found to AuthSessionMissingError).
    const after = await anonClient().auth.getUser(refreshed.data.session!.access_token);
    expect(after.data.user).toBeNull();
    expect(after.error?.name).toBe("AuthSessionMissingError");
  });

  it("ends the session when a rotated-out refresh token is replayed", async () => {
    const client = await signedIn(ada.email);
    const first = (await client.auth.getSession()).data.session!;
    const second = await client.auth.refreshSession();
    expect(second.error).toBeNull();
    const replay = await anonClient().auth.refreshSession({ refresh_token: first.refresh_token });
    expect(replay.error?.code).toBe("refresh_token_already_used");
    // The replay revoked the whole session, including the newest token.
    const newest = await anonClient().auth.refreshSession({ refresh_token: second.data.session!.refresh_token });
    expect(newest.error).not.toBeNull();
  });

  it("answers malformed and oversized bodies with 4xx JSON errors", async () => {
    const post = (body: string) =>
      fetch(`${s.apiUrl}/auth/v1/token?grant_type=password`, { method: "POST", headers: { apikey: s.anonKey, "content-type": "application/json" }, body });
    const bad = await post("{not json");
    expect(bad.status).toBe(400);
    expect((await json(bad)).error_code).toBe("bad_json");
    const wrongTypes = await post(JSON.stringify({ email: 42, password: [] }));
    expect(wrongTypes.status).toBe(400);
    expect((await json(wrongTypes)).error_code).toBe("validation_failed");
    const huge = await post(JSON.stringify({ email: "a@b.test", password: "x".repeat(100_000) }));
    expect(huge.status).toBe(413);
    expect((await json(huge)).error_code).toBe("request_too_large");
  });

  it("refuses an unsupported grant type", async () => {
    const res = await fetch(`${s.apiUrl}/auth/v1/token?grant_type=magic`, { method: "POST", headers: { apikey: s.anonKey }, body: "{}" });
    expect(res.status).toBe(400);
    expect((await json(res)).error_code).toBe("unsupported_grant_type");
  });
});

describe("row-level security through the API", () => {
  const clients: Awaited<ReturnType<typeof signedIn>>[] = [];
  afterAll(async () => {
    for (const c of clients) await c.auth.signOut();
  });

  it("shows a member only their own organizations", async () => {
    const ada = await signedIn("ada@acme.test");
    clients.push(ada);
    const { data, error } = await ada.from("organizations").select("slug");
    expect(error).toBeNull();
    expect(data!.map((o) => o.slug)).toEqual(["acme"]);
  });

  it("shows a member of two organizations both", async () => {
    const casey = await signedIn("casey@both.test");
    clients.push(casey);
    const { data } = await casey.from("organizations").select("slug").order("slug");
    expect(data!.map((o) => o.slug)).toEqual(["acme", "globex"]);
  });

  it("gives anon nothing on tenant tables", async () => {
    const { data, error } = await anonClient().from("organizations").select("id");
    expect(data).toBeNull();
    expect(error?.code).toBe("42501");
  });
});
