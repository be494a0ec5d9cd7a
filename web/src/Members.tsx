/**
 * Who belongs to the organization: members and their roles (tenant admins change roles, remove
 * members and end a member's sessions at once), invitations (sent by email through the
 * invitations function, revoked here), the email domains the organization claims, and its
 * security rules (verified domains only, two-factor for everyone). The database decides who may
 * change what, and asks a person who has a second factor to use it first (step_up_required).
 */
import { orgApi } from "./api.ts";
import { confirmAction } from "./confirm.tsx";
import { supabase } from "./supabase.ts";
import { field, functionError, Notice, States, unwrap, useAction, useLoad, useOrg, when, type Role } from "./ui.tsx";

const ROLES: [Role, string][] = [
  ["tenant_admin", "Tenant admin"],
  ["project_admin", "Project admin"],
  ["project_contributor", "Contributor"],
  ["project_viewer", "Viewer"],
];
const roleName = (role: string) => ROLES.find(([r]) => r === role)?.[1] ?? role;
/** What the verifier found, in words. */
const OUTCOMES: Record<string, string> = {
  token_not_found: "the TXT record is there, but without this domain's token",
  no_record: "there is no TXT record at _gatehouse.<domain> yet (DNS changes can take a while to appear)",
  dns_timeout: "the DNS lookup timed out; try again in a moment",
  dns_error: "the DNS lookup failed; try again in a moment",
};

/** What each role may do, said in the role change's dialog. */
const ROLE_EFFECT: Record<Role, string> = {
  tenant_admin: "they may change members, connections, keys, limits and billing.",
  project_admin: "they may publish agents, manage tools, widgets and policies, and approve actions in every project.",
  project_contributor: "they may build and run agents, but not publish them or approve actions.",
  project_viewer: "they may only read; every control disappears for them.",
};

export function Members() {
  const org = useOrg();
  const sb = supabase();
  const members = useLoad(() => unwrap(sb.rpc("organization_directory").setHeader("x-org-id", org.id)), [org.id]);
  const invitations = useLoad(
    () => org.isAdmin
      ? unwrap(sb.from("invitations").select("id, email, role, created_at, expires_at").is("accepted_at", null).order("created_at", { ascending: false }).setHeader("x-org-id", org.id))
      : Promise.resolve([]),
    [org.id, org.isAdmin],
  );
  const domains = useLoad(
    () => unwrap(sb.from("organization_domains").select("domain, verification_token, verified_at, created_at").order("domain").setHeader("x-org-id", org.id)),
    [org.id],
  );
  const rules = useLoad(
    () => unwrap(sb.from("organizations").select("restrict_to_verified_domains, require_two_factor").eq("id", org.id).setHeader("x-org-id", org.id)),
    [org.id],
  );
  const action = useAction(() => {
    members.reload();
    invitations.reload();
    domains.reload();
    rules.reload();
  });

  async function changeRole(userId: string, email: string, from: Role, role: Role) {
    const sure = await confirmAction({
      title: `Change the role of ${email}?`,
      body: <>{email} goes from {roleName(from)} to {roleName(role)} in {org.name}, at once: {ROLE_EFFECT[role]}</>,
      confirmLabel: `Make them ${roleName(role)}`,
    });
    if (!sure) return;
    void action.run(async () => {
      const rows = await unwrap(sb.from("organization_members").update({ role }).eq("user_id", userId).select("user_id").setHeader("x-org-id", org.id));
      return rows.length ? `Role changed to ${roleName(role)}.` : "Nothing changed: the database did not let you change that role.";
    });
  }

  async function remove(userId: string, email: string) {
    if (!(await confirmAction({
      title: `Remove ${email}?`,
      body: <>{email} loses access to {org.name} at once, and their sessions here end. Inviting them again restores nothing they had.</>,
      confirmLabel: "Remove them",
    }))) return;
    void action.run(async () => {
      const rows = await unwrap(sb.from("organization_members").delete().eq("user_id", userId).select("user_id").setHeader("x-org-id", org.id));
      return rows.length ? `${email} was removed; their access to ${org.name} ended.` : "Nothing changed: the database did not let you remove that member.";
    });
  }

  async function endSessions(userId: string, email: string) {
    if (!(await confirmAction({
      title: `End every session of ${email}?`,
      body: <>They are signed out everywhere at once, and must sign in again.</>,
      confirmLabel: "End their sessions",
    }))) return;
    void action.run(async () => {
      const ended = await unwrap(sb.rpc("revoke_member_sessions", { p_user_id: userId }).setHeader("x-org-id", org.id));
      return `${ended} session${ended === 1 ? "" : "s"} of ${email} ended.`;
    });
  }

  return (
    <>
      <h1>Members of {org.name}</h1>
      <Notice notice={action.notice} />
      <section aria-labelledby="members-heading">
        <h2 id="members-heading">Members</h2>
        <States loaded={members} empty="No members.">
          {(list) => (
            <table>
              <thead>
                <tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Joined</th>{org.isAdmin && <th scope="col">Actions</th>}</tr>
              </thead>
              <tbody>
                {list.map((m) => (
                  <tr key={m.user_id}>
                    <td>{m.email}{m.is_you && " (you)"}</td>
                    <td>
                      {org.isAdmin && !m.is_you ? (
                        <select aria-label={`Role of ${m.email}`} value={m.role} onChange={(e) => void changeRole(m.user_id, m.email, m.role, e.target.value as Role)} disabled={action.busy}>
                          {ROLES.map(([r, label]) => <option key={r} value={r}>{label}</option>)}
                        </select>
                      ) : roleName(m.role)}
                    </td>
                    <td>{when(m.joined_at)}</td>
                    {org.isAdmin && (
                      <td>
                        {!m.is_you && (
                          <>
                            <button type="button" aria-label={`End sessions of ${m.email}`} onClick={() => void endSessions(m.user_id, m.email)} disabled={action.busy}>End sessions</button>{" "}
                            <button type="button" aria-label={`Remove ${m.email}`} onClick={() => void remove(m.user_id, m.email)} disabled={action.busy}>Remove</button>
                          </>
                        )}
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </States>
      </section>

      {org.isAdmin && (
        <section aria-labelledby="invitations-heading">
          <h2 id="invitations-heading">Invitations</h2>
          <form className="row" onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const data = new FormData(form);
            void action.run(async () => {
              const { data: sent, error } = await sb.functions.invoke<{ mailed: string }>("invitations", {
                body: { email: field(data, "email"), role: field(data, "role") },
                headers: { "x-org-id": org.id },
              });
              if (error) throw await functionError(error);
              form.reset();
              return sent?.mailed === "sign_in_link"
                ? "Invitation sent: they already have an account, so they got a sign-in link that leads to it."
                : "Invitation sent by email.";
            });
          }}>
            <label>Email to invite <input name="email" type="email" required maxLength={254} /></label>
            <label>
              Invited role{" "}
              <select name="role" defaultValue="project_viewer">
                {ROLES.map(([r, label]) => <option key={r} value={r}>{label}</option>)}
              </select>
            </label>
            <button type="submit" disabled={action.busy}>Send invitation</button>
          </form>
          <States loaded={invitations} empty="No pending invitations.">
            {(list) => (
              <table>
                <thead>
                  <tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Expires</th><th scope="col">Actions</th></tr>
                </thead>
                <tbody>
                  {list.map((i) => (
                    <tr key={i.id}>
                      <td>{i.email}</td>
                      <td>{roleName(i.role)}</td>
                      <td>{when(i.expires_at)}</td>
                      <td>
                        <button type="button" disabled={action.busy} aria-label={`Resend the invitation to ${i.email}`} onClick={() => void action.run(async () => {
                          // Inviting the address again replaces its invitation: a new link, a new week, the old link revoked.
                          await orgApi(org.id).invoke("invitations", { email: i.email, role: i.role });
                          return `The invitation to ${i.email} was sent again; the earlier link no longer works.`;
                        })}>Resend</button>{" "}
                        <button type="button" disabled={action.busy} onClick={async () => {
                          if (!(await confirmAction({
                            title: `Revoke the invitation to ${i.email}?`,
                            body: <>The link in their email stops working at once. You can invite them again.</>,
                            confirmLabel: "Revoke the invitation",
                          }))) return;
                          void action.run(async () => {
                            await unwrap(sb.from("invitations").delete().eq("id", i.id).select("id").setHeader("x-org-id", org.id));
                            return `The invitation to ${i.email} is revoked; its link no longer works.`;
                          });
                        }} aria-label={`Revoke the invitation to ${i.email}`}>Revoke</button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </States>
        </section>
      )}

      <section aria-labelledby="domains-heading">
        <h2 id="domains-heading">Email domains</h2>
        <p className="muted">
          To verify a claimed domain, publish its token as a TXT record at <code>_gatehouse.&lt;domain&gt;</code>. The server looks it up
          every few minutes, or now with "Verify now", and only then marks the domain verified.
        </p>
        <States loaded={domains} empty="No domains claimed.">
          {(list) => (
            <table>
              <thead>
                <tr><th scope="col">Domain</th><th scope="col">Status</th><th scope="col">TXT record</th>{org.isAdmin && <th scope="col">Actions</th>}</tr>
              </thead>
              <tbody>
                {list.map((d) => (
                  <tr key={d.domain}>
                    <td>{d.domain}</td>
                    <td>{d.verified_at ? `verified ${when(d.verified_at)}` : "waiting for verification"}</td>
                    <td><code>_gatehouse.{d.domain}</code> TXT <code>{d.verification_token}</code></td>
                    {org.isAdmin && (
                      <td>
                        {!d.verified_at && (
                          <button type="button" disabled={action.busy} aria-label={`Verify now ${d.domain}`} onClick={() => void action.run(async () => {
                            const checked = await orgApi(org.id).invoke<{ verified: boolean; outcome: string }>("domains/verify", { domain: d.domain });
                            return checked.verified ? `${d.domain} is verified.` : `${d.domain} is not verified yet: ${OUTCOMES[checked.outcome] ?? checked.outcome}.`;
                          })}>Verify now</button>
                        )}{" "}
                        <button type="button" disabled={action.busy} onClick={async () => {
                          if (!(await confirmAction({
                            title: `Release ${d.domain}?`,
                            body: d.verified_at
                              ? <>{org.name} stops vouching for addresses at {d.domain}: another organization may claim and verify it, and a rule that admits only verified domains no longer admits it.</>
                              : <>The claim and its verification token go; claiming it again makes a new token.</>,
                            confirmLabel: "Release the domain",
                          }))) return;
                          void action.run(async () => {
                            await unwrap(sb.from("organization_domains").delete().eq("domain", d.domain).select("domain").setHeader("x-org-id", org.id));
                            return `${d.domain} released.`;
                          });
                        }} aria-label={`Release ${d.domain}`}>Release</button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </States>
        {org.isAdmin && (
          <form className="row" onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const domain = field(new FormData(form), "domain").toLowerCase();
            void action.run(async () => {
              await unwrap(sb.from("organization_domains").insert({ org_id: org.id, domain }).select("domain").setHeader("x-org-id", org.id));
              form.reset();
              return `${domain} claimed: publish its TXT record to verify it.`;
            });
          }}>
            <label>Domain to claim <input name="domain" required maxLength={253} placeholder="example.com" /></label>
            <button type="submit" disabled={action.busy}>Claim domain</button>
          </form>
        )}
      </section>

      <section aria-labelledby="security-heading">
        <h2 id="security-heading">Security</h2>
        <States loaded={rules} empty="The organization's rules are not visible to you.">
          {([r]) => (
            <form className="stack" aria-label="Security rules" onSubmit={async (e) => {
              e.preventDefault();
              const data = new FormData(e.currentTarget);
              const next = { restrict_to_verified_domains: data.has("restrict"), require_two_factor: data.has("two_factor") };
              if (next.require_two_factor && !r.require_two_factor && !(await confirmAction({
                title: `Require two-factor authentication in ${org.name}?`,
                body: <>Members without a verified factor can no longer decide actions or change settings until they add one.</>,
                confirmLabel: "Require it",
              }))) return;
              void action.run(async () => {
                await unwrap(sb.from("organizations").update(next).eq("id", org.id).select("id").setHeader("x-org-id", org.id));
                return "Security rules saved.";
              });
            }}>
              <label className="check">
                <input type="checkbox" name="restrict" defaultChecked={r.restrict_to_verified_domains} disabled={!org.isAdmin} />
                Only people with an address at a verified domain may be invited or join
              </label>
              <label className="check">
                <input type="checkbox" name="two_factor" defaultChecked={r.require_two_factor} disabled={!org.isAdmin} />
                Require two-factor authentication: deciding any action and every privileged change need a verified second factor
              </label>
              <p className="muted">
                Whoever has added a second factor always verifies it before changing members, invitations, domains, tools,
                connections, keys, limits or billing.
              </p>
              {org.isAdmin && <div><button type="submit" disabled={action.busy}>Save security rules</button></div>}
            </form>
          )}
        </States>
      </section>
    </>
  );
}
