import { useEffect, useState, type FormEvent } from "react";
import type { Session } from "@supabase/supabase-js";
import { Models } from "./Models.tsx";
import { Widgets } from "./Widgets.tsx";
import { supabase } from "./supabase.ts";

interface Organization {
  id: string;
  name: string;
  slug: string;
}

interface Agent {
  id: string;
  name: string;
  projects: { name: string } | null;
}

/**
 * Sign-in, the organizations the signed-in user belongs to, and for the one they pick its agents,
 * its models (Models.tsx) and its widgets (Widgets.tsx). Every tenant query names its organization with X-Org-Id; the
 * database checks the membership.
 */
export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [orgs, setOrgs] = useState<Organization[]>([]);
  const [current, setCurrent] = useState<Organization | null>(null);
  const [agents, setAgents] = useState<Agent[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [page, setPage] = useState<"agents" | "models" | "widgets">("agents");

  useEffect(() => {
    void supabase().then(async (sb) => {
      setSession((await sb.auth.getSession()).data.session);
      sb.auth.onAuthStateChange((_event, s) => setSession(s));
    });
  }, []);

  useEffect(() => {
    if (!session) return setOrgs([]);
    void supabase().then(async (sb) => {
      const { data, error } = await sb.from("organizations").select("id, name, slug").order("name");
      if (error) setError(error.message);
      else setOrgs(data);
    });
  }, [session]);

  useEffect(() => {
    if (!session || !current) return setAgents([]);
    void supabase().then(async (sb) => {
      const { data, error } = await sb
        .from("agents")
        .select("id, name, projects(name)")
        .order("name")
        .setHeader("x-org-id", current.id);
      if (error) setError(error.message);
      else setAgents(data as unknown as Agent[]);
    });
  }, [session, current]);

  async function signIn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sb = await supabase();
    const { error } = await sb.auth.signInWithPassword({ email: String(form.get("email")), password: String(form.get("password")) });
    setError(error ? error.message : null);
  }

  async function signOut() {
    setCurrent(null);
    await (await supabase()).auth.signOut();
  }

  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: 880, margin: "3rem auto" }}>
      <h1>Gatehouse</h1>
      {error && <p role="alert">{error}</p>}
      {session ? (
        <section>
          <p>
            Signed in as <strong>{session.user.email}</strong> <button onClick={signOut}>Sign out</button>
          </p>
          <h2>Your organizations</h2>
          <ul>
            {orgs.map((o) => (
              <li key={o.id}>
                <button onClick={() => setCurrent(o)} aria-pressed={current?.id === o.id}>
                  {o.name}
                </button>{" "}
                <code>{o.slug}</code>
              </li>
            ))}
          </ul>
          {current && (
            <>
              <nav>
                <button onClick={() => setPage("agents")} aria-pressed={page === "agents"}>Agents</button>{" "}
                <button onClick={() => setPage("models")} aria-pressed={page === "models"}>Models</button>{" "}
                <button onClick={() => setPage("widgets")} aria-pressed={page === "widgets"}>Widgets</button>
              </nav>
              {page === "agents" ? (
                <>
                  <h2>Agents in {current.name}</h2>
                  <ul aria-label="Agents">
                    {agents.map((a) => (
                      <li key={a.id}>
                        {a.name} <small>{a.projects?.name}</small>
                      </li>
                    ))}
                  </ul>
                </>
              ) : page === "models" ? (
                <>
                  <h2>Models in {current.name}</h2>
                  <Models key={current.id} orgId={current.id} agents={agents} />
                </>
              ) : (
                <>
                  <h2>Widgets in {current.name}</h2>
                  <Widgets key={current.id} orgId={current.id} agents={agents} />
                </>
              )}
            </>
          )}
        </section>
      ) : (
        <form onSubmit={signIn}>
          <label>
            Email <input name="email" type="email" autoComplete="username" required />
          </label>{" "}
          <label>
            Password <input name="password" type="password" autoComplete="current-password" required />
          </label>{" "}
          <button type="submit">Sign in</button>
        </form>
      )}
    </main>
  );
}
