/**
 * Agents and their versions. The list: each agent, its project, its published version. An agent's
 * page: its versions (a draft is a form: the model from the catalog, its instructions, where its
 * runs run, and any further settings as JSON; a published version is read-only for good), its
 * tools (each bound to one of the organization's connections), and its model limits. Who may do
 * what comes from the database (my_permissions): contributors create agents and edit drafts,
 * project admins publish, manage tools; tenant admins turn an agent off. The database still
 * refuses the rest (publish_agent_version, RLS on each table), and its refusal is shown.
 */
import { Anchor, Badge, Button, Code, Group, NativeSelect, Paper, SimpleGrid, Stack, Switch, Text, TextInput, Textarea, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link, useParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi, useProjectPermissions, useProjectsWhere } from "./kit.tsx";
import { field, useOrg, when } from "./ui.tsx";

type Version = Pick<Database["public"]["Tables"]["agent_versions"]["Row"], "id" | "version" | "config" | "created_at" | "published_at">;
type Tool = Database["public"]["Tables"]["agent_tools"]["Row"];
type Catalog = Database["public"]["Functions"]["model_catalog"]["Returns"];
type Config = { [key: string]: Json | undefined };

/** The settings the form edits; anything else in a configuration is kept, under "Further settings". */
const FORM_KEYS = ["model", "instructions", "runtime"];
const dollars = (micro: number | null | undefined) => (micro === null || micro === undefined ? "—" : `$${(micro / 1e6).toFixed(2)}`);

/** /o/:org/agents: the organization's agents; "New agent" where the person may create one. */
export function Agents() {
  const org = useOrg();
  const api = useOrgApi();
  const creatable = useProjectsWhere("edit_agents");
  const agents = useQuery({
    queryKey: ["agents", org.id, "list"],
    queryFn: () => api.run(api.from("agents").select("id, name, description, disabled_at, projects(name), agent_versions(version, published_at)").order("name")),
  });
  const act = useAct([["agents", org.id]]);
  const projects = org.permissions.projects.filter((p) => creatable.includes(p.id));

  function create(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    act.run(async () => {
      await api.run(api.from("agents").insert({
        org_id: org.id, project_id: field(data, "project"), name: field(data, "name"), description: field(data, "description"),
      }).select("id"));
      form.reset();
      return "Agent created.";
    });
  }

  return (
    <>
      <PageHeader title={`Agents in ${org.name}`} description="Each agent's configuration is a numbered version: drafts change, a published version never does." />
      <Outcome outcome={act.outcome} />
      <QueryState query={agents} empty="No agents yet.">
        {(list) => (
          <DataTable
            label="Agents"
            rows={list}
            rowKey={(a) => a.id}
            initialSort={{ key: "name" }}
            columns={[
              { key: "name", header: "Agent", cell: (a) => <Anchor component={Link} to={`/o/${org.id}/agents/${a.id}`}>{a.name}</Anchor>, sort: (a) => a.name },
              { key: "project", header: "Project", cell: (a) => a.projects?.name, sort: (a) => a.projects?.name },
              { key: "published", header: "Published version", cell: (a) => published(a.agent_versions) ?? "none yet", sort: (a) => published(a.agent_versions) },
              { key: "status", header: "Status", cell: (a) => <Badge variant="light" color={a.disabled_at ? "gray" : "teal"}>{a.disabled_at ? "turned off" : "on"}</Badge>, sort: (a) => (a.disabled_at ? 1 : 0) },
            ]}
          />
        )}
      </QueryState>
      {projects.length > 0 && (
        <Paper withBorder p="lg" radius="md" mt="xl" component="section" aria-labelledby="new-agent">
          <Title order={2} size="h3" id="new-agent" mb="sm">New agent</Title>
          <form onSubmit={create} aria-labelledby="new-agent">
            <Stack maw={560}>
              <TextInput name="name" label="Agent name" required maxLength={100} />
              <NativeSelect name="project" label="Project" required data={projects.map((p) => ({ value: p.id, label: p.name }))} />
              <Textarea name="description" label="Description" maxLength={2000} autosize minRows={2} />
              <Group><Button type="submit" loading={act.busy}>Create agent</Button></Group>
            </Stack>
          </form>
        </Paper>
      )}
    </>
  );
}

/** The highest published version of an agent, as "v3". */
function published(versions: { version: number; published_at: string | null }[]): string | null {
  const numbers = versions.filter((v) => v.published_at).map((v) => v.version);
  return numbers.length ? `v${Math.max(...numbers)}` : null;
}

/** /o/:org/agents/:id: the agent's versions, tools and limits. */
export function AgentDetail() {
  const org = useOrg();
  const api = useOrgApi();
  const { id = "" } = useParams();
  const agent = useQuery({
    queryKey: ["agents", org.id, id],
    queryFn: async () => {
      const [row] = await api.run(api.from("agents").select("id, name, description, project_id, disabled_at, projects(name)").eq("id", id));
      if (!row) throw new Error("No agent with that id in this organization.");
      return row;
    },
  });
  const versions = useQuery({
    queryKey: ["agents", org.id, id, "versions"],
    queryFn: () => api.run(api.from("agent_versions").select("id, version, config, created_at, published_at").eq("agent_id", id).order("version", { ascending: false })) as Promise<Version[]>,
  });
  const catalog = useQuery({ queryKey: ["model-catalog"], queryFn: () => api.run(api.rpc("model_catalog")) as Promise<Catalog>, staleTime: 5 * 60_000 });
  const may = useProjectPermissions(agent.data?.project_id);
  const act = useAct([["agents", org.id]]);
  const [open, setOpen] = useState<string | null>(null);

  function draft(a: { id: string; project_id: string }) {
    const latest = versions.data?.[0]?.config ?? {};
    act.run(async () => {
      // The database numbers the version (trigger number_agent_version); the generated type can't know.
      const draft = { org_id: org.id, project_id: a.project_id, agent_id: a.id, config: latest } as Database["public"]["Tables"]["agent_versions"]["Insert"];
      const [row] = await api.run(api.from("agent_versions").insert(draft).select("id, version"));
      setOpen(row.id);
      return `Draft v${row.version} created from the latest version.`;
    });
  }

  async function turnOff(a: { id: string; name: string }) {
    const sure = await confirmAction({
      title: `Turn off ${a.name}?`,
      body: <>Its runs stop, its widget stops answering and its connector grants end. Turning it on again is not possible from the console.</>,
      confirmLabel: "Turn off",
      typeToConfirm: a.name,
    });
    if (!sure) return;
    act.run(async () => (await api.run(api.rpc("disable_agent", { p_agent_id: a.id })), "Agent turned off."));
  }

  return (
    <QueryState query={agent} empty="">
      {(a) => (
        <>
          <PageHeader title={a.name} description={<>In project {a.projects?.name}. {a.description}</>} />
          {a.disabled_at && <Text role="status" c="orange.9" mb="md">This agent was turned off {when(a.disabled_at)}.</Text>}
          <Outcome outcome={act.outcome} />
          <Stack gap="xl">
            <section aria-labelledby="versions-heading">
              <Group justify="space-between" mb="sm">
                <Title order={2} size="h3" id="versions-heading">Versions</Title>
                {may?.edit_agents && <Button variant="light" onClick={() => draft(a)} loading={act.busy} disabled={!versions.data}>New draft version</Button>}
              </Group>
              <QueryState query={versions} empty="No versions yet.">
                {(list) => (
                  <Stack gap="xs">
                    {list.map((v) => (
                      <Paper key={v.id} withBorder radius="md" p="sm">
                        <Button variant="subtle" aria-expanded={open === v.id} onClick={() => setOpen(open === v.id ? null : v.id)}>
                          v{v.version} · {v.published_at ? `published ${when(v.published_at)}` : "draft"}
                        </Button>
                        {open === v.id && (v.published_at || !may?.edit_agents ? (
                          <Stack gap={4} mt="xs">
                            <Text size="sm">Model <strong>{String((v.config as Config).model ?? "gpt-4o-mini")}</strong>, {(v.config as Config).runtime === "external" ? "run by your own runtime" : "run by Gatehouse's worker"}</Text>
                            <Code block aria-label={`Configuration of v${v.version} (read-only)`}>{JSON.stringify(v.config, null, 2)}</Code>
                          </Stack>
                        ) : (
                          <DraftForm key={v.id} version={v} catalog={catalog.data ?? []} mayPublish={may?.manage_agents === true} act={act} />
                        ))}
                      </Paper>
                    ))}
                  </Stack>
                )}
              </QueryState>
            </section>
            <Tools agent={a} mayManage={may?.manage_agents === true} />
            <Limits agentId={a.id} />
            {org.permissions.organization.manage_organization && !a.disabled_at && (
              <section aria-labelledby="off-heading">
                <Title order={2} size="h3" id="off-heading" mb="xs">Turn off</Title>
                <Text size="sm" mb="sm">Turning the agent off stops its runs and ends its connector grants.</Text>
                <Button color="red" variant="outline" loading={act.busy} onClick={() => void turnOff(a)}>Turn off {a.name}</Button>
              </section>
            )}
          </Stack>
        </>
      )}
    </QueryState>
  );
}

/** A draft's configuration as a form: model, instructions, runtime, and further settings as JSON. */
function DraftForm({ version, catalog, mayPublish, act }: { version: Version; catalog: Catalog; mayPublish: boolean; act: ReturnType<typeof useAct> }) {
  const api = useOrgApi();
  const config = (version.config ?? {}) as Config;
  const rest = Object.fromEntries(Object.entries(config).filter(([k]) => !FORM_KEYS.includes(k)));
  const [invalid, setInvalid] = useState<string | null>(null);
  const model = String(config.model ?? "gpt-4o-mini");
  const models = catalog.map((m) => ({ value: m.model, label: `${m.model} (${m.provider}, $${(m.input_micro_per_mtok / 1e6).toFixed(2)} / $${(m.output_micro_per_mtok / 1e6).toFixed(2)} per million tokens in / out)` }));
  if (!models.some((m) => m.value === model)) models.unshift({ value: model, label: `${model} (not in the catalog: calls are refused)` });

  function read(form: HTMLFormElement): Config | null {
    const data = new FormData(form);
    let further: Config = {};
    try {
      const text = field(data, "further");
      further = text ? JSON.parse(text) as Config : {};
      if (!further || typeof further !== "object" || Array.isArray(further)) throw new Error("Further settings are a JSON object, such as {\"temperature\": 0.2}.");
    } catch (e) {
      setInvalid(e instanceof SyntaxError ? "Further settings are not JSON: write an object, such as {\"temperature\": 0.2}." : (e as Error).message);
      return null;
    }
    setInvalid(null);
    const next: Config = { ...further, model: field(data, "model") };
    const instructions = String(data.get("instructions") ?? "");
    if (instructions.trim()) next.instructions = instructions;
    if (data.get("runtime") === "external") next.runtime = "external";
    return next;
  }

  function save(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const next = read(event.currentTarget);
    if (!next) return;
    act.run(async () => {
      const rows = await api.run(api.from("agent_versions").update({ config: next as { [key: string]: Json } }).eq("id", version.id).select("id"));
      return rows.length ? `Draft v${version.version} saved.` : "Nothing was saved: the database let your role change no draft.";
    });
  }

  async function publish() {
    const sure = await confirmAction({
      title: `Publish v${version.version}?`,
      body: <>New runs and widget chats use it at once, and it can never change again: later changes need a new draft. Save the draft first: what is published is what was saved.</>,
      confirmLabel: `Publish v${version.version}`,
    });
    if (!sure) return;
    act.run(async () => {
      await api.run(api.rpc("publish_agent_version", { p_version_id: version.id }));
      return `v${version.version} published; it can no longer change.`;
    });
  }

  return (
    <form onSubmit={save} aria-label={`Configuration of draft v${version.version}`}>
      <Stack mt="sm">
        <SimpleGrid cols={{ base: 1, sm: 2 }}>
          <NativeSelect name="model" label="Model" description="From the catalog; the organization's limits may allow fewer" defaultValue={model} data={models} />
          <NativeSelect name="runtime" label="Runs run on" defaultValue={config.runtime === "external" ? "external" : "worker"}
            data={[{ value: "worker", label: "Gatehouse's run worker" }, { value: "external", label: "Your own runtime, with a run token" }]} />
        </SimpleGrid>
        <Textarea name="instructions" label="Instructions" description="The system prompt of every run and chat" defaultValue={String(config.instructions ?? "")} autosize minRows={4} maxRows={16} />
        <Textarea name="further" label="Further settings (JSON)" description="Anything else the configuration holds, kept as it is" defaultValue={Object.keys(rest).length ? JSON.stringify(rest, null, 2) : ""} autosize minRows={2} spellCheck={false} ff="monospace" />
        {invalid && <Text role="alert" c="red.8" size="sm">{invalid}</Text>}
        <Group>
          <Button type="submit" loading={act.busy}>Save draft</Button>
          {mayPublish && <Button variant="light" color="grape" loading={act.busy} onClick={() => void publish()}>Publish v{version.version}</Button>}
        </Group>
      </Stack>
    </form>
  );
}

/** The agent's tools: each a name bound to one of the organization's connections. */
function Tools({ agent, mayManage }: { agent: { id: string; project_id: string; name: string }; mayManage: boolean }) {
  const org = useOrg();
  const api = useOrgApi();
  const tools = useQuery({
    queryKey: ["agents", org.id, agent.id, "tools"],
    queryFn: () => api.run(api.from("agent_tools").select("*").eq("agent_id", agent.id).order("tool")) as Promise<Tool[]>,
  });
  const connections = useQuery({
    queryKey: ["connections", org.id, "active"],
    queryFn: () => api.run(api.from("connections").select("id, display_name, provider, scopes").eq("status", "active").order("display_name")),
    enabled: mayManage,
  });
  const act = useAct([["agents", org.id, agent.id, "tools"]]);
  const name = (id: string | null) => connections.data?.find((c) => c.id === id)?.display_name ?? (id ? id.slice(0, 8) : "—");

  function add(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const connection = connections.data?.find((c) => c.id === field(data, "connection"));
    if (!connection) return;
    act.run(async () => {
      await api.run(api.from("agent_tools").insert({
        org_id: org.id, project_id: agent.project_id, agent_id: agent.id, tool: field(data, "tool"),
        provider: connection.provider, connection_id: connection.id, scopes: connection.scopes,
      }).select("id"));
      form.reset();
      return `Tool ${field(data, "tool")} added.`;
    });
  }

  async function remove(t: Tool) {
    const sure = await confirmAction({
      title: `Remove the tool ${t.tool}?`,
      body: <>{agent.name} can no longer call it, and its actions waiting for approval are withdrawn.</>,
      confirmLabel: "Remove the tool",
    });
    if (sure) act.run(async () => (await api.run(api.from("agent_tools").delete().eq("id", t.id).select("id")), `Tool ${t.tool} removed.`));
  }

  return (
    <section aria-labelledby="tools-heading">
      <Title order={2} size="h3" id="tools-heading" mb="xs">Tools</Title>
      <Text size="sm" c="dimmed" mb="sm">A tool call is proposed as an action, checked by the approval policy, and delivered through its connection.</Text>
      <Outcome outcome={act.outcome} />
      <QueryState query={tools} empty="No tools: the agent only answers." rows={2}>
        {(list) => (
          <DataTable
            label="Tools"
            rows={list}
            rowKey={(t) => t.id}
            columns={[
              { key: "tool", header: "Tool", cell: (t) => <Code>{t.tool}</Code>, sort: (t) => t.tool },
              { key: "provider", header: "Through", cell: (t) => `${t.provider}${mayManage ? `: ${name(t.connection_id)}` : ""}`, sort: (t) => t.provider },
              { key: "cost", header: "Cost units", cell: (t) => t.cost_units, sort: (t) => t.cost_units },
              {
                key: "on", header: "On", cell: (t) => mayManage
                  ? <Switch aria-label={`${t.tool} on`} checked={t.enabled} onChange={(e) => {
                    const enabled = e.currentTarget.checked;
                    act.run(async () => (await api.run(api.from("agent_tools").update({ enabled }).eq("id", t.id).select("id")), `Tool ${t.tool} ${enabled ? "on" : "off"}.`));
                  }} />
                  : (t.enabled ? "on" : "off"),
              },
              ...(mayManage ? [{ key: "remove", header: "", cell: (t: Tool) => <Button size="xs" variant="subtle" color="red" onClick={() => void remove(t)}>Remove {t.tool}</Button> }] : []),
            ]}
          />
        )}
      </QueryState>
      {mayManage && (connections.data?.length ?? 0) > 0 && (
        <form onSubmit={add} aria-label="Add a tool">
          <Group align="flex-end" mt="md" wrap="wrap">
            <TextInput name="tool" label="Tool name" placeholder="refunds.create" required pattern="[a-z][a-z0-9_.\-]{0,99}" title="Lower-case letters, digits, _ . and -" />
            <NativeSelect name="connection" label="Connection" data={(connections.data ?? []).map((c) => ({ value: c.id, label: `${c.display_name} (${c.provider})` }))} />
            <Button type="submit" loading={act.busy}>Add tool</Button>
          </Group>
        </form>
      )}
    </section>
  );
}

/** The agent's model limits (model_caps), set on the Models and limits screen. */
function Limits({ agentId }: { agentId: string }) {
  const org = useOrg();
  const api = useOrgApi();
  const caps = useQuery({
    queryKey: ["agents", org.id, agentId, "caps"],
    queryFn: () => api.run(api.from("model_caps").select("*").eq("agent_id", agentId)),
  });
  return (
    <section aria-labelledby="limits-heading">
      <Title order={2} size="h3" id="limits-heading" mb="xs">Limits</Title>
      <QueryState query={caps} empty={<>No limits of its own: the project's and the organization's apply. <Anchor component={Link} underline="always" to={`/o/${org.id}/limits`}>Models and limits</Anchor></>} rows={1}>
        {([cap]) => (
          <Text size="sm">
            Models: {cap.allowed_models?.join(", ") ?? "the organization's"}; {cap.requests_per_minute ?? "the organization's"} calls a minute;
            a month {dollars(cap.monthly_budget_micro)}, a run {dollars(cap.run_budget_micro)}.{" "}
            <Anchor component={Link} underline="always" to={`/o/${org.id}/limits`}>Change them in Models and limits</Anchor>
          </Text>
        )}
      </QueryState>
    </section>
  );
}
