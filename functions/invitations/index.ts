/**
 * POST /functions/v1/invitations: a tenant admin invites someone by email. The database creates
 * the invitation (public.create_invitation: role, verified domains, one pending per address) and
 * Supabase Auth mails the link: if the mail is not sent, the invitation is withdrawn again.
 *   - someone without an account gets Supabase Auth's invitation email (auth.admin.inviteUserByEmail),
 *     which creates their account and signs them in when they open it;
 *   - someone with an account gets a sign-in link (magic link) instead.
 * Either way the link lands on the console's /invitations/accept?token=…, where they accept. The
 * token travels only in that email; the response never carries it. Every invitation mails
 * someone, so the database limits them (public.create_invitation): 50 at once and 100 a day per
 * organization, 25 at once and 50 a day per inviter; past that, 429 invitations_rate_limited with
 * Retry-After, and nothing is kept or mailed.
 *
 *
 * POST /functions/v1/invitations/links: a new link for an open invitation, by its token (which is
 * in the invitation email), mailed to the invited address only. Supabase Auth's link lasts an hour
 * (otp_expiry; at most a day on hosted Supabase), the invitation seven days: this is how the link
 * lasts as long as the invitation. At most one a minute (429 invitation_link_recent); an expired
 * invitation answers 410 invitation_expired, an unknown or accepted one 404 invitation_not_found.
 * It needs no signed-in caller (the person has no session yet): the console server calls it with
 * the anon key.
 *
 * Configuration: GATEHOUSE_CONSOLE_URL, the console's origin (default: SUPABASE_URL, where the
 * local gateway serves the console); it must be in the project's Auth redirect allow-list.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { createClient } from "@supabase/supabase-js";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { asMember, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";

const config = configuration((get) => {
  const supabaseUrl = z.url().parse(get("SUPABASE_URL"));
  return {
    supabaseUrl,
    anonKey: z.string().min(1).parse(get("SUPABASE_ANON_KEY")),
    serviceRoleKey: z.string().min(1).parse(get("SUPABASE_SERVICE_ROLE_KEY")),
    consoleUrl: new URL(z.url().parse(get("GATEHOUSE_CONSOLE_URL") ?? supabaseUrl)).origin,
  };
}, "invitations_misconfigured");

const Invite = z.strictObject({
  email: z.email().max(254).transform((e) => e.toLowerCase()),
  role: z.enum(["tenant_admin", "project_admin", "project_contributor", "project_viewer"]),
});

const Sent = z.object({
  invitation: z.object({ email: z.string(), role: z.string(), expires_at: z.string() }),
  mailed: z.enum(["invitation", "sign_in_link"]).describe("Which email Supabase Auth sent"),
});

const app = functionApp({
  name: "invitations",
  version: "1.0.0",
  description: "Invites someone to the organization and has Supabase Auth mail them the link.",
});

app.use(jsonBody(4 * 1024));

app.openapi(createRoute({
  method: "post", path: "/", summary: "Invite someone by email (tenant admin, X-Org-Id)",
  request: { headers: OrgHeader, ...jsonRequest(Invite) },
  responses: {
    201: { description: "Invited and mailed", content: jsonContent(Sent) },
    ...refusals(400, 401, 403, 413, 415, 429, 502, 503),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  if (caller.kind !== "user") throw refuse("sign_in_required", "a tenant admin invites from the console");
  const orgId = orgIdOf(c.req.raw);
  const { email, role } = c.req.valid("json");
  const env = config();

  // The invitation is committed before Supabase Auth is called, so that no transaction waits on the
  // mail; if the mail is not sent, the invitation is withdrawn again (both steps are audited).
  const created = await db().begin(async (tx) => {
    await asMember(tx, caller, orgId, { atLeast: "tenant_admin" });
    const [{ token }] = await tx`select public.create_invitation(${email}, ${role}::public.member_role) as token`;
    const [invite] = await tx`select id, email, role, expires_at from public.invitations
                               where org_id = ${orgId} and email = ${email} and accepted_at is null`;
    const [org] = await tx`select name from public.organizations where id = ${orgId}`;
    return { token: token as string, invite, orgName: org.name as string };
  });
  let mailed: z.infer<typeof Sent>["mailed"];
  try {
    mailed = await mail(env, email, `${env.consoleUrl}/invitations/accept?token=${created.token}`, {
      invited_to: created.orgName, invited_by: typeof caller.claims.email === "string" ? caller.claims.email : "A tenant admin", role: ROLE_NAMES[role],
    });
  } catch (e) {
    await db().begin(async (tx) => {
      await asMember(tx, caller, orgId, { atLeast: "tenant_admin" });
      await tx`delete from public.invitations where id = ${created.invite.id}`;
    });
    throw e;
  }
  const { invite } = created;
  return c.json({ invitation: { email: invite.email, role: invite.role, expires_at: new Date(invite.expires_at).toISOString() }, mailed }, 201);
});

const LinkRequest = z.strictObject({ token: z.string().regex(/^[0-9a-f]{64}$/, "the invitation's token: 64 hex digits") });
const LinkSent = z.object({
  mailed: z.enum(["invitation", "sign_in_link"]).describe("Which email Supabase Auth sent"),
  expires_at: z.string().describe("When the invitation itself expires"),
});

app.openapi(createRoute({
  method: "post", path: "/links", summary: "Mail a new link for an open invitation, by its token (once a minute at most)",
  request: jsonRequest(LinkRequest),
  responses: {
    202: { description: "A new link is mailed to the invited address", content: jsonContent(LinkSent) },
    ...refusals(400, 404, 410, 413, 415, 429, 502, 503),
  },
}), async (c) => {
  const { token } = c.req.valid("json");
  const env = config();
  const [link] = await db()`select * from private.invitation_link(${token})`;
  if (link.outcome === "not_found") throw refuse("invitation_not_found");
  if (link.outcome === "expired") throw refuse("invitation_expired");
  if (link.outcome === "too_soon") throw refuse("invitation_link_recent", undefined, { fields: { retry_after: 60 }, headers: { "retry-after": "60" } });
  const mailed = await mail(env, link.email, `${env.consoleUrl}/invitations/accept?token=${token}`, {
    invited_to: link.organization, invited_by: link.invited_by ?? "A tenant admin", role: ROLE_NAMES[link.role as z.infer<typeof Invite>["role"]],
  });
  return c.json({ mailed, expires_at: new Date(link.expires_at).toISOString() }, 202);
});

/** A role as the invitation email names it. */
const ROLE_NAMES: Record<z.infer<typeof Invite>["role"], string> = {
  tenant_admin: "tenant admin", project_admin: "project admin", project_contributor: "contributor", project_viewer: "viewer",
};

/**
 * Has Supabase Auth mail `email` a link that ends at `next`: an invitation (its template names the
 * organization, the inviter and the role from `data`), or a sign-in link.
 */
async function mail(
  env: ReturnType<typeof config>, email: string, next: string, data: { invited_to: string; invited_by: string; role: string },
): Promise<z.infer<typeof Sent>["mailed"]> {
  const options = { auth: { persistSession: false, autoRefreshToken: false } };
  const admin = createClient(env.supabaseUrl, env.serviceRoleKey, options);
  const invited = await admin.auth.admin.inviteUserByEmail(email, { redirectTo: next, data });
  if (!invited.error) return "invitation";
  if (invited.error.code !== "email_exists") throw refuse("invitation_not_mailed");
  const anon = createClient(env.supabaseUrl, env.anonKey, options);
  const link = await anon.auth.signInWithOtp({ email, options: { shouldCreateUser: false, emailRedirectTo: next } });
  if (link.error) throw refuse("invitation_not_mailed");
  return "sign_in_link";
}

Deno.serve(app.fetch);
