/**
 * Agents and their versions: create an agent in a project; draft a version's configuration (JSON),
 * edit drafts, publish one (project admins; it is immutable from then on) and read a published
 * version as it is, read-only. Tenant admins can turn an agent off (its runs stop, its connector
 * grants end: public.disable_agent).
 */
import { confirmAction } from "./confirm.tsx";
import { useState } from "react";
import { Link, useParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { supabase } from "./supabase.ts";
import { describe, field, Notice, States, unwrap, useAction, useLoad, useOrg, when } from "./ui.tsx";

export function Agents() {
  const org = useOrg();
  const sb = supabase();
  const agents = useLoad(
    () => unwrap(sb.from("agents").select("id, name, description, disabled_at, projects(name), agent_versions(version, published_at)").order("name").setHeader("x-org-id", org.id)),
    [org.id],
  );
  const projects = useLoad(() => unwrap(sb.from("projects").select("id, name").order("name").setHeader("x-org-id", org.id)), [org.id]);
  const action = useAction(agents.reload);

  return (
    <>
      <h1>Agents in {org.name}</h1>
      <Notice notice={action.notice} />
      <States loaded={agents} empty="No agents yet.">
        {(list) => (
          <table>
            <thead>
              <tr><th scope="col">Agent</th><th scope="col">Project</th><th scope="col">Published version</th><th scope="col">Status</th></tr>
            </thead>
            <tbody>
              {list.map((a) => {
                const published = a.agent_versions.filter((v) => v.published_at).map((v) => v.version);
                return (
                  <tr key={a.id}>
                    <td><Link to={`/o/${org.id}/agents/${a.id}`}>{a.name}</Link></td>
                    <td>{a.projects?.name}</td>
                    <td>{published.length ? `v${Math.max(...published)}` : "none yet"}</td>
                    <td>{a.disabled_at ? "turned off" : "on"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </States>
      {!org.readOnly && (
        <section aria-labelledby="new-agent">
          <h2 id="new-agent">New agent</h2>
          <form className="stack" onSubmit={(e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const data = new FormData(form);
            void action.run(async () => {
              await unwrap(sb.from("agents").insert({
                org_id: org.id, project_id: field(data, "project"), name: field(data, "name"), description: field(data, "description"),
              }).select("id").setHeader("x-org-id", org.id));
              form.reset();
              return "Agent created.";
            });
          }}>
            <label>Agent name <input name="name" required maxLength={100} /></label>
            <label>
              Project{" "}
              <select name="project" required>
                {(projects.data ?? []).map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}
              </select>
            </label>
            <label>Description <textarea name="description" maxLength={2000} rows={2} /></label>
            <button type="submit" disabled={action.busy}>Create agent</button>
          </form>
        </section>
      )}
    </>
  );
}

/** /o/:org/agents/:id: the agent's versions, drafts editable, published ones read-only. */
export function AgentDetail() {
  const org = useOrg();
  const { id = "" } = useParams();
  const sb = supabase();
  const agent = useLoad(async () => {
    const [row] = await unwrap(sb.from("agents").select("id, name, description, project_id, disabled_at, projects(name)").eq("id", id).setHeader("x-org-id", org.id));
    if (!row) throw new Error("No agent with that id in this organization.");
    return row;
  }, [org.id, id]);
  const versions = useLoad(
    () => unwrap(sb.from("agent_versions").select("id, version, config, created_at, published_at").eq("agent_id", id).order("version", { ascending: false }).setHeader("x-org-id", org.id)),
    [org.id, id],
  );
  const action = useAction(() => {
    versions.reload();
    agent.reload();
  });
  const [open, setOpen] = useState<string | null>(null);

  function draft() {
    const latest = versions.data?.[0]?.config ?? {};
    void action.run(async () => {
      const a = agent.data!;
      // The database numbers the version (trigger number_agent_version); the generated type can't know.
      const draft = { org_id: org.id, project_id: a.project_id, agent_id: a.id, config: latest } as Database["public"]["Tables"]["agent_versions"]["Insert"];
      const [row] = await unwrap(sb.from("agent_versions").insert(draft)
        .select("id, version").setHeader("x-org-id", org.id));
      setOpen(row.id);
      return `Draft v${row.version} created from the latest version.`;
    });
  }

  return (
    <States loaded={agent} empty="">
      {(a) => (
        <>
          <h1>{a.name}</h1>
          <p className="muted">In project {a.projects?.name}. {a.description}</p>
          {a.disabled_at && <p role="status" className="notice">This agent was turned off {when(a.disabled_at)}.</p>}
          <Notice notice={action.notice} />
          <section aria-labelledby="versions-heading">
            <h2 id="versions-heading">Versions</h2>
            {!org.readOnly && <button type="button" onClick={draft} disabled={action.busy || !versions.data}>New draft version</button>}
            <States loaded={versions} empty="No versions yet.">
              {(list) => (
                <ul className="versions">
                  {list.map((v) => (
                    <li key={v.id}>
                      <button type="button" aria-expanded={open === v.id} onClick={() => setOpen(open === v.id ? null : v.id)}>
                        v{v.version} · {v.published_at ? `published ${when(v.published_at)}` : "draft"}
                      </button>
                      {open === v.id && (v.published_at || org.readOnly ? (
                        <pre aria-label={`Configuration of v${v.version} (read-only)`}>{JSON.stringify(v.config, null, 2)}</pre>
                      ) : (
                        <DraftEditor key={v.id} version={v} orgId={org.id} onDone={action} />
                      ))}
                    </li>
                  ))}
                </ul>
              )}
            </States>
          </section>
          {org.isAdmin && !a.disabled_at && (
            <section aria-labelledby="off-heading">
              <h2 id="off-heading">Turn off</h2>
              <p>Turning the agent off stops its runs and ends its connector grants.</p>
              <button type="button" disabled={action.busy} onClick={() => {
                if (!confirm(`Turn off ${a.name}?`)) return;
                void action.run(async () => (await unwrap(sb.rpc("disable_agent", { p_agent_id: a.id }).setHeader("x-org-id", org.id)), "Agent turned off."));
              }}>Turn off {a.name}</button>
            </section>
          )}
        </>
      )}
    </States>
  );
}

function DraftEditor({ version, orgId, onDone }: {
  version: { id: string; version: number; config: unknown };
  orgId: string;
  onDone: ReturnType<typeof useAction>;
}) {
  const [text, setText] = useState(JSON.stringify(version.config, null, 2));
  const [invalid, setInvalid] = useState<string | null>(null);
  const sb = supabase();

  function parsed(): { [key: string]: Json } | null {
    try {
      const value = JSON.parse(text) as unknown;
      if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("the configuration is a JSON object");
      setInvalid(null);
      return value as { [key: string]: Json };
    } catch (e) {
      setInvalid(describe(e));
      return null;
    }
  }

  return (
    <form className="stack" onSubmit={(e) => {
      e.preventDefault();
      const config = parsed();
      if (!config) return;
      void onDone.run(async () => {
        const rows = await unwrap(sb.from("agent_versions").update({ config }).eq("id", version.id).select("id").setHeader("x-org-id", orgId));
        return rows.length ? `Draft v${version.version} saved.` : "Nothing was saved: the database let your role change no draft.";
      });
    }}>
      <label>
        Configuration of draft v{version.version} (JSON)
        <textarea value={text} onChange={(e) => setText(e.target.value)} rows={10} spellCheck={false} />
      </label>
      {invalid && <p role="alert" className="error">{invalid}</p>}
      <div className="row">
        <button type="submit" disabled={onDone.busy}>Save draft</button>
        <button type="button" disabled={onDone.busy} onClick={async () => {
          if (!(await confirmAction({
            title: `Publish v${version.version}?`,
            body: <>New runs and widget chats use it at once, and it can never change again: later changes need a new draft.</>,
            confirmLabel: `Publish v${version.version}`,
          }))) return;
          void onDone.run(async () => {
            await unwrap(sb.rpc("publish_agent_version", { p_version_id: version.id }).setHeader("x-org-id", orgId));
            return `v${version.version} published; it can no longer change.`;
          });
        }}>Publish v{version.version}</button>
      </div>
    </form>
  );
}
