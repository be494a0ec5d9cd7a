/**
 * The admin console: sign-in and its emailed links when signed out; otherwise the organization
 * switcher and one screen per control, each at its own deep link (/o/:org/approvals/:id, …), so
 * that a reload keeps your place. Who may do what is the database's answer; the role read here
 * only decides which controls are offered.
 */
import { useEffect, useState } from "react";
import { Navigate, NavLink, Outlet, Route, Routes, useLocation, useNavigate, useParams } from "react-router";
import { Account } from "./Account.tsx";
import { Agents, AgentDetail } from "./Agents.tsx";
import { Approvals, ApprovalDetail } from "./Approvals.tsx";
import { Audit } from "./Audit.tsx";
import { Billing } from "./Billing.tsx";
import { AcceptInvitation, Confirm, ForgotPassword, SignIn } from "./Auth.tsx";
import { Connections } from "./Connections.tsx";
import { Members } from "./Members.tsx";
import { Models } from "./Models.tsx";
import { Organizations } from "./Organizations.tsx";
import { Projects } from "./Projects.tsx";
import { RunDetail, Runs } from "./Runs.tsx";
import { Widgets } from "./Widgets.tsx";
import { auth, loadMe, onSignedOut, type Me } from "./session.ts";
import { supabase } from "./supabase.ts";
import { describe, Org, unwrap, useLoad, useOrg, type OrgContext, type Role } from "./ui.tsx";

/** The signed-in person, and how to change or end that. */
export interface SessionProps {
  me: Me;
  setMe: (me: Me | null) => void;
}

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [ended, setEnded] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  useEffect(() => {
    loadMe().then(setMe, (e: unknown) => setFailure(describe(e)));
    return onSignedOut((reason) => {
      setMe(null);
      if (reason) setEnded(reason);
    });
  }, []);

  if (failure) {
    return (
      <main className="narrow">
        <h1>Gatehouse</h1>
        <p role="alert" className="error">The console server is not answering: {failure}</p>
      </main>
    );
  }
  if (me === undefined) return <main className="narrow" aria-busy="true"><p className="muted">Loading…</p></main>;

  const signedIn = (next: Me) => {
    setEnded(null);
    setMe(next);
  };
  return (
    <Routes>
      <Route path="/auth/confirm" element={<Confirm onSignedIn={signedIn} />} />
      <Route path="/forgot" element={<ForgotPassword />} />
      {me === null ? (
        <Route path="*" element={<SignIn ended={ended} onSignedIn={signedIn} />} />
      ) : (
        <Route element={<Shell me={me} setMe={setMe} />}>
          <Route index element={<Home />} />
          <Route path="orgs" element={<Organizations />} />
          <Route path="account" element={<Account me={me} setMe={setMe} />} />
          <Route path="invitations/accept" element={<AcceptInvitation />} />
          <Route path="o/:org" element={<OrgScope me={me} />}>
            <Route index element={<Navigate to="approvals" replace />} />
            <Route path="approvals" element={<Approvals me={me} />} />
            <Route path="approvals/:id" element={<ApprovalDetail me={me} />} />
            <Route path="runs" element={<Runs />} />
            <Route path="runs/:id" element={<RunDetail />} />
            <Route path="agents" element={<Agents />} />
            <Route path="agents/:id" element={<AgentDetail />} />
            <Route path="projects" element={<Projects />} />
            <Route path="members" element={<Members />} />
            <Route path="connections" element={<Connections />} />
            <Route path="audit" element={<Audit />} />
            <Route path="limits" element={<ModelsScreen />} />
            <Route path="widgets" element={<WidgetsScreen me={me} />} />
            <Route path="billing" element={<Billing />} />
          </Route>
          <Route path="*" element={<NotFound />} />
        </Route>
      )}
    </Routes>
  );
}

interface OrgRow {
  id: string;
  name: string;
  slug: string;
}

/** The page frame: who you are, the organization switcher, and the screen. */
function Shell({ me, setMe }: SessionProps) {
  const navigate = useNavigate();
  const location = useLocation();
  const orgs = useLoad(() => unwrap(supabase().from("organizations").select("id, name, slug").order("name")), [location.pathname === "/orgs"]);
  const current = /^\/o\/([^/]+)/.exec(location.pathname)?.[1] ?? "";

  async function signOut() {
    await auth.signOut("local").catch(() => undefined);
    setMe(null);
    navigate("/");
  }

  return (
    <>
      <header className="bar">
        <a href="#main" className="skip">Skip to content</a>
        <strong>Gatehouse</strong>
        <label>
          Organization{" "}
          <select value={current} onChange={(e) => navigate(e.target.value ? `/o/${e.target.value}` : "/orgs")} disabled={!orgs.data}>
            <option value="">All organizations…</option>
            {(orgs.data ?? []).map((o: OrgRow) => <option key={o.id} value={o.id}>{o.name}</option>)}
          </select>
        </label>
        <span className="spacer" />
        <NavLink to="/account">{me.user.email}{me.aal === "aal2" ? " (2FA)" : ""}</NavLink>
        <button type="button" onClick={signOut}>Sign out</button>
      </header>
      <div id="main">
        <Outlet />
      </div>
    </>
  );
}

/** After sign-in: your first organization, or the list to create one. */
function Home() {
  const orgs = useLoad(() => unwrap(supabase().from("organizations").select("id").order("name").limit(1)), []);
  if (orgs.loading) return <main aria-busy="true"><p className="muted">Loading…</p></main>;
  if (orgs.error) return <main><p role="alert" className="error">{orgs.error}</p></main>;
  return <Navigate to={orgs.data?.[0] ? `/o/${orgs.data[0].id}/approvals` : "/orgs"} replace />;
}

const SCREENS: [string, string][] = [
  ["approvals", "Approvals"],
  ["runs", "Runs"],
  ["agents", "Agents"],
  ["projects", "Projects"],
  ["members", "Members"],
  ["connections", "Connections"],
  ["audit", "Audit log"],
  ["limits", "Models and limits"],
  ["widgets", "Widgets"],
  ["billing", "Billing"],
];

/** /o/:org: checks the membership (the database's answer) and provides the organization. */
function OrgScope({ me }: { me: Me }) {
  const { org = "" } = useParams();
  const loaded = useLoad(async (): Promise<OrgContext> => {
    const sb = supabase();
    const [row] = await unwrap(sb.from("organizations").select("id, name, slug").eq("id", org));
    if (!row) throw new Error("No organization of yours has that address.");
    const [member] = await unwrap(sb.from("organization_members").select("role").eq("user_id", me.user.id).setHeader("x-org-id", org));
    const role = (member?.role ?? "project_viewer") as Role;
    return { ...row, role, isAdmin: role === "tenant_admin", readOnly: role === "project_viewer" };
  }, [org, me.user.id]);

  if (loaded.loading && !loaded.data) return <main aria-busy="true"><p className="muted">Loading…</p></main>;
  if (loaded.error || !loaded.data) {
    return (
      <main>
        <h1>Organization not found</h1>
        <p role="alert" className="error">{loaded.error}</p>
        <NavLink to="/orgs">Your organizations</NavLink>
      </main>
    );
  }
  const ctx = loaded.data;
  return (
    <Org.Provider value={ctx}>
      <nav aria-label="Screens" className="screens">
        {SCREENS.map(([path, label]) => <NavLink key={path} to={`/o/${ctx.id}/${path}`}>{label}</NavLink>)}
      </nav>
      <main>
        {ctx.readOnly && <p className="muted">You are a viewer in {ctx.name}: these screens are read-only for you.</p>}
        <Outlet />
      </main>
    </Org.Provider>
  );
}

function useAgents(orgId: string) {
  return useLoad(() => unwrap(supabase().from("agents").select("id, name").order("name").setHeader("x-org-id", orgId)), [orgId]);
}

function ModelsScreen() {
  const org = useOrg();
  const agents = useAgents(org.id);
  return (
    <>
      <h1>Models and limits in {org.name}</h1>
      <Models key={org.id} orgId={org.id} agents={agents.data ?? []} />
    </>
  );
}

function WidgetsScreen({ me }: { me: Me }) {
  const org = useOrg();
  const agents = useAgents(org.id);
  return (
    <>
      <h1>Widgets in {org.name}</h1>
      <Widgets key={org.id} orgId={org.id} agents={agents.data ?? []} userId={me.user.id} />
    </>
  );
}

function NotFound() {
  return (
    <main>
      <h1>Not found</h1>
      <p>Nothing lives at this address. <NavLink to="/">Back to the console</NavLink></p>
    </main>
  );
}
