/**
 * The organization's settings: its name (tenant admins: my_permissions' manage_organization), its
 * address (the slug, which doesn't change), and where its security rules live (Members: verified
 * domains, two-factor). The database decides: a rename by anyone else changes no row, and an
 * organization that requires two-factor refuses it at aal1 (the step-up guard).
 */
import { Anchor, Button, Code, Group, Paper, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQueryClient } from "@tanstack/react-query";
import type { FormEvent } from "react";
import { Link } from "react-router";
import { Outcome, PageHeader, useAct, useOrgApi } from "./kit.tsx";
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
      <PageHeader title={`Settings of ${org.name}`} description="The organization's name and address; its security rules are with its members." />
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
        <section aria-labelledby="rules-heading">
          <Title order={2} size="h3" id="rules-heading" mb="sm">Security rules</Title>
          <Text size="sm">
            Who may join (only addresses at verified domains) and whether two-factor authentication is required are set
            with the members and their domains: <Anchor component={Link} underline="always" to={`/o/${org.id}/members`}>Members</Anchor>.
          </Text>
        </section>
      </Stack>
    </>
  );
}
