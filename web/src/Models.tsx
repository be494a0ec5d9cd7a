import { useEffect, useState, type FormEvent } from "react";
import { confirmAction } from "./confirm.tsx";
import type { Database } from "../../supabase/database.types.ts";
import { supabase } from "./supabase.ts";

type Usage = Database["public"]["Views"]["model_usage_daily"]["Row"];
type Limits = Database["public"]["Tables"]["model_limits"]["Row"];
type Cap = Database["public"]["Tables"]["model_caps"]["Row"];
type Event = Database["public"]["Tables"]["model_budget_events"]["Row"];
type Provider = Database["public"]["Enums"]["model_provider"];
interface Key {
  provider: Provider;
  key_hint: string;
  base_url: string | null;
  verified_at: string;
}
interface Agent {
  id: string;
  name: string;
}

/** Micro-units (millionths of a dollar) as dollars. */
const dollars = (micro: number | null | undefined) => (micro == null ? "—" : `$${(micro / 1e6).toFixed(micro < 10_000 ? 6 : 2)}`);
const toMicro = (value: FormDataEntryValue | null) => (value === null || String(value).trim() === "" ? null : Math.round(Number(value) * 1e6));

/**
 * The organization's models: usage by day, agent and model; limits and budgets; its own vendor
 * keys (write-only); and a playground that calls the model gateway as the signed-in member. The
 * database and the gateway decide who may do what (a tenant admin changes limits and keys); this
 * page only shows what they answer.
 */
export function Models({ orgId, agents }: { orgId: string; agents: Agent[] }) {
  const [usage, setUsage] = useState<Usage[]>([]);
  const [limits, setLimits] = useState<Limits | null>(null);
  const [caps, setCaps] = useState<Cap[]>([]);
  const [keys, setKeys] = useState<Key[]>([]);
  const [events, setEvents] = useState<Event[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const [answer, setAnswer] = useState<string | null>(null);
  const [loaded, setLoaded] = useState(0);
  const [ready, setReady] = useState(false);

  useEffect(() => {
    void Promise.resolve(supabase()).then(async (sb) => {
      const since = new Date(Date.now() - 30 * 86400_000).toISOString().slice(0, 10);
      const [u, l, c, k, e] = await Promise.all([
        sb.from("model_usage_daily").select("*").gte("day", since).order("day", { ascending: false }).setHeader("x-org-id", orgId),
        sb.from("model_limits").select("*").setHeader("x-org-id", orgId).maybeSingle(),
        sb.from("model_caps").select("*").setHeader("x-org-id", orgId),
        sb.from("model_provider_keys").select("provider, key_hint, base_url, verified_at").order("provider").setHeader("x-org-id", orgId),
        sb.from("model_budget_events").select("*").order("period", { ascending: false }).setHeader("x-org-id", orgId),
      ]);
      const failed = [u, l, c, k, e].find((r) => r.error);
      if (failed?.error) setNotice(failed.error.message);
      setUsage(u.data ?? []);
      setLimits(l.data ?? null);
      setCaps(c.data ?? []);
      setKeys((k.data ?? []) as Key[]);
      setEvents(e.data ?? []);
      setReady(true);
    });
  }, [orgId, loaded]);

  if (!ready) return <p>Loading…</p>;
  const agentName = (id: string | null) => agents.find((a) => a.id === id)?.name ?? id ?? "the project";

  async function saveLimits(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const models = String(form.get("allowed_models") ?? "").split(",").map((m) => m.trim()).filter(Boolean);
    const values = {
      allowed_models: models.length ? models : null,
      requests_per_minute: Number(form.get("requests_per_minute")),
      burst: Number(form.get("burst")),
      monthly_budget_micro: toMicro(form.get("monthly_budget")) ?? 0,
      soft_budget_micro: toMicro(form.get("soft_budget")),
      default_max_tokens: Number(form.get("default_max_tokens")),
    };
    const sb = supabase();
    const table = sb.from("model_limits");
    const written = limits
      ? table.update({ ...values, updated_at: new Date().toISOString() }).eq("org_id", orgId)
      : table.insert({ org_id: orgId, ...values });
    const { data, error } = await written.select("org_id").setHeader("x-org-id", orgId);
    // RLS answers an update it doesn't allow with no rows, not an error.
    setNotice(error ? error.message : data.length ? "Limits saved." : "Nothing was saved: the database let your role change no limits.");
    setLoaded((n) => n + 1);
  }

  async function saveKey(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const baseUrl = String(form.get("base_url") ?? "").trim();
    const sb = supabase();
    const { error } = await sb.functions.invoke("model-gateway/keys", {
      headers: { "x-org-id": orgId },
      body: { provider: form.get("provider"), api_key: form.get("api_key"), ...(baseUrl ? { base_url: baseUrl } : {}) },
    });
    // The key field is cleared whatever happened: it is never shown again.
    formElement.reset();
    setNotice(error ? await errorText(error) : "Key verified with the provider and saved.");
    setLoaded((n) => n + 1);
  }

  async function removeKey(provider: Provider) {
    if (!(await confirmAction({
      title: `Remove the ${provider} key?`,
      body: <>It is deleted from Vault. Calls to {provider} models use the platform's key from then on, billed to the organization, or are refused where the platform has none.</>,
      confirmLabel: "Remove the key",
    }))) return;
    const sb = supabase();
    const { error } = await sb.rpc("remove_model_provider_key", { p_provider: provider }).setHeader("x-org-id", orgId);
    setNotice(error ? error.message : `The ${provider} key is removed; calls use the platform's.`);
    setLoaded((n) => n + 1);
  }

  async function play(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const sb = supabase();
    setAnswer("…");
    const { data, error } = await sb.functions.invoke("model-gateway/v1/chat/completions", {
      headers: { "x-org-id": orgId, "x-agent-id": String(form.get("agent")) },
      body: { model: form.get("model"), messages: [{ role: "user", content: form.get("prompt") }], max_tokens: 256 },
    });
    setAnswer(error ? await errorText(error) : (data as { choices: { message: { content: string } }[] }).choices[0].message.content);
    setLoaded((n) => n + 1);
  }

  return (
    <section aria-label="Models">
      {notice && <p role="status">{notice}</p>}

      <h3>Usage, last 30 days</h3>
      <table aria-label="Model usage">
        <thead>
          <tr><th>Day</th><th>Agent</th><th>Model</th><th>Key</th><th>Calls</th><th>Tokens in / out</th><th>Cost</th></tr>
        </thead>
        <tbody>
          {usage.map((u) => (
            <tr key={`${u.day}-${u.agent_id}-${u.model}-${u.key_source}`}>
              <td>{u.day}</td><td>{agentName(u.agent_id)}</td><td>{u.model}</td><td>{u.key_source}</td>
              <td>{u.calls}{u.unsuccessful_calls ? ` (${u.unsuccessful_calls} unsuccessful)` : ""}</td>
              <td>{u.input_tokens} / {u.output_tokens}</td><td>{dollars(u.cost_micro)}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h3>Limits and budgets</h3>
      <form onSubmit={saveLimits} aria-label="Model limits" key={JSON.stringify(limits)}>
        <label>Allowed models (comma-separated; empty allows all) <input name="allowed_models" defaultValue={limits?.allowed_models?.join(", ") ?? ""} /></label>
        <label>Calls per minute <input name="requests_per_minute" type="number" min={1} defaultValue={limits?.requests_per_minute ?? 600} /></label>
        <label>Burst <input name="burst" type="number" min={1} defaultValue={limits?.burst ?? 60} /></label>
        <label>Monthly budget ($) <input name="monthly_budget" type="number" min={0} step="0.01" defaultValue={(limits?.monthly_budget_micro ?? 50_000_000) / 1e6} /></label>
        <label>Soft threshold ($) <input name="soft_budget" type="number" min={0} step="0.01" defaultValue={limits?.soft_budget_micro == null ? "" : limits.soft_budget_micro / 1e6} /></label>
        <label>Default max tokens <input name="default_max_tokens" type="number" min={1} defaultValue={limits?.default_max_tokens ?? 1024} /></label>
        <button type="submit">Save limits</button>
      </form>
      <ul aria-label="Caps">
        {caps.map((c) => (
          <li key={c.id}>
            {agentName(c.agent_id)}: monthly {dollars(c.monthly_budget_micro)}, per run {dollars(c.run_budget_micro)}
            {c.allowed_models ? `, models ${c.allowed_models.join(", ")}` : ""}{c.requests_per_minute ? `, ${c.requests_per_minute}/min` : ""}
          </li>
        ))}
      </ul>
      <ul aria-label="Budget events">
        {events.map((e) => <li key={e.id}>{e.period}: spend {dollars(e.spent_micro)} passed the soft threshold {dollars(e.threshold_micro)}</li>)}
      </ul>

      <h3>Provider keys</h3>
      <ul aria-label="Provider keys">
        {keys.map((k) => (
          <li key={k.provider}>
            {k.provider} {k.key_hint} {k.base_url ? `at ${k.base_url}` : ""} <small>verified {new Date(k.verified_at).toLocaleString()}</small>{" "}
            <button onClick={() => removeKey(k.provider)}>Remove {k.provider} key</button>
          </li>
        ))}
      </ul>
      <form onSubmit={saveKey} aria-label="Save a provider key" autoComplete="off">
        <label>Provider <select name="provider"><option value="openai">openai</option><option value="anthropic">anthropic</option></select></label>
        <label>API key <input name="api_key" type="password" required autoComplete="off" /></label>
        <label>Base URL (optional) <input name="base_url" type="url" placeholder="https://…/v1" /></label>
        <button type="submit">Verify and save key</button>
      </form>

      <h3>Playground</h3>
      <form onSubmit={play} aria-label="Playground">
        <label>Agent <select name="agent">{agents.map((a) => <option key={a.id} value={a.id}>{a.name}</option>)}</select></label>
        <label>Model <input name="model" defaultValue={limits?.allowed_models?.[0] ?? "gpt-4o-mini"} /></label>
        <label>Prompt <input name="prompt" required /></label>
        <button type="submit">Send</button>
      </form>
      {answer !== null && <p aria-label="Answer">{answer}</p>}
    </section>
  );
}

/** The gateway's error code and message, from a functions.invoke error. */
async function errorText(error: unknown): Promise<string> {
  const response = (error as { context?: Response }).context;
  try {
    const body = (await response?.json()) as { error?: { code: string; message: string } };
    if (body?.error) return `${body.error.code}: ${body.error.message}`;
  } catch {
    // Not JSON: fall back to the error's own message.
  }
  return (error as Error).message;
}
