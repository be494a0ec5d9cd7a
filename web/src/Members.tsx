/**
 * Who belongs to the organization (issue 25): the members and their roles, the pending invitations
 * (sent by email through the invitations function, sent again or revoked here), the email domains
 * the organization claims (claimed, verified through a TXT record, released), and its security
 * rules (verified domains only, two-factor for everyone). Whoever may manage members
 * (my_permissions: manage_members) changes roles, removes members, ends a member's sessions,
 * invites and handles domains; whoever may manage the organization changes its security rules;
 * everyone else sees the same lists and no controls. Each role change, removal, ending of sessions,
 * revocation and release confirms in a dialog that says what it does. The database decides who may
 * change what, and asks a person who has a second factor to use it first (step_up_required).
 */
import { Anchor, Badge, Button, Code, Group, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, Section, useAct, useOrgApi } from "./kit.tsx";
import { field, useOrg, when, type Role } from "./ui.tsx";

const ROLES: [Role, string][] = [
  ["tenant_admin", "Tenant admin"],
  ["project_admin", "Project admin"],
  ["project_contributor", "Contributor"],
  ["project_viewer", "Viewer"],
];
const roleName = (role: string) => ROLES.find(([r]) => r === role)?.[1] ?? role;
/** A role's rank, most powerful first: the order the Role column sorts in. */
const roleRank = (role: string) => ROLES.findIndex(([r]) => r === role);
const ROLE_OPTIONS = ROLES.map(([value, label]) => ({ value, label }));

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

/** /o/:org/members: members, invitations, email domains and security rules. */
export function Members() {
  const org = useOrg();
  const api = useOrgApi();
  const manageMembers = org.permissions.organization.manage_members;
  const manageOrganization = org.permissions.organization.manage_organization;
  const members = useQuery({
    queryKey: ["members", org.id, "directory"],
    queryFn: () => api.run(api.rpc("organization_directory")),
  });
  const invitations = useQuery({
    queryKey: ["members", org.id, "invitations"],
    queryFn: () => api.run(api.from("invitations").select("id, email, role, created_at, expires_at").is("accepted_at", null).order("created_at", { ascending: false })),
    enabled: manageMembers,
  });
  const domains = useQuery({
    queryKey: ["members", org.id, "domains"],
    queryFn: () => api.run(api.from("organization_domains").select("domain, verification_token, verified_at, created_at").order("domain")),
  });
  // One outcome per section, shown in the section where the action was taken.
  const memberAct = useAct([["members", org.id]]);
  const inviteAct = useAct([["members", org.id]]);
  const domainAct = useAct([["members", org.id]]);

  async function changeRole(userId: string, email: string, from: Role, role: Role) {
    if (role === from) return;
    const sure = await confirmAction({
      title: `Change the role of ${email}?`,
      body: <>{email} goes from {roleName(from)} to {roleName(role)} in {org.name}, at once: {ROLE_EFFECT[role]}</>,
      confirmLabel: `Make them ${roleName(role)}`,
    });
    if (!sure) return;
    memberAct.run(async () => {
      const rows = await api.run(api.from("organization_members").update({ role }).eq("user_id", userId).select("user_id"));
      return rows.length ? `Role changed to ${roleName(role)}.` : "Nothing changed: the database did not let you change that role.";
    });
  }

  async function remove(userId: string, email: string) {
    if (!(await confirmAction({
      title: `Remove ${email}?`,
      body: <>{email} loses access to {org.name} at once, and their sessions here end. Inviting them again restores nothing they had.</>,
      confirmLabel: "Remove them",
    }))) return;
    memberAct.run(async () => {
      const rows = await api.run(api.from("organization_members").delete().eq("user_id", userId).select("user_id"));
      return rows.length ? `${email} was removed; their access to ${org.name} ended.` : "Nothing changed: the database did not let you remove that member.";
    });
  }

  async function endSessions(userId: string, email: string) {
    if (!(await confirmAction({
      title: `End every session of ${email}?`,
      body: <>They are signed out everywhere at once, and must sign in again.</>,
      confirmLabel: "End their sessions",
    }))) return;
    memberAct.run(async () => {
      const ended = await api.run(api.rpc("revoke_member_sessions", { p_user_id: userId }));
      return `${ended} session${ended === 1 ? "" : "s"} of ${email} ended.`;
    });
  }

  function invite(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    inviteAct.run(async () => {
      const sent = await api.invoke<{ mailed: string }>("invitations", { email: field(data, "email"), role: field(data, "role") });
      form.reset();
      return sent?.mailed === "sign_in_link"
        ? "Invitation sent: they already have an account, so they got a sign-in link that leads to it."
        : "Invitation sent by email.";
    });
  }

  function resend(email: string, role: Role) {
    inviteAct.run(async () => {
      // Inviting the address again replaces its invitation: a new link, a new week, the old link revoked.
      await api.invoke("invitations", { email, role });
      return `The invitation to ${email} was sent again; the earlier link no longer works.`;
    });
  }

  async function revoke(id: string, email: string) {
    if (!(await confirmAction({
      title: `Revoke the invitation to ${email}?`,
      body: <>The link in their email stops working at once. You can invite them again.</>,
      confirmLabel: "Revoke the invitation",
    }))) return;
    inviteAct.run(async () => {
      const rows = await api.run(api.from("invitations").delete().eq("id", id).select("id"));
      return rows.length ? `The invitation to ${email} is revoked; its link no longer works.` : "Nothing changed: the database did not let you revoke that invitation.";
    });
  }

  function claim(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const domain = field(new FormData(form), "domain").toLowerCase();
    domainAct.run(async () => {
      await api.run(api.from("organization_domains").insert({ org_id: org.id, domain }).select("domain"));
      form.reset();
      return `${domain} claimed: publish its TXT record to verify it.`;
    });
  }

  function verify(domain: string) {
    domainAct.run(async () => {
      const checked = await api.invoke<{ verified: boolean; outcome: string }>("domains/verify", { domain });
      return checked.verified ? `${domain} is verified.` : `${domain} is not verified yet: ${OUTCOMES[checked.outcome] ?? checked.outcome}.`;
    });
  }

  async function release(domain: string, verified: boolean) {
    if (!(await confirmAction({
      title: `Release ${domain}?`,
      body: verified
        ? <>{org.name} stops vouching for addresses at {domain}: another organization may claim and verify it, and a rule that admits only verified domains no longer admits it.</>
        : <>The claim and its verification token go; claiming it again makes a new token.</>,
      confirmLabel: "Release the domain",
    }))) return;
    domainAct.run(async () => {
      const rows = await api.run(api.from("organization_domains").delete().eq("domain", domain).select("domain"));
      return rows.length ? `${domain} released.` : "Nothing changed: the database did not let you release that domain.";
    });
  }

  return (
    <>
      <PageHeader
        title={`Members of ${org.name}`}
        description="Who belongs to the organization and as what, who is invited, and the email domains it vouches for."
        action={manageMembers ? <Button onClick={() => document.getElementById("invite-email")?.focus()}>Invite a member</Button> : undefined}
      />

      <Section id="members-heading" title="Members">
        <Outcome outcome={memberAct.outcome} />
        <QueryState query={members} empty="No members.">
          {(list) => (
            <DataTable
              label="Members"
              rows={list}
              rowKey={(m) => m.user_id}
              initialSort={{ key: "member" }}
              minWidth={manageMembers ? 800 : 520}
              columns={[
                {
                  key: "member",
                  header: "Member",
                  cell: (m) => <Group gap={6} wrap="nowrap"><Text size="sm">{m.email}</Text>{m.is_you && <Badge size="sm" variant="light" style={{ flexShrink: 0 }}>you</Badge>}</Group>,
                  sort: (m) => m.email,
                },
                {
                  key: "role",
                  header: "Role",
                  cell: (m) => manageMembers && !m.is_you ? (
                    <NativeSelect
                      size="xs"
                      w={160}
                      aria-label={`Role of ${m.email}`}
                      value={m.role}
                      data={ROLE_OPTIONS}
                      disabled={memberAct.busy}
                      onChange={(e) => void changeRole(m.user_id, m.email, m.role, e.currentTarget.value as Role)}
                    />
                  ) : roleName(m.role),
                  sort: (m) => roleRank(m.role),
                },
                { key: "since", header: "Since", cell: (m) => when(m.joined_at), sort: (m) => m.joined_at },
                ...(manageMembers ? [{
                  key: "actions",
                  header: "Actions",
                  cell: (m: { user_id: string; email: string; is_you: boolean }) => m.is_you ? null : (
                    <Group gap="xs" wrap="nowrap">
                      <Button size="xs" variant="default" aria-label={`End sessions of ${m.email}`} disabled={memberAct.busy} onClick={() => void endSessions(m.user_id, m.email)}>End sessions</Button>
                      <Button size="xs" variant="light" color="red" aria-label={`Remove ${m.email}`} disabled={memberAct.busy} onClick={() => void remove(m.user_id, m.email)}>Remove</Button>
                    </Group>
                  ),
                }] : []),
              ]}
            />
          )}
        </QueryState>
      </Section>

      {manageMembers && (
        <Section id="invitations-heading" title="Invitations">
          <Outcome outcome={inviteAct.outcome} />
          <Paper withBorder p="md" radius="md" mb="md" component="form" aria-label="Invite by email" onSubmit={invite}>
            <SimpleGrid cols={{ base: 1, sm: 3 }} style={{ alignItems: "end" }}>
              <TextInput id="invite-email" name="email" type="email" label="Email to invite" required maxLength={254} autoComplete="off" />
              <NativeSelect name="role" label="Invited role" defaultValue="project_viewer" data={ROLE_OPTIONS} />
              <Group><Button type="submit" loading={inviteAct.busy}>Send invitation</Button></Group>
            </SimpleGrid>
          </Paper>
          <QueryState query={invitations} empty="No pending invitations.">
            {(list) => (
              <DataTable
                label="Pending invitations"
                rows={list}
                rowKey={(i) => i.id}
                minWidth={640}
                columns={[
                  { key: "invited", header: "Invited", cell: (i) => i.email, sort: (i) => i.email },
                  { key: "role", header: "Role", cell: (i) => roleName(i.role) },
                  { key: "expires", header: "Expires", cell: (i) => when(i.expires_at), sort: (i) => i.expires_at },
                  {
                    key: "actions",
                    header: "Actions",
                    cell: (i) => (
                      <Group gap="xs" wrap="nowrap">
                        <Button size="xs" variant="default" aria-label={`Resend the invitation to ${i.email}`} disabled={inviteAct.busy} onClick={() => resend(i.email, i.role)}>Resend</Button>
                        <Button size="xs" variant="light" color="red" aria-label={`Revoke the invitation to ${i.email}`} disabled={inviteAct.busy} onClick={() => void revoke(i.id, i.email)}>Revoke</Button>
                      </Group>
                    ),
                  },
                ]}
              />
            )}
          </QueryState>
        </Section>
      )}

      <Section id="domains-heading" title="Email domains">
        <Text size="sm" c="dimmed" mb="sm">
          To verify a claimed domain, publish its token as a TXT record at <Code>_gatehouse.&lt;domain&gt;</Code>. The server looks it up
          every few minutes{manageMembers ? <>, or now with "Verify now",</> : ""} and only then marks the domain verified.
        </Text>
        <Outcome outcome={domainAct.outcome} />
        <QueryState query={domains} empty="No domains claimed.">
          {(list) => (
            <DataTable
              label="Email domains"
              rows={list}
              rowKey={(d) => d.domain}
              minWidth={manageMembers ? 820 : 640}
              columns={[
                { key: "domain", header: "Domain", cell: (d) => d.domain, sort: (d) => d.domain },
                {
                  key: "status",
                  header: "Status",
                  cell: (d) => d.verified_at
                    ? <Stack gap={2}><Badge color="teal" variant="light">verified</Badge><Text size="xs" c="dimmed">{when(d.verified_at)}</Text></Stack>
                    : <Badge color="gray" variant="light" tt="none">waiting for verification</Badge>,
                  sort: (d) => d.verified_at ?? "",
                },
                {
                  key: "record",
                  header: "TXT record",
                  cell: (d) => (
                    <Text size="sm" component="div" style={{ wordBreak: "break-all" }}>
                      <Code>_gatehouse.{d.domain}</Code> TXT <Code>{d.verification_token}</Code>
                    </Text>
                  ),
                },
                ...(manageMembers ? [{
                  key: "actions",
                  header: "Actions",
                  cell: (d: { domain: string; verified_at: string | null }) => (
                    <Group gap="xs" wrap="nowrap">
                      {!d.verified_at && (
                        <Button size="xs" variant="default" aria-label={`Verify now ${d.domain}`} disabled={domainAct.busy} onClick={() => verify(d.domain)}>Verify now</Button>
                      )}
                      <Button size="xs" variant="light" color="red" aria-label={`Release ${d.domain}`} disabled={domainAct.busy} onClick={() => void release(d.domain, d.verified_at !== null)}>Release</Button>
                    </Group>
                  ),
                }] : []),
              ]}
            />
          )}
        </QueryState>
        {manageMembers && (
          <Paper withBorder p="md" radius="md" mt="md" component="form" aria-label="Claim a domain" onSubmit={claim}>
            <Group align="flex-end" wrap="wrap">
              <TextInput name="domain" label="Domain to claim" required maxLength={253} placeholder="example.com" autoComplete="off" style={{ flex: "1 1 14rem" }} />
              <Button type="submit" loading={domainAct.busy}>Claim domain</Button>
            </Group>
          </Paper>
        )}
      </Section>

      <Section id="security-heading" title="Security">
        <Text size="sm">
          Who may join (only addresses at a verified domain) and whether two-factor authentication is required are the
          organization's security rules, in <Anchor component={Link} underline="always" to={`/o/${org.id}/settings`}>Settings</Anchor>.
        </Text>
      </Section>
    </>
  );
}

