/**
 * Inbound webhooks (docs/webhooks.md): each subscription starts runs of one agent when a signed
 * delivery arrives with a personal access token. A project admin makes one (its v1 signing secret
 * shown once, with a copy button; or v1a with the sender's Ed25519 public key), rotates its secret
 * with a grace period (the new secret shown once), and turns it off (confirmed: deliveries are
 * refused from then on). Every member of the project reads the subscriptions and the recent
 * deliveries: each accepted one with its run, each refusal with its code and how many it stands for.
 */
import { Alert, Anchor, Badge, Button, Code, CopyButton, Group, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link } from "react-router";
import type { Database } from "../../supabase/database.types.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi, useProjectsWhere } from "./kit.tsx";
import { useOrg, when } from "./ui.tsx";

type Subscription = Omit<Database["public"]["Tables"]["webhook_subscriptions"]["Row"], "secret_id" | "previous_secret_id">;
type Delivery = Database["public"]["Tables"]["webhook_deliveries"]["Row"];
const COLUMNS = "id, org_id, project_id, agent_id, name, scheme, public_key, previous_public_key, previous_valid_until, key_hint, created_by, created_at, rotated_at, disabled_at";

/** A delivery's outcome in words (the inbound function's stable codes; an unknown one is shown as is). */
const OUTCOMES: Record<string, string> = {
  accepted: "Accepted: a run started",
  inbound_signature_invalid: "Refused: the signature does not verify",
  inbound_timestamp_too_old: "Refused: the timestamp is more than 5 minutes old",
  inbound_timestamp_too_new: "Refused: the timestamp is more than 5 minutes ahead",
  inbound_timestamp_invalid: "Refused: the timestamp is not whole seconds",
  inbound_headers_missing: "Refused: Standard Webhooks headers missing",
  inbound_replayed: "Refused: a webhook-id delivered before",
  inbound_token_project: "Refused: the token is not bound to this project",
  token_invalid: "Refused: the token is not valid",
  token_revoked: "Refused: the token was revoked",
  token_expired: "Refused: the token has expired",
  token_scope: "Refused: the token lacks webhooks:ingest",
  body_too_large: "Refused: the body is over 48 KiB",
  unsupported_media_type: "Refused: the body is not JSON",
  invalid_json: "Refused: the body is not valid JSON",
  run_limit_reached: "Refused: too many runs going at once",
  agent_disabled: "Refused: the agent is turned off",
  agent_not_published: "Refused: the agent has no published version",
};

const GRACE = [["0", "No overlap"], ["60", "1 hour"], ["1440", "1 day"], ["10080", "1 week"]];

export function Webhooks({ apiUrl }: { apiUrl: string }) {
  const org = useOrg();
  const api = useOrgApi();
  const managed = useProjectsWhere("manage_project");
  const [shown, setShown] = useState<{ secret: string; url: string } | null>(null);
  const subscriptions = useQuery({
    queryKey: ["webhooks", org.id, "subscriptions"],
    queryFn: async () => (await api.run(api.from("webhook_subscriptions").select(COLUMNS).order("created_at", { ascending: false }))) as Subscription[],
  });
  const deliveries = useQuery({
    queryKey: ["webhooks", org.id, "deliveries"],
    queryFn: () => api.run(api.from("webhook_deliveries").select("*").order("last_at", { ascending: false }).limit(100)) as Promise<Delivery[]>,
  });
  const agents = useQuery({
    queryKey: ["webhooks", org.id, "agents"],
    queryFn: () => api.run(api.from("agents").select("id, name, project_id").order("name")),
  });
  const act = useAct([["webhooks", org.id]]);

  const endpoint = (id: string) => `${apiUrl.replace(/\/$/, "")}/functions/v1/inbound/${id}`;
  const agentName = (id: string) => agents.data?.find((a) => a.id === id)?.name ?? "An agent";
  const subscriptionName = (id: string) => subscriptions.data?.find((s) => s.id === id)?.name ?? "A subscription";
  const live = (subscriptions.data ?? []).filter((s) => !s.disabled_at && managed.includes(s.project_id));
  const offerable = (agents.data ?? []).filter((a) => managed.includes(a.project_id));

  function make(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const scheme = String(form.get("scheme"));
    act.run(async () => {
      const made = await api.run(api.rpc("create_webhook_subscription", {
        p_agent_id: String(form.get("agent")),
        p_name: String(form.get("name") ?? ""),
        p_scheme: scheme,
        ...(scheme === "v1a" ? { p_public_key: String(form.get("public_key") ?? "").trim() } : {}),
      })) as { id: string; secret?: string };
      setShown(made.secret ? { secret: made.secret, url: endpoint(made.id) } : null);
      return made.secret ? "Subscription made. Copy its signing secret now: it is shown only once." : "Subscription made: deliveries signed with your key are taken.";
    });
  }

  function rotate(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sub = live.find((s) => s.id === form.get("subscription"));
    if (!sub) return;
    const grace = Number(form.get("grace"));
    void confirmAction({
      title: `Rotate the signing ${sub.scheme === "v1" ? "secret" : "key"} of “${sub.name}”?`,
      body: grace === 0
        ? <>The old {sub.scheme === "v1" ? "secret" : "key"} stops verifying at once: deliveries signed with it are refused until the sender switches.</>
        : <>The old {sub.scheme === "v1" ? "secret" : "key"} keeps verifying for {GRACE.find(([v]) => Number(v) === grace)?.[1].toLowerCase()}, then only the new one does.</>,
      confirmLabel: "Rotate",
    }).then((sure) => {
      if (!sure) return;
      act.run(async () => {
        const rotated = await api.run(api.rpc("rotate_webhook_secret", {
          p_subscription_id: sub.id, p_grace_minutes: grace,
          ...(sub.scheme === "v1a" ? { p_public_key: String(form.get("public_key") ?? "").trim() } : {}),
        })) as { secret?: string };
        setShown(rotated.secret ? { secret: rotated.secret, url: endpoint(sub.id) } : null);
        return rotated.secret ? "Secret rotated. Copy the new one now: it is shown only once." : "Key rotated.";
      });
    });
  }

  async function turnOff(sub: Subscription) {
    const sure = await confirmAction({
      title: `Turn “${sub.name}” off?`,
      body: <>Deliveries to it are refused from now on, and no more runs of {agentName(sub.agent_id)} start from it. Runs it started go on.</>,
      confirmLabel: "Turn off",
    });
    if (!sure) return;
    act.run(async () => {
      await api.run(api.rpc("disable_webhook_subscription", { p_subscription_id: sub.id }));
      return `“${sub.name}” turned off.`;
    });
  }

  return (
    <>
      <PageHeader title={`Inbound webhooks in ${org.name}`}
        description="Signed deliveries that start an agent's runs: each needs a personal access token with webhooks:ingest for the project and a Standard Webhooks signature. See docs/webhooks.md for the signing recipe." />
      <Outcome outcome={act.outcome} />
      {shown && (
        <Alert color="grape" title="The signing secret: copy it now" mb="md">
          <Stack gap="xs">
            <Text size="sm">It is shown only this once, and kept in Vault. The sender signs each delivery with it and posts to:</Text>
            <Code style={{ overflowWrap: "anywhere" }}>{shown.url}</Code>
            <Group gap="sm" wrap="nowrap">
              <Code style={{ overflowWrap: "anywhere" }}>{shown.secret}</Code>
              <CopyButton value={shown.secret}>{({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? "Copied" : "Copy the secret"}</Button>}</CopyButton>
            </Group>
          </Stack>
        </Alert>
      )}
      {offerable.length > 0 && (
        <SimpleGrid cols={{ base: 1, md: 2 }} mb="lg">
          <Paper withBorder p="md" component="section" aria-labelledby="make-subscription">
            <Title order={2} size="h4" id="make-subscription" mb="sm">Make a subscription</Title>
            <form onSubmit={make}>
              <Stack gap="sm">
                <TextInput name="name" label="Subscription name" description="Who sends, e.g. Helpdesk tickets" required maxLength={100} />
                <NativeSelect name="agent" label="Agent it starts" data={offerable.map((a) => ({ value: a.id, label: a.name }))} />
                <NativeSelect name="scheme" label="Signature" data={[
                  { value: "v1", label: "v1: HMAC-SHA256 with a secret Gatehouse makes" },
                  { value: "v1a", label: "v1a: Ed25519 with the sender's key" },
                ]} />
                <TextInput name="public_key" label="Sender's public key (v1a only)" placeholder="whpk_…" />
                <Group><Button type="submit" loading={act.busy}>Make the subscription</Button></Group>
              </Stack>
            </form>
          </Paper>
          {live.length > 0 && (
            <Paper withBorder p="md" component="section" aria-labelledby="rotate-secret">
              <Title order={2} size="h4" id="rotate-secret" mb="sm">Rotate a signing secret</Title>
              <form onSubmit={rotate}>
                <Stack gap="sm">
                  <NativeSelect name="subscription" label="Subscription to rotate" data={live.map((s) => ({ value: s.id, label: `${s.name} (${s.scheme})` }))} />
                  <NativeSelect name="grace" label="The old one keeps verifying for" defaultValue="60" data={GRACE.map(([value, label]) => ({ value, label }))} />
                  <TextInput name="public_key" label="New public key (v1a only)" placeholder="whpk_…" />
                  <Group><Button type="submit" variant="light" loading={act.busy}>Rotate</Button></Group>
                </Stack>
              </form>
            </Paper>
          )}
        </SimpleGrid>
      )}
      <Title order={2} size="h4" mb="sm">Subscriptions</Title>
      <QueryState query={subscriptions} empty="No inbound webhooks yet." isEmpty={(rows) => rows.length === 0}>
        {(rows) => (
          <DataTable
            label="Webhook subscriptions"
            rows={rows}
            rowKey={(s) => s.id}
            initialSort={{ key: "created", descending: true }}
            minWidth={960}
            columns={[
              { key: "name", header: "Name", sort: (s) => s.name, cell: (s) => <Stack gap={0}><Text size="sm" fw={500}>{s.name}</Text><Text size="xs" c="dimmed">{s.key_hint}…</Text></Stack> },
              { key: "agent", header: "Agent", sort: (s) => agentName(s.agent_id), cell: (s) => <Anchor component={Link} to={`/o/${org.id}/agents/${s.agent_id}`}>{agentName(s.agent_id)}</Anchor> },
              { key: "scheme", header: "Signature", sort: (s) => s.scheme, cell: (s) => <Badge variant="outline" tt="none">{s.scheme}</Badge> },
              {
                key: "url", header: "Endpoint",
                cell: (s) => <CopyButton value={endpoint(s.id)}>{({ copied, copy }) => <Button size="xs" variant="subtle" onClick={copy} aria-label={`Copy URL of ${s.name}`}>{copied ? "Copied" : "Copy URL"}</Button>}</CopyButton>,
              },
              { key: "created", header: "Made", sort: (s) => s.created_at, cell: (s) => when(s.created_at) },
              {
                key: "rotated", header: "Rotated", sort: (s) => s.rotated_at ?? "",
                cell: (s) => (s.rotated_at ? <Stack gap={0}><Text size="sm">{when(s.rotated_at)}</Text>
                  {s.previous_valid_until && new Date(s.previous_valid_until) > new Date() && <Text size="xs" c="dimmed">old one until {when(s.previous_valid_until)}</Text>}</Stack> : "Never"),
              },
              { key: "status", header: "Status", sort: (s) => (s.disabled_at ? 1 : 0), cell: (s) => (s.disabled_at ? <Badge color="gray" variant="light">Off</Badge> : <Badge color="teal" variant="light">Live</Badge>) },
              {
                key: "actions", header: "Actions",
                cell: (s) => (!s.disabled_at && managed.includes(s.project_id)
                  ? <Button size="xs" color="red" variant="light" onClick={() => void turnOff(s)} aria-label={`Turn off ${s.name}`}>Turn off</Button>
                  : null),
              },
            ]}
          />
        )}
      </QueryState>
      <Title order={2} size="h4" mt="lg" mb="sm">Recent deliveries</Title>
      <QueryState query={deliveries} empty="No deliveries yet." isEmpty={(rows) => rows.length === 0}>
        {(rows) => (
          <DataTable
            label="Recent deliveries"
            rows={rows}
            rowKey={(d) => d.id}
            initialSort={{ key: "last", descending: true }}
            minWidth={860}
            columns={[
              { key: "last", header: "When", sort: (d) => d.last_at, cell: (d) => when(d.last_at) },
              { key: "subscription", header: "Subscription", sort: (d) => subscriptionName(d.subscription_id), cell: (d) => subscriptionName(d.subscription_id) },
              {
                key: "outcome", header: "Outcome", sort: (d) => d.outcome,
                cell: (d) => <Stack gap={0}><Text size="sm" c={d.outcome === "accepted" ? undefined : "red"}>{OUTCOMES[d.outcome] ?? d.outcome}</Text>
                  {d.outcome !== "accepted" && <Text size="xs" c="dimmed">{d.outcome}{d.times > 1 ? `, ${d.times} times in a minute` : ""}</Text>}</Stack>,
              },
              { key: "id", header: "webhook-id", cell: (d) => (d.webhook_id ? <Code>{d.webhook_id}</Code> : "") },
              { key: "run", header: "Run", cell: (d) => (d.run_id ? <Anchor component={Link} to={`/o/${org.id}/runs/${d.run_id}`}>Open the run</Anchor> : "") },
            ]}
          />
        )}
      </QueryState>
    </>
  );
}
