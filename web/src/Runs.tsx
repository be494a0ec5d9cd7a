/**
 * Runs (issue 24): the organization's agent runs, filtered by status, and one run's timeline: its
 * model calls (with their cost), the actions it proposed (linked to their approval), its telemetry
 * and its transcript. A contributor starts a run with an input ("Run now") and cancels one; a
 * viewer sees the same and has no controls. Every rule is the database's: start_agent_run, the
 * run's transitions (a person may only cancel), RLS on each table.
 */
import { useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { supabase } from "./supabase.ts";
import { Notice, States, unwrap, useAction, useLoad, useOrg, when } from "./ui.tsx";

type Run = Database["public"]["Tables"]["agent_runs"]["Row"];
type Status = Database["public"]["Enums"]["run_status"];

const FILTERS: [string, string, Status[] | null][] = [
  ["active", "Going on", ["queued", "running", "waiting_approval"]],
  ["ended", "Ended", ["succeeded", "failed", "cancelled", "budget_exhausted", "steps_exhausted", "timed_out", "approval_expired"]],
  ["all", "All", null],
];
const ACTIVE: Status[] = ["queued", "running", "waiting_approval"];
const LIST_LIMIT = 100;

/** /o/:org/runs: runs, newest first, filtered by ?show=active|ended|all; "Run now". */
export function Runs() {
  const org = useOrg();
  const sb = supabase();
  const [params, setParams] = useSearchParams();
  const show = FILTERS.find(([value]) => value === params.get("show"))?.[0] ?? "all";
  const statuses = FILTERS.find(([value]) => value === show)![2];
  const runs = useLoad(() => {
    let q = sb.from("agent_runs").select("id, status, started_at, ended_at, end_code, steps, max_steps, agents(name)")
      .order("started_at", { ascending: false }).limit(LIST_LIMIT).setHeader("x-org-id", org.id);
    if (statuses) q = q.in("status", statuses);
    return unwrap(q);
  }, [org.id, show]);
  const agents = useLoad(
    () => org.readOnly ? Promise.resolve([]) : unwrap(sb.from("agents").select("id, name").is("disabled_at", null).order("name").setHeader("x-org-id", org.id)),
    [org.id, org.readOnly],
  );
  const action = useAction(runs.reload);

  return (
    <>
      <h1>Runs in {org.name}</h1>
      <Notice notice={action.notice} />
      <div className="row" role="group" aria-label="Show runs">
        {FILTERS.map(([value, label]) => (
          <button key={value} type="button" aria-pressed={show === value} onClick={() => setParams({ show: value })}>{label}</button>
        ))}
      </div>
      <States loaded={runs} empty="No runs here yet.">
        {(list) => (
          <table aria-label="Runs">
            <thead>
              <tr><th scope="col">Run</th><th scope="col">Agent</th><th scope="col">Status</th><th scope="col">Steps</th><th scope="col">Started</th><th scope="col">Ended</th></tr>
            </thead>
            <tbody>
              {list.map((r) => (
                <tr key={r.id}>
                  <td><Link to={`/o/${org.id}/runs/${r.id}`}><code>{r.id.slice(0, 8)}</code></Link></td>
                  <td>{r.agents?.name ?? "—"}</td>
                  <td>{r.status}{r.end_code ? ` (${r.end_code})` : ""}</td>
                  <td>{r.steps} of {r.max_steps}</td>
                  <td>{when(r.started_at)}</td>
                  <td>{when(r.ended_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </States>
      {!org.readOnly && (
        <section aria-labelledby="run-now">
          <h2 id="run-now">Run now</h2>
          <States loaded={agents} empty="No agent to run: create and publish one first.">
            {(list) => (
              <form className="stack" aria-label="Run an agent now" onSubmit={(e) => {
                e.preventDefault();
                const form = e.currentTarget;
                const data = new FormData(form);
                let input: Json;
                try {
                  input = JSON.parse(String(data.get("input") ?? "{}") || "{}");
                } catch {
                  void action.run(async () => {
                    throw new Error("The input is not JSON: write an object, such as {\"order\": 1042}.");
                  });
                  return;
                }
                void action.run(async () => {
                  const run = await unwrap(sb.rpc("start_agent_run", { p_agent_id: String(data.get("agent")), p_input: input }).setHeader("x-org-id", org.id));
                  form.reset();
                  return `Run ${run.id.slice(0, 8)} started.`;
                });
              }}>
                <label>
                  Agent
                  <select name="agent" required>{list.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}</select>
                </label>
                <label>
                  Input (a JSON object)
                  <textarea name="input" rows={3} defaultValue="{}" />
                </label>
                <div><button type="submit" disabled={action.busy}>Run now</button></div>
              </form>
            )}
          </States>
        </section>
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

async function loadTimeline(orgId: string, id: string): Promise<Timeline | null> {
  const sb = supabase();
  const [run] = await unwrap(sb.from("agent_runs").select("*, agents(name)").eq("id", id).setHeader("x-org-id", orgId));
  if (!run) return null;
  const [calls, actions, events, messages] = await Promise.all([
    unwrap(sb.from("model_calls").select("id, model, outcome, cost_micro, input_tokens, output_tokens, latency_ms, started_at").eq("run_id", id).order("started_at").setHeader("x-org-id", orgId)),
    unwrap(sb.from("action_requests").select("id, tool, status, risk, created_at").eq("run_id", id).order("created_at").setHeader("x-org-id", orgId)),
    unwrap(sb.from("agent_run_events").select("id, meta, created_at").eq("run_id", id).order("created_at").setHeader("x-org-id", orgId)),
    unwrap(sb.from("agent_run_messages").select("seq, role, content, created_at").eq("run_id", id).order("seq").setHeader("x-org-id", orgId)),
  ]);
  return { run: run as Timeline["run"], calls, actions, events, messages } as Timeline;
}

/** /o/:org/runs/:id: one run's timeline, and cancel while it goes on. */
export function RunDetail() {
  const org = useOrg();
  const { id = "" } = useParams();
  const timeline = useLoad(() => loadTimeline(org.id, id), [org.id, id]);
  const action = useAction(timeline.reload);
  const [confirming, setConfirming] = useState(false);

  return (
    <>
      <p><Link to={`/o/${org.id}/runs`}>All runs</Link></p>
      <Notice notice={action.notice} />
      <States loaded={timeline} empty="No run with that id in this organization." isEmpty={(t) => t === null}>
        {(t) => {
          if (!t) return null;
          const { run } = t;
          const cost = t.calls.reduce((sum, c) => sum + Number(c.cost_micro), 0);
          const going = ACTIVE.includes(run.status);
          return (
            <>
              <h1>Run {run.id.slice(0, 8)} of {run.agents?.name ?? "an agent"}</h1>
              <dl className="facts">
                <dt>Status</dt><dd>{run.status}{run.end_code ? ` (${run.end_code})` : ""}</dd>
                <dt>Steps</dt><dd>{run.steps} of {run.max_steps}</dd>
                <dt>Started</dt><dd>{when(run.started_at)}</dd>
                <dt>{going ? "Times out" : "Ended"}</dt><dd>{when(going ? run.deadline_at : run.ended_at)}</dd>
                <dt>Model cost</dt><dd>{(cost / 1e6).toFixed(6)} USD in {t.calls.length} call{t.calls.length === 1 ? "" : "s"}</dd>
              </dl>
              <h2>Input</h2>
              <pre className="payload">{JSON.stringify(run.input, null, 2)}</pre>
              {run.result !== null && <><h2>Result</h2><pre className="payload">{JSON.stringify(run.result, null, 2)}</pre></>}

              <h2>Model calls</h2>
              {t.calls.length === 0 ? <p className="muted">No model call yet.</p> : (
                <table aria-label="Model calls">
                  <thead><tr><th scope="col">When</th><th scope="col">Model</th><th scope="col">Outcome</th><th scope="col">Tokens in / out</th><th scope="col">Cost (micro-USD)</th><th scope="col">Latency</th></tr></thead>
                  <tbody>
                    {t.calls.map((c) => (
                      <tr key={c.id}><td>{when(c.started_at)}</td><td>{c.model}</td><td>{c.outcome}</td><td>{c.input_tokens} / {c.output_tokens}</td><td>{c.cost_micro}</td><td>{c.latency_ms} ms</td></tr>
                    ))}
                  </tbody>
                </table>
              )}

              <h2>Actions</h2>
              {t.actions.length === 0 ? <p className="muted">No action proposed.</p> : (
                <table aria-label="Actions">
                  <thead><tr><th scope="col">When</th><th scope="col">Tool</th><th scope="col">Risk</th><th scope="col">Status</th></tr></thead>
                  <tbody>
                    {t.actions.map((a) => (
                      <tr key={a.id}><td>{when(a.created_at)}</td><td><Link to={`/o/${org.id}/approvals/${a.id}`}>{a.tool}</Link></td><td>{a.risk}</td><td>{a.status}</td></tr>
                    ))}
                  </tbody>
                </table>
              )}

              <h2>Telemetry</h2>
              {t.events.length === 0 ? <p className="muted">No events.</p> : (
                <table aria-label="Telemetry">
                  <thead><tr><th scope="col">When</th><th scope="col">Step</th><th scope="col">Tool</th><th scope="col">Time</th><th scope="col">Code</th></tr></thead>
                  <tbody>
                    {t.events.map((e) => {
                      const m = e.meta as { tool_name: string | null; ms: number; code: string | null; iter: number };
                      return <tr key={e.id}><td>{when(e.created_at)}</td><td>{m.iter}</td><td>{m.tool_name ?? "model"}</td><td>{m.ms} ms</td><td>{m.code ?? "—"}</td></tr>;
                    })}
                  </tbody>
                </table>
              )}

              <h2>Transcript</h2>
              {t.messages.length === 0 ? <p className="muted">No transcript (none yet, or purged with the organization's retention).</p> : (
                <ol className="transcript">
                  {t.messages.map((m) => <li key={m.seq}><strong>{m.role}</strong>: <code>{JSON.stringify(m.content)}</code></li>)}
                </ol>
              )}

              {going && !org.readOnly && (
                <section aria-labelledby="cancel-run">
                  <h2 id="cancel-run">Cancel</h2>
                  {!confirming ? (
                    <button type="button" onClick={() => setConfirming(true)}>Cancel this run</button>
                  ) : (
                    <div role="group" aria-label="Confirm cancelling this run" className="row">
                      <span>The run stops at its next step and can't be resumed.</span>
                      <button type="button" disabled={action.busy} onClick={() => void action.run(async () => {
                        const rows = await unwrap(supabase().from("agent_runs").update({ status: "cancelled" }).eq("id", run.id).select("id").setHeader("x-org-id", org.id));
                        setConfirming(false);
                        return rows.length ? "The run was cancelled." : "Nothing changed: the database did not let you cancel this run.";
                      })}>Yes, cancel the run</button>
                      <button type="button" onClick={() => setConfirming(false)}>Keep it running</button>
                    </div>
                  )}
                </section>
              )}
            </>
          );
        }}
      </States>
    </>
  );
}
