/**
 * Signing in and what emailed links lead to (issue 25): the sign-in form, password recovery, the
 * confirm page every emailed link lands on (a click spends the link, so mail scanners don't), and
 * accepting an invitation. Each is one centred card, as wide as a phone allows; the signed-out ones
 * are the page's main landmark (they render outside the AppShell). The console server holds the
 * session; these pages only ever see who is signed in.
 */
import { Alert, Anchor, Box, Button, Center, Paper, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent, type ReactNode } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { describeError, personalApi, run } from "./api.ts";
import { Outcome, QueryState, useAct } from "./kit.tsx";
import { auth, type Me } from "./session.ts";
import { field, when } from "./ui.tsx";

/**
 * A signed-out page: the product's name and one card, centred on the page. `landmark` makes it
 * the page's main (false inside the AppShell, which has its own).
 */
function Card({ title, children, landmark = true }: { title: string; children: ReactNode; landmark?: boolean }) {
  const card = (
    <Center mih={landmark ? "100dvh" : undefined} px="sm" py="xl">
      <Stack w="100%" maw={440} gap="md">
        {landmark && <Text fw={700} size="lg" ta="center">Gatehouse</Text>}
        <Paper withBorder shadow="sm" radius="md" p="lg">
          <Title order={1} fz={24} mb="md">{title}</Title>
          {children}
        </Paper>
      </Stack>
    </Center>
  );
  return landmark ? <Box component="main">{card}</Box> : card;
}

/** The sign-in form; `ended` says why the last session ended, if it did. */
export function SignIn({ ended, onSignedIn }: { ended: string | null; onSignedIn: (me: Me) => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  // Not useAct: a refusal here is said once, in the card (no toast), and success leaves the page.
  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await auth.signIn(field(form, "email"), String(form.get("password") ?? "")));
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Card title="Sign in to Gatehouse">
      {ended && <Alert color="blue" role="status" mb="md">{ended}</Alert>}
      {error && <Alert color="red" role="alert" mb="md">{error}</Alert>}
      <form onSubmit={submit} aria-label="Sign in">
        <Stack>
          <TextInput name="email" type="email" label="Email" autoComplete="username" required />
          <TextInput name="password" type="password" label="Password" autoComplete="current-password" required />
          <Button type="submit" loading={busy} fullWidth>Sign in</Button>
        </Stack>
      </form>
      <Text size="sm" ta="center" mt="md"><Anchor component={Link} to="/forgot">Forgot your password?</Anchor></Text>
    </Card>
  );
}

/** Asks for a recovery email (the answer is the same whether or not the address has an account). */
export function ForgotPassword() {
  const act = useAct();
  return (
    <Card title="Reset your password">
      <Text size="sm" c="dimmed" mb="md">Enter the address you sign in with: we email it a link that signs you in once, to choose a new password.</Text>
      <Outcome outcome={act.outcome} />
      <form
        aria-label="Send a recovery link"
        onSubmit={(event) => {
          event.preventDefault();
          const email = field(new FormData(event.currentTarget), "email");
          act.run(async () => {
            await auth.recover(email);
            return "If that address has an account, a recovery link is on its way.";
          });
        }}
      >
        <Stack>
          <TextInput name="email" type="email" label="Email" autoComplete="username" required />
          <Button type="submit" loading={act.busy} fullWidth>Send the recovery link</Button>
        </Stack>
      </form>
      <Text size="sm" ta="center" mt="md"><Anchor component={Link} to="/">Back to sign-in</Anchor></Text>
    </Card>
  );
}

const LINK_PURPOSE: Record<string, string> = {
  invite: "accept your invitation",
  recovery: "choose a new password",
  magiclink: "sign in",
  signup: "confirm your email",
  email: "confirm your email",
};

/** Only the console's own paths may be a link's destination. */
function safeNext(next: string | null): string {
  if (!next) return "/";
  try {
    const url = new URL(next, location.origin);
    return url.origin === location.origin ? `${url.pathname}${url.search}` : "/";
  } catch {
    return "/";
  }
}

/** Where every emailed link lands: one click spends it and signs you in, then on to its page. */
export function Confirm({ onSignedIn }: { onSignedIn: (me: Me) => void }) {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const tokenHash = params.get("token_hash") ?? "";
  const type = params.get("type") ?? "";
  const next = type === "recovery" ? "/account?recovered=1" : safeNext(params.get("next"));
  // A link to an invitation: its token, for a new link when this one has expired.
  const invitation = /^\/invitations\/accept\?token=([0-9a-f]{64})$/.exec(next)?.[1] ?? null;

  // Not useAct: success leaves the page, and a refusal is said once, in the card.
  async function go() {
    setBusy(true);
    setError(null);
    try {
      const me = await auth.confirm(tokenHash, type);
      onSignedIn(me);
      navigate(next, { replace: true });
    } catch (e) {
      setError(describeError(e));
      setBusy(false);
    }
  }

  if (!tokenHash || !LINK_PURPOSE[type]) {
    return (
      <Card title="This link is incomplete">
        <Alert color="red" role="alert" mb="md">Open the link from your email again, or ask for a new one.</Alert>
        <Text size="sm" ta="center"><Anchor component={Link} to="/">Back to sign-in</Anchor></Text>
      </Card>
    );
  }
  return (
    <Card title={`Continue to ${LINK_PURPOSE[type]}`}>
      {error && <Alert color="red" role="alert" mb="md">{error}</Alert>}
      {error && invitation && <NewInvitationLink token={invitation} />}
      <Text size="sm" mb="md">This link signs you in once. Continue only if you asked for it.</Text>
      <Button onClick={() => void go()} loading={busy} fullWidth>Continue</Button>
    </Card>
  );
}

/**
 * An invitation's mailed link lasts an hour, the invitation a week: when the link has expired, a
 * new one goes to the invited address (never anywhere else), for as long as the invitation is open.
 */
function NewInvitationLink({ token }: { token: string }) {
  const [sent, setSent] = useState<string | null>(null);
  const [refused, setRefused] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function send() {
    setBusy(true);
    setRefused(null);
    try {
      const { expires_at } = await auth.invitationLink(token);
      setSent(`A new link is on its way to the invited address. It works for an hour; the invitation is open until ${when(expires_at)}.`);
    } catch (e) {
      setRefused(describeError(e));
    } finally {
      setBusy(false);
    }
  }
  if (sent) return <Alert color="teal" role="status" mb="md">{sent}</Alert>;
  return (
    <Stack gap="xs" mb="md">
      <Text size="sm">If this link has expired, your invitation may still be open: have a new link sent to the invited address.</Text>
      {refused && <Alert color="red" role="alert">{refused}</Alert>}
      <Button variant="light" onClick={() => void send()} loading={busy}>Email me a new link</Button>
    </Stack>
  );
}

const ROLE_LABELS: Record<string, string> = {
  tenant_admin: "Tenant admin", project_admin: "Project admin", project_contributor: "Contributor", project_viewer: "Viewer",
};

interface Preview {
  organization: string;
  role: string;
  invited_by: string | null;
  expires_at: string;
}

/** /invitations/accept?token=…: what the invitation is, and joining the organization it is for. */
export function AcceptInvitation() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const token = params.get("token") ?? "";
  const wellFormed = /^[0-9a-f]{64}$/.test(token);
  // What the invitation is, for the person it is addressed to: the organization, who invited, the role.
  const preview = useQuery({
    queryKey: ["invitation", token],
    queryFn: async () => (await run(personalApi().rpc("invitation_preview", { p_token: token }))) as unknown as Preview | null,
    enabled: wellFormed,
  });
  // Joining changes the organizations the header's switcher lists.
  const act = useAct([["organizations"]]);

  function accept(p: Preview) {
    act.run(async () => {
      const org = await run(personalApi().rpc("accept_invitation", { p_token: token }));
      navigate(`/o/${org}/approvals`, { replace: true });
      return `You joined ${p.organization} as ${ROLE_LABELS[p.role] ?? p.role}.`;
    });
  }

  return (
    <Card title="Accept your invitation" landmark={false}>
      {!wellFormed ? (
        <Alert color="red" role="alert">This invitation link is incomplete; open it from your email again.</Alert>
      ) : (
        <>
          <Outcome outcome={act.outcome} />
          <QueryState query={preview} empty="This invitation could not be found." isEmpty={(p) => !p} rows={2}>
            {(p) => p && (
              <Stack>
                <Text size="sm">
                  {p.invited_by ?? "A tenant admin"} invited you to join <strong>{p.organization}</strong> as{" "}
                  <strong>{ROLE_LABELS[p.role] ?? p.role}</strong>. The invitation is open until {when(p.expires_at)}.
                </Text>
                <Button onClick={() => accept(p)} loading={act.busy} fullWidth>Accept the invitation</Button>
              </Stack>
            )}
          </QueryState>
          <Text size="sm" c="dimmed" mt="md">New here? Choose a password on <Anchor component={Link} to="/account" underline="always">your account page</Anchor> afterwards.</Text>
        </>
      )}
    </Card>
  );
}
