/**
 * Your organizations (issue 25): the ones you belong to, each a link to its screens, and a form to
 * create one, which anyone signed in may do (public.create_organization makes you its tenant
 * admin). Personal, not organization-scoped: it reads through personalApi, with no X-Org-Id.
 */
import { Anchor, Button, Code, Group, Paper, SimpleGrid, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import type { FormEvent } from "react";
import { Link, useNavigate } from "react-router";
import { personalApi, run } from "./api.ts";
import { DataTable, Outcome, PageHeader, QueryState, SlugInput, useAct } from "./kit.tsx";
import { field, when } from "./ui.tsx";

/** /orgs: your organizations, and "Create organization". */
export function Organizations() {
  const navigate = useNavigate();
  const orgs = useQuery({
    queryKey: ["organizations", "mine"],
    queryFn: () => run(personalApi().from("organizations").select("id, name, slug, created_at").order("name")),
  });
  // The header's organization switcher reads ["organizations"] too.
  const act = useAct([["organizations"]]);

  function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const data = new FormData(event.currentTarget);
    act.run(async () => {
      const id = await run(personalApi().rpc("create_organization", { p_name: field(data, "name"), p_slug: field(data, "slug") }));
      navigate(`/o/${id}/projects`);
      return "Organization created.";
    });
  }

  return (
    <>
      <PageHeader
        title="Your organizations"
        description="The organizations you belong to. Creating one makes you its tenant admin; joining another takes an invitation from it."
        action={<Button onClick={() => document.getElementById("organization-name")?.focus()}>New organization</Button>}
      />
      <Outcome outcome={act.outcome} />
      <QueryState query={orgs} empty="You belong to no organization yet: create one, or accept an invitation from your email.">
        {(list) => (
          <DataTable
            label="Organizations"
            rows={list}
            rowKey={(o) => o.id}
            initialSort={{ key: "organization" }}
            minWidth={480}
            columns={[
              { key: "organization", header: "Organization", cell: (o) => <Anchor component={Link} to={`/o/${o.id}/approvals`}>{o.name}</Anchor>, sort: (o) => o.name },
              { key: "slug", header: "Slug", cell: (o) => <Code>{o.slug}</Code> },
              { key: "created", header: "Created", cell: (o) => when(o.created_at), sort: (o) => o.created_at },
            ]}
          />
        )}
      </QueryState>
      <Paper withBorder p="lg" radius="md" mt="xl" component="section" aria-labelledby="create-org">
        <Title order={2} size="h3" id="create-org" mb="sm">Create an organization</Title>
        <form aria-label="Create an organization" onSubmit={create}>
          <SimpleGrid cols={{ base: 1, sm: 2 }} maw={720}>
            <TextInput id="organization-name" name="name" label="Name" required maxLength={100} autoComplete="organization" />
            <SlugInput label="Slug" />
          </SimpleGrid>
          <Group mt="md"><Button type="submit" loading={act.busy}>Create organization</Button></Group>
        </form>
      </Paper>
    </>
  );
}
