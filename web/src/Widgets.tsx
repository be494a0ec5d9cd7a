/**
 * The organization's widgets: each agent's key (turn on, origins, budget, rates, proof of work,
 * rotate, turn off), the transcripts, and the review queue with each item's history. What the
 * signed-in person may change comes from the database (my_permissions: project admins manage keys,
 * contributors review), and the database still refuses the rest. Rotating a key and turning a
 * widget off stop live chats, so both confirm in a dialog that says so; rotating, which can't be
 * undone, asks for the agent's name. A new or rotated key is shown once, here, with a copy button.
 * A review item links to its conversation's transcript.
 *
 * Each key shows the two lines that put it on a site (the console serves widget.js itself; the
 * embed talks to the API the console names), with a copy button, and the key's recent refusals
 * (widget_refusals: an origin that isn't allowed, with the origin that tried; a page still on a
 * rotated key; a spent budget), which the visitor never sees: they only read "Chat is not
 * available here."
 */
import { Anchor, Badge, Button, Checkbox, CopyButton, Group, Alert, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput, Title, Code, Timeline } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import type { Database } from "../../supabase/database.types.ts";
import { describeError } from "./api.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, QueryState, useAct, useOrgApi, useProjectsWhere } from "./kit.tsx";
import { when } from "./ui.tsx";

type Key = Omit<Database["public"]["Tables"]["widget_keys"]["Row"], "key_sha256">;
type Refusal = Database["public"]["Tables"]["widget_refusals"]["Row"];
type Item = Database["public"]["Tables"]["review_items"]["Row"];
type Status = Database["public"]["Enums"]["review_status"];
interface Agent {
  id: string;
  name: string;
}

const KEY_COLUMNS = "id, org_id, project_id, agent_id, key_prefix, allowed_origins, monthly_budget_micro, requests_per_minute, visitor_requests_per_minute, proof_of_work_bits, hold_answers, version, created_by, created_at, rotated_at, disabled_at";
const NEXT: Record<Status, Status[]> = { open: ["in_review"], in_review: ["in_review", "resolved", "dismissed"], resolved: [], dismissed: [] };

/** A refusal's code in words (the widget function's stable codes; an unknown one is shown as is). */
const REFUSALS: Record<string, string> = {
  widget_origin_not_allowed: "A site the key doesn't allow tried to open the chat",
  widget_key_rotated: "A page still uses the key from before its rotation",
  widget_key_disabled: "A page still uses the widget after it was turned off",
  model_budget_exhausted: "The budget is spent",
  credits_exhausted: "The organization's prepaid credits are spent",
  widget_rate_limited: "Too many messages (the key's or a visitor's rate)",
  widget_model_unavailable: "The agent's model is not available to it",
  model_not_allowed: "The agent's model is not one the organization allows",
  agent_disabled: "The agent is turned off",
};

/** The two lines that put a key's chat on a page: the console serves widget.js, the embed calls the API. */
export function snippet(key: string, apiUrl: string): string {
  return `<script src="${location.origin}/widget.js" defer></script>\n<gatehouse-chat data-key="${key}" data-api="${apiUrl}"></gatehouse-chat>`;
}

const origins = (value: FormDataEntryValue | null) => String(value ?? "").split(/[\s,]+/).map((o) => o.trim()).filter(Boolean);

export function Widgets({ orgId, agents, userId, apiUrl }: { orgId: string; agents: Agent[]; userId: string; apiUrl: string }) {
  const api = useOrgApi();
  const managed = useProjectsWhere("manage_widgets");
  const reviewing = useProjectsWhere("review_widgets");
  const [open, setOpen] = useState<string | null>(null);
  const [shown, setShown] = useState<string | null>(null);
  const keys = useQuery({
    queryKey: ["widgets", orgId, "keys"],
    queryFn: async () => (await api.run(api.from("widget_keys").select(KEY_COLUMNS).order("created_at", { ascending: false }))) as Key[],
  });
  const refusals = useQuery({
    queryKey: ["widgets", orgId, "refusals"],
    queryFn: () => api.run(api.from("widget_refusals").select("*").order("last_at", { ascending: false }).limit(200)) as Promise<Refusal[]>,
  });
  const conversations = useQuery({
    queryKey: ["widgets", orgId, "conversations"],
    queryFn: () => api.run(api.from("widget_conversations").select("*").order("last_message_at", { ascending: false }).limit(50)),
  });
  const queue = useQuery({
    queryKey: ["widgets", orgId, "queue"],
    queryFn: async () => {
      const [items, history] = await Promise.all([
        api.run(api.from("review_items").select("*").order("created_at", { ascending: false }).limit(100)),
        api.run(api.from("review_item_events").select("*").order("created_at")),
      ]);
      return { items, history };
    },
  });
  const messages = useQuery({
    queryKey: ["widgets", orgId, "messages", open],
    queryFn: () => api.run(api.from("widget_messages").select("*").eq("conversation_id", open!).order("created_at")),
    enabled: open !== null,
  });
  const act = useAct([["widgets", orgId]]);

  const agentName = (id: string) => agents.find((a) => a.id === id)?.name ?? id;
  const live = (keys.data ?? []).filter((k) => !k.disabled_at);
  const canManage = (k: Key) => managed.includes(k.project_id);
  const offerable = agents.filter((a) => !live.some((k) => k.agent_id === a.id));

  function turnOn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    act.run(async () => {
      const made = await api.run(api.rpc("create_widget_key", { p_agent_id: String(form.get("agent")), p_allowed_origins: origins(form.get("origins")) }));
      setShown((made as { key: string }).key);
      return "Widget turned on. Copy the key now: it is shown only once.";
    });
  }

  async function rotate(key: Key) {
    const where = key.allowed_origins.length ? key.allowed_origins.join(", ") : "its sites";
    const sure = await confirmAction({
      title: "Rotate the widget key?",
      body: <>Rotating stops every open chat on {where} at once, and the old key stops working. Put the new key on the page before visitors chat again. It is shown once.</>,
      confirmLabel: "Rotate the key",
      typeToConfirm: agentName(key.agent_id),
    });
    if (!sure) return;
    act.run(async () => {
      const made = await api.run(api.rpc("rotate_widget_key", { p_key_id: key.id }));
      setShown((made as { key: string }).key);
      return "Key rotated: the old key and its sessions stopped. Copy the new key now.";
    });
  }

  async function turnOff(key: Key) {
    const sure = await confirmAction({
      title: "Turn the widget off?",
      body: <>The chat disappears from {key.allowed_origins.join(", ") || "its sites"} and every open conversation ends. Turning it on again makes a new key.</>,
      confirmLabel: "Turn off",
    });
    if (!sure) return;
    act.run(async () => {
      await api.run(api.rpc("disable_widget_key", { p_key_id: key.id }));
      setShown(null);
      return "Widget turned off.";
    });
  }

  function saveKey(key: Key, event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    act.run(async () => {
      const rows = await api.run(api.from("widget_keys").update({
        allowed_origins: origins(form.get("origins")),
        monthly_budget_micro: Math.round(Number(form.get("budget")) * 1e6),
        requests_per_minute: Number(form.get("rpm")),
        visitor_requests_per_minute: Number(form.get("visitor_rpm")),
        proof_of_work_bits: Number(form.get("pow")),
        hold_answers: form.get("hold") === "on",
      }).eq("id", key.id).select("id"));
      return rows.length ? "Widget settings saved." : "Nothing was saved: the database let your role change no widget.";
    });
  }

  function move(item: Item, status: Status) {
    act.run(async () => {
      await api.run(api.rpc("change_review_status", { p_item_id: item.id, p_status: status, p_assignee: userId }));
      return `Moved to ${status.replace("_", " ")}.`;
    });
  }

  return (
    <Stack gap="xl" component="section" aria-label="Widgets">
      <div>
        <Outcome outcome={act.outcome} />
        {shown && (
          <Alert color="grape" title="Copy the key now: you won't see it again" mb="md">
            <Group gap="sm" wrap="nowrap">
              <Code aria-label="New widget key" style={{ wordBreak: "break-all" }}>{shown}</Code>
              <CopyButton value={shown}>
                {({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? "Copied" : "Copy"}</Button>}
              </CopyButton>
            </Group>
            <Text size="sm" mt="sm">Put these two lines on each allowed site, where the chat should appear:</Text>
            <Group gap="sm" wrap="nowrap" align="flex-start" mt={4}>
              <Code block aria-label="Embed snippet with the new key" style={{ whiteSpace: "pre-wrap", wordBreak: "break-all", flex: 1 }}>{snippet(shown, apiUrl)}</Code>
              <CopyButton value={snippet(shown, apiUrl)}>
                {({ copied, copy }) => <Button size="xs" variant="light" onClick={copy}>{copied ? "Copied" : "Copy the snippet"}</Button>}
              </CopyButton>
            </Group>
            <Text size="xs" mt="xs">Only its hash is kept. If it is lost, rotate the key.</Text>
          </Alert>
        )}
      </div>

      <div>
        <Title order={2} size="h3" mb="sm">Widget keys</Title>
        <QueryState query={keys} empty="No widget is on: turn one on below." isEmpty={() => live.length === 0}>
          {() => (
            <Stack>
              {live.map((k) => canManage(k) ? (
                <Paper key={`${k.id}-${k.version}`} withBorder p="md" radius="md">
                  <form aria-label={`Widget of ${agentName(k.agent_id)}`} onSubmit={(e: FormEvent<HTMLFormElement>) => saveKey(k, e)}>
                    <Group justify="space-between" mb="sm">
                      <Group gap="xs"><Text fw={600}>{agentName(k.agent_id)}</Text><Code>{k.key_prefix}…</Code><Badge variant="light">version {k.version}</Badge></Group>
                    </Group>
                    <SimpleGrid cols={{ base: 1, sm: 2 }}>
                      <TextInput name="origins" label="Allowed origins" description="Exact origins, separated by spaces" defaultValue={k.allowed_origins.join(" ")} />
                      <TextInput name="budget" label="Monthly budget ($)" type="number" min={0} step="0.01" defaultValue={k.monthly_budget_micro / 1e6} />
                      <TextInput name="rpm" label="Messages per minute" type="number" min={1} defaultValue={k.requests_per_minute} />
                      <TextInput name="visitor_rpm" label="Per visitor" type="number" min={1} defaultValue={k.visitor_requests_per_minute} />
                      <TextInput name="pow" label="Proof of work (bits, 0 = off)" type="number" min={0} max={24} defaultValue={k.proof_of_work_bits} />
                      <Checkbox name="hold" label="Hold answers for review" defaultChecked={k.hold_answers} mt="lg" />
                    </SimpleGrid>
                    <Group mt="md" justify="space-between">
                      <Button type="submit" loading={act.busy}>Save widget</Button>
                      <Group gap="xs">
                        <Button variant="light" color="red" onClick={() => void rotate(k)}>Rotate key</Button>
                        <Button variant="outline" color="red" onClick={() => void turnOff(k)}>Turn off</Button>
                      </Group>
                    </Group>
                  </form>
                  {/* Outside the settings form: the preview has a form of its own. */}
                  <KeyDetails k={k} apiUrl={apiUrl} refusals={refusals.data ?? []} canPreview={reviewing.includes(k.project_id)} />
                </Paper>
              ) : (
                <Paper key={`${k.id}-${k.version}`} withBorder p="md" radius="md" component="section" aria-label={`Widget of ${agentName(k.agent_id)}`}>
                  <Group gap="xs" mb="xs"><Text fw={600}>{agentName(k.agent_id)}</Text><Code>{k.key_prefix}…</Code><Badge variant="light">version {k.version}</Badge></Group>
                  <Text size="sm">Allowed origins: {k.allowed_origins.join(", ") || "none"}</Text>
                  <Text size="sm">Monthly budget: ${(k.monthly_budget_micro / 1e6).toFixed(2)}, {k.requests_per_minute} messages a minute ({k.visitor_requests_per_minute} per visitor)</Text>
                  <KeyDetails k={k} apiUrl={apiUrl} refusals={refusals.data ?? []} canPreview={reviewing.includes(k.project_id)} />
                </Paper>
              ))}
            </Stack>
          )}
        </QueryState>
        {managed.length > 0 && offerable.length > 0 && (
          <Paper withBorder p="md" radius="md" mt="md" component="form" aria-label="Turn on a widget" onSubmit={turnOn}>
            <Group align="flex-end" wrap="wrap">
              <NativeSelect name="agent" label="Agent" data={offerable.map((a) => ({ value: a.id, label: a.name }))} />
              <TextInput name="origins" label="Allowed origins" placeholder="https://shop.example.com" style={{ flex: "1 1 16rem" }} />
              <Button type="submit" loading={act.busy}>Turn on widget</Button>
            </Group>
          </Paper>
        )}
      </div>

      <div>
        <Title order={2} size="h3" mb="sm">Review queue</Title>
        <QueryState query={queue} empty="Nothing to review." isEmpty={(q) => q.items.length === 0}>
          {({ items, history }) => (
            <Stack component="ul" aria-label="Review queue" style={{ listStyle: "none", padding: 0 }} gap="sm">
              {items.map((item) => (
                <Paper key={item.id} component="li" withBorder p="md" radius="md">
                  <Group justify="space-between" wrap="wrap">
                    <Group gap="xs"><Badge>{item.kind}</Badge><Text size="sm">{item.summary}</Text>{item.lead_email ? <Code>{item.lead_email}</Code> : null}</Group>
                    <Group gap="xs">
                      {item.conversation_id && (
                        <Anchor component="button" type="button" size="sm" onClick={() => {
                          setOpen(item.conversation_id);
                          document.getElementById(`conversation-${item.conversation_id}`)?.scrollIntoView({ block: "center" });
                        }}>Show the transcript</Anchor>
                      )}
                      <Badge variant="outline">{item.status.replace("_", " ")}</Badge>
                      {reviewing.includes(item.project_id) && NEXT[item.status].map((s) => (
                        <Button key={s} size="xs" variant="light" onClick={() => move(item, s)}>{s === "in_review" && item.status === "in_review" ? "Take over" : s.replace("_", " ")}</Button>
                      ))}
                    </Group>
                  </Group>
                  <Timeline mt="sm" bulletSize={10} lineWidth={2} aria-label={`History of ${item.id}`}>
                    {history.filter((h) => h.item_id === item.id).map((h) => (
                      <Timeline.Item key={h.id} title={h.status.replace("_", " ")}>
                        <Text size="xs" c="dimmed">{when(h.created_at)}{h.note ? `, ${h.note}` : ""}</Text>
                      </Timeline.Item>
                    ))}
                  </Timeline>
                </Paper>
              ))}
            </Stack>
          )}
        </QueryState>
      </div>

      <div>
        <Title order={2} size="h3" mb="sm">Transcripts</Title>
        <QueryState query={conversations} empty="No conversation yet.">
          {(list) => (
            <Stack component="ul" aria-label="Conversations" style={{ listStyle: "none", padding: 0 }} gap="xs">
              {list.map((c) => (
                <li key={c.id} id={`conversation-${c.id}`}>
                  <Anchor component="button" type="button" onClick={() => setOpen(open === c.id ? null : c.id)} aria-expanded={open === c.id}>
                    {agentName(c.agent_id)} on {c.origin}, {when(c.last_message_at)}
                  </Anchor>
                  {open === c.id && (
                    <Paper withBorder p="sm" mt="xs" radius="sm">
                      <QueryState query={messages} empty="No messages." rows={2}>
                        {(ms) => (
                          <Stack component="ol" aria-label="Transcript" gap={4} style={{ paddingLeft: "1.25rem" }}>
                            {ms.map((m) => <li key={m.id}><Text size="sm"><strong>{m.role}</strong>: {m.content}</Text></li>)}
                          </Stack>
                        )}
                      </QueryState>
                    </Paper>
                  )}
                </li>
              ))}
            </Stack>
          )}
        </QueryState>
      </div>
    </Stack>
  );
}

/** A key's embed snippet (its key is shown once, so here with a placeholder), a preview, and its recent refusals. */
function KeyDetails({ k, apiUrl, refusals, canPreview }: { k: Key; apiUrl: string; refusals: Refusal[]; canPreview: boolean }) {
  const mine = refusals.filter((r) => r.widget_key_id === k.id);
  const lines = snippet(`${k.key_prefix}…(the key shown when it was made)`, apiUrl);
  return (
    <Stack gap="sm" mt="md">
      <div>
        <Text size="sm" fw={600}>On the page</Text>
        <Group gap="sm" wrap="nowrap" align="flex-start">
          <Code block aria-label={`Embed snippet of ${k.key_prefix}`} style={{ whiteSpace: "pre-wrap", wordBreak: "break-all", flex: 1 }}>{lines}</Code>
          <CopyButton value={lines}>
            {({ copied, copy }) => <Button size="xs" variant="default" onClick={copy} aria-label={`Copy the snippet of ${k.key_prefix}`}>{copied ? "Copied" : "Copy"}</Button>}
          </CopyButton>
        </Group>
        <Text size="xs" c="dimmed" mt={4}>Replace the key with the one shown when the widget was turned on or its key rotated.</Text>
      </div>
      {canPreview && <Preview k={k} />}
      <div>
        <Text size="sm" fw={600} id={`refusals-${k.id}`}>Recent refusals</Text>
        {mine.length === 0 ? (
          <Text size="sm" c="dimmed">None: every visitor could chat.</Text>
        ) : (
          <DataTable
            label={`Recent refusals of ${k.key_prefix}`}
            rows={mine}
            rowKey={(r) => r.id}
            initialSort={{ key: "last", descending: true }}
            columns={[
              { key: "why", header: "Why", cell: (r) => REFUSALS[r.reason] ?? r.reason, sort: (r) => r.reason },
              { key: "origin", header: "Origin", cell: (r) => r.origin === "*" ? "other sites" : r.origin || "—", sort: (r) => r.origin },
              { key: "last", header: "Last seen", cell: (r) => when(r.last_at), sort: (r) => r.last_at },
              { key: "times", header: "Minutes seen", cell: (r) => r.times, sort: (r) => r.times },
            ]}
          />
        )}
      </div>
    </Stack>
  );
}

/**
 * A chat with the widget from the console, before it goes on a site (the widget-preview function):
 * the agent answers through the widget's own path (its limits, budget, transcript and review
 * queue); the conversation is on the console's origin. Text only, as the embed shows it.
 */
function Preview({ k }: { k: Key }) {
  const api = useOrgApi();
  const [open, setOpen] = useState(false);
  const [lines, setLines] = useState<{ role: string; text: string }[]>([]);
  const [thread, setThread] = useState<{ conversation_id?: string; visitor_id?: string }>({});
  const [busy, setBusy] = useState(false);

  async function send(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const content = String(new FormData(form).get("content") ?? "").trim();
    if (!content) return;
    form.reset();
    setLines((l) => [...l, { role: "You", text: content }]);
    setBusy(true);
    try {
      const answer = await api.invoke<{ conversation_id: string | null; visitor_id: string; reply: { role: string; content: string } }>(
        "widget-preview", { key_id: k.id, content, ...thread });
      setThread({ ...(answer.conversation_id ? { conversation_id: answer.conversation_id } : {}), visitor_id: answer.visitor_id });
      setLines((l) => [...l, { role: answer.reply.role === "assistant" ? "Agent" : "Notice", text: answer.reply.content }]);
    } catch (e) {
      setLines((l) => [...l, { role: "Refused", text: describeError(e) }]);
    } finally {
      setBusy(false);
    }
  }

  if (!open) return <Group><Button variant="default" size="xs" onClick={() => setOpen(true)}>Preview the chat</Button></Group>;
  return (
    <Paper withBorder p="sm" radius="md" component="section" aria-label={`Preview of ${k.key_prefix}`}>
      <Text size="sm" fw={600}>Preview</Text>
      <Text size="xs" c="dimmed" mb="xs">Answers come through the widget's own path: its limits and budget, and the transcript below.</Text>
      <div role="log" aria-live="polite" aria-label="Preview conversation">
        <Stack component="ol" gap={4} style={{ listStyle: "none", padding: 0, margin: 0 }}>
          {lines.map((line, i) => <li key={i}><Text size="sm"><strong>{line.role}:</strong> {line.text}</Text></li>)}
        </Stack>
      </div>
      <form onSubmit={(e) => void send(e)} aria-label="Send a preview message">
        <Group align="flex-end" mt="xs" wrap="nowrap">
          <TextInput name="content" label="Message to the widget" maxLength={4000} required style={{ flex: 1 }} />
          <Button type="submit" loading={busy}>Send</Button>
        </Group>
      </form>
    </Paper>
  );
}
