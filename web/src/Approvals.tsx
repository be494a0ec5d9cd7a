/**
 * Approvals (seed 000, hash-pinned approvals): the list of action requests, pending first, and one
 * request at its own address, where the approver sees the exact payload that will be executed,
 * the SHA-256 it is pinned to, the policy that applied, the decisions so far, and decides.
 *
 * Every rule is the database's: who may decide (decide_action and the pending_approvals view's
 * awaiting_you), whether a second factor is needed (the computed field needs_step_up, enforced by
 * a trigger), whether the hash is current. The page sends the hash it showed and explains what
 * the database answers.
 */
import { useEffect, useState, type FormEvent } from "react";
import { Link, useLocation, useParams, useSearchParams } from "react-router";
import type { Database } from "../../supabase/database.types.ts";
import { sha256Hex } from "./audit_verify.ts";
import type { Me } from "./session.ts";
import { supabase } from "./supabase.ts";
import { States, unwrap, useLoad, useOrg, when, type OrgContext } from "./ui.tsx";

type Request = Database["public"]["Tables"]["action_requests"]["Row"];
type Pending = Database["public"]["Views"]["pending_approvals"]["Row"];
type Decision = Database["public"]["Tables"]["approval_decisions"]["Row"];
type Policy = Database["public"]["Tables"]["approval_policies"]["Row"];
type Directory = Database["public"]["Functions"]["organization_directory"]["Returns"];

const SHOWS = [["pending", "Pending"], ["decided", "Decided"], ["all", "All"]] as const;
type Show = (typeof SHOWS)[number][0];
const LIST_LIMIT = 100;

/** A row of the list: a request, with the approvals it has and whether it waits for the signed-in person. */
interface Row {
  id: string;
  tool: string;
  provider: string | null;
  destination: string | null;
  risk: Request["risk"];
  status: Request["status"];
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

async function loadRows(org: OrgContext, show: Show): Promise<Row[]> {
  const sb = supabase();
  // The view answers what waits (unexpired, pending) with the approvals so far and awaiting_you.
  const pending = await unwrap(sb.from("pending_approvals")
    .select("id, tool, provider, destination, risk, approvals, approvals_required, expires_at, created_at, awaiting_you")
    .order("expires_at").limit(LIST_LIMIT).setHeader("x-org-id", org.id));
  const pendingRows: Row[] = pending.map((p) => ({ ...p, status: "pending", approvals: p.approvals ?? 0 }));
  if (show === "pending") return pendingRows;

  let query = sb.from("action_requests")
    .select("id, tool, provider, destination, risk, status, approvals_required, expires_at, created_at")
    .order("created_at", { ascending: false }).limit(LIST_LIMIT).setHeader("x-org-id", org.id);
  if (show === "decided") query = query.or(`status.neq.pending,expires_at.lte.${new Date().toISOString()}`);
  const requests = await unwrap(query);
  const ids = requests.map((r) => r.id);
  const decisions = ids.length === 0 ? [] : await unwrap(sb.from("approval_decisions")
    .select("request_id, approve").in("request_id", ids).setHeader("x-org-id", org.id));
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
  const [params, setParams] = useSearchParams();
  const show: Show = SHOWS.some(([s]) => s === params.get("show")) ? (params.get("show") as Show) : "pending";
  const rows = useLoad(() => loadRows(org, show), [org.id, show]);

  return (
    <>
      <h1>Approvals in {org.name}</h1>
      <p className="muted">
        Agents propose external actions; each is pinned to the SHA-256 of its exact payload and of where it goes. Open one to review the payload
        and decide. {me.aal === "aal2" ? "You are signed in with your second factor." : "High- and critical-risk actions need your second factor."}
      </p>
      <div className="row" role="group" aria-label="Show requests">
        {SHOWS.map(([value, label]) => (
          <button key={value} type="button" aria-pressed={show === value} onClick={() => setParams(value === "pending" ? {} : { show: value })}>
            {label}
          </button>
        ))}{" "}
        <button type="button" onClick={rows.reload}>Refresh</button>
      </div>
      <h2>{SHOWS.find(([s]) => s === show)![1]} requests</h2>
      <States loaded={rows} empty={show === "pending" ? "Nothing is waiting for approval." : "No action requests here yet."}>
        {(list) => (
          <table aria-label="Action requests">
            <thead>
              <tr><th scope="col">Tool</th><th scope="col">Risk</th><th scope="col">Status</th><th scope="col">Approvals</th><th scope="col">Expires</th><th scope="col">Awaiting you</th><th scope="col">Requested</th></tr>
            </thead>
            <tbody>
              {list.map((r) => (
                <tr key={r.id}>
                  <td><Link to={`/o/${org.id}/approvals/${r.id}`}>{r.tool}</Link> <small className="muted">via {r.provider} to {r.destination}</small></td>
                  <td>{r.risk}</td>
                  <td>{statusText(r)}</td>
                  <td>{r.approvals_required === 0 ? "none needed" : `${r.approvals} of ${r.approvals_required}`}</td>
                  <td>{when(r.expires_at)}</td>
                  <td>{r.awaiting_you === null ? "—" : r.awaiting_you ? "Yes" : "No"}</td>
                  <td>{when(r.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </States>
      {rows.data?.length === LIST_LIMIT && <p className="muted">Showing the first {LIST_LIMIT}.</p>}
    </>
  );
}

interface Detail {
  request: Request & { needs_step_up: boolean | null };
  pending: Pick<Pending, "approvals" | "awaiting_you"> | null;
  decisions: Decision[];
  policy: Policy | null;
  agent: string | null;
  /** The name of the connection the request is pinned to, as the organization calls it. */
  connection: string | null;
  people: Map<string, string>;
}

/** The row a maybeSingle() query found (null if none), or its error thrown. */
async function maybeOne<T>(call: PromiseLike<{ data: T | null; error: unknown }>): Promise<T | null> {
  const { data, error } = await call;
  if (error) throw error;
  return data;
}

async function loadDetail(org: OrgContext, id: string): Promise<Detail | null> {
  const sb = supabase();
  const request = await maybeOne<Detail["request"]>(sb.from("action_requests").select("*, needs_step_up").eq("id", id).setHeader("x-org-id", org.id).maybeSingle());
  if (!request) return null;
  const [pending, decisions, policy, agent, connection, directory] = await Promise.all([
    maybeOne<Detail["pending"]>(sb.from("pending_approvals").select("approvals, awaiting_you").eq("id", id).setHeader("x-org-id", org.id).maybeSingle()),
    unwrap(sb.from("approval_decisions").select("*").eq("request_id", id).order("decided_at").setHeader("x-org-id", org.id)),
    request.policy_id
      ? maybeOne<Policy>(sb.from("approval_policies").select("*").eq("id", request.policy_id).setHeader("x-org-id", org.id).maybeSingle())
      : Promise.resolve(null),
    maybeOne<{ name: string }>(sb.from("agents").select("name").eq("id", request.agent_id).setHeader("x-org-id", org.id).maybeSingle()),
    request.connection_id
      ? maybeOne<{ display_name: string }>(sb.from("connections").select("display_name").eq("id", request.connection_id).setHeader("x-org-id", org.id).maybeSingle())
      : Promise.resolve(null),
    // Emails for ids; without the directory, people show as ids.
    unwrap(sb.rpc("organization_directory").setHeader("x-org-id", org.id)).catch(() => [] as Directory),
  ]);
  return {
    request,
    pending,
    decisions,
    policy,
    agent: agent?.name ?? null,
    connection: connection?.display_name ?? null,
    people: new Map(directory.map((p) => [p.user_id, p.is_you ? `${p.email} (you)` : p.email])),
  };
}

/** /o/:org/approvals/:id: one request, its exact payload and hash, its policy and decisions, and the decision form. */
export function ApprovalDetail({ me }: { me: Me }) {
  const org = useOrg();
  const { id = "" } = useParams();
  const detail = useLoad(() => loadDetail(org, id), [org.id, id]);

  return (
    <>
      <p><Link to={`/o/${org.id}/approvals`}>All approvals</Link></p>
      <States loaded={detail} empty="" isEmpty={() => false}>
        {(d) => d === null
          ? (
            <>
              <h1>Action request not found</h1>
              <p role="alert" className="error">No action request with this id is visible to you in {org.name}.</p>
            </>
          )
          : <Request detail={d} me={me} reload={detail.reload} />}
      </States>
    </>
  );
}

function Request({ detail, me, reload }: { detail: Detail; me: Me; reload: () => void }) {
  const org = useOrg();
  const { request: r, pending, decisions, policy, people } = detail;
  const person = (uid: string | null) => (uid ? people.get(uid) ?? uid : "—");
  const approvals = decisions.filter((d) => d.approve).length;
  const open = r.status === "pending" && !expired(r);

  return (
    <>
      <h1>Approval: {r.tool}</h1>
      <dl className="facts">
        <dt>Status</dt><dd>{statusText(r)}{r.outcome ? `, ${r.outcome}` : ""}</dd>
        <dt>Risk</dt><dd>{r.risk}{r.proposed_risk !== r.risk ? ` (the agent said ${r.proposed_risk}; the policy's minimum is higher)` : ""}</dd>
        <dt>Agent</dt><dd>{detail.agent ?? r.agent_id}</dd>
        <dt>Run</dt><dd><Link to={`/o/${org.id}/runs/${r.run_id}`}><code>{r.run_id.slice(0, 8)}</code></Link></dd>
        <dt>Requested</dt>
        <dd>
          {when(r.created_at)} by{" "}
          {r.requested_via === "member"
            ? person(r.requested_by)
            : r.requested_by ? `the agent runtime, in a run started by ${person(r.requested_by)}` : "the agent runtime, in a scheduled run"}
        </dd>
        <dt>{expired(r) ? "Expired" : "Expires"}</dt><dd>{when(r.expires_at)}</dd>
        {r.decided_at && <><dt>Decided</dt><dd>{when(r.decided_at)}</dd></>}
        {r.executed_at && <><dt>Executed</dt><dd>{when(r.executed_at)}</dd></>}
      </dl>

      <Payload canonical={r.canonical_payload} sha256={r.payload_sha256} />
      <Target request={r} connection={detail.connection} />

      <h2>Policy</h2>
      <dl className="facts">
        <dt>Applied when proposed</dt><dd>{modeText(r.mode)}</dd>
        <dt>Approvals required</dt><dd>{r.approvals_required}{r.approvals_required === 2 ? " (dual control: two different people)" : ""}</dd>
        <dt>Approver role</dt><dd>{r.approver_role} or above, on the request's project</dd>
        <dt>Policy</dt>
        <dd>
          {r.policy_id === null
            ? "No policy matched: the project's default (one approver) applied."
            : policy
              ? `For ${policy.agent_id ? "this agent" : "any agent"} and ${policy.tool ? `tool ${policy.tool}` : "any tool"}: now ${modeText(policy.mode)}, approver ${policy.approver_role}` +
                (policy.dual_control_from_risk ? `, dual control from ${policy.dual_control_from_risk} risk up` : "") +
                (policy.min_risk !== "low" ? `, at least ${policy.min_risk} risk` : "") +
                (policy.mode === "allow" ? `, only through connection ${policy.connection_id} at ${policy.destination}` : "") +
                ". The request keeps what applied when it was proposed."
              : "The policy that applied has since been removed; the request keeps what it said."}
        </dd>
      </dl>

      <h2>Decisions</h2>
      {r.approvals_required > 0 && (
        <p>
          <label htmlFor="approval-progress">Approvals: {approvals} of {r.approvals_required}</label>{" "}
          <progress id="approval-progress" max={r.approvals_required} value={Math.min(approvals, r.approvals_required)} />
        </p>
      )}
      {decisions.length === 0 ? <p className="muted">Nobody has decided yet.</p> : (
        <table aria-label="Decisions">
          <thead><tr><th scope="col">Who</th><th scope="col">Decision</th><th scope="col">When</th><th scope="col">On hash</th><th scope="col">Comment</th></tr></thead>
          <tbody>
            {decisions.map((d) => (
              <tr key={d.id}>
                <td>{person(d.decided_by)}</td>
                <td>{d.approve ? "Approved" : "Rejected"}</td>
                <td>{when(d.decided_at)}</td>
                <td>{d.approval_sha256 === r.approval_sha256 ? "this payload and target" : <code>{d.approval_sha256}</code>}</td>
                <td>{d.comment ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {/* Keyed by the hash: a reload that brings another payload or target starts the decision afresh. */}
      <Decide key={r.approval_sha256 ?? r.id} request={r} open={open} awaitingYou={pending?.awaiting_you ?? null} me={me} reload={reload} />
    </>
  );
}

function modeText(mode: Request["mode"]): string {
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

function Payload({ canonical, sha256 }: { canonical: string; sha256: string }) {
  const [computed, setComputed] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setComputed(null);
    sha256Hex(canonical).then((h) => live && setComputed(h), () => live && setComputed(""));
    return () => {
      live = false;
    };
  }, [canonical]);
  const hidden = [...new Set(canonical.match(HIDDEN) ?? [])];

  return (
    <>
      <h2>Payload</h2>
      <p>This is the exact payload that will be executed if the request is approved; nothing else can run under this approval.</p>
      {hidden.length > 0 && (
        <p role="alert" className="error">
          The payload contains invisible or direction-changing characters ({hidden.map((c) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`).join(", ")}):
          the formatted view shows them as escapes. Read it carefully.
        </p>
      )}
      <h3 id="payload-formatted">Formatted for reading</h3>
      <pre aria-labelledby="payload-formatted" className="payload">{formatCanonical(canonical)}</pre>
      <h3 id="payload-canonical">Exact canonical text (RFC 8785), what the hash covers</h3>
      <pre aria-labelledby="payload-canonical" className="payload">{canonical}</pre>
      <dl className="facts">
        <dt>SHA-256</dt><dd><code aria-label="Payload SHA-256">{sha256}</code></dd>
        <dt>Checked in your browser</dt>
        <dd>
          <span role="status">
            {computed === null ? "Computing…" : computed === sha256
              ? "Hash matches: the SHA-256 of the canonical text above, computed here, is the one the request is pinned to."
              : "Hash does not match: the text shown is not what the request is pinned to. Do not approve; reload."}
          </span>
        </dd>
      </dl>
    </>
  );
}

/**
 * The RFC 8785 text the approval hash covers. Its members are all strings (or null), written in
 * the order RFC 8785 sorts their names, so JSON.stringify of this object is that text.
 */
function approvalText(r: Request): string {
  return JSON.stringify({
    connection_id: r.connection_id, destination: r.destination, payload_sha256: r.payload_sha256,
    provider: r.provider, tool: r.tool, tool_id: r.tool_id,
  });
}

/** Where the action goes, as the database pinned it, and the approval hash checked here. */
function Target({ request: r, connection }: { request: Request; connection: string | null }) {
  const text = approvalText(r);
  const [computed, setComputed] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    setComputed(null);
    sha256Hex(text).then((h) => live && setComputed(h), () => live && setComputed(""));
    return () => {
      live = false;
    };
  }, [text]);

  return (
    <>
      <h2>Where it goes</h2>
      <p>The approval is pinned to this tool, connection and destination as well as to the payload: if any of them changes, the approval ends and the action can't run.</p>
      <dl className="facts">
        <dt>Tool</dt><dd><code>{r.tool}</code></dd>
        <dt>Connection</dt><dd>{connection ?? r.connection_id} ({r.provider})</dd>
        <dt>Destination</dt><dd><code aria-label="Destination">{r.destination}</code></dd>
        <dt>Approval SHA-256</dt><dd><code aria-label="Approval SHA-256">{r.approval_sha256}</code></dd>
        <dt>Checked in your browser</dt>
        <dd>
          <span role="status">
            {computed === null ? "Computing…" : computed === r.approval_sha256
              ? "Hash matches: it covers the payload hash above and this target."
              : "Hash does not match the payload and target shown. Do not approve; reload."}
          </span>
        </dd>
      </dl>
    </>
  );
}

/** What each refusal of decide_action means for the person who clicked. */
function refusalText(code: string, message: string, request: Request): string {
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
      return `Deciding this request needs the ${request.approver_role} role on its project, which you don't hold.`;
    case "action_request_not_pending":
      return `This request is no longer pending (${message}). Reload to see how it was decided.`;
    case "step_up_required":
      return "Deciding a high- or critical-risk action needs your second factor. Verify it, then decide again.";
    case "action_request_not_found":
      return "This request is not in this organization, or no longer visible to you.";
    default:
      return message || code;
  }
}

interface DecideProps {
  request: Request & { needs_step_up: boolean | null };
  /** Pending and unexpired: decisions are offered. */
  open: boolean;
  awaitingYou: boolean | null;
  me: Me;
  reload: () => void;
}

function Decide({ request, open, awaitingYou, me, reload }: DecideProps) {
  const org = useOrg();
  const location = useLocation();
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: true; text: string } | { ok: false; code: string; text: string } | null>(null);
  // The hash this page showed: the decision is bound to it, whatever the request says by now.
  const shown = request.approval_sha256 ?? "";
  const stepUp = `/account?next=${encodeURIComponent(location.pathname)}`;
  const needsSecondFactor = request.needs_step_up === true && me.aal !== "aal2";

  if (org.readOnly) {
    return (
      <>
        <h2>Decide</h2>
        <p className="muted">You are a viewer in {org.name}: you can review this request but not decide it.</p>
      </>
    );
  }
  if (!open) {
    return (
      <>
        <h2>Decide</h2>
        {outcome?.ok && <p role="status" className="notice">{outcome.text}</p>}
        <p className="muted">This request is {statusText(request)}: there is nothing left to decide.</p>
      </>
    );
  }

  async function decide(approve: boolean, form: HTMLFormElement) {
    const comment = String(new FormData(form).get("comment") ?? "").trim();
    setBusy(true);
    setOutcome(null);
    const { data, error } = await supabase()
      .rpc("decide_action", { p_request_id: request.id, p_approval_sha256: shown, p_approve: approve, ...(comment ? { p_comment: comment } : {}) })
      .setHeader("x-org-id", org.id);
    setBusy(false);
    if (error) {
      setOutcome({ ok: false, code: error.code, text: refusalText(error.code, error.message, request) });
      return;
    }
    const after = data as Request;
    setOutcome({
      ok: true,
      text: !approve
        ? "Rejected: the action will not run."
        : after.status === "approved"
          ? "Approved: the action may now run, with exactly this payload."
          : "Approved. Dual control: the request waits for a second, different approver.",
    });
    form.reset();
    reload();
  }

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const submitter = (event.nativeEvent as SubmitEvent).submitter as HTMLButtonElement | null;
    void decide(submitter?.value === "approve", event.currentTarget);
  }

  return (
    <>
      <h2>Decide</h2>
      {awaitingYou === false && (
        <p className="muted">
          The database reports this request is not awaiting your decision: you may lack the {request.approver_role} role on its
          project, have requested it or started its run, or have decided it already. It will tell you which if you try.
        </p>
      )}
      {needsSecondFactor && (
        <p className="notice">
          This is a {request.risk}-risk action: deciding it, to approve or to reject, needs your second factor.{" "}
          <Link to={stepUp}>Verify your second factor</Link>, then come back here to decide.
        </p>
      )}
      <form className="stack" onSubmit={submit} aria-label="Decide this request">
        <p>Your decision is bound to the approval hash shown above, which covers the payload and where it goes: <code>{shown}</code>.</p>
        <label>
          Comment (optional)
          <textarea name="comment" maxLength={1000} rows={2} />
        </label>
        <div>
          <button type="submit" name="decision" value="approve" disabled={busy}>Approve</button>{" "}
          <button type="submit" name="decision" value="reject" disabled={busy}>Reject</button>
        </div>
      </form>
      {outcome?.ok && <p role="status" className="notice">{outcome.text}</p>}
      {outcome && !outcome.ok && (
        <p role="alert" className="error">
          {outcome.text}{" "}
          {outcome.code === "step_up_required" && <Link to={stepUp}>Verify your second factor</Link>}
          {(outcome.code === "stale_approval_hash" || outcome.code === "approval_target_changed" || outcome.code === "action_request_not_pending") && (
            <button type="button" onClick={() => { setOutcome(null); reload(); }}>Reload the request</button>
          )}
        </p>
      )}
    </>
  );
}
