/**
 * Personal access tokens (docs/tokens.md): a person makes tokens for their own programs here, with
 * the scopes their role allows (the database refuses others: scope_not_allowed), optionally bound to
 * one project, expiring in 1 to 366 days. A new token is shown once, with a copy button. The list
 * shows each token's prefix, scopes, project, expiry and last use; its owner revokes it, and a
 * tenant admin sees and revokes the organization's (a leaked token, a person who left). Revoking
 * confirms in a dialog, as it stops every program using the token at once.
 *
 * A token is the person's own credential, not a change to the organization: a viewer makes tokens
 * too, with the reading scopes. The controls for scopes above their role are not offered.
 */
import { Alert, Badge, Button, Checkbox, Code, CopyButton, Group, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import type { Database } from "../../supabase/database.types.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi, useProjectsWhere } from "./kit.tsx";
import { useOrg, when } from "./ui.tsx";

type Token = Omit<Database["public"]["Tables"]["personal_access_tokens"]["Row"], "token_sha256" | "expiry_recorded_at">;
const COLUMNS = "id, org_id, project_id, user_id, name, token_prefix, scopes, expires_at, created_at, last_used_at, revoked_at, revoked_reason";

/** The scopes, what each lets a program do, and whether it needs a contributor (docs/tokens.md). */
export const SCOPES: { scope: string; what: string; writes: boolean }[] = [
  { scope: "runs:read", what: "read runs, their events, transcripts and action requests", writes: false },
  { scope: "agents:read", what: "read agents, their versions, tools and schedules", writes: false },
  { scope: "audit:read", what: "read and export the audit chain", writes: false },
  { scope: "runs:write", what: "start runs and mint their run tokens", writes: true },
  { scope: "tools:call", what: "propose tool calls in a run (the MCP endpoint)", writes: true },
  { scope: "webhooks:ingest", what: "deliver inbound webhooks", writes: true },
];

const REVOKED: Record<string, string> = {
  revoked: "Revoked",
  member_removed: "Revoked: owner left",
  role_lowered: "Revoked: owner's role lowered",
  leaked: "Revoked: found in public",
};

export function Tokens() {
  const org = useOrg();
  const api = useOrgApi();
  const contributes = useProjectsWhere("run_agents").length > 0;
  const [shown, setShown] = useState<string | null>(null);
  const tokens = useQuery({
    queryKey: ["tokens", org.id],
    queryFn: async () => (await api.run(api.from("personal_access_tokens").select(COLUMNS).order("created_at", { ascending: false }))) as Token[],
  });
  const directory = useQuery({
    queryKey: ["tokens", org.id, "directory"],
    queryFn: () => api.run(api.rpc("organization_directory")),
  });
  const act = useAct([["tokens", org.id]]);
  const me = directory.data?.find((d) => d.is_you)?.user_id;
  const owner = (id: string) => (id === me ? "You" : directory.data?.find((d) => d.user_id === id)?.email ?? "A former member");
  const project = (id: string | null) => (id ? org.permissions.projects.find((p) => p.id === id)?.name ?? "A project" : "Every project");
  const offered = SCOPES.filter((s) => contributes || !s.writes);

  function make(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const scopes = form.getAll("scope").map(String);
    act.run(async () => {
      const made = await api.run(api.rpc("create_personal_access_token", {
        p_name: String(form.get("name") ?? ""),
        p_scopes: scopes,
        p_expires_in_days: Number(form.get("expires")),
        ...(form.get("project") ? { p_project_id: String(form.get("project")) } : {}),
      }));
      setShown((made as { token: string }).token);
      return "Token made. Copy it now: it is shown only once.";
    });
  }

  async function revoke(token: Token) {
    const sure = await confirmAction({
      title: `Revoke “${token.name}”?`,
      body: <>Every program using {token.token_prefix}… stops at once, on its next request. A revoked token can't be used again: make a new one.</>,
      confirmLabel: "Revoke the token",
    });
    if (!sure) return;
    act.run(async () => {
      await api.run(api.rpc("revoke_personal_access_token", { p_token_id: token.id }));
      return `Token “${token.name}” revoked.`;
    });
  }

  const status = (t: Token) => {
    if (t.revoked_at) return <Text size="sm" c="red">{REVOKED[t.revoked_reason ?? ""] ?? "Revoked"}</Text>;
    if (new Date(t.expires_at) <= new Date()) return <Badge color="gray" variant="light">Expired</Badge>;
    return <Badge color="teal" variant="light">Live</Badge>;
  };

  return (
    <>
      <PageHeader title={`Access tokens in ${org.name}`}
        description="Personal access tokens for your programs: each with scopes, optionally one project, and an expiry. A program sends it as Authorization: Bearer gtp_…; it can never do more than its scopes and your current role allow." />
      <Outcome outcome={act.outcome} />
      {shown && (
        <Alert color="grape" title="Your new token: copy it now" mb="md">
          <Stack gap="xs">
            <Text size="sm">It is shown only this once. Gatehouse keeps only its SHA-256.</Text>
            <Group gap="sm" wrap="nowrap">
              <Code style={{ overflowWrap: "anywhere" }}>{shown}</Code>
              <CopyButton value={shown}>{({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? "Copied" : "Copy the token"}</Button>}</CopyButton>
            </Group>
          </Stack>
        </Alert>
      )}
      <Paper withBorder p="md" mb="lg" component="section" aria-labelledby="make-token">
        <Title order={2} size="h4" id="make-token" mb="xs">Make a token</Title>
        <Text size="sm" c="dimmed" mb="sm">A token is yours, not the organization's: it acts as you, and stops when you leave or your role no longer allows its scopes.</Text>
        <form onSubmit={make}>
          <Stack gap="sm">
            <SimpleGrid cols={{ base: 1, sm: 3 }}>
              <TextInput name="name" label="Token name" description="What uses it, e.g. CI deploys" required maxLength={100} />
              <NativeSelect name="project" label="Project" description="Bind it to one, or to every project you see"
                data={[{ value: "", label: "Every project" }, ...org.permissions.projects.map((p) => ({ value: p.id, label: p.name }))]} />
              <NativeSelect name="expires" label="Expires in" description="Every token expires" defaultValue="90"
                data={["7", "30", "90", "180", "366"].map((d) => ({ value: d, label: `${d} days` }))} />
            </SimpleGrid>
            <Checkbox.Group label="Scopes" description={contributes ? "There is no scope for everything: pick what the program needs." : "Your role allows the reading scopes."}
              withAsterisk>
              <SimpleGrid cols={{ base: 1, sm: 2 }} mt="xs">
                {offered.map((s) => <Checkbox key={s.scope} name="scope" value={s.scope} label={<><Code>{s.scope}</Code> {s.what}</>} />)}
              </SimpleGrid>
            </Checkbox.Group>
            <Group><Button type="submit" loading={act.busy}>Make the token</Button></Group>
          </Stack>
        </form>
      </Paper>
      <Title order={2} size="h4" mb="sm">Tokens</Title>
      <QueryState query={tokens} empty="No tokens yet." isEmpty={(rows) => rows.length === 0}>
        {(rows) => (
          <DataTable
            label="Tokens"
            rows={rows}
            rowKey={(t) => t.id}
            initialSort={{ key: "created", descending: true }}
            minWidth={900}
            columns={[
              { key: "name", header: "Name", sort: (t) => t.name, cell: (t) => <Stack gap={0}><Text size="sm" fw={500}>{t.name}</Text><Text size="xs" c="dimmed">{t.token_prefix}…</Text></Stack> },
              { key: "owner", header: "Owner", sort: (t) => owner(t.user_id), cell: (t) => owner(t.user_id) },
              { key: "scopes", header: "Scopes", cell: (t) => <Group gap={4}>{t.scopes.map((s) => <Badge key={s} variant="outline" size="sm" tt="none">{s}</Badge>)}</Group> },
              { key: "project", header: "Project", sort: (t) => project(t.project_id), cell: (t) => project(t.project_id) },
              { key: "created", header: "Made", sort: (t) => t.created_at, cell: (t) => when(t.created_at) },
              { key: "expires", header: "Expires", sort: (t) => t.expires_at, cell: (t) => when(t.expires_at) },
              { key: "used", header: "Last used", sort: (t) => t.last_used_at ?? "", cell: (t) => (t.last_used_at ? when(t.last_used_at) : "Never") },
              { key: "status", header: "Status", sort: (t) => (t.revoked_at ? 2 : new Date(t.expires_at) <= new Date() ? 1 : 0), cell: status },
              {
                key: "actions", header: "Actions",
                cell: (t) => (!t.revoked_at && new Date(t.expires_at) > new Date() && (t.user_id === me || org.permissions.organization.manage_members)
                  ? <Button size="xs" color="red" variant="light" onClick={() => void revoke(t)} aria-label={`Revoke ${t.name} (${t.token_prefix})`}>Revoke</Button>
                  : null),
              },
            ]}
          />
        )}
      </QueryState>
    </>
  );
}
