/**
 * Your own account (issue 25): this session (when it started, when it ends) and signing out
 * elsewhere, your second factors (enrol an authenticator app, TOTP, and step up this session to
 * aal2 with it, which deciding high- and critical-risk actions needs; remove one, after a
 * confirmation), and your password. Personal, not organization-scoped: everything goes through the
 * console server's session routes (session.ts: auth), which answer who is signed in.
 */
import { Alert, Badge, Box, Button, Code, Group, Image, Paper, SimpleGrid, Stack, Text, TextInput } from "@mantine/core";
import { useState, type FormEvent, type ReactNode } from "react";
import { useNavigate, useSearchParams } from "react-router";
import type { SessionProps } from "./App.tsx";
import { confirmAction } from "./confirm.tsx";
import { Outcome, PageHeader, Section, useAct } from "./kit.tsx";
import { auth, loadMe } from "./session.ts";
import { field, when } from "./ui.tsx";

/** /account: your session, second factors and password. */
export function Account({ me, setMe }: SessionProps) {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const next = params.get("next");
  // One outcome per section, shown where the action was taken.
  const sessionAct = useAct();
  const factorAct = useAct();
  const passwordAct = useAct();
  const [enrolling, setEnrolling] = useState<{ id: string; qr_code: string; secret: string } | null>(null);
  const verified = me.factors.filter((f) => f.status === "verified");
  const stepped = me.aal === "aal2";

  function stepUp(factorId: string, code: string, done: string) {
    factorAct.run(async () => {
      setMe(await auth.verify(factorId, code));
      setEnrolling(null);
      if (next?.startsWith("/") && !next.startsWith("//")) navigate(next);
      return done;
    });
  }

  async function signOutOthers() {
    if (!(await confirmAction({
      title: "Sign out your other sessions?",
      body: <>Every other browser or device signed in as {me.user.email} is signed out at once; this one stays signed in.</>,
      confirmLabel: "Sign out the others",
    }))) return;
    sessionAct.run(async () => (await auth.signOut("others"), "Your other sessions are signed out."));
  }

  async function signOutEverywhere() {
    if (!(await confirmAction({
      title: "Sign out everywhere?",
      body: <>Every session of {me.user.email} ends at once, this one included: you sign in again here.</>,
      confirmLabel: "Sign out everywhere",
    }))) return;
    sessionAct.run(async () => (await auth.signOut("global"), setMe(null), "Signed out everywhere."));
  }

  async function removeFactor(id: string, name: string) {
    if (!(await confirmAction({
      title: `Remove ${name}?`,
      body: (
        <>
          Its codes stop working at once. Without a second factor you can't decide high-risk actions, and in an organization that
          requires two-factor authentication you can change nothing until you add one again.
        </>
      ),
      confirmLabel: "Remove the authenticator",
    }))) return;
    factorAct.run(async () => {
      await auth.unenroll(id);
      setMe(await loadMe());
      return `${name} removed.`;
    });
  }

  function changePassword(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const password = String(new FormData(form).get("password") ?? "");
    passwordAct.run(async () => {
      await auth.setPassword(password);
      form.reset();
      return "Password changed.";
    });
  }

  return (
    <>
      <PageHeader title="Your account" description={<>Signed in as {me.user.email}. These settings are yours alone, in every organization.</>} />
      {params.get("recovered") && (
        <Alert color="blue" role="status" mb="md">You are signed in through your recovery link: choose a new password below.</Alert>
      )}

      <Section id="session-heading" title="This session">
        <Outcome outcome={sessionAct.outcome} />
        <SimpleGrid cols={{ base: 1, xs: 2, md: 3 }} mb="md">
          <Fact label="Signed in as">{me.user.email}</Fact>
          <Fact label="Since">{when(me.session.started_at)}</Fact>
          <Fact label="Ends at the latest">{me.session.absolute_deadline ? when(me.session.absolute_deadline) : "no limit"}</Fact>
          <Fact label="Ends when idle for">{me.session.idle_timeout_seconds ? `${Math.round(me.session.idle_timeout_seconds / 60)} minutes` : "no limit"}</Fact>
          <Fact label="Assurance">{stepped ? "second factor verified (aal2)" : "password only (aal1)"}</Fact>
        </SimpleGrid>
        <Group gap="sm">
          <Button variant="default" loading={sessionAct.busy} onClick={() => void signOutOthers()}>Sign out my other sessions</Button>
          <Button variant="light" color="red" loading={sessionAct.busy} onClick={() => void signOutEverywhere()}>Sign out everywhere</Button>
        </Group>
      </Section>

      <Section id="mfa-heading" title="Two-factor authentication">
        {next && !stepped && (
          <Alert color="blue" role="status" mb="md">Verify your second factor to continue: the action you were deciding needs it.</Alert>
        )}
        <Outcome outcome={factorAct.outcome} />
        {verified.length === 0 && !enrolling && <Text size="sm" c="dimmed" mb="sm">No authenticator yet. Deciding high-risk actions needs one.</Text>}
        {verified.length > 0 && (
          <Stack component="ul" aria-label="Your authenticators" gap="xs" mb="md" style={{ listStyle: "none", padding: 0 }}>
            {verified.map((f) => {
              const name = f.friendly_name || "Authenticator";
              return (
                <Paper key={f.id} component="li" withBorder p="sm" radius="md">
                  <Group justify="space-between" wrap="wrap" gap="sm">
                    <div>
                      <Group gap="xs"><Text fw={600} size="sm">{name}</Text><Badge variant="light" size="sm">{f.factor_type}</Badge></Group>
                      <Text size="xs" c="dimmed">added {when(f.created_at)}</Text>
                    </div>
                    <Button size="xs" variant="light" color="red" disabled={!stepped || factorAct.busy} onClick={() => void removeFactor(f.id, name)}>
                      Remove {f.friendly_name || "authenticator"}
                    </Button>
                  </Group>
                  {!stepped && <Text size="xs" c="dimmed" mt={4}>Verify it first (below): removing a factor needs a session at aal2.</Text>}
                </Paper>
              );
            })}
          </Stack>
        )}
        {verified.length > 0 && !stepped && (
          <Paper withBorder p="md" radius="md" mb="md" component="form" aria-label="Verify your second factor" onSubmit={(e: FormEvent<HTMLFormElement>) => {
            e.preventDefault();
            stepUp(verified[0].id, field(new FormData(e.currentTarget), "code"), "Second factor verified: this session is at aal2.");
          }}>
            <Group align="flex-end" wrap="wrap">
              <TextInput name="code" label="Code from your authenticator app" inputMode="numeric" pattern="\d{6}" autoComplete="one-time-code" required maxLength={6} w={260} />
              <Button type="submit" loading={factorAct.busy}>Verify</Button>
            </Group>
          </Paper>
        )}
        {enrolling ? (
          <Paper withBorder p="md" radius="md" component="form" aria-label="Activate the authenticator" onSubmit={(e: FormEvent<HTMLFormElement>) => {
            e.preventDefault();
            stepUp(enrolling.id, field(new FormData(e.currentTarget), "code"), "Authenticator added; this session is at aal2.");
          }}>
            <Stack>
              <Text size="sm">Scan this code with your authenticator app, or type the secret into it, then enter the six-digit code it shows.</Text>
              <Box bg="white" p="xs" w={196} style={{ borderRadius: "var(--mantine-radius-sm)" }}>
                <Image src={enrolling.qr_code} alt="QR code of the authenticator secret" w={180} h={180} />
              </Box>
              <Text size="sm" component="div">Secret: <Code aria-label="Authenticator secret" style={{ wordBreak: "break-all" }}>{enrolling.secret}</Code></Text>
              <Group align="flex-end" wrap="wrap">
                <TextInput name="code" label="Six-digit code" inputMode="numeric" pattern="\d{6}" autoComplete="one-time-code" required maxLength={6} w={200} />
                <Button type="submit" loading={factorAct.busy}>Activate</Button>
              </Group>
            </Stack>
          </Paper>
        ) : (
          <Paper withBorder p="md" radius="md" component="form" aria-label="Add an authenticator app" onSubmit={(e: FormEvent<HTMLFormElement>) => {
            e.preventDefault();
            const name = field(new FormData(e.currentTarget), "name");
            factorAct.run(async () => {
              setEnrolling(await auth.enroll(name));
              return "Scan the code, then enter the six digits your app shows.";
            });
          }}>
            <Group align="flex-end" wrap="wrap">
              <TextInput name="name" label="Authenticator name" defaultValue="Authenticator app" maxLength={64} required w={260} />
              <Button type="submit" loading={factorAct.busy}>Add an authenticator</Button>
            </Group>
          </Paper>
        )}
      </Section>

      <Section id="password-heading" title="Password">
        <Outcome outcome={passwordAct.outcome} />
        <Paper withBorder p="md" radius="md" component="form" aria-label="Change your password" onSubmit={changePassword}>
          <Group align="flex-end" wrap="wrap">
            <TextInput name="password" type="password" label="New password" description="8 to 72 characters" autoComplete="new-password" minLength={8} maxLength={72} required w={260} />
            <Button type="submit" loading={passwordAct.busy}>Change password</Button>
          </Group>
        </Paper>
      </Section>
    </>
  );
}


/** One fact about the session: its label and its value. */
function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Stack gap={2}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>{label}</Text>
      <Text size="sm" component="div" style={{ overflowWrap: "anywhere" }}>{children}</Text>
    </Stack>
  );
}
