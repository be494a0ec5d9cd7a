/**
 * The admin console: sign-in and its emailed links when signed out; otherwise the organization
 * switcher and one screen per control, each at its own deep link (/o/:org/approvals/:id, …), so
 * that a reload keeps your place. Who may do what is the database's answer; the role read here
 * only decides which controls are offered.
 */
import { ActionIcon, Alert, Anchor, AppShell, Box, Burger, Button, Container, Group, NativeSelect, NavLink as MantineNavLink, Text, Title, useComputedColorScheme, useMantineColorScheme } from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { Navigate, NavLink as RouterNavLink, Outlet, Route, Routes, useLocation, useNavigate, useParams } from "react-router";
import { describeError, orgApi, personalApi, run } from "./api.ts";
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
import { Settings } from "./Settings.tsx";
import { RunDetail, Runs } from "./Runs.tsx";
import { Tokens } from "./Tokens.tsx";
import { Webhooks } from "./Webhooks.tsx";
import { Widgets } from "./Widgets.tsx";
import { auth, loadMe, onSignedOut, type Me } from "./session.ts";
import { PageHeader, QueryState } from "./kit.tsx";
import { Org, useOrg, type OrgContext, type Role } from "./ui.tsx";

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
    loadMe().then(setMe, (e: unknown) => setFailure(describeError(e)));
    return onSignedOut((reason) => {
      setMe(null);
      if (reason) setEnded(reason);
    });
  }, []);

  if (failure) {
    return (
      <Container component="main" size="sm" py="xl">
        <Title order={1} mb="md">Gatehouse</Title>
        <Alert color="red" role="alert" title="The console server is not answering">{failure}</Alert>
      </Container>
    );
  }
  if (me === undefined) return <Container component="main" size="sm" py="xl" aria-busy="true"><Text c="dimmed">Loading…</Text></Container>;

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
          <Route path="o/:org" element={<OrgScope />}>
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
            <Route path="webhooks" element={<Webhooks apiUrl={me.api_url || location.origin} />} />
            <Route path="tokens" element={<Tokens />} />
            <Route path="billing" element={<Billing />} />
            <Route path="settings" element={<Settings />} />
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
  ["webhooks", "Inbound webhooks"],
  ["tokens", "Access tokens"],
  ["billing", "Billing"],
  ["settings", "Settings"],
];

/**
 * The page frame: a header (the organization switcher, light or dark, who you are, sign out), a
 * sidebar with the organization's screens (a drawer behind the menu button on a phone), and the
 * screen itself as the page's one main landmark.
 */
function Shell({ me, setMe }: SessionProps) {
  const navigate = useNavigate();
  const location = useLocation();
  const [opened, { toggle, close }] = useDisclosure(false);
  const { colorScheme, setColorScheme } = useMantineColorScheme();
  const computed = useComputedColorScheme("light");
  const orgs = useQuery({
    queryKey: ["organizations"],
    queryFn: () => run(personalApi().from("organizations").select("id, name, slug").order("name")) as Promise<OrgRow[]>,
  });
  const current = /^\/o\/([^/]+)/.exec(location.pathname)?.[1] ?? "";
  useEffect(close, [location.pathname, close]);

  async function signOut() {
    await auth.signOut("local").catch(() => undefined);
    setMe(null);
    navigate("/");
  }

  // The organization switcher: in the header, and in the screens' drawer on a phone.
  const switcher = (
    <NativeSelect
      aria-label="Organization"
      value={current}
      onChange={(e) => navigate(e.currentTarget.value ? `/o/${e.currentTarget.value}` : "/orgs")}
      disabled={!orgs.data}
      data={[{ value: "", label: "All organizations…" }, ...(orgs.data ?? []).map((o) => ({ value: o.id, label: o.name }))]}
      w={240}
    />
  );

  return (
    <AppShell
      header={{ height: 60 }}
      navbar={{ width: 240, breakpoint: "sm", collapsed: { mobile: !opened, desktop: !current } }}
      padding="md"
    >
      <AppShell.Header>
        <a href="#main" className="skip">Skip to content</a>
        <Group h="100%" px="md" gap="sm" wrap="nowrap">
          {current && <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label={opened ? "Close the screens menu" : "Open the screens menu"} />}
          <Text fw={700} size="lg" component={RouterNavLink} to="/" c="inherit" td="none">Gatehouse</Text>
          <Box visibleFrom="sm">{switcher}</Box>
          <Box style={{ flex: 1 }} />
          <ActionIcon
            variant="default"
            size="lg"
            onClick={() => setColorScheme(computed === "dark" ? "light" : "dark")}
            aria-label={computed === "dark" ? "Switch to light mode" : "Switch to dark mode"}
            title={colorScheme === "auto" ? "Following your system" : undefined}
          >
            {computed === "dark" ? "☀" : "☾"}
          </ActionIcon>
          <Anchor component={RouterNavLink} to="/account" size="sm" visibleFrom="sm">{me.user.email}{me.aal === "aal2" ? " (2FA)" : ""}</Anchor>
          <Button variant="default" size="sm" onClick={signOut}>Sign out</Button>
        </Group>
      </AppShell.Header>
      {current && (
        <AppShell.Navbar p="sm" component="nav" aria-label="Screens">
          <Box hiddenFrom="sm" mb="sm">{switcher}</Box>
          {SCREENS.map(([path, label]) => (
            <MantineNavLink key={path} component={RouterNavLink} to={`/o/${current}/${path}`} label={label} variant="filled"
              active={location.pathname.startsWith(`/o/${current}/${path}`)} />
          ))}
          <Box mt="auto" hiddenFrom="sm">
            <Anchor component={RouterNavLink} to="/account" size="sm">{me.user.email}</Anchor>
          </Box>
        </AppShell.Navbar>
      )}
      <AppShell.Main id="main" style={{ minWidth: 0, overflowX: "auto" }}>
        <Container size="lg" px={0}>
          <Outlet />
        </Container>
      </AppShell.Main>
    </AppShell>
  );
}

/** After sign-in: your first organization, or the list to create one. */
function Home() {
  const orgs = useQuery({
    queryKey: ["organizations", "first"],
    queryFn: () => run(personalApi().from("organizations").select("id").order("name").limit(1)),
  });
  return (
    <QueryState query={orgs} empty={<Navigate to="/orgs" replace />}>
      {(list) => <Navigate to={`/o/${list[0].id}/approvals`} replace />}
    </QueryState>
  );
}

/** What my_permissions answers (supabase/migrations/…_permissions.sql). */
export interface Permissions {
  org_role: Role;
  organization: Record<"manage_organization" | "manage_members" | "manage_connections" | "manage_models" | "manage_billing" | "create_projects", boolean>;
  projects: {
    id: string;
    name: string;
    role: Role;
    edit_agents: boolean;
    run_agents: boolean;
    review_widgets: boolean;
    manage_agents: boolean;
    manage_widgets: boolean;
    manage_schedules: boolean;
    manage_project: boolean;
  }[];
}

/** /o/:org: the organization and what the signed-in person may do in it, both the database's answers. */
function OrgScope() {
  const { org = "" } = useParams();
  const loaded = useQuery({
    queryKey: ["org", org],
    queryFn: async (): Promise<OrgContext> => {
      const api = orgApi(org);
      const [row] = await api.run(api.from("organizations").select("id, name, slug").eq("id", org));
      if (!row) throw new Error("No organization of yours has that address.");
      const permissions = await api.run(api.rpc("my_permissions")) as unknown as Permissions;
      const role = permissions.org_role;
      return { ...row, role, isAdmin: role === "tenant_admin", readOnly: role === "project_viewer", permissions };
    },
  });

  if (loaded.isPending) return <Text c="dimmed" aria-busy="true">Loading…</Text>;
  if (loaded.error || !loaded.data) {
    return (
      <>
        <Title order={1}>Organization not found</Title>
        <Alert color="red" role="alert" my="md">{describeError(loaded.error)}</Alert>
        <Anchor component={RouterNavLink} to="/orgs" underline="always">Your organizations</Anchor>
      </>
    );
  }
  const ctx = loaded.data;
  return (
    <Org.Provider value={ctx}>
      {ctx.readOnly && <Text size="sm" c="dimmed" mb="sm">You are a viewer in {ctx.name}: these screens are read-only for you.</Text>}
      <Outlet />
    </Org.Provider>
  );
}

/** The organization's agents, by name (for the screens that name them). */
function useAgents(orgId: string) {
  return useQuery({
    queryKey: ["agents", orgId, "names"],
    queryFn: () => orgApi(orgId).run(orgApi(orgId).from("agents").select("id, name").order("name")),
  });
}

function ModelsScreen() {
  const org = useOrg();
  const agents = useAgents(org.id);
  return (
    <>
      <PageHeader title={`Models and limits in ${org.name}`} description="What the organization's agents call, what it costs, and the limits and keys that govern it." />
      <Models key={org.id} orgId={org.id} agents={agents.data ?? []} />
    </>
  );
}

function WidgetsScreen({ me }: { me: Me }) {
  const org = useOrg();
  const agents = useAgents(org.id);
  return (
    <>
      <PageHeader title={`Widgets in ${org.name}`} description="Chat on your customers' sites: each agent's publishable key, its sites and budget, the review queue and the transcripts." />
      <Widgets key={org.id} orgId={org.id} agents={agents.data ?? []} userId={me.user.id} apiUrl={me.api_url || location.origin} />
    </>
  );
}

function NotFound() {
  return (
    <>
      <PageHeader title="Not found" description="Nothing lives at this address." />
      <Anchor component={RouterNavLink} to="/" underline="always">Back to the console</Anchor>
    </>
  );
}
