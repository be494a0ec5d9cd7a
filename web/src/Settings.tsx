/**
 * The organization's settings: its name and address (the slug, which doesn't change), and its
 * security rules: only people with an address at a verified domain may be invited or join, and
 * two-factor authentication required of everyone. Tenant admins change them (my_permissions:
 * manage_organization); everyone else reads them. The database decides: a change by anyone else
 * changes no row, and a change of the rules by a person with a second factor needs their session at
 * aal2 (the step-up guard, 403 step_up_required), as every privileged write does.
 *
 * A tenant admin can also terminate the workspace (public.terminate_workspace: the slug typed to
 * confirm, at aal2 when they have a second factor): access ends at once, and the run worker purges
 * its content (docs/lifecycle.md).
 */
import { Button, Checkbox, Code, Group, List, Paper, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { useNavigate } from "react-router";
import { confirmAction } from "./confirm.tsx";
import { Outcome, PageHeader, QueryState, useAct, useOrgApi } from "./kit.tsx";
import { field, useOrg } from "./ui.tsx";

export function Settings() {
  const org = useOrg();
  const api = useOrgApi();
  const client = useQueryClient();
  const act = useAct([["org", org.id], ["organizations"]]);
  const may = org.permissions.organization.manage_organization;

  function rename(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const name = field(new FormData(event.currentTarget), "name");
    act.run(async () => {
      const rows = await api.run(api.from("organizations").update({ name }).eq("id", org.id).select("id"));
      if (!rows.length) return "Nothing was saved: the database let your role rename nothing.";
      await client.invalidateQueries({ queryKey: ["org", org.id] });
      return `The organization is now called ${name}.`;
    });
  }

  return (
    <>
      <PageHeader title={`Settings of ${org.name}`} description="The organization's name and address, and its security rules." />
      <Outcome outcome={act.outcome} />
      <Stack gap="xl">
        <section aria-labelledby="name-heading">
          <Title order={2} size="h3" id="name-heading" mb="sm">Name and address</Title>
          {may ? (
            <Paper withBorder p="md" radius="md" component="form" aria-label="Rename the organization" onSubmit={rename} key={org.name}>
              <Group align="flex-end" wrap="wrap">
                <TextInput name="name" label="Organization name" defaultValue={org.name} required maxLength={100} style={{ flex: "1 1 16rem" }} />
                <Button type="submit" loading={act.busy}>Rename</Button>
              </Group>
              <Text size="sm" mt="sm">Address: <Code>{org.slug}</Code> (it doesn't change, so links and exports keep working)</Text>
            </Paper>
          ) : (
            <Text size="sm">{org.name}, at <Code>{org.slug}</Code></Text>
          )}
        </section>
        <SecurityRules />
        {may && <Terminate />}
      </Stack>
    </>
  );
}

/** Who may join, and whether two-factor authentication is required: the organization's security rules. */
function SecurityRules() {
  const org = useOrg();
  const api = useOrgApi();
  const may = org.permissions.organization.manage_organization;
  const rules = useQuery({
    queryKey: ["settings", org.id, "rules"],
    queryFn: async () => (await api.run(api.from("organizations").select("restrict_to_verified_domains, require_two_factor").eq("id", org.id)))[0] ?? null,
  });
  const act = useAct([["settings", org.id]]);
  // A refused change of the rules puts the form back to what the database holds.
  const [form, setForm] = useState(0);
  useEffect(() => {
    if (act.outcome?.ok === false) setForm((n) => n + 1);
  }, [act.outcome]);

  async function save(event: FormEvent<HTMLFormElement>, was: { require_two_factor: boolean }) {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    const next = { restrict_to_verified_domains: data.has("restrict"), require_two_factor: data.has("two_factor") };
    if (next.require_two_factor && !was.require_two_factor && !(await confirmAction({
      title: `Require two-factor authentication in ${org.name}?`,
      body: <>Members without a verified factor can no longer decide actions or change settings until they add one.</>,
      confirmLabel: "Require it",
    }))) return;
    act.run(async () => {
      const rows = await api.run(api.from("organizations").update(next).eq("id", org.id).select("id"));
      return rows.length ? "Security rules saved." : "Nothing was saved: the database did not let you change the security rules.";
    });
  }

  return (
    <section aria-labelledby="security-heading">
      <Title order={2} size="h3" id="security-heading" mb="sm">Security rules</Title>
      <QueryState query={rules} empty="The organization's rules are not visible to you." isEmpty={(r) => r === null} rows={2}>
        {(r) => r && (may ? (
          <Paper key={form} withBorder p="md" radius="md" component="form" aria-label="Security rules" onSubmit={(e: FormEvent<HTMLFormElement>) => void save(e, r)}>
            <Outcome outcome={act.outcome} />
            <Stack>
              <Checkbox name="restrict" defaultChecked={r.restrict_to_verified_domains} label="Only people with an address at a verified domain may be invited or join" />
              <Checkbox name="two_factor" defaultChecked={r.require_two_factor} label="Require two-factor authentication: deciding any action and every privileged change need a verified second factor" />
              <Text size="sm" c="dimmed">
                Whoever has added a second factor always verifies it before changing these rules, members, invitations, domains,
                tools, connections, keys, limits or billing. Domains are claimed and verified on the Members screen.
              </Text>
              <Group><Button type="submit" loading={act.busy}>Save security rules</Button></Group>
            </Stack>
          </Paper>
        ) : (
          <List size="sm" spacing="xs" aria-label="Security rules">
            <List.Item>Only people with an address at a verified domain may be invited or join: <strong>{r.restrict_to_verified_domains ? "on" : "off"}</strong></List.Item>
            <List.Item>Two-factor authentication required for deciding actions and privileged changes: <strong>{r.require_two_factor ? "on" : "off"}</strong></List.Item>
          </List>
        ))}
      </QueryState>
    </section>
  );
}

/** Terminating the workspace: what goes, what stays, and the slug typed to confirm. */
function Terminate() {
  const org = useOrg();
  const api = useOrgApi();
  const navigate = useNavigate();
  const act = useAct([["organizations"]]);

  async function terminate() {
    if (!(await confirmAction({
      title: `Terminate ${org.name}?`,
      body: (
        <Stack gap="xs">
          <Text size="sm">Nobody can open it from now on, you included. Then its content is purged and can't be brought back.</Text>
          <Text size="sm">Export its audit chain first if you want to keep it: the hashes stay, the payloads go.</Text>
        </Stack>
      ),
      confirmLabel: "Terminate the workspace",
      typeToConfirm: org.slug,
    }))) return;
    act.run(async () => {
      await api.run(api.rpc("terminate_workspace", { p_confirm_slug: org.slug }));
      navigate("/");
      return `${org.name} is terminated: access has ended, and its content is being purged.`;
    });
  }

  return (
    <section aria-labelledby="terminate-heading">
      <Title order={2} size="h3" id="terminate-heading" mb="sm">Terminate the workspace</Title>
      <Paper withBorder p="md" radius="md" style={{ borderColor: "var(--mantine-color-red-6)" }}>
        <Outcome outcome={act.outcome} />
        <Stack gap="sm">
          <Text size="sm">Terminating ends everyone's access at once. Then every agent, run, transcript, widget, key, token, webhook and
            connection of it is deleted (connections are revoked at their providers first), its Stripe subscription is cancelled, and its
            billing ledger goes but for the payments tax law keeps.</Text>
          <Text size="sm">Its audit chain keeps only its hashes, and ends with an <Code>org.purged</Code> entry that counts what was deleted,
            so the chain, exported before or after, still verifies.</Text>
          <Text size="sm" c="dimmed">If you have a second factor, verify it on your Account page first.</Text>
          <Group><Button color="red" variant="outline" onClick={() => void terminate()} loading={act.busy}>Terminate the workspace…</Button></Group>
        </Stack>
      </Paper>
    </section>
  );
}
