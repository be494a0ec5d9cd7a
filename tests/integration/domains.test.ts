/**
 * The domain verifier (functions/domains) against a DNS server on a loopback port (npm dns2, UDP
 * and TCP), the only resolver the throwaway stack's functions ask (scripts/test.ts sets
 * GATEHOUSE_DNS_SERVERS, and a 1-second timeout): a claim is verified only when its own token is in
 * the TXT record at _gatehouse.<domain>, a wrong token, a missing record and a resolver that never
 * answers each leave it waiting with their own outcome, and only a tenant admin (or the scheduler,
 * for every waiting claim) may ask.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import dns2 from "dns2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestProviders } from "../../scripts/test.ts";
import { ACME, GLOBEX } from "../helpers/fixtures.ts";
import { accessToken, type Client, signedIn, stack, superuser } from "../helpers/stack.ts";

const { Packet } = dns2;
const sql = superuser();
/** The TXT values each name answers; a name in `silent` gets no answer at all. */
const zone = new Map<string, string[]>();
const silent = new Set<string>();
let server: ReturnType<typeof dns2.createServer>;
let ada: Client;
let victor: Client;
let grace: Client;
const claimed: string[] = [];

beforeAll(async () => {
  const settings = JSON.parse(readFileSync(process.env.GATEHOUSE_TEST_PROVIDERS_FILE!, "utf8")) as TestProviders;
  server = dns2.createServer({
    udp: true,
    tcp: true,
    handle: (request, send) => {
      const [question] = request.questions;
      if (silent.has(question.name)) return;
      const response = Packet.createResponseFromRequest(request);
      const values = zone.get(question.name);
      if (!values) response.header.rcode = 3; // NXDOMAIN
      // (dns2 types an answer as its Resource class; a plain record is what it encodes.)
      for (const data of values ?? []) response.answers.push({ name: question.name, type: Packet.TYPE.TXT, class: Packet.CLASS.IN, ttl: 60, data } as never);
      send(response);
    },
  });
  await server.listen({ udp: { port: settings.dnsPort, address: "127.0.0.1" }, tcp: { port: settings.dnsPort, address: "127.0.0.1" } });
  [ada, victor, grace] = await Promise.all([signedIn("ada@acme.test"), signedIn("victor@acme.test"), signedIn("grace@globex.test")]);
});

afterAll(async () => {
  await sql`delete from public.organization_domains where domain = any(${claimed})`;
  await sql.end();
  await server?.close();
});

/** Claims a fresh domain for `org` as `who`; its verification token. */
async function claim(who: Client, org: string, domain = `verify-${randomUUID().slice(0, 8)}.example`): Promise<{ domain: string; token: string }> {
  const { data, error } = await who.from("organization_domains").insert({ org_id: org, domain }).select("domain, verification_token").single().setHeader("x-org-id", org);
  if (error) throw error;
  claimed.push(domain);
  return { domain: data.domain, token: data.verification_token };
}

async function verify(who: Client | "service", org: string, path: string, body: unknown) {
  const bearer = who === "service" ? stack().serviceRoleKey : await accessToken(who);
  const res = await fetch(`${stack().functionsUrl}/domains/${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, apikey: stack().anonKey, "content-type": "application/json", "x-org-id": org },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const verifiedAt = async (domain: string) => (await sql`select verified_at from public.organization_domains where domain = ${domain}`)[0]?.verified_at ?? null;

describe("the domain verifier", () => {
  it("verifies a claim whose token is in its TXT record, and records it in the audit chain", async () => {
    const { domain, token } = await claim(ada, ACME);
    zone.set(`_gatehouse.${domain}`, ["v=something-else", token]);
    const answer = await verify(ada, ACME, "verify", { domain });
    expect(answer).toEqual({ status: 200, body: { domain, verified: true, outcome: "verified", record: `_gatehouse.${domain}` } });
    expect(await verifiedAt(domain)).not.toBeNull();
    const [entry] = await sql`select action from audit.records where org_id = ${ACME} and target_id = ${domain} and action = 'domain.update'`;
    expect(entry).toBeDefined();
  });

  it("leaves a claim waiting when the record holds another token, is missing, or the resolver never answers", async () => {
    const wrong = await claim(ada, ACME);
    zone.set(`_gatehouse.${wrong.domain}`, ["not-the-token"]);
    expect((await verify(ada, ACME, "verify", { domain: wrong.domain })).body).toMatchObject({ verified: false, outcome: "token_not_found" });

    const missing = await claim(ada, ACME);
    expect((await verify(ada, ACME, "verify", { domain: missing.domain })).body).toMatchObject({ verified: false, outcome: "no_record" });

    const slow = await claim(ada, ACME);
    silent.add(`_gatehouse.${slow.domain}`);
    expect((await verify(ada, ACME, "verify", { domain: slow.domain })).body).toMatchObject({ verified: false, outcome: "dns_timeout" });

    for (const d of [wrong, missing, slow]) expect(await verifiedAt(d.domain)).toBeNull();
  }, 20_000);

  it("takes a tenant admin's request for a claim of their organization only", async () => {
    const { domain } = await claim(ada, ACME);
    expect(await verify(victor, ACME, "verify", { domain })).toMatchObject({ status: 403 });
    expect(await verify(ada, ACME, "verify", { domain: "never-claimed.example" })).toMatchObject({ status: 404, body: { error: { code: "domain_not_claimed" } } });
    expect(await verify(grace, GLOBEX, "verify", { domain })).toMatchObject({ status: 404, body: { error: { code: "domain_not_claimed" } } });
    expect(await verify(ada, ACME, "verify", { domain: "not a domain" })).toMatchObject({ status: 400 });
    expect(await verify(ada, ACME, "verify-pending", {})).toMatchObject({ status: 403 });
  });

  it("verifies every waiting claim on its schedule, and a domain vouches for one organization", async () => {
    const { domain, token } = await claim(ada, ACME);
    const second = await claim(grace, GLOBEX, domain);
    zone.set(`_gatehouse.${domain}`, [token, second.token]);
    const swept = await verify("service", ACME, "verify-pending", {});
    expect(swept.status).toBe(200);
    expect(swept.body.verified).toBeGreaterThanOrEqual(1);
    const rows = await sql`select org_id, verified_at is not null as verified from public.organization_domains where domain = ${domain} order by verified_at nulls last`;
    // The first to verify keeps it; the other organization is refused.
    expect(rows.filter((r) => r.verified)).toHaveLength(1);
    const loser = rows.find((r) => !r.verified)!.org_id === GLOBEX ? grace : ada;
    const loserOrg = loser === grace ? GLOBEX : ACME;
    expect(await verify(loser, loserOrg, "verify", { domain })).toMatchObject({ status: 409, body: { error: { code: "domain_verified_elsewhere" } } });
  }, 30_000);
});
