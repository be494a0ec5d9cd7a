/**
 * The organization's models: usage by day, agent and model; limits and budgets (the allowed
 * models chosen from the catalog, never typed); the agents' caps and the budget events; its own
 * vendor keys (write-only: verified with the vendor, kept in Vault, shown by their hint); and a
 * playground that calls the model gateway as the signed-in member. Who may change limits and keys
 * is the database's answer (my_permissions: manage_models); everyone else reads, with no write
 * control. The database and the gateway still refuse the rest.
 */
import { Button, Checkbox, Code, Group, NativeSelect, Paper, PasswordInput, SimpleGrid, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import type { Database } from "../../supabase/database.types.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, QueryState, useAct, useOrgApi } from "./kit.tsx";
import { describeError } from "./api.ts";
import { useOrg, when } from "./ui.tsx";

type Limits = Database["public"]["Tables"]["model_limits"]["Row"];
type Provider = Database["public"]["Enums"]["model_provider"];
type Catalog = Database["public"]["Functions"]["model_catalog"]["Returns"];
interface Agent {
  id: string;
  name: string;
}

/** Micro-units (millionths of a dollar) as dollars. */
const dollars = (micro: number | null | undefined) => (micro == null ? "—" : `$${(micro / 1e6).toFixed(micro < 10_000 ? 6 : 2)}`);
const toMicro = (value: FormDataEntryValue | null) => (value === null || String(value).trim() === "" ? null : Math.round(Number(value) * 1e6));

export function Models({ orgId, agents }: { orgId: string; agents: Agent[] }) {
  const org = useOrg();
  const api = useOrgApi();
  const may = org.permissions.organization.manage_models;
  const since = new Date(Date.now() - 30 * 86400_000).toISOString().slice(0, 10);
  const usage = useQuery({
    queryKey: ["models", orgId, "usage"],
    queryFn: () => api.run(api.from("model_usage_daily").select("*").gte("day", since).order("day", { ascending: false })),
  });
  const limits = useQuery({
    queryKey: ["models", orgId, "limits"],
    queryFn: async () => ({ row: await api.run(api.from("model_limits").select("*").maybeSingle()) as Limits | null }),
  });
  const caps = useQuery({ queryKey: ["models", orgId, "caps"], queryFn: () => api.run(api.from("model_caps").select("*")) });
  const events = useQuery({
    queryKey: ["models", orgId, "events"],
    queryFn: () => api.run(api.from("model_budget_events").select("*").order("period", { ascending: false })),
  });
  const keys = useQuery({
    queryKey: ["models", orgId, "keys"],
    queryFn: () => api.run(api.from("model_provider_keys").select("provider, key_hint, base_url, verified_at").order("provider")),
  });
  const catalog = useQuery({ queryKey: ["model-catalog"], queryFn: () => api.run(api.rpc("model_catalog")) as Promise<Catalog>, staleTime: 5 * 60_000 });
  const act = useAct([["models", orgId]]);
  const [answer, setAnswer] = useState<string | null>(null);
  const agentName = (id: string | null) => agents.find((a) => a.id === id)?.name ?? id ?? "the project";

  function saveLimits(current: Limits | null, event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const models = form.getAll("allowed_models").map(String);
    const values = {
      allowed_models: models.length ? models : null,
      requests_per_minute: Number(form.get("requests_per_minute")),
      burst: Number(form.get("burst")),
      monthly_budget_micro: toMicro(form.get("monthly_budget")) ?? 0,
      soft_budget_micro: toMicro(form.get("soft_budget")),
      default_max_tokens: Number(form.get("default_max_tokens")),
    };
    act.run(async () => {
      const table = api.from("model_limits");
      const written = current
        ? table.update({ ...values, updated_at: new Date().toISOString() }).eq("org_id", orgId)
        : table.insert({ org_id: orgId, ...values });
      const rows = await api.run(written.select("org_id"));
      // RLS answers an update it doesn't allow with no rows, not an error.
      return rows.length ? "Limits saved." : "Nothing was saved: the database let your role change no limits.";
    });
  }

  function saveKey(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const baseUrl = String(form.get("base_url") ?? "").trim();
    // The key field is cleared whatever happens: it is never shown again.
    formElement.reset();
    act.run(async () => {
      await api.invoke("model-gateway/keys", { provider: form.get("provider"), api_key: form.get("api_key"), ...(baseUrl ? { base_url: baseUrl } : {}) });
      return "Key verified with the provider and saved.";
    });
  }

  async function removeKey(provider: Provider) {
    if (!(await confirmAction({
      title: `Remove the ${provider} key?`,
      body: <>It is deleted from Vault. Calls to {provider} models use the platform's key from then on, billed to the organization, or are refused where the platform has none.</>,
      confirmLabel: "Remove the key",
    }))) return;
    act.run(async () => (await api.run(api.rpc("remove_model_provider_key", { p_provider: provider })), `The ${provider} key is removed; calls use the platform's.`));
  }

  async function play(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setAnswer("…");
    try {
      // The gateway takes the agent from X-Agent-Id, beside the organization.
      const data = await api.invoke<{ choices: { message: { content: string } }[] }>("model-gateway/v1/chat/completions",
        { model: form.get("model"), messages: [{ role: "user", content: form.get("prompt") }], max_tokens: 256 },
        { "x-agent-id": String(form.get("agent")) });
      setAnswer(data.choices[0].message.content);
    } catch (e) {
      setAnswer(describeError(e));
    }
  }

  const modelNames = (catalog.data ?? []).map((m) => m.model);

  return (
    <Stack gap="xl" component="section" aria-label="Models">
      <Outcome outcome={act.outcome} />

      <section aria-labelledby="usage-heading">
        <Title order={2} size="h3" id="usage-heading" mb="sm">Usage, last 30 days</Title>
        <QueryState query={usage} empty="No model calls in the last 30 days.">
          {(rows) => (
            <DataTable
              label="Model usage"
              rows={rows}
              rowKey={(u) => `${u.day}-${u.agent_id}-${u.model}-${u.key_source}`}
              minWidth={720}
              columns={[
                { key: "day", header: "Day", cell: (u) => u.day, sort: (u) => u.day },
                { key: "agent", header: "Agent", cell: (u) => agentName(u.agent_id), sort: (u) => agentName(u.agent_id) },
                { key: "model", header: "Model", cell: (u) => u.model, sort: (u) => u.model },
                { key: "key", header: "Key", cell: (u) => u.key_source, sort: (u) => u.key_source },
                { key: "calls", header: "Calls", cell: (u) => `${u.calls}${u.unsuccessful_calls ? ` (${u.unsuccessful_calls} unsuccessful)` : ""}`, sort: (u) => u.calls },
                { key: "tokens", header: "Tokens in / out", cell: (u) => `${u.input_tokens} / ${u.output_tokens}`, sort: (u) => u.input_tokens },
                { key: "cost", header: "Cost", cell: (u) => dollars(u.cost_micro), sort: (u) => u.cost_micro },
              ]}
            />
          )}
        </QueryState>
      </section>

      <section aria-labelledby="limits-heading">
        <Title order={2} size="h3" id="limits-heading" mb="sm">Limits and budgets</Title>
        <QueryState query={limits} empty="" isEmpty={() => false}>
          {({ row }) => may ? (
            <Paper withBorder p="md" radius="md" component="form" aria-label="Model limits" key={JSON.stringify(row)} onSubmit={(e: FormEvent<HTMLFormElement>) => saveLimits(row, e)}>
              <Checkbox.Group label="Allowed models" description="From the catalog; none ticked allows every model" defaultValue={row?.allowed_models ?? []}>
                <Group mt="xs" gap="md">
                  {modelNames.map((m) => <Checkbox key={m} name="allowed_models" value={m} label={m} />)}
                </Group>
              </Checkbox.Group>
              <SimpleGrid cols={{ base: 1, sm: 3 }} mt="md">
                <TextInput name="requests_per_minute" label="Calls per minute" type="number" min={1} defaultValue={row?.requests_per_minute ?? 600} />
                <TextInput name="burst" label="Burst" type="number" min={1} defaultValue={row?.burst ?? 60} />
                <TextInput name="default_max_tokens" label="Default max tokens" type="number" min={1} defaultValue={row?.default_max_tokens ?? 1024} />
                <TextInput name="monthly_budget" label="Monthly budget ($)" type="number" min={0} step="0.01" defaultValue={(row?.monthly_budget_micro ?? 50_000_000) / 1e6} />
                <TextInput name="soft_budget" label="Soft threshold ($)" type="number" min={0} step="0.01" defaultValue={row?.soft_budget_micro == null ? "" : row.soft_budget_micro / 1e6} />
              </SimpleGrid>
              <Button type="submit" mt="md" loading={act.busy}>Save limits</Button>
            </Paper>
          ) : (
            <Paper withBorder p="md" radius="md" aria-label="Model limits" component="section">
              <Text size="sm">Allowed models: {row?.allowed_models?.join(", ") ?? "every model of the catalog"}</Text>
              <Text size="sm">{row?.requests_per_minute ?? 600} calls a minute (burst {row?.burst ?? 60}), at most {row?.default_max_tokens ?? 1024} tokens an answer unless asked</Text>
              <Text size="sm">Monthly budget {dollars(row?.monthly_budget_micro ?? 50_000_000)}{row?.soft_budget_micro != null ? `, warned at ${dollars(row.soft_budget_micro)}` : ""}</Text>
            </Paper>
          )}
        </QueryState>
        <QueryState query={caps} empty={<Text size="sm" c="dimmed">No project or agent has limits of its own.</Text>} rows={1}>
          {(list) => (
            <Stack component="ul" aria-label="Caps" gap={4} mt="md" style={{ paddingLeft: "1.25rem" }}>
              {list.map((c) => (
                <li key={c.id}><Text size="sm">
                  {agentName(c.agent_id)}: monthly {dollars(c.monthly_budget_micro)}, per run {dollars(c.run_budget_micro)}
                  {c.allowed_models ? `, models ${c.allowed_models.join(", ")}` : ""}{c.requests_per_minute ? `, ${c.requests_per_minute}/min` : ""}
                </Text></li>
              ))}
            </Stack>
          )}
        </QueryState>
        {(events.data?.length ?? 0) > 0 && (
          <Stack component="ul" aria-label="Budget events" gap={4} mt="md" style={{ paddingLeft: "1.25rem" }}>
            {events.data!.map((e) => <li key={e.id}><Text size="sm">{e.period}: spend {dollars(e.spent_micro)} passed the soft threshold {dollars(e.threshold_micro)}</Text></li>)}
          </Stack>
        )}
      </section>

      <section aria-labelledby="keys-heading">
        <Title order={2} size="h3" id="keys-heading" mb="sm">Provider keys</Title>
        <QueryState query={keys} empty={<>No key of the organization's own: calls use the platform's keys.</>} rows={1}>
          {(list) => (
            <Stack component="ul" aria-label="Provider keys" gap="xs" style={{ listStyle: "none", padding: 0 }}>
              {list.map((k) => (
                <Paper component="li" key={k.provider} withBorder p="sm" radius="md">
                  <Group justify="space-between" wrap="wrap">
                    <Text size="sm"><strong>{k.provider}</strong> <Code>{k.key_hint}</Code> {k.base_url ? `at ${k.base_url}` : ""} <Text span size="xs" c="dimmed">verified {when(k.verified_at)}</Text></Text>
                    {may && <Button size="xs" variant="outline" color="red" onClick={() => void removeKey(k.provider)}>Remove {k.provider} key</Button>}
                  </Group>
                </Paper>
              ))}
            </Stack>
          )}
        </QueryState>
        {may && (
          <Paper withBorder p="md" radius="md" mt="md" component="form" aria-label="Save a provider key" autoComplete="off" onSubmit={saveKey}>
            <SimpleGrid cols={{ base: 1, sm: 3 }}>
              <NativeSelect name="provider" label="Provider" data={["openai", "anthropic"]} />
              <PasswordInput name="api_key" label="API key" required autoComplete="off" />
              <TextInput name="base_url" label="Base URL (optional)" type="url" placeholder="https://…/v1" />
            </SimpleGrid>
            <Text size="xs" c="dimmed" mt="xs">The key is verified with the provider, kept in Vault, and never shown again: only its last characters.</Text>
            <Button type="submit" mt="md" loading={act.busy}>Verify and save key</Button>
          </Paper>
        )}
      </section>

      {org.permissions.projects.some((p) => p.run_agents) && (
        <section aria-labelledby="playground-heading">
          <Title order={2} size="h3" id="playground-heading" mb="sm">Playground</Title>
          <Paper withBorder p="md" radius="md" component="form" aria-label="Playground" onSubmit={play}>
            <SimpleGrid cols={{ base: 1, sm: 3 }}>
              <NativeSelect name="agent" label="Agent" data={agents.map((a) => ({ value: a.id, label: a.name }))} />
              <NativeSelect name="model" label="Model" data={modelNames.length ? modelNames : ["gpt-4o-mini"]} defaultValue={limits.data?.row?.allowed_models?.[0] ?? "gpt-4o-mini"} />
              <TextInput name="prompt" label="Prompt" required />
            </SimpleGrid>
            <Button type="submit" mt="md">Send</Button>
            {answer !== null && <Text mt="md" aria-label="Answer" role="status">{answer}</Text>}
          </Paper>
        </section>
      )}
    </Stack>
  );
}
