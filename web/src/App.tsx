import { useEffect, useState, type FormEvent } from "react";
import type { Session } from "@supabase/supabase-js";
import { supabase } from "./supabase.ts";

interface Organization {
  id: string;
  name: string;
  slug: string;
}

/** Sign-in, then the organizations the signed-in user belongs to (as RLS lets them see). */
export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [orgs, setOrgs] = useState<Organization[]>([]);
  const [error, setError] = useState<string | null>(null);

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

  async function signIn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sb = await supabase();
    const { error } = await sb.auth.signInWithPassword({ email: String(form.get("email")), password: String(form.get("password")) });
    setError(error ? error.message : null);
  }

  async function signOut() {
    await (await supabase()).auth.signOut();
  }

  return (
    <main style={{ fontFamily: "system-ui, sans-serif", maxWidth: 560, margin: "3rem auto" }}>
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
                {o.name} <code>{o.slug}</code>
              </li>
            ))}
          </ul>
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
