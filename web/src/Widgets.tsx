import { useEffect, useState, type FormEvent } from "react";
import type { Database } from "../../supabase/database.types.ts";
import { supabase } from "./supabase.ts";

type Key = Omit<Database["public"]["Tables"]["widget_keys"]["Row"], "key_sha256">;
type Conversation = Database["public"]["Tables"]["widget_conversations"]["Row"];
type Message = Database["public"]["Tables"]["widget_messages"]["Row"];
type Item = Database["public"]["Tables"]["review_items"]["Row"];
type ItemEvent = Database["public"]["Tables"]["review_item_events"]["Row"];
type Status = Database["public"]["Enums"]["review_status"];
interface Agent {
  id: string;
  name: string;
}

const KEY_COLUMNS = "id, org_id, project_id, agent_id, key_prefix, allowed_origins, monthly_budget_micro, requests_per_minute, visitor_requests_per_minute, proof_of_work_bits, hold_answers, version, created_by, created_at, rotated_at, disabled_at";
const NEXT: Record<Status, Status[]> = { open: ["in_review"], in_review: ["in_review", "resolved", "dismissed"], resolved: [], dismissed: [] };

/**
 * The organization's widgets: each agent's key (turn on, origins, budget, rates, proof of work,
 * rotate, turn off), the transcripts, and the review queue with each item's history. The database
 * decides who may do what (project admins manage keys, contributors review); this page shows
 * what it answers. A new or rotated key is shown once, here, and never again.
 */
export function Widgets({ orgId, agents, userId }: { orgId: string; agents: Agent[]; userId: string }) {
  const [keys, setKeys] = useState<Key[]>([]);
  const [conversations, setConversations] = useState<Conversation[]>([]);
  const [messages, setMessages] = useState<Message[]>([]);
  const [open, setOpen] = useState<string | null>(null);
  const [items, setItems] = useState<Item[]>([]);
  const [history, setHistory] = useState<ItemEvent[]>([]);
  const [shown, setShown] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(0);
  const reload = () => setLoaded((n) => n + 1);

  useEffect(() => {
    void Promise.resolve(supabase()).then(async (sb) => {
      const [k, c, i, h] = await Promise.all([
        sb.from("widget_keys").select(KEY_COLUMNS).order("created_at", { ascending: false }).setHeader("x-org-id", orgId),
        sb.from("widget_conversations").select("*").order("last_message_at", { ascending: false }).limit(50).setHeader("x-org-id", orgId),
        sb.from("review_items").select("*").order("created_at", { ascending: false }).limit(100).setHeader("x-org-id", orgId),
        sb.from("review_item_events").select("*").order("created_at").setHeader("x-org-id", orgId),
      ]);
      const failed = [k, c, i, h].find((r) => r.error);
      if (failed?.error) setNotice(failed.error.message);
      setKeys((k.data ?? []) as Key[]);
      setConversations(c.data ?? []);
      setItems(i.data ?? []);
      setHistory(h.data ?? []);
    });
  }, [orgId, loaded]);

  useEffect(() => {
    if (!open) return setMessages([]);
    void Promise.resolve(supabase()).then(async (sb) => {
      const { data, error } = await sb.from("widget_messages").select("*").eq("conversation_id", open).order("created_at").setHeader("x-org-id", orgId);
      if (error) setNotice(error.message);
      setMessages(data ?? []);
    });
  }, [orgId, open]);

  const agentName = (id: string) => agents.find((a) => a.id === id)?.name ?? id;
  const origins = (value: FormDataEntryValue | null) => String(value ?? "").split(/[\s,]+/).map((o) => o.trim()).filter(Boolean);

  async function turnOn(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sb = supabase();
    const { data, error } = await sb.rpc("create_widget_key", { p_agent_id: String(form.get("agent")), p_allowed_origins: origins(form.get("origins")) })
      .setHeader("x-org-id", orgId);
    setShown(error ? null : (data as { key: string }).key);
    setNotice(error ? error.message : "Widget turned on. Copy the key now: it is shown only once.");
    reload();
  }

  async function rotate(key: Key) {
    const sb = supabase();
    const { data, error } = await sb.rpc("rotate_widget_key", { p_key_id: key.id }).setHeader("x-org-id", orgId);
    setShown(error ? null : (data as { key: string }).key);
    setNotice(error ? error.message : "Key rotated: the old key and its sessions stopped. Copy the new key now.");
    reload();
  }

  async function turnOff(key: Key) {
    const sb = supabase();
    const { error } = await sb.rpc("disable_widget_key", { p_key_id: key.id }).setHeader("x-org-id", orgId);
    setNotice(error ? error.message : "Widget turned off.");
    reload();
  }

  async function saveKey(key: Key, event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sb = supabase();
    const { data, error } = await sb.from("widget_keys").update({
      allowed_origins: origins(form.get("origins")),
      monthly_budget_micro: Math.round(Number(form.get("budget")) * 1e6),
      requests_per_minute: Number(form.get("rpm")),
      visitor_requests_per_minute: Number(form.get("visitor_rpm")),
      proof_of_work_bits: Number(form.get("pow")),
      hold_answers: form.get("hold") === "on",
    }).eq("id", key.id).select("id").setHeader("x-org-id", orgId);
    setNotice(error ? error.message : data.length ? "Widget settings saved." : "Nothing was saved: the database let your role change no widget.");
    reload();
  }

  async function move(item: Item, status: Status) {
    const sb = supabase();
    const { error } = await sb.rpc("change_review_status", { p_item_id: item.id, p_status: status, p_assignee: userId })
      .setHeader("x-org-id", orgId);
    setNotice(error ? error.message : `Moved to ${status.replace("_", " ")}.`);
    reload();
  }

  const live = keys.filter((k) => !k.disabled_at);
  return (
    <section aria-label="Widgets">
      {notice && <p role="status">{notice}</p>}
      {shown && <p>New key (shown once): <code aria-label="New widget key">{shown}</code></p>}

      <h3>Widget keys</h3>
      {live.map((k) => (
        <form key={`${k.id}-${k.version}`} aria-label={`Widget of ${agentName(k.agent_id)}`} onSubmit={(e) => saveKey(k, e)}>
          <strong>{agentName(k.agent_id)}</strong> <code>{k.key_prefix}…</code> <small>version {k.version}</small>
          <label>Allowed origins <input name="origins" defaultValue={k.allowed_origins.join(" ")} /></label>
          <label>Monthly budget ($) <input name="budget" type="number" min={0} step="0.01" defaultValue={k.monthly_budget_micro / 1e6} /></label>
          <label>Messages per minute <input name="rpm" type="number" min={1} defaultValue={k.requests_per_minute} /></label>
          <label>Per visitor <input name="visitor_rpm" type="number" min={1} defaultValue={k.visitor_requests_per_minute} /></label>
          <label>Proof of work (bits, 0 = off) <input name="pow" type="number" min={0} max={24} defaultValue={k.proof_of_work_bits} /></label>
          <label><input name="hold" type="checkbox" defaultChecked={k.hold_answers} /> Hold answers for review</label>
          <button type="submit">Save widget</button>{" "}
          <button type="button" onClick={() => rotate(k)}>Rotate key</button>{" "}
          <button type="button" onClick={() => turnOff(k)}>Turn off</button>
        </form>
      ))}
      <form onSubmit={turnOn} aria-label="Turn on a widget">
        <label>Agent <select name="agent">{agents.filter((a) => !live.some((k) => k.agent_id === a.id)).map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}</select></label>
        <label>Allowed origins <input name="origins" placeholder="https://shop.example.com" /></label>
        <button type="submit">Turn on widget</button>
      </form>

      <h3>Review queue</h3>
      <ul aria-label="Review queue">
        {items.map((item) => (
          <li key={item.id}>
            <strong>{item.kind}</strong> {item.summary} {item.lead_email ? <code>{item.lead_email}</code> : null} <em>{item.status.replace("_", " ")}</em>{" "}
            {NEXT[item.status].map((s) => <button key={s} onClick={() => move(item, s)}>{s === "in_review" && item.status === "in_review" ? "Take over" : s.replace("_", " ")}</button>)}
            <ol aria-label={`History of ${item.id}`}>
              {history.filter((h) => h.item_id === item.id).map((h) => <li key={h.id}>{new Date(h.created_at).toLocaleString()}: {h.status.replace("_", " ")}{h.note ? `, ${h.note}` : ""}</li>)}
            </ol>
          </li>
        ))}
      </ul>

      <h3>Transcripts</h3>
      <ul aria-label="Conversations">
        {conversations.map((c) => (
          <li key={c.id}>
            <button onClick={() => setOpen(open === c.id ? null : c.id)} aria-expanded={open === c.id}>
              {agentName(c.agent_id)} on {c.origin}, {new Date(c.last_message_at).toLocaleString()}
            </button>
            {open === c.id && (
              <ol aria-label="Transcript">
                {messages.map((m) => <li key={m.id}><strong>{m.role}</strong>: {m.content}</li>)}
              </ol>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}
