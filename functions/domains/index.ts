/**
 * /functions/v1/domains: the server-side verifier of the email domains an organization claims
 * (supabase/migrations/…_domain_verification.sql). A claim's token is published as a DNS TXT
 * record at `_gatehouse.<domain>`; this function looks it up with node:dns's Resolver and hands the
 * TXT values it found to the database, which sets the claim verified only when its own token is
 * among them. Nothing the client says about DNS is trusted.
 *
 *   POST /verify           {domain}: check one claim now (a tenant admin, X-Org-Id)
 *   POST /verify-pending   check every claim still waiting (the service role: the scheduler)
 *
 * Configuration: GATEHOUSE_DNS_SERVERS, resolvers to ask as host:port, comma-separated (default:
 * the system's); GATEHOUSE_DNS_TIMEOUT_MS (default 3000).
 */
import { Resolver } from "node:dns/promises";
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { asMember, asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const config = configuration((get) => ({
  servers: (get("GATEHOUSE_DNS_SERVERS") ?? "").split(",").map((s) => s.trim()).filter(Boolean)
    .map((s) => z.string().regex(/^[0-9a-fA-F.:[\]]+$/).parse(s)),
  timeoutMs: z.coerce.number().int().min(100).max(30_000).parse(get("GATEHOUSE_DNS_TIMEOUT_MS") ?? 3000),
}), "domains_misconfigured");

const Domain = z.string().trim().toLowerCase().max(253)
  .regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, "a domain such as example.com");

/** What the lookup found. */
const Outcome = z.enum(["verified", "token_not_found", "no_record", "dns_timeout", "dns_error"]);
type Outcome = z.infer<typeof Outcome>;

const Checked = z.object({
  domain: z.string(),
  verified: z.boolean(),
  outcome: Outcome.describe("verified; token_not_found: TXT records, none with the token; no_record; dns_timeout; dns_error"),
  record: z.string().describe("The TXT record's name"),
});

const app = functionApp({
  name: "domains",
  version: "1.0.0",
  description: "Verifies claimed email domains by their DNS TXT record, on demand and on a schedule.",
});
app.use(jsonBody(4 * 1024));

app.openapi(createRoute({
  method: "post", path: "/verify", summary: "Look up a claimed domain's TXT record now (tenant admin, X-Org-Id)",
  request: { headers: OrgHeader, ...jsonRequest(z.strictObject({ domain: Domain })) },
  responses: { 200: { description: "What the lookup found, and whether the claim is verified", content: jsonContent(Checked) }, ...refusals(400, 401, 403, 404, 409, 413, 415, 503) },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  if (caller.kind !== "user") throw refuse("sign_in_required", "a tenant admin verifies from the console; the scheduler uses /verify-pending");
  const orgId = orgIdOf(c.req.raw);
  const { domain } = c.req.valid("json");
  // The claim must be the admin's organization's: read as them, under RLS.
  const [claim] = await db().begin(async (tx) => {
    await asMember(tx, caller, orgId, { atLeast: "tenant_admin" });
    return await tx`select domain from public.organization_domains where org_id = ${orgId} and domain = ${domain}`;
  });
  if (!claim) throw refuse("domain_not_claimed");
  return c.json(await check(orgId, domain), 200);
});

app.openapi(createRoute({
  method: "post", path: "/verify-pending", summary: "Look up every claim still waiting (the service role: the scheduler)",
  request: jsonRequest(z.strictObject({})),
  responses: {
    200: { description: "How many claims were checked and verified", content: jsonContent(z.object({ checked: z.number().int(), verified: z.number().int() })) },
    ...refusals(400, 401, 403, 413, 415, 503),
  },
}), async (c) => {
  if (callerOf(c.req.raw).kind !== "service") throw refuse("runtime_only", "the scheduler (the service role) checks the waiting claims");
  const pending = await db().begin(async (tx) => {
    await asService(tx);
    return await tx`select org_id, domain from private.pending_domain_claims(100)`;
  });
  let verified = 0;
  for (const p of pending) {
    const result = await check(p.org_id, p.domain).catch(() => null);
    if (result?.verified) verified++;
  }
  return c.json({ checked: pending.length, verified }, 200);
});

Deno.serve(app.fetch);

/** Looks up `_gatehouse.<domain>` and has the database decide. */
async function check(orgId: string, domain: string): Promise<z.infer<typeof Checked>> {
  const record = `_gatehouse.${domain}`;
  const found = await txtValues(record);
  const values = found.ok ? found.values : [];
  const [{ r }] = await db().begin(async (tx) => {
    await asService(tx);
    return await tx`select private.verify_domain_claim(${orgId}, ${domain}, ${values}::text[]) as r`;
  });
  const verified = (r as { verified: boolean }).verified;
  const outcome: Outcome = verified ? "verified" : found.ok ? "token_not_found" : found.reason;
  return { domain, verified, outcome, record };
}

/** The TXT values at `name` (each record's strings joined), or why there are none. */
async function txtValues(name: string): Promise<{ ok: true; values: string[] } | { ok: false; reason: "no_record" | "dns_timeout" | "dns_error" }> {
  const { servers, timeoutMs } = config();
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  if (servers.length > 0) resolver.setServers(servers);
  try {
    const records = await resolver.resolveTxt(name);
    return { ok: true, values: records.map((parts) => parts.join("")) };
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOTFOUND" || code === "ENODATA" || code === "NXDOMAIN") return { ok: false, reason: "no_record" };
    if (code === "ETIMEOUT" || code === "ETIMEDOUT") return { ok: false, reason: "dns_timeout" };
    return { ok: false, reason: "dns_error" };
  }
}
