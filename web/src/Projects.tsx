/**
 * The organization's projects (issue 25): each with its slug, how many agents it has, your role in
 * it (my_permissions) and when it was made; and, for whoever may create projects
 * (my_permissions: create_projects), a form to make one. Everyone else sees the list and no form;
 * the database still refuses a project it doesn't allow.
 */
import { Button, Code, Group, Paper, SimpleGrid, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import type { FormEvent } from "react";
import { DataTable, Outcome, PageHeader, QueryState, SlugInput, useAct, useOrgApi } from "./kit.tsx";
import { field, useOrg, when } from "./ui.tsx";

const ROLE_NAMES: Record<string, string> = {
  tenant_admin: "Tenant admin", project_admin: "Project admin", project_contributor: "Contributor", project_viewer: "Viewer",
};

/** /o/:org/projects: the projects, and "Create project" for whoever may. */
export function Projects() {
  const org = useOrg();
  const api = useOrgApi();
  const mayCreate = org.permissions.organization.create_projects;
  const projects = useQuery({
    queryKey: ["projects", org.id],
    queryFn: () => api.run(api.from("projects").select("id, name, slug, created_at, agents(count)").order("name")),
  });
  // A new project changes what my_permissions answers (its projects), which the organization's context holds.
  const act = useAct([["projects", org.id], ["org", org.id]]);
  const yourRole = (id: string) => org.permissions.projects.find((p) => p.id === id)?.role;
  const agentCount = (p: { agents: unknown }) => (p.agents as { count: number }[])[0]?.count ?? 0;

  function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const name = field(data, "name");
    act.run(async () => {
      await api.run(api.from("projects").insert({ org_id: org.id, name, slug: field(data, "slug") }).select("id"));
      form.reset();
      return `Project ${name} created.`;
    });
  }

  return (
    <>
      <PageHeader
        title={`Projects in ${org.name}`}
        description="A project holds agents with their runs, tools and widgets. Your role in a project is your organization role, or a higher one given for that project."
        action={mayCreate ? <Button onClick={() => document.getElementById("project-name")?.focus()}>New project</Button> : undefined}
      />
      <Outcome outcome={act.outcome} />
      <QueryState query={projects} empty="No projects yet.">
        {(list) => (
          <DataTable
            label="Projects"
            rows={list}
            rowKey={(p) => p.id}
            initialSort={{ key: "name" }}
            columns={[
              { key: "name", header: "Name", cell: (p) => p.name, sort: (p) => p.name },
              { key: "slug", header: "Slug", cell: (p) => <Code>{p.slug}</Code> },
              { key: "agents", header: "Agents", cell: (p) => agentCount(p), sort: (p) => agentCount(p) },
              { key: "role", header: "Your role", cell: (p) => ROLE_NAMES[yourRole(p.id) ?? ""] ?? "—", sort: (p) => yourRole(p.id) },
              { key: "created", header: "Created", cell: (p) => when(p.created_at), sort: (p) => p.created_at },
            ]}
          />
        )}
      </QueryState>
      {mayCreate && (
        <Paper withBorder p="lg" radius="md" mt="xl" component="section" aria-labelledby="new-project">
          <Title order={2} size="h3" id="new-project" mb="sm">New project</Title>
          <form aria-label="Create a project" onSubmit={create}>
            <SimpleGrid cols={{ base: 1, sm: 2 }} maw={720}>
              <TextInput id="project-name" name="name" label="Project name" required maxLength={100} autoComplete="off" />
              <SlugInput label="Project slug" />
            </SimpleGrid>
            <Group mt="md"><Button type="submit" loading={act.busy}>Create project</Button></Group>
          </form>
        </Paper>
      )}
    </>
  );
}
