/**
 * Approvals (seed 000, hash-pinned approvals): the list of action requests, pending first, as a
 * sortable table, and one request at its own address. At the top of a request, where it stands:
 * its status, the approvals it has and needs, who decided what and when, who may still decide and
 * whether that includes you (and if not, why not). Below, what the approver reviews: the exact
 * payload that will be executed and the SHA-256 it is pinned to, where it goes and the approval
 * hash (both hashes checked in the browser), and the policy that applied. Last, the decision: its
 * outcome, or the database's refusal (a second factor it needs, a hash that changed), right above
 * the buttons, and as a toast.
 *
 * Every rule is the database's: who may decide (decide_action, and the pending_approvals view's
 * awaiting_you, which the decision controls follow: a viewer, the requester or someone who decided
 * already sees the request and why they can't decide it, and no buttons), whether a second factor
 * is needed (the computed field needs_step_up, enforced by a trigger), whether the hash is current.
 * The page sends the hash it showed and explains what the database answers.
 */
import { Alert, Anchor, Badge, Box, Button, Code, Group, Paper, Progress, SegmentedControl, Stack, Table, Text, Textarea, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { Link, useLocation, useParams, useSearchParams } from "react-router";
import type { Database } from "../../supabase/database.types.ts";
import { ApiError, describeError, type OrgApi } from "./api.ts";
import { sha256Hex } from "../../functions/_shared/audit/verify.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi } from "./kit.tsx";
import type { Me } from "./session.ts";
import { field, useOrg, when } from "./ui.tsx";

type ActionRequest = Database["public"]["Tables"]["action_requests"]["Row"];
type Decision = Database["public"]["Tables"]["approval_decisions"]["Row"];
type Policy = Database["public"]["Tables"]["approval_policies"]["Row"];
type Role = Database["public"]["Enums"]["member_role"];
type Risk = Database["public"]["Enums"]["risk_level"];

const SHOWS = [["pending", "Pending"], ["decided", "Decided"], ["all", "All"]] as const;
type Show = (typeof SHOWS)[number][0];
const LIST_LIMIT = 100;
const RISKS: Risk[] = ["low", "medium", "high", "critical"];
const RISK_COLORS: Record<Risk, string> = { low: "gray", medium: "blue", high: "grape", critical: "red" };
const STATUS_COLORS: Record<string, string> = {
  pending: "blue", approved: "teal", executed: "teal", rejected: "red", denied: "red", withdrawn: "gray", expired: "gray",
};
const ROLE_NAMES: Record<Role, string> = {
  tenant_admin: "Tenant admin", project_admin: "Project admin", project_contributor: "Contributor", project_viewer: "Viewer",
};

/** A row of the list: a request, with the approvals it has and whether it waits for the signed-in person. */
interface Row {
  id: string;
  tool: string;
  provider: string | null;
  destination: string | null;
  risk: Risk;
  status: ActionRequest["status"];
  approvals: number;
  approvals_required: number;
  expires_at: string;
  created_at: string;
  awaiting_you: boolean | null;
}

function expired(r: { status: string; expires_at: string }): boolean {
  return r.status === "pending" && new Date(r.expires_at).getTime() <= Date.now();
}

/** The status as a person reads it: a pending request past its expiry is expired. */
function statusText(r: { status: string; expires_at: string }): string {
  return expired(r) ? "expired" : r.status;
}

function StatusBadge({ request }: { request: { status: string; expires_at: string } }) {
  const status = statusText(request);
  return <Badge variant="light" color={STATUS_COLORS[status] ?? "gray"} miw="max-content">{status}</Badge>;
}

function RiskBadge({ risk, suffix = "" }: { risk: Risk; suffix?: string }) {
  return <Badge variant={risk === "critical" ? "filled" : "light"} color={RISK_COLORS[risk]} miw="max-content">{risk}{suffix}</Badge>;
}

/** "a", "a and b", "a, b and c". */
function list(items: string[]): string {
  return items.length <= 1 ? items.join("") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** A sentence that starts with "you" starts with "You" (an email stays as it is spelled). */
const capital = (text: string) => (text.startsWith("you") ? `Y${text.slice(1)}` : text);

async function loadRows(api: OrgApi, show: Show): Promise<Row[]> {
  // The view answers what waits (unexpired, pending) with the approvals so far and awaiting_you.
  const pending = await api.run(api.from("pending_approvals")
    .select("id, tool, provider, destination, risk, approvals, approvals_required, expires_at, created_at, awaiting_you")
    .order("expires_at").limit(LIST_LIMIT));
  const pendingRows: Row[] = pending.map((p) => ({ ...p, status: "pending", approvals: p.approvals ?? 0 }));
  if (show === "pending") return pendingRows;

  let query = api.from("action_requests")
    .select("id, tool, provider, destination, risk, status, approvals_required, expires_at, created_at")
    .order("created_at", { ascending: false }).limit(LIST_LIMIT);
  if (show === "decided") query = query.or(`status.neq.pending,expires_at.lte.${new Date().toISOString()}`);
  const requests = await api.run(query);
  const ids = requests.map((r) => r.id);
  const decisions = ids.length === 0 ? [] : await api.run(api.from("approval_decisions").select("request_id, approve").in("request_id", ids));
  const waiting = new Map(pendingRows.map((p) => [p.id, p]));
  const rows: Row[] = requests.map((r) => ({
    ...r,
    approvals: decisions.filter((d) => d.request_id === r.id && d.approve).length,
    awaiting_you: waiting.get(r.id)?.awaiting_you ?? null,
  }));
  // Pending first, then newest first.
  return rows.sort((a, b) => Number(waiting.has(b.id)) - Number(waiting.has(a.id)) || b.created_at.localeCompare(a.created_at));
}

/** /o/:org/approvals: action requests, pending first, filtered by ?show=pending|decided|all. */
export function Approvals({ me }: { me: Me }) {
  const org = useOrg();
  const api = useOrgApi();
  const [params, setParams] = useSearchParams();
  const show: Show = SHOWS.some(([s]) => s === params.get("show")) ? (params.get("show") as Show) : "pending";
  const rows = useQuery({ queryKey: ["approvals", org.id, "list", show], queryFn: () => loadRows(api, show) });

  return (
    <>
      <PageHeader
        title={`Approvals in ${org.name}`}
        description={
          <>
            Agents propose external actions; each is pinned to the SHA-256 of its exact payload and of where it goes. Open one to review the
            payload and decide. {me.aal === "aal2" ? "You are signed in with your second factor." : "High- and critical-risk actions need your second factor."}
          </>
        }
        action={<Button variant="default" onClick={() => void rows.refetch()} loading={rows.isRefetching}>Refresh</Button>}
      />
      <SegmentedControl
        mb="md"
        aria-label="Show requests"
        value={show}
        onChange={(value) => setParams(value === "pending" ? {} : { show: value })}
        data={SHOWS.map(([value, label]) => ({ value, label }))}
      />
      <Title order={2} size="h3" mb="sm">{SHOWS.find(([s]) => s === show)![1]} requests</Title>
      <QueryState query={rows} empty={show === "pending" ? "Nothing is waiting for approval." : "No action requests here yet."}>
        {(list) => (
          <DataTable
            label="Action requests"
            rows={list}
            rowKey={(r) => r.id}
            minWidth={760}
            columns={[
              {
                key: "tool",
                header: "Tool",
                sort: (r) => r.tool,
                cell: (r) => (
                  <Stack gap={0}>
                    <Anchor component={Link} to={`/o/${org.id}/approvals/${r.id}`} ff="monospace" size="sm">{r.tool}</Anchor>
                    {r.provider && <Text size="xs" c="dimmed">via {r.provider} to {r.destination}</Text>}
                  </Stack>
                ),
              },
              { key: "risk", header: "Risk", cell: (r) => <RiskBadge risk={r.risk} />, sort: (r) => RISKS.indexOf(r.risk) },
              { key: "status", header: "Status", cell: (r) => <StatusBadge request={r} />, sort: (r) => statusText(r) },
              {
                key: "approvals",
                header: "Approvals",
                cell: (r) => (r.approvals_required === 0 ? "none needed" : `${r.approvals} of ${r.approvals_required}`),
                sort: (r) => (r.approvals_required === 0 ? -1 : r.approvals / r.approvals_required),
              },
              { key: "expires", header: "Expires", cell: (r) => when(r.expires_at), sort: (r) => r.expires_at },
              {
                key: "awaiting",
                header: "Awaiting you",
                cell: (r) => (r.awaiting_you === null ? "—" : r.awaiting_you ? <Badge variant="light" miw="max-content">Yes</Badge> : "No"),
                sort: (r) => (r.awaiting_you === null ? -1 : Number(r.awaiting_you)),
              },
              { key: "requested", header: "Requested", cell: (r) => when(r.created_at), sort: (r) => r.created_at },
            ]}
          />
        )}
      </QueryState>
      {rows.data?.length === LIST_LIMIT && <Text c="dimmed" size="sm" mt="sm">Showing the first {LIST_LIMIT}.</Text>}
    </>
  );
}

interface Detail {
  request: ActionRequest;
  /** The pending_approvals view's answer: whether you may decide it now (null: it is not pending there). */
  awaitingYou: boolean | null;
  decisions: Decision[];
  policy: Policy | null;
  agent: string | null;
  /** The name of the connection the request is pinned to, as the organization calls it. */
  connection: string | null;
  /** Who started the run that proposed it (nobody may decide what their own run proposed). */
  runStartedBy: string | null;
  /** Emails by user id (the organization's directory). */
  people: Map<string, string>;
}

async function loadDetail(api: OrgApi, id: string): Promise<Detail | null> {
  const request = await api.run<ActionRequest | null>(api.from("action_requests").select("*, needs_step_up").eq("id", id).maybeSingle());
  if (!request) return null;
  const [pending, decisions, policy, agent, connection, run, directory] = await Promise.all([
    api.run<{ awaiting_you: boolean | null } | null>(api.from("pending_approvals").select("awaiting_you").eq("id", id).maybeSingle()),
    api.run(api.from("approval_decisions").select("*").eq("request_id", id).order("decided_at")),
    request.policy_id ? api.run<Policy | null>(api.from("approval_policies").select("*").eq("id", request.policy_id).maybeSingle()) : Promise.resolve(null),
    api.run<{ name: string } | null>(api.from("agents").select("name").eq("id", request.agent_id).maybeSingle()),
    request.connection_id
      ? api.run<{ display_name: string } | null>(api.from("connections").select("display_name").eq("id", request.connection_id).maybeSingle())
      : Promise.resolve(null),
    api.run<{ started_by: string | null } | null>(api.from("agent_runs").select("started_by").eq("id", request.run_id).maybeSingle()),
    // Emails for ids; without the directory, people show as ids.
    api.run(api.rpc("organization_directory")).catch(() => []),
  ]);
  return {
    request,
    awaitingYou: pending?.awaiting_you ?? null,
    decisions,
    policy,
    agent: agent?.name ?? null,
    connection: connection?.display_name ?? null,
    runStartedBy: run?.started_by ?? null,
    people: new Map(directory.map((p) => [p.user_id, p.email])),
  };
}

/** /o/:org/approvals/:id: where one request stands, its exact payload and hash, its policy, and the decision. */
export function ApprovalDetail({ me }: { me: Me }) {
  const org = useOrg();
  const api = useOrgApi();
  const { id = "" } = useParams();
  const detail = useQuery({ queryKey: ["approvals", org.id, "request", id], queryFn: () => loadDetail(api, id) });

  return (
    <>
      <Anchor component={Link} to={`/o/${org.id}/approvals`} size="sm">← All approvals</Anchor>
      <QueryState query={detail} empty="" isEmpty={() => false} rows={8}>
        {(d) => d === null
          ? (
            <>
              <PageHeader title="Action request not found" />
              <Alert color="red" role="alert">No action request with this id is visible to you in {org.name}.</Alert>
            </>
          )
          : <RequestView detail={d} me={me} reload={() => void detail.refetch()} />}
      </QueryState>
    </>
  );
}

/** Why the database says you may not decide an open request, read from the request and its decisions. */
type WhyNot = "already_decided" | "requested" | "started_run" | "approver_role_required";

function whyNot(d: Detail, me: Me): WhyNot | null {
  if (d.awaitingYou !== false) return null;
  if (d.decisions.some((x) => x.decided_by === me.user.id)) return "already_decided";
  if (d.request.requested_by === me.user.id) return "requested";
  if (d.runStartedBy === me.user.id) return "started_run";
  return "approver_role_required";
}

function RequestView({ detail, me, reload }: { detail: Detail; me: Me; reload: () => void }) {
  const org = useOrg();
  const location = useLocation();
  const { request: r, policy } = detail;
  const person = (uid: string | null) => (uid ? `${detail.people.get(uid) ?? uid}${uid === me.user.id ? " (you)" : ""}` : "—");
  const open = r.status === "pending" && !expired(r);
  const stepUp = `/account?next=${encodeURIComponent(location.pathname)}`;

  return (
    <>
      <PageHeader
        title={`Approval: ${r.tool}`}
        description={`An external action proposed by ${detail.agent ?? "an agent"}, pinned to the SHA-256 of its exact payload and of where it goes.`}
      />
      <Standing detail={detail} me={me} open={open} stepUp={stepUp} person={person} />

      <Title order={2} size="h3" mt="xl" mb="xs">Request</Title>
      <Facts
        rows={[
          ["Status", <>{statusText(r)}{r.outcome ? `, ${r.outcome}` : ""}{r.outcome_detail ? ` (${r.outcome_detail})` : ""}</>],
          ["Risk", <>{r.risk}{r.proposed_risk !== r.risk ? ` (the agent said ${r.proposed_risk}; the policy's minimum is higher)` : ""}</>],
          ["Agent", detail.agent ?? r.agent_id],
          ["Run", <Anchor component={Link} to={`/o/${org.id}/runs/${r.run_id}`} ff="monospace" size="sm">{r.run_id.slice(0, 8)}</Anchor>],
          ["Requested", <>
            {when(r.created_at)} by{" "}
            {r.requested_via === "member"
              ? person(r.requested_by)
              : r.requested_by ? `the agent runtime, in a run started by ${person(r.requested_by)}` : "the agent runtime, in a scheduled run"}
          </>],
          [expired(r) ? "Expired" : "Expires", when(r.expires_at)],
          r.decided_at ? ["Decided", when(r.decided_at)] : null,
          r.withdrawn_at ? ["Withdrawn", when(r.withdrawn_at)] : null,
          r.executed_at ? ["Executed", when(r.executed_at)] : null,
        ]}
      />

      {r.provider === "sandbox" && <CodeToRun canonical={r.canonical_payload} />}
      <Payload canonical={r.canonical_payload} sha256={r.payload_sha256} />
      <Target request={r} connection={detail.connection} />

      <Title order={2} size="h3" mt="xl" mb="xs">Policy</Title>
      <Facts
        rows={[
          ["Applied when proposed", modeText(r.mode)],
          ["Approvals required", <>{r.approvals_required}{r.approvals_required === 2 ? " (dual control: two different people)" : ""}</>],
          ["Approver role", `${ROLE_NAMES[r.approver_role]}${r.approver_role === "tenant_admin" ? "" : " or above"}, on the request's project`],
          ["Policy", r.policy_id === null
            ? "No policy matched: the project's default applied."
            : policy
              ? `For ${policy.agent_id ? "this agent" : "any agent"} and ${policy.tool ? `tool ${policy.tool}` : "any tool"}: now ${modeText(policy.mode)}, approver ${policy.approver_role}` +
                (policy.dual_control_from_risk ? `, dual control from ${policy.dual_control_from_risk} risk up` : "") +
                (policy.min_risk !== "low" ? `, at least ${policy.min_risk} risk` : "") +
                (policy.mode === "allow" ? `, only through connection ${policy.connection_id} at ${policy.destination}` : "") +
                ". The request keeps what applied when it was proposed."
              : "The policy that applied has since been removed; the request keeps what it said."],
        ]}
      />

      {/* Keyed by the hash: a reload that brings another payload or target starts the decision afresh. */}
      <Decide
        key={r.approval_sha256 ?? r.id}
        request={r}
        open={open}
        mayDecide={open && detail.awaitingYou !== false}
        me={me}
        stepUp={stepUp}
        reload={reload}
      />
    </>
  );
}

/**
 * Where the request stands, at the top of the page: its status, the approvals it has and needs,
 * who decided what and when, and (while it is open) who may still decide, you included or not.
 */
function Standing({ detail, me, open, stepUp, person }: {
  detail: Detail;
  me: Me;
  open: boolean;
  stepUp: string;
  person: (uid: string | null) => string;
}) {
  const { request: r, decisions } = detail;
  // A name in a sentence: "you" for the signed-in person.
  const name = (uid: string | null) => (uid === null ? "nobody" : uid === me.user.id ? "you" : detail.people.get(uid) ?? uid);
  const phrase = (d: Decision) => `${name(d.decided_by)} ${d.approve ? "approved" : "rejected"} on ${when(d.decided_at)}`;
  const approvals = decisions.filter((d) => d.approve);
  const required = r.approvals_required;
  const role = `${ROLE_NAMES[r.approver_role]} role${r.approver_role === "tenant_admin" ? "" : " or above"}`;
  const approvedBy = list(approvals.map((d) => name(d.decided_by)));

  let summary: ReactNode;
  if (open) {
    const remaining = required - approvals.length;
    const needed = remaining >= 2
      ? "Two approvals, from two different people, are needed"
      : required === 2 ? "One more approval, from a second, different person, is needed" : "One approval is needed";
    const why = whyNot(detail, me);
    const needsSecondFactor = r.needs_step_up === true && me.aal !== "aal2";
    let you: ReactNode;
    if (why === "already_decided") you = `${needed}; you already decided, so someone else must.`;
    else if (why === "requested") you = `${needed}; you requested this action, so someone else must decide it.`;
    else if (why === "started_run") you = `${needed}; you started the run that proposed it, so someone else must decide it.`;
    else if (why === "approver_role_required") you = `${needed}. Deciding it needs the ${role} on its project, which you don't hold: you can review this request but not decide it.`;
    else if (detail.awaitingYou === null) you = `${needed}.`;
    else if (needsSecondFactor) {
      you = <>{needed}; you may decide it once you have verified your second factor, which a {r.risk}-risk action needs. <Anchor component={Link} to={stepUp}>Verify your second factor</Anchor>.</>;
    } else {
      you = (
        <>
          {needed}; you may decide it. Review the payload and where it goes below, then{" "}
          <Anchor href="#decide" onClick={(e) => {
            e.preventDefault();
            document.getElementById("decide")?.scrollIntoView({ behavior: "smooth", block: "start" });
          }}>go to the decision</Anchor>.
        </>
      );
    }
    const except = [
      ...(r.requested_by ? [`${name(r.requested_by)} (requested it)`] : []),
      ...(detail.runStartedBy && detail.runStartedBy !== r.requested_by ? [`${name(detail.runStartedBy)} (started its run)`] : []),
      ...decisions.map((d) => `${name(d.decided_by)} (decided already)`),
    ];
    summary = (
      <>
        <Text size="sm">{approvals.length === 0 ? "Nobody has approved it yet." : `${capital(list(approvals.map(phrase)))}.`}</Text>
        <Text size="sm" fw={600}>{you}</Text>
        <Text size="sm" c="dimmed">
          Who may decide: anyone holding the {role} on this project{except.length ? `, except ${list(except)}` : ""}.
        </Text>
      </>
    );
  } else {
    const rejection = decisions.find((d) => !d.approve);
    let text: string;
    switch (statusText(r)) {
      case "approved":
        text = required === 0
          ? `Allowed by its policy without approval (recorded). The action may run once, with exactly this payload, until ${when(r.expires_at)}.`
          : `Approved on ${when(r.decided_at)}: ${approvedBy} approved it. The action may run once, with exactly this payload, until ${when(r.expires_at)}.`;
        break;
      case "executed":
        text = `Executed on ${when(r.executed_at)}${r.outcome ? ` (${r.outcome})` : ""}, ${required === 0 ? "allowed by its policy without approval" : `after ${approvedBy} approved it`}.`;
        break;
      case "rejected":
        text = `Rejected on ${when(r.decided_at)}${rejection ? ` by ${name(rejection.decided_by)}` : ""}: the action will not run.` +
          (approvals.length ? ` ${capital(approvedBy)} had approved it.` : "");
        break;
      case "denied":
        text = "Denied by its policy when it was proposed: nobody decides it, and the action will not run.";
        break;
      case "withdrawn":
        text = `Withdrawn${r.withdrawn_at ? ` on ${when(r.withdrawn_at)}` : ""}: the tool's connection or its destination changed after it was proposed, so the action will not run. The agent has to propose it again.`;
        break;
      case "expired":
        text = `Expired on ${when(r.expires_at)} with ${approvals.length} of ${required} approvals: nobody can decide it any more, and the action will not run.`;
        break;
      default:
        text = `This request is ${statusText(r)}.`;
    }
    summary = <Text size="sm" fw={600}>{text} There is nothing left to decide.</Text>;
  }

  return (
    <Paper withBorder p="md" radius="md" component="section" aria-labelledby="decisions-title">
      <Group justify="space-between" align="flex-start" mb="xs" gap="xs">
        <Title order={2} size="h3" id="decisions-title">Decisions</Title>
        <Group gap={6}>
          <StatusBadge request={r} />
          <RiskBadge risk={r.risk} suffix=" risk" />
          {required === 2 && <Badge variant="outline" color="gray" miw="max-content">dual control</Badge>}
        </Group>
      </Group>
      <Stack gap="xs">
        {required > 0 && (
          <div>
            <Text size="sm" fw={700} id="approval-progress">Approvals: {approvals.length} of {required}</Text>
            <Progress
              mt={4}
              value={Math.min(100, (approvals.length / required) * 100)}
              aria-label="Approvals so far"
              color={r.status === "rejected" ? "red" : "teal"}
            />
          </div>
        )}
        {summary}
        {decisions.length > 0 && (
          <Table.ScrollContainer minWidth={560} mt="xs" type="native" tabIndex={0}>
            <Table aria-label="Decisions" verticalSpacing="xs">
              <Table.Thead>
                <Table.Tr><Table.Th>Who</Table.Th><Table.Th>Decision</Table.Th><Table.Th>When</Table.Th><Table.Th>On hash</Table.Th><Table.Th>Comment</Table.Th></Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {decisions.map((d) => (
                  <Table.Tr key={d.id}>
                    <Table.Td>{person(d.decided_by)}</Table.Td>
                    <Table.Td><Badge variant="light" color={d.approve ? "teal" : "red"} miw="max-content">{d.approve ? "Approved" : "Rejected"}</Badge></Table.Td>
                    <Table.Td>{when(d.decided_at)}</Table.Td>
                    <Table.Td>{d.approval_sha256 === r.approval_sha256 ? "this payload and target" : <Code style={{ wordBreak: "break-all" }}>{d.approval_sha256}</Code>}</Table.Td>
                    <Table.Td>{d.comment ?? "—"}</Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
        )}
      </Stack>
    </Paper>
  );
}

/** Label and value pairs, a label per row (it reads as a list of facts on a phone too). */
function Facts({ rows }: { rows: ([string, ReactNode] | null)[] }) {
  return (
    <Table variant="vertical" layout="fixed" withTableBorder verticalSpacing="xs">
      <Table.Tbody>
        {rows.filter((row) => row !== null).map(([label, value]) => (
          <Table.Tr key={label}>
            <Table.Th scope="row" w={{ base: 110, sm: 200 }}>{label}</Table.Th>
            <Table.Td style={{ overflowWrap: "anywhere" }}>{value}</Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}

function modeText(mode: ActionRequest["mode"]): string {
  switch (mode) {
    case "allow": return "allow (no approval, recorded)";
    case "require_approval": return "require approval";
    case "require_dual_control": return "require dual control";
    case "deny": return "deny";
  }
}

// Characters that change how text looks without showing (bidirectional overrides, zero-width
// characters): a payload could use them to read differently from what is sent.
const HIDDEN = /[\u00AD\u061C\u200B-\u200F\u202A-\u202E\u2028\u2029\u2060-\u2064\u2066-\u2069\uFEFF]/g;
const HIDDEN_CHAR = new RegExp(`^${HIDDEN.source}$`);
const escapeHidden = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * The canonical text indented for reading, token for token: nothing is parsed, so numbers, key
 * order and escapes stay exactly as hashed. Hidden characters inside strings are shown as their
 * JSON escapes (the same value).
 */
function formatCanonical(text: string): string {
  let out = "";
  let depth = 0;
  let inString = false;
  let escaped = false;
  const newline = () => "\n" + "  ".repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      out += HIDDEN_CHAR.test(ch) ? escapeHidden(ch) : ch;
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') {
      inString = true;
      out += ch;
    } else if (ch === "{" || ch === "[") {
      const close = ch === "{" ? "}" : "]";
      if (text[i + 1] === close) {
        out += ch + close;
        i++;
      } else {
        depth++;
        out += ch + newline();
      }
    } else if (ch === "}" || ch === "]") {
      depth--;
      out += newline() + ch;
    } else if (ch === ",") {
      out += "," + newline();
    } else if (ch === ":") {
      out += ": ";
    } else if (!/\s/.test(ch)) {
      out += ch;
    }
  }
  return out;
}

/** The SHA-256 of `text`, computed in this browser (null while it computes, "" if it can't). */
function useSha256(text: string): string | null {
  const [computed, setComputed] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setComputed(null);
    Promise.resolve().then(() => sha256Hex(text)).then((h) => live && setComputed(h), () => live && setComputed(""));
    return () => {
      live = false;
    };
  }, [text]);
  return computed;
}

/** The outcome of a hash checked in the browser, as a status that is announced when it is known. */
function Checked({ computed, expected, matches, differs }: { computed: string | null; expected: string | null; matches: string; differs: string }) {
  return (
    <Text span size="sm" role="status" fw={computed !== null ? 600 : undefined}>
      {computed === null ? "Computing…" : computed === expected ? matches : differs}
    </Text>
  );
}

const wrapped = { whiteSpace: "pre-wrap", wordBreak: "normal", overflowWrap: "break-word" } as const;

/**
 * A code action's program as it will run: the payload's strings decoded (what the sandbox writes to
 * main.py or main.ts, and each input file), hidden characters shown as escapes. The payload below
 * stays the exact text the hash covers.
 */
function CodeToRun({ canonical }: { canonical: string }) {
  let program: { runtime?: unknown; code?: unknown; files?: unknown };
  try {
    program = JSON.parse(canonical);
  } catch {
    return null;
  }
  if (typeof program.code !== "string") return null;
  const shown = (text: string) => text.replace(HIDDEN, escapeHidden);
  const files = program.files && typeof program.files === "object" ? Object.entries(program.files as Record<string, unknown>) : [];
  const main = program.runtime === "python" ? "main.py" : "main.ts";
  return (
    <>
      <Title order={2} size="h3" mt="xl" mb="xs">The code, as it will run</Title>
      <Text size="sm" mb="sm">
        In a fresh sandbox with no network ({String(program.runtime)}, as <Code>{main}</Code>). Approving lets exactly this code and these
        files run once; the payload below is the same program as the text its hash covers.
      </Text>
      <Code block aria-label={`The code (${main})`} style={wrapped}>{shown(program.code)}</Code>
      {files.map(([path, content]) => (
        <Box key={path} mt="sm">
          <Title order={3} size="h5" mb={4}>Input file <Code>{shown(path)}</Code></Title>
          <Code block aria-label={`Input file ${path}`} style={wrapped}>{shown(String(content))}</Code>
        </Box>
      ))}
    </>
  );
}

function Payload({ canonical, sha256 }: { canonical: string; sha256: string }) {
  const computed = useSha256(canonical);
  const hidden = [...new Set(canonical.match(HIDDEN) ?? [])];

  return (
    <>
      <Title order={2} size="h3" mt="xl" mb="xs">Payload</Title>
      <Text size="sm" mb="sm">This is the exact payload that will be executed if the request is approved; nothing else can run under this approval.</Text>
      {hidden.length > 0 && (
        <Alert color="red" title="Invisible characters in the payload" mb="sm">
          The payload contains invisible or direction-changing characters ({hidden.map((c) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`).join(", ")}):
          the formatted view shows them as escapes. Read it carefully.
        </Alert>
      )}
      <Title order={3} size="h5" id="payload-formatted" mb={4}>Formatted for reading</Title>
      <Code block aria-labelledby="payload-formatted" style={wrapped}>{formatCanonical(canonical)}</Code>
      <Title order={3} size="h5" id="payload-canonical" mt="md" mb={4}>Exact canonical text (RFC 8785), what the hash covers</Title>
      <Code block aria-labelledby="payload-canonical" style={wrapped} mb="sm">{canonical}</Code>
      <Facts
        rows={[
          ["SHA-256", <Code aria-label="Payload SHA-256" style={{ wordBreak: "break-all" }}>{sha256}</Code>],
          ["Checked in your browser", <Checked
            computed={computed}
            expected={sha256}
            matches="Hash matches: the SHA-256 of the canonical text above, computed here, is the one the request is pinned to."
            differs="Hash does not match: the text shown is not what the request is pinned to. Do not approve; reload."
          />],
        ]}
      />
    </>
  );
}

/**
 * The RFC 8785 text the approval hash covers. Its members are all strings (or null), written in
 * the order RFC 8785 sorts their names, so JSON.stringify of this object is that text.
 */
function approvalText(r: ActionRequest): string {
  return JSON.stringify({
    connection_id: r.connection_id, destination: r.destination, payload_sha256: r.payload_sha256,
    provider: r.provider, tool: r.tool, tool_id: r.tool_id,
  });
}

/** Where the action goes, as the database pinned it, and the approval hash checked here. */
function Target({ request: r, connection }: { request: ActionRequest; connection: string | null }) {
  const computed = useSha256(approvalText(r));

  return (
    <>
      <Title order={2} size="h3" mt="xl" mb="xs">Where it goes</Title>
      <Text size="sm" mb="sm">
        The approval is pinned to this tool, connection and destination as well as to the payload: if any of them changes, the approval ends and
        the action can't run.
      </Text>
      <Facts
        rows={[
          ["Tool", <Code>{r.tool}</Code>],
          ["Connection", `${connection ?? r.connection_id} (${r.provider})`],
          ["Destination", <Code aria-label="Destination">{r.destination}</Code>],
          ["Approval SHA-256", <Code aria-label="Approval SHA-256" style={{ wordBreak: "break-all" }}>{r.approval_sha256}</Code>],
          ["Checked in your browser", <Checked
            computed={computed}
            expected={r.approval_sha256}
            matches="Hash matches: it covers the payload hash above and this target."
            differs="Hash does not match the payload and target shown. Do not approve; reload."
          />],
        ]}
      />
    </>
  );
}

/** What each refusal of decide_action means for the person who clicked. */
function refusalText(code: string, message: string, request: ActionRequest): string {
  switch (code) {
    case "self_approval":
      return "You can't decide this request: you requested it, or you started the run that proposed it. Someone else must decide.";
    case "stale_approval_hash":
      return "The payload or where it goes changed since this page loaded: the hash you were shown is no longer the request's. Reload and review it again.";
    case "approval_target_changed":
      return "The tool's connection or its destination changed after this request was proposed, so it was withdrawn. The agent has to propose the action again.";
    case "action_request_expired":
      return "This request expired before your decision. The agent has to propose the action again.";
    case "already_decided":
      return "You have already decided this request. Dual control needs a second, different approver.";
    case "approver_role_required":
      return `Deciding this request needs the ${ROLE_NAMES[request.approver_role]} role on its project, which you don't hold.`;
    case "action_request_not_pending":
      return `This request is no longer pending (${message}). Reload to see how it was decided.`;
    case "step_up_required":
      return "Deciding a high- or critical-risk action needs your second factor. Verify it, then decide again.";
    case "mfa_required":
      return "Your organization requires two-factor authentication to decide actions. Verify your factor, then decide again.";
    case "action_request_not_found":
      return "This request is not in this organization, or no longer visible to you.";
    default:
      return message || code;
  }
}

// Refusals after which the page reloads the request by itself (what it says about you, or its status, changed).
const RELOAD_AFTER = ["self_approval", "already_decided", "approver_role_required", "action_request_expired", "action_request_not_pending"];
// Refusals the person reloads from (the request's hash may have changed: they review it again).
const RELOAD_OFFERED = ["stale_approval_hash", "approval_target_changed"];
const SECOND_FACTOR = ["step_up_required", "mfa_required"];

interface DecideProps {
  request: ActionRequest;
  /** Pending and unexpired. */
  open: boolean;
  /** Open, and the database doesn't say you may not decide it (pending_approvals.awaiting_you). */
  mayDecide: boolean;
  me: Me;
  /** Where to verify a second factor and come back. */
  stepUp: string;
  reload: () => void;
}

/**
 * The decision: Approve or Reject with an optional comment, bound to the approval hash shown. Its
 * outcome (or the database's refusal, explained) shows right above the buttons, and as a toast.
 */
function Decide({ request, open, mayDecide, me, stepUp, reload }: DecideProps) {
  const org = useOrg();
  const api = useOrgApi();
  const act = useAct([["approvals", org.id], ["runs", org.id]]);
  const [refusal, setRefusal] = useState<{ code: string; text: string } | null>(null);
  // The hash this page showed: the decision is bound to it, whatever the request says by now.
  const shown = request.approval_sha256 ?? "";
  const needsSecondFactor = request.needs_step_up === true && me.aal !== "aal2";

  // Nothing to offer and nothing done here: the summary at the top says why.
  if (!mayDecide && !act.outcome) return null;

  function decide(approve: boolean, form: HTMLFormElement) {
    const comment = field(new FormData(form), "comment");
    setRefusal(null);
    act.run(async () => {
      let after: ActionRequest;
      try {
        after = await api.run(api.rpc("decide_action", {
          p_request_id: request.id, p_approval_sha256: shown, p_approve: approve, ...(comment ? { p_comment: comment } : {}),
        })) as ActionRequest;
      } catch (e) {
        const code = e instanceof ApiError ? e.code : "unexpected";
        setRefusal({ code, text: refusalText(code, e instanceof ApiError ? e.message : describeError(e), request) });
        if (RELOAD_AFTER.includes(code)) reload();
        // The toast says that it was refused; the reason, and what to do, is above the buttons.
        throw new Error("Your decision was not recorded: the reason is shown above the decision buttons.");
      }
      form.reset();
      return !approve
        ? "Rejected: the action will not run."
        : after.status === "approved"
          ? "Approved: the action may now run, with exactly this payload."
          : "Approved. Dual control: the request now waits for a second, different approver.";
    });
  }

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const submitter = (event.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
    const approve = submitter?.value === "approve";
    // A rejection is final: it asks first (an approval shows its payload and hash right here).
    if (!approve && !(await confirmAction({
      title: "Reject this action?",
      body: <>It will not run, and a decision can't be taken back{request.run_id ? ": the run that proposed it is told, and goes on without it" : ""}.</>,
      confirmLabel: "Reject",
    }))) return;
    decide(approve, form);
  }

  return (
    <Paper withBorder p="md" radius="md" mt="xl" component="section" id="decide" aria-labelledby="decide-title" style={{ scrollMarginTop: 72 }}>
      <Title order={2} size="h3" id="decide-title" mb="sm">Decide</Title>
      {act.outcome?.ok && <Outcome outcome={act.outcome} />}
      {act.outcome && !act.outcome.ok && refusal && (
        <Alert color="red" role="alert" title="Refused" mb="md">
          <Text size="sm">
            {refusal.text}
            {SECOND_FACTOR.includes(refusal.code) && <> <Anchor component={Link} to={stepUp}>Verify your second factor</Anchor>.</>}
          </Text>
          {RELOAD_OFFERED.includes(refusal.code) && (
            <Button size="xs" variant="light" color="red" mt="xs" onClick={() => {
              setRefusal(null);
              act.clear();
              reload();
            }}>Reload the request</Button>
          )}
        </Alert>
      )}
      {!mayDecide ? (
        <Text size="sm" c="dimmed">
          {!open
            ? `This request is ${statusText(request)}: there is nothing left to decide.`
            : act.outcome?.ok
              ? "Your decision is recorded: Decisions, at the top of this page, says who decided and who may still decide."
              : "Decisions, at the top of this page, says who may decide this request."}
        </Text>
      ) : (
        <>
          {needsSecondFactor && !(refusal && SECOND_FACTOR.includes(refusal.code)) && (
            <Alert color="blue" role="note" title="Your second factor is needed" mb="md">
              <Text size="sm">
                This is a {request.risk}-risk action: deciding it, to approve or to reject, needs your second factor.{" "}
                <Anchor component={Link} to={stepUp}>Verify your second factor</Anchor>, then come back here to decide.
              </Text>
            </Alert>
          )}
          <form onSubmit={(e) => void submit(e)} aria-label="Decide this request">
            <Stack gap="sm" maw={640}>
              <Text size="sm">
                Your decision is bound to the approval hash shown above, which covers the payload and where it goes:{" "}
                <Code style={{ wordBreak: "break-all" }}>{shown}</Code>.
              </Text>
              <Textarea name="comment" label="Comment (optional)" maxLength={1000} autosize minRows={2} maxRows={6} />
              <Group gap="sm">
                <Button type="submit" name="decision" value="approve" color="teal" disabled={act.busy}>Approve</Button>
                <Button type="submit" name="decision" value="reject" color="red" variant="light" disabled={act.busy}>Reject</Button>
              </Group>
            </Stack>
          </form>
        </>
      )}
    </Paper>
  );
}
