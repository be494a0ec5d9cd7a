/**
 * Connections (seeds 000, 002, 003, 004: scope-limited connectors, secrets write-only): the
 * organization's connections to outside services, with their scopes, status, live verification
 * and last use, but never a credential (no column or answer holds one). A tenant admin connects a
 * webhook or token (the connectors function checks it live with the provider before it is kept in
 * Vault), connects an OAuth2 provider (authorization code with PKCE: this screen is also the
 * redirect URI the provider sends the admin back to), and disables a connection, which revokes
 * its tokens at the provider where it can and deletes the credential.
 *
 * The scopes are not chosen here: a connection asks for the union of the scopes that the
 * workspace's enabled tools of its provider need (least privilege), which the function derives;
 * this screen shows that set before the admin connects.
 */
import { useEffect, useState, type FormEvent } from "react";
import { useSearchParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { supabase } from "./supabase.ts";
import { field, functionError, States, unwrap, useLoad, useOrg, when, type OrgContext } from "./ui.tsx";

type Provider = Database["public"]["Enums"]["connector_provider"];
type Connection = Pick<Database["public"]["Tables"]["connections"]["Row"],
  "id" | "provider" | "display_name" | "scopes" | "status" | "token_expires_at" | "verified_at" | "created_at" | "disabled_at" | "config">;

const PROVIDER_NAMES: Record<Provider, string> = {
  slack_webhook: "Slack (incoming webhook)",
  discord_webhook: "Discord (webhook)",
  https_webhook: "HTTPS webhook",
  github: "GitHub (token)",
  notion: "Notion (token)",
  oauth2: "OAuth2 provider",
};
/** The providers connected with a webhook URL or a token; oauth2 has its own flow. */
const DIRECT: Exclude<Provider, "oauth2">[] = ["slack_webhook", "discord_webhook", "https_webhook", "github", "notion"];
const TOKEN_PROVIDERS = new Set<Provider>(["github", "notion"]);
/** Where the OAuth2 authorization in flight is remembered, for this tab only, until the provider sends the admin back. */

interface Overview {
  connections: Connection[];
  /** The scopes a new connection of each provider asks for: the union over enabled tools. */
  needed: Map<Provider, string[]>;
  /** Each connection's latest delivery, from the audit chain's connector.call events. */
  lastUsed: Map<string, { at: string; outcome: string }>;
}

async function loadOverview(org: OrgContext): Promise<Overview> {
  const sb = supabase();
  const [connections, tools, calls] = await Promise.all([
    unwrap(sb.from("connections")
      .select("id, provider, display_name, scopes, status, token_expires_at, verified_at, created_at, disabled_at, config")
      .order("status").order("display_name").setHeader("x-org-id", org.id)),
    unwrap(sb.from("agent_tools").select("provider, scopes").eq("enabled", true).setHeader("x-org-id", org.id)),
    unwrap(sb.from("audit_log").select("target_id, occurred_at, payload")
      .eq("action", "connector.call").eq("target_type", "connection").eq("payload->>kind", "deliver")
      .order("occurred_at", { ascending: false }).limit(500).setHeader("x-org-id", org.id)),
  ]);
  const needed = new Map<Provider, string[]>();
  for (const t of tools) needed.set(t.provider, [...new Set([...(needed.get(t.provider) ?? []), ...t.scopes])].sort());
  const lastUsed = new Map<string, { at: string; outcome: string }>();
  for (const c of calls) {
    if (!c.target_id || !c.occurred_at || lastUsed.has(c.target_id)) continue;
    const outcome = (c.payload as { outcome?: string } | null)?.outcome ?? "unknown";
    lastUsed.set(c.target_id, { at: c.occurred_at, outcome });
  }
  return { connections: connections as Connection[], needed, lastUsed };
}

/** What each refusal of the connectors function means, in words. */
function refusalText(error: { code?: string; message: string }): string {
  const code = error.code ?? "";
  if (code === "egress_unresolvable") return `That host name could not be resolved, so nothing was checked or saved (${code}).`;
  if (code === "egress_connect_failed" || code === "egress_request_failed" || code === "egress_timeout" || code === "egress_aborted") {
    return `The provider could not be reached for the live check, so nothing was saved (${code}).`;
  }
  if (code.startsWith("egress_")) {
    return `The egress guard refused that address: connections reach public https services only (${code}: ${error.message}).`;
  }
  switch (code) {
    case "invalid_credential":
      return `That credential doesn't have the provider's shape: ${error.message}.`;
    case "connector_credential_rejected":
      return `The provider refused the credential in the live check (${error.message}). Check the URL or token, or issue a new one.`;
    case "connector_verification_rejected":
      return `The provider rejected the live check (${error.message}). Nothing was saved.`;
    case "connector_missing_scopes":
      return `The token lacks scopes the enabled tools need (${error.message}). Issue one with exactly the scopes listed.`;
    case "connector_excess_scopes":
      return `The token holds more scopes than the enabled tools need (${error.message}). Least privilege: issue one with only the scopes listed.`;
    case "connector_provider_error":
      return `The provider failed the live check (${error.message}). Nothing was saved; try again later.`;
    case "connector_rate_limited":
      return "This workspace has reached its connector calls per minute. Try again in a minute.";
    case "connector_budget_exhausted":
      return "This workspace has used its monthly connector budget, so the live check can't run.";
    case "forbidden":
      return "Only a tenant admin of this organization can connect or disable connections.";
    case "oauth_state_invalid":
      return "This authorization is unknown, already used or expired (they last 10 minutes). Start it again.";
    case "invalid_authorize_url":
      return "The authorize URL must be https.";
    case "connection_not_found":
      return "That connection is not in this organization (any more).";
    case "internal_error":
      return "The connectors function failed unexpectedly. If another connection has this display name, choose another: names are unique.";
    default:
      return error.message || code;
  }
}

/** /o/:org/connections: the organization's connections; tenant admins connect and disable them. */
export function Connections() {
  const org = useOrg();
  const overview = useLoad(() => loadOverview(org), [org.id]);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const report = (ok: boolean, text: string) => setOutcome({ ok, text });

  return (
    <>
      <h1>Connections of {org.name}</h1>
      <p className="muted">
        Credentials are write-only: they are checked live with the provider, kept in Vault, and never shown again, here or
        anywhere.
      </p>
      <OAuthReturn org={org} report={report} done={overview.reload} />
      <Outcome outcome={outcome} />

      <section aria-labelledby="connections-heading">
        <h2 id="connections-heading">Connections</h2>
        <States loaded={overview} empty="No connections yet." isEmpty={(o) => o.connections.length === 0}>
          {(o) => (
            <table aria-label="Connections">
              <thead>
                <tr>
                  <th scope="col">Name</th><th scope="col">Provider</th><th scope="col">Scopes</th><th scope="col">Status</th>
                  <th scope="col">Verified</th><th scope="col">Last used</th><th scope="col">Token expires</th>
                  {org.isAdmin && <th scope="col">Actions</th>}
                </tr>
              </thead>
              <tbody>
                {o.connections.map((c) => (
                  <tr key={c.id}>
                    <td>{c.display_name}</td>
                    <td>{PROVIDER_NAMES[c.provider]}{apiUrlOf(c.config) ? <> at <code>{apiUrlOf(c.config)}</code></> : null}</td>
                    <td>{c.scopes.length ? c.scopes.map((s) => <code key={s}>{s} </code>) : "none"}</td>
                    <td>{c.status === "active" ? "active" : `disabled ${when(c.disabled_at)}`}</td>
                    <td>{when(c.verified_at)}</td>
                    <td>{o.lastUsed.has(c.id) ? `${when(o.lastUsed.get(c.id)!.at)} (${o.lastUsed.get(c.id)!.outcome})` : "never"}</td>
                    <td>{c.token_expires_at ? when(c.token_expires_at) : "—"}</td>
                    {org.isAdmin && (
                      <td>{c.status === "active" ? <Disable org={org} connection={c} report={report} done={overview.reload} /> : "—"}</td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </States>
      </section>

      {org.isAdmin ? (
        <>
          <ConnectDirect org={org} needed={overview.data?.needed} done={overview.reload} />
          <ConnectOAuth org={org} needed={overview.data?.needed} />
        </>
      ) : (
        <p className="muted">
          {org.readOnly ? "You are a viewer: connections are read-only for you." : "Connecting and disabling connections needs the tenant admin role."}
        </p>
      )}
    </>
  );
}

/** How an action ended, beside the controls that started it. */
function Outcome({ outcome }: { outcome: { ok: boolean; text: string } | null }) {
  if (!outcome) return null;
  return outcome.ok ? <p role="status" className="notice">{outcome.text}</p> : <p role="alert" className="error">{outcome.text}</p>;
}

function apiUrlOf(config: Json): string | null {
  const url = (config as { api_url?: unknown } | null)?.api_url;
  return typeof url === "string" ? url : null;
}

function revocableAtProvider(c: Connection): boolean {
  return c.provider === "oauth2" && typeof (c.config as { revoke_url?: unknown } | null)?.revoke_url === "string";
}

interface ActionProps {
  org: OrgContext;
  report: (ok: boolean, text: string) => void;
  done: () => void;
}

/** The scopes a new connection of `provider` asks for, as the admin reads them before connecting. */
function ScopesNeeded({ provider, needed }: { provider: Provider; needed: Map<Provider, string[]> | undefined }) {
  const scopes = needed?.get(provider) ?? [];
  return (
    <p className="muted" aria-live="polite">
      {needed === undefined
        ? "Reading the scopes the enabled tools need…"
        : scopes.length
          ? <>This connection asks for the scopes the workspace's enabled {PROVIDER_NAMES[provider]} tools need, and no more (the connectors function derives them when you connect): {scopes.map((s) => <code key={s}>{s} </code>)}</>
          : `No enabled ${PROVIDER_NAMES[provider]} tool needs a scope: the connection asks for none.`}
      {provider === "github" && " A GitHub token that reports its scopes must hold exactly this set, no more."}
    </p>
  );
}

function ConnectDirect({ org, needed, done }: Omit<ActionProps, "report"> & { needed: Map<Provider, string[]> | undefined }) {
  const [provider, setProvider] = useState<Exclude<Provider, "oauth2">>("slack_webhook");
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const report = (ok: boolean, text: string) => setOutcome({ ok, text });
  const token = TOKEN_PROVIDERS.has(provider);

  async function connect(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const secret = String(form.get("credential") ?? "").trim();
    const body = { provider, display_name: field(form, "display_name"), credential: token ? { token: secret } : { url: secret } };
    // The credential leaves the page's state at once, whatever the answer: it is never shown again.
    (formElement.elements.namedItem("credential") as HTMLInputElement).value = "";
    setBusy(true);
    setOutcome(null);
    const { data, error } = await supabase().functions.invoke<{ connection: Connection }>("connectors/connections", {
      body,
      headers: { "x-org-id": org.id },
    });
    setBusy(false);
    if (error) {
      report(false, refusalText(await functionError(error) as { code?: string; message: string }));
      return;
    }
    formElement.reset();
    report(true, `Connected ${data!.connection.display_name}: the provider accepted the credential in a live check, and it is kept in Vault.`);
    done();
  }

  return (
    <section aria-labelledby="connect-heading">
      <h2 id="connect-heading">Connect a webhook or token</h2>
      <form className="stack" onSubmit={connect} aria-label="Connect a webhook or token" autoComplete="off">
        <label>
          Provider{" "}
          <select name="provider" value={provider} onChange={(e) => setProvider(e.target.value as typeof provider)}>
            {DIRECT.map((p) => <option key={p} value={p}>{PROVIDER_NAMES[p]}</option>)}
          </select>
        </label>
        <label>Display name <input name="display_name" required maxLength={100} /></label>
        {token
          ? <label>API token <input name="credential" type="password" required autoComplete="off" maxLength={1024} /></label>
          : <label>Webhook URL <input name="credential" type="url" required autoComplete="off" placeholder="https://…" maxLength={2048} /></label>}
        <ScopesNeeded provider={provider} needed={needed} />
        <div><button type="submit" disabled={busy}>{busy ? "Verifying…" : "Verify and connect"}</button></div>
      </form>
      <Outcome outcome={outcome} />
    </section>
  );
}

/** The console address the provider sends the admin back to: this screen, which finishes the flow. */
function redirectUri(org: OrgContext): string {
  return `${location.origin}/o/${org.id}/connections`;
}

function ConnectOAuth({ org, needed }: { org: OrgContext; needed: Map<Provider, string[]> | undefined }) {
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | null>(null);
  const report = (ok: boolean, text: string) => setOutcome({ ok, text });

  async function start(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const revoke = field(form, "revoke_url");
    const body = {
      display_name: field(form, "display_name"),
      authorize_url: field(form, "authorize_url"),
      token_url: field(form, "token_url"),
      ...(revoke ? { revoke_url: revoke } : {}),
      api_url: field(form, "api_url"),
      client_id: field(form, "client_id"),
      client_secret: String(form.get("client_secret") ?? ""),
      redirect_uri: redirectUri(org),
    };
    (formElement.elements.namedItem("client_secret") as HTMLInputElement).value = "";
    setBusy(true);
    setOutcome(null);
    const { data, error } = await supabase().functions.invoke<{ authorization_url: string; state: string; scopes: string[] }>("connectors/oauth2/start", {
      body,
      headers: { "x-org-id": org.id },
    });
    if (error) {
      setBusy(false);
      report(false, refusalText(await functionError(error) as { code?: string; message: string }));
      return;
    }
    const target = new URL(data!.authorization_url);
    if (target.protocol !== "https:" && target.protocol !== "http:") {
      setBusy(false);
      report(false, "The function answered an authorization address that is not a web address; nothing was opened.");
      return;
    }
    // The state comes back on the redirect; the connectors function completes it only for the
    // person who started it (RFC 6749 §10.12), so the page keeps nothing.
    location.assign(target.href);
  }

  return (
    <section aria-labelledby="oauth-heading">
      <h2 id="oauth-heading">Connect with OAuth2</h2>
      <p className="muted">
        You are sent to the provider to authorize, and come back here, where the code is exchanged (with PKCE) and the tokens
        are kept in Vault. A grant with more scopes than were asked for is revoked and refused.
      </p>
      <form className="stack" onSubmit={start} aria-label="Connect with OAuth2" autoComplete="off">
        <label>Display name <input name="display_name" required maxLength={100} /></label>
        <label>Authorize URL <input name="authorize_url" type="url" required placeholder="https://provider.example/oauth/authorize" /></label>
        <label>Token URL <input name="token_url" type="url" required placeholder="https://provider.example/oauth/token" /></label>
        <label>Revoke URL (optional) <input name="revoke_url" type="url" placeholder="https://provider.example/oauth/revoke" /></label>
        <label>API URL <input name="api_url" type="url" required placeholder="https://api.provider.example" /></label>
        <label>Client ID <input name="client_id" required maxLength={256} /></label>
        <label>Client secret <input name="client_secret" type="password" required autoComplete="off" maxLength={1024} /></label>
        <label>Redirect URI <input name="redirect_uri" readOnly value={redirectUri(org)} aria-describedby="redirect-hint" /></label>
        <p id="redirect-hint" className="muted">Register this exact address as the OAuth app's redirect URI: the provider sends you back here.</p>
        <ScopesNeeded provider="oauth2" needed={needed} />
        <div><button type="submit" disabled={busy}>{busy ? "Starting…" : "Start authorization"}</button></div>
      </form>
      <Outcome outcome={outcome} />
    </section>
  );
}

// An authorization's state is single use: completing it twice (React runs effects twice in
// development) would refuse the second attempt, so each state is sent once per page.
const completing = new Set<string>();

/**
 * The redirect back from the provider (?code=&state=, or ?error=): finishes the authorization
 * through the connectors function, then takes the parameters out of the address.
 */
function OAuthReturn({ org, report, done }: ActionProps) {
  const [params, setParams] = useSearchParams();
  const code = params.get("code");
  const state = params.get("state");
  const denied = params.get("error");
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const attempt = state ?? (denied ? `error:${denied}` : null);
    if (!attempt || (!code && !denied) || completing.has(attempt)) return;
    completing.add(attempt);
    setParams({}, { replace: true });
    if (denied) {
      report(false, `The provider did not authorize the connection: ${params.get("error_description") ?? denied}.`);
      return;
    }
    setBusy(true);
    void supabase().functions.invoke<{ connection: Connection }>("connectors/oauth2/callback", {
      body: { state, code },
      headers: { "x-org-id": org.id },
    }).then(async ({ data, error }) => {
      setBusy(false);
      if (error) {
        report(false, refusalText(await functionError(error) as { code?: string; message: string }));
        return;
      }
      const c = data!.connection;
      report(true, `Connected ${c.display_name} with scopes ${c.scopes.join(", ") || "none"}: the provider's tokens are kept in Vault.`);
      done();
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state, code, denied, org.id]);

  return busy ? <p role="status" aria-busy="true" className="notice">Finishing the authorization with the provider…</p> : null;
}

/** Disabling, with a confirmation step: revoke at the provider where it can, delete the credential. */
function Disable({ org, connection: c, report, done }: ActionProps & { connection: Connection }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [fallback, setFallback] = useState(false);

  async function disable() {
    setBusy(true);
    const { data, error } = await supabase().functions.invoke<{ connection: Connection; revocation: "revoked" | "not_supported" | "failed" }>(
      `connectors/connections/${c.id}/disable`,
      { body: {}, headers: { "x-org-id": org.id } },
    );
    setBusy(false);
    if (error) {
      const refusal = await functionError(error) as { code?: string; message: string };
      const status = (error as { context?: Response }).context?.status ?? 0;
      // A kill switch must not depend on the function or the provider being up: offer the database's own.
      setFallback(status === 0 || status >= 500);
      report(false, refusalText(refusal));
      return;
    }
    setConfirming(false);
    const revocation = data!.revocation;
    report(true, revocation === "revoked"
      ? `Disabled ${c.display_name}: its tokens were revoked at the provider and its credential deleted from Vault.`
      : revocation === "failed"
        ? `Disabled ${c.display_name} and deleted its credential from Vault, but the provider did not confirm the revocation: revoke it in the provider's console too.`
        : `Disabled ${c.display_name}: its credential was deleted from Vault. This provider has no revocation endpoint; remove the webhook or token at the provider too.`);
    done();
  }

  async function disableInDatabase() {
    setBusy(true);
    const { error } = await supabase().rpc("disable_connection", { p_connection_id: c.id }).setHeader("x-org-id", org.id);
    setBusy(false);
    if (error) {
      report(false, refusalText(error));
      return;
    }
    setConfirming(false);
    setFallback(false);
    report(true, `Disabled ${c.display_name} and deleted its credential from Vault, without revoking at the provider: revoke it there too.`);
    done();
  }

  if (!confirming) {
    return <button type="button" aria-label={`Disable ${c.display_name}`} onClick={() => setConfirming(true)}>Disable</button>;
  }
  return (
    <div role="group" aria-label={`Confirm disabling ${c.display_name}`}>
      <p>
        Disable {c.display_name}? {revocableAtProvider(c) ? "Its tokens are revoked at the provider, and its" : "Its"} credential is
        deleted from Vault; tools bound to it stop working. This can't be undone (connect again to restore it).
      </p>
      <button type="button" onClick={() => void disable()} disabled={busy}>Yes, disable {c.display_name}</button>{" "}
      <button type="button" onClick={() => { setConfirming(false); setFallback(false); }} disabled={busy}>Cancel</button>
      {fallback && (
        <p>
          <button type="button" onClick={() => void disableInDatabase()} disabled={busy}>Disable without revoking at the provider</button>
        </p>
      )}
    </div>
  );
}
