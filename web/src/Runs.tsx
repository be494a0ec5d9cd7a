/**
 * Runs (issue 24): the organization's agent runs, filtered by status, and one run's timeline: its
 * model calls (with their cost), the actions it proposed (linked to their approval), its telemetry
 * and its transcript. Whoever may run a project's agents (my_permissions: run_agents) starts a run
 * with an input ("Run now") and cancels one, after a confirmation; a viewer sees the same and no
 * controls. Every rule is the database's: start_agent_run, the run's transitions (a person may only
 * cancel), RLS on each table.
 */
import { Anchor, Badge, Button, Code, Group, NativeSelect, Paper, SegmentedControl, SimpleGrid, Stack, Table, Text, Textarea, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { Link, useParams, useSearchParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi, useProjectPermissions, useProjectsWhere } from "./kit.tsx";
import { useOrg, when } from "./ui.tsx";

type Run = Database["public"]["Tables"]["agent_runs"]["Row"];
type Status = Database["public"]["Enums"]["run_status"];

const FILTERS: [string, string, Status[] | null][] = [
  ["active", "Going on", ["queued", "running", "waiting_approval"]],
  ["ended", "Ended", ["succeeded", "failed", "cancelled", "budget_exhausted", "steps_exhausted", "timed_out", "approval_expired"]],
  ["all", "All", null],
];
const ACTIVE: Status[] = ["queued", "running", "waiting_approval"];
const LIST_LIMIT = 100;
const COLORS: Partial<Record<Status, string>> = {
  queued: "gray", running: "blue", waiting_approval: "grape", succeeded: "teal", cancelled: "gray",
};

/** A run's status as a badge (its end code beside an unsuccessful end). */
function StatusBadge({ status, code }: { status: Status; code?: string | null }) {
  return (
    <Group gap={6} wrap="nowrap">
      <Badge variant="light" color={COLORS[status] ?? "red"}>{status.replaceAll("_", " ")}</Badge>
      {code && <Text size="xs" c="dimmed">{code}</Text>}
    </Group>
  );
}

/** /o/:org/runs: runs, newest first, filtered by ?show=active|ended|all; "Run now". */
export function Runs() {
  const org = useOrg();
  const api = useOrgApi();
  const [params, setParams] = useSearchParams();
  const show = FILTERS.find(([value]) => value === params.get("show"))?.[0] ?? "all";
  const statuses = FILTERS.find(([value]) => value === show)![2];
  const runnable = useProjectsWhere("run_agents");
  const runs = useQuery({
    queryKey: ["runs", org.id, show],
    queryFn: () => {
      let q = api.from("agent_runs").select("id, status, started_at, ended_at, end_code, steps, max_steps, agents(name)")
        .order("started_at", { ascending: false }).limit(LIST_LIMIT);
      if (statuses) q = q.in("status", statuses);
      return api.run(q);
    },
  });
  const agents = useQuery({
    queryKey: ["agents", org.id, "runnable", runnable.join()],
    queryFn: () => api.run(api.from("agents").select("id, name").is("disabled_at", null).in("project_id", runnable).order("name")),
    enabled: runnable.length > 0,
  });
  const act = useAct([["runs", org.id]]);

  return (
    <>
      <PageHeader title={`Runs in ${org.name}`} description="Every run of the organization's agents: its model calls, the actions it proposed, its telemetry and transcript." />
      <Outcome outcome={act.outcome} />
      <SegmentedControl
        mb="md"
        aria-label="Show runs"
        value={show}
        onChange={(value) => setParams({ show: value })}
        data={FILTERS.map(([value, label]) => ({ value, label }))}
      />
      <QueryState query={runs} empty="No runs here yet.">
        {(list) => (
          <DataTable
            label="Runs"
            rows={list}
            rowKey={(r) => r.id}
            minWidth={640}
            columns={[
              { key: "run", header: "Run", cell: (r) => <Anchor component={Link} to={`/o/${org.id}/runs/${r.id}`} ff="monospace">{r.id.slice(0, 8)}</Anchor> },
              { key: "agent", header: "Agent", cell: (r) => r.agents?.name ?? "—", sort: (r) => r.agents?.name },
              { key: "status", header: "Status", cell: (r) => <StatusBadge status={r.status} code={r.end_code} />, sort: (r) => r.status },
              { key: "steps", header: "Steps", cell: (r) => `${r.steps} of ${r.max_steps}`, sort: (r) => r.steps },
              { key: "started", header: "Started", cell: (r) => when(r.started_at), sort: (r) => r.started_at },
              { key: "ended", header: "Ended", cell: (r) => when(r.ended_at), sort: (r) => r.ended_at },
            ]}
          />
        )}
      </QueryState>
      {runnable.length > 0 && (
        <Paper withBorder p="lg" radius="md" mt="xl" component="section" aria-labelledby="run-now">
          <Title order={2} size="h3" id="run-now" mb="sm">Run now</Title>
          <QueryState query={agents} empty="No agent to run: create and publish one first." rows={2}>
            {(list) => (
              <form aria-label="Run an agent now" onSubmit={(e) => {
                e.preventDefault();
                const form = e.currentTarget;
                const data = new FormData(form);
                act.run(async () => {
                  let input: Json;
                  try {
                    input = JSON.parse(String(data.get("input") ?? "{}") || "{}");
                  } catch {
                    throw new Error("The input is not JSON: write an object, such as {\"order\": 1042}.");
                  }
                  const run = await api.run(api.rpc("start_agent_run", { p_agent_id: String(data.get("agent")), p_input: input }));
                  form.reset();
                  return `Run ${run.id.slice(0, 8)} started.`;
                });
              }}>
                <Stack maw={560}>
                  <NativeSelect name="agent" label="Agent" required data={list.map((a) => ({ value: a.id, label: a.name }))} />
                  <Textarea name="input" label="Input (a JSON object)" description='For example {"prompt": "Summarise today&apos;s refunds."}' autosize minRows={3} defaultValue="{}" styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }} />
                  <Group><Button type="submit" loading={act.busy}>Run now</Button></Group>
                </Stack>
              </form>
            )}
          </QueryState>
        </Paper>
      )}
    </>
  );
}

interface Timeline {
  run: Run & { agents: { name: string } | null };
  calls: { id: string; model: string; outcome: string; cost_micro: number; input_tokens: number; output_tokens: number; latency_ms: number; started_at: string }[];
  actions: { id: string; tool: string; status: string; risk: string; created_at: string }[];
  events: { id: string; meta: Json; created_at: string }[];
  messages: { seq: number; role: string; content: Json; created_at: string }[];
}

/** /o/:org/runs/:id: one run's timeline, and cancel while it goes on. */
export function RunDetail() {
  const org = useOrg();
  const api = useOrgApi();
  const { id = "" } = useParams();
  const timeline = useQuery({
    queryKey: ["runs", org.id, "run", id],
    queryFn: async (): Promise<Timeline | null> => {
      const [run] = await api.run(api.from("agent_runs").select("*, agents(name)").eq("id", id));
      if (!run) return null;
      const [calls, actions, events, messages] = await Promise.all([
        api.run(api.from("model_calls").select("id, model, outcome, cost_micro, input_tokens, output_tokens, latency_ms, started_at").eq("run_id", id).order("started_at")),
        api.run(api.from("action_requests").select("id, tool, status, risk, created_at").eq("run_id", id).order("created_at")),
        api.run(api.from("agent_run_events").select("id, meta, created_at").eq("run_id", id).order("created_at")),
        api.run(api.from("agent_run_messages").select("seq, role, content, created_at").eq("run_id", id).order("seq")),
      ]);
      return { run: run as Timeline["run"], calls, actions, events, messages } as Timeline;
    },
  });
  const project = useProjectPermissions(timeline.data?.run.project_id);
  const act = useAct([["runs", org.id]]);

  return (
    <>
      <Anchor component={Link} to={`/o/${org.id}/runs`} size="sm">← All runs</Anchor>
      <QueryState query={timeline} empty="No run with that id in this organization." isEmpty={(t) => t === null} rows={6}>
        {(t) => {
          if (!t) return null;
          const { run } = t;
          const cost = t.calls.reduce((sum, c) => sum + Number(c.cost_micro), 0);
          const going = ACTIVE.includes(run.status);
          const cancel = going && project?.run_agents ? (
            <Button color="red" variant="light" loading={act.busy} onClick={async () => {
              const sure = await confirmAction({
                title: "Cancel this run?",
                body: "The run stops at its next step and can't be resumed. Actions it already sent stay sent.",
                confirmLabel: "Yes, cancel the run",
              });
              if (!sure) return;
              act.run(async () => {
                const rows = await api.run(api.from("agent_runs").update({ status: "cancelled" }).eq("id", run.id).select("id"));
                return rows.length ? "The run was cancelled." : "Nothing changed: the database did not let you cancel this run.";
              });
            }}>Cancel this run</Button>
          ) : undefined;
          return (
            <>
              <PageHeader title={`Run ${run.id.slice(0, 8)} of ${run.agents?.name ?? "an agent"}`} action={cancel} />
              <Outcome outcome={act.outcome} />
              <SimpleGrid cols={{ base: 2, sm: 5 }} mb="lg">
                <Fact label="Status"><StatusBadge status={run.status} code={run.end_code} /></Fact>
                <Fact label="Steps">{run.steps} of {run.max_steps}</Fact>
                <Fact label="Started">{when(run.started_at)}</Fact>
                <Fact label={going ? "Times out" : "Ended"}>{when(going ? run.deadline_at : run.ended_at)}</Fact>
                <Fact label="Model cost">{(cost / 1e6).toFixed(6)} USD in {t.calls.length} call{t.calls.length === 1 ? "" : "s"}</Fact>
              </SimpleGrid>
              <Title order={2} size="h3" mt="lg">Input</Title>
              <Code block>{JSON.stringify(run.input, null, 2)}</Code>
              {run.result !== null && <><Title order={2} size="h3" mt="lg">Result</Title><Code block>{JSON.stringify(run.result, null, 2)}</Code></>}

              <Section title="Model calls" empty="No model call yet." rows={t.calls.length}>
                <Table aria-label="Model calls">
                  <Table.Thead><Table.Tr><Table.Th>When</Table.Th><Table.Th>Model</Table.Th><Table.Th>Outcome</Table.Th><Table.Th>Tokens in / out</Table.Th><Table.Th>Cost (micro-USD)</Table.Th><Table.Th>Latency</Table.Th></Table.Tr></Table.Thead>
                  <Table.Tbody>
                    {t.calls.map((c) => (
                      <Table.Tr key={c.id}><Table.Td>{when(c.started_at)}</Table.Td><Table.Td>{c.model}</Table.Td><Table.Td>{c.outcome}</Table.Td><Table.Td>{c.input_tokens} / {c.output_tokens}</Table.Td><Table.Td>{c.cost_micro}</Table.Td><Table.Td>{c.latency_ms} ms</Table.Td></Table.Tr>
                    ))}
                  </Table.Tbody>
                </Table>
              </Section>

              <Section title="Actions" empty="No action proposed." rows={t.actions.length}>
                <Table aria-label="Actions">
                  <Table.Thead><Table.Tr><Table.Th>When</Table.Th><Table.Th>Tool</Table.Th><Table.Th>Risk</Table.Th><Table.Th>Status</Table.Th></Table.Tr></Table.Thead>
                  <Table.Tbody>
                    {t.actions.map((a) => (
                      <Table.Tr key={a.id}><Table.Td>{when(a.created_at)}</Table.Td><Table.Td><Anchor component={Link} to={`/o/${org.id}/approvals/${a.id}`}>{a.tool}</Anchor></Table.Td><Table.Td>{a.risk}</Table.Td><Table.Td>{a.status}</Table.Td></Table.Tr>
                    ))}
                  </Table.Tbody>
                </Table>
              </Section>

              <Section title="Telemetry" empty="No events." rows={t.events.length}>
                <Table aria-label="Telemetry">
                  <Table.Thead><Table.Tr><Table.Th>When</Table.Th><Table.Th>Step</Table.Th><Table.Th>Tool</Table.Th><Table.Th>Time</Table.Th><Table.Th>Code</Table.Th></Table.Tr></Table.Thead>
                  <Table.Tbody>
                    {t.events.map((e) => {
                      const m = e.meta as { tool_name: string | null; ms: number; code: string | null; iter: number };
                      return <Table.Tr key={e.id}><Table.Td>{when(e.created_at)}</Table.Td><Table.Td>{m.iter}</Table.Td><Table.Td>{m.tool_name ?? "model"}</Table.Td><Table.Td>{m.ms} ms</Table.Td><Table.Td>{m.code ?? "—"}</Table.Td></Table.Tr>;
                    })}
                  </Table.Tbody>
                </Table>
              </Section>

              <Section title="Transcript" empty="No transcript (none yet, or purged with the organization's retention)." rows={t.messages.length}>
                <Stack gap="xs" component="ol" style={{ listStyle: "none", padding: 0 }}>
                  {t.messages.map((m) => (
                    <Paper key={m.seq} component="li" withBorder p="sm" radius="sm">
                      <Text size="xs" fw={700} tt="uppercase" c="dimmed">{m.role}</Text>
                      <Code block style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>{JSON.stringify(m.content)}</Code>
                    </Paper>
                  ))}
                </Stack>
              </Section>
            </>
          );
        }}
      </QueryState>
    </>
  );
}

function Fact({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <Stack gap={2}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>{label}</Text>
      <Text size="sm" component="div">{children}</Text>
    </Stack>
  );
}

function Section({ title, empty, rows, children }: { title: string; empty: string; rows: number; children: React.ReactNode }) {
  return (
    <>
      <Title order={2} size="h3" mt="xl" mb="xs">{title}</Title>
      {rows === 0 ? <Text c="dimmed" size="sm">{empty}</Text> : <Table.ScrollContainer minWidth={560} type="native" tabIndex={0}>{children}</Table.ScrollContainer>}
    </>
  );
}
