/**
 * Connections (seeds 000, 002, 003, 004: scope-limited connectors, secrets write-only): the
 * organization's connections to outside services, with their scopes, status, live verification
 * and last use, but never a credential (no column or answer holds one), in a table whose columns
 * sort. Whoever may manage connections (my_permissions: manage_connections, a tenant admin)
 * connects a webhook or token (the connectors function checks it live with the provider before it
 * is kept in Vault), connects an OAuth2 provider (authorization code with PKCE: this screen is also
 * the redirect URI the provider sends the admin back to), and disables a connection after a
 * confirmation that says what it does: its tokens are revoked at the provider where it can, and
 * its credential is deleted. When the connectors function or the provider can't be reached, the
 * database's own kill switch (disable_connection) disables it without the revocation, after its
 * own confirmation. Everyone else sees the same list and no controls; the function and the
 * database refuse them regardless.
 *
 * The scopes are not chosen here: a connection asks for the union of the scopes that the
 * workspace's enabled tools of its provider need (least privilege), which the function derives;
 * this screen shows that set before the admin connects.
 */
import { Badge, Box, Button, Code, CopyButton, Group, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent } from "react";
import { useSearchParams } from "react-router";
import type { Database, Json } from "../../supabase/database.types.ts";
import { apiError, type OrgApi } from "./api.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi } from "./kit.tsx";
import { field, useOrg, when } from "./ui.tsx";

type Provider = Database["public"]["Enums"]["connector_provider"];
type Connection = Pick<Database["public"]["Tables"]["connections"]["Row"],
  "id" | "provider" | "display_name" | "scopes" | "status" | "token_expires_at" | "verified_at" | "created_at" | "disabled_at" | "config">;
type Act = ReturnType<typeof useAct>;

const PROVIDER_NAMES: Record<Provider, string> = {
  slack_webhook: "Slack (incoming webhook)",
  discord_webhook: "Discord (webhook)",
  https_webhook: "HTTPS webhook",
  github: "GitHub (token)",
  notion: "Notion (token)",
  oauth2: "OAuth2 provider",
  sandbox: "Code sandbox",
};
/** The providers connected with a webhook URL or a token; oauth2 has its own flow, and the sandbox its own form. */
const DIRECT: Exclude<Provider, "oauth2" | "sandbox">[] = ["slack_webhook", "discord_webhook", "https_webhook", "github", "notion"];
const TOKEN_PROVIDERS = new Set<Provider>(["github", "notion"]);

interface Overview {
  connections: Connection[];
  /** The scopes a new connection of each provider asks for: the union over enabled tools. */
  needed: Map<Provider, string[]>;
  /** Each connection's latest delivery, from the audit chain's connector.call events. */
  lastUsed: Map<string, { at: string; outcome: string }>;
}

async function loadOverview(api: OrgApi): Promise<Overview> {
  const [connections, tools, calls] = await Promise.all([
    api.run(api.from("connections")
      .select("id, provider, display_name, scopes, status, token_expires_at, verified_at, created_at, disabled_at, config")
      .order("status").order("display_name")),
    api.run(api.from("agent_tools").select("provider, scopes").eq("enabled", true)),
    api.run(api.from("audit_log").select("target_id, occurred_at, payload")
      .eq("action", "connector.call").eq("target_type", "connection").eq("payload->>kind", "deliver")
      .order("occurred_at", { ascending: false }).limit(500)),
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
    case "invalid_sandbox_config":
      return `Those sandbox settings are not allowed: ${error.message}.`;
    case "internal_error":
      return "The connectors function failed unexpectedly. If another connection has this display name, choose another: names are unique.";
    default:
      return error.message || code;
  }
}

/** A refusal of the connectors function (or of the database), as an Error that says it in words. */
async function refused(e: unknown): Promise<Error> {
  return new Error(refusalText(await apiError(e)));
}

/** Saves a connection through the connectors function; a refusal comes back as an Error in words. */
async function saveConnection(api: OrgApi, body: Record<string, unknown>): Promise<Connection> {
  try {
    return (await api.invoke<{ connection: Connection }>("connectors/connections", body)).connection;
  } catch (e) {
    throw await refused(e);
  }
}

/** Moves to a section of the screen and puts the focus on its first control. */
function jumpTo(headingId: string, controlId: string) {
  document.getElementById(headingId)?.scrollIntoView({ behavior: "smooth", block: "start" });
  document.getElementById(controlId)?.focus({ preventScroll: true });
}

/** /o/:org/connections: the organization's connections; whoever may manage them connects and disables them. */
export function Connections() {
  const org = useOrg();
  const api = useOrgApi();
  const may = org.permissions.organization.manage_connections;
  const overview = useQuery({ queryKey: ["connections", org.id], queryFn: () => loadOverview(api) });
  const act = useAct([["connections", org.id]]);
  // Connections whose disabling the connectors function could not complete: the database's own
  // kill switch is offered for them, since it depends on neither the function nor the provider.
  const [stranded, setStranded] = useState<string[]>([]);
  const strand = (id: string, on: boolean) => setStranded((s) => on ? [...new Set([...s, id])] : s.filter((x) => x !== id));

  async function disable(c: Connection) {
    const sure = await confirmAction({
      title: `Disable ${c.display_name}?`,
      body: <>
        {revocableAtProvider(c) ? "Its tokens are revoked at the provider, and its" : "Its"} credential is deleted from Vault; tools
        bound to it stop working. This can't be undone (connect again to restore it).
      </>,
      confirmLabel: `Yes, disable ${c.display_name}`,
    });
    if (!sure) return;
    act.run(async () => {
      let revocation: "revoked" | "not_supported" | "failed";
      try {
        ({ revocation } = await api.invoke<{ connection: Connection; revocation: "revoked" | "not_supported" | "failed" }>(
          `connectors/connections/${c.id}/disable`, {},
        ));
      } catch (e) {
        const error = await apiError(e);
        // A kill switch must not depend on the function or the provider being up: offer the database's own.
        const down = error.status === 0 || error.status >= 500;
        strand(c.id, down);
        throw new Error(down
          ? `${refusalText(error)} You can still disable it in the database alone, without revoking at the provider: "Disable without revoking" in its row.`
          : refusalText(error));
      }
      strand(c.id, false);
      if (c.provider === "sandbox") return `Disabled ${c.display_name}: code execution is off, and code approved to run on it was withdrawn.`;
      return revocation === "revoked"
        ? `Disabled ${c.display_name}: its tokens were revoked at the provider and its credential deleted from Vault.`
        : revocation === "failed"
          ? `Disabled ${c.display_name} and deleted its credential from Vault, but the provider did not confirm the revocation: revoke it in the provider's console too.`
          : `Disabled ${c.display_name}: its credential was deleted from Vault. This provider has no revocation endpoint; remove the webhook or token at the provider too.`;
    });
  }

  async function disableInDatabase(c: Connection) {
    const sure = await confirmAction({
      title: `Disable ${c.display_name} without revoking?`,
      body: <>
        The database disables {c.display_name} and deletes its credential from Vault, so no tool can use it again; but its tokens
        are not revoked at the provider, where they stay valid until you revoke them in the provider's console. This can't be
        undone (connect again to restore it).
      </>,
      confirmLabel: "Disable without revoking",
    });
    if (!sure) return;
    act.run(async () => {
      try {
        await api.run(api.rpc("disable_connection", { p_connection_id: c.id }));
      } catch (e) {
        throw await refused(e);
      }
      strand(c.id, false);
      return `Disabled ${c.display_name} and deleted its credential from Vault, without revoking at the provider: revoke it there too.`;
    });
  }

  return (
    <>
      <PageHeader
        title={`Connections of ${org.name}`}
        description="Credentials are write-only: they are checked live with the provider, kept in Vault, and never shown again, here or anywhere."
        action={may ? <Button onClick={() => jumpTo("connect-heading", "connect-provider")}>Connect a service</Button> : undefined}
      />
      <OAuthReturn act={act} />
      <Outcome outcome={act.outcome} />

      <Stack gap="xl">
        <Box component="section" mt={0} aria-labelledby="connections-heading">
          <Title order={2} size="h3" id="connections-heading" mb="sm">Connections</Title>
          <QueryState query={overview} empty="No connections yet." isEmpty={(o) => o.connections.length === 0}>
            {(o) => (
              <DataTable
                label="Connections"
                rows={o.connections}
                rowKey={(c) => c.id}
                minWidth={may ? 980 : 860}
                columns={[
                  { key: "name", header: "Name", cell: (c) => <Text size="sm" fw={500}>{c.display_name}</Text>, sort: (c) => c.display_name },
                  {
                    key: "provider", header: "Provider", sort: (c) => PROVIDER_NAMES[c.provider],
                    cell: (c) => (
                      <Stack gap={2}>
                        <Text size="sm">{PROVIDER_NAMES[c.provider]}</Text>
                        {apiUrlOf(c.config) && <Text size="xs" c="dimmed">at <Code style={{ wordBreak: "break-all" }}>{apiUrlOf(c.config)}</Code></Text>}
                        {c.provider === "sandbox" && <Text size="xs" c="dimmed">{sandboxSummary(c.config)}</Text>}
                      </Stack>
                    ),
                  },
                  {
                    key: "scopes", header: "Scopes", sort: (c) => c.scopes.length,
                    cell: (c) => c.scopes.length
                      ? <Group gap={4}>{c.scopes.map((s) => <Code key={s} style={{ whiteSpace: "nowrap" }}>{s}</Code>)}</Group>
                      : <Text size="sm" c="dimmed">none</Text>,
                  },
                  {
                    key: "status", header: "Status", sort: (c) => c.status,
                    cell: (c) => c.status === "active"
                      ? <Badge variant="light" color="teal" miw="max-content">active</Badge>
                      : (
                        <Stack gap={2} align="flex-start">
                          <Badge variant="light" color="gray" miw="max-content">disabled</Badge>
                          <Text size="xs" c="dimmed">{when(c.disabled_at)}</Text>
                        </Stack>
                      ),
                  },
                  { key: "verified", header: "Verified", cell: (c) => when(c.verified_at), sort: (c) => c.verified_at },
                  {
                    key: "used", header: "Last used", sort: (c) => o.lastUsed.get(c.id)?.at ?? "",
                    cell: (c) => {
                      const used = o.lastUsed.get(c.id);
                      return used ? <>{when(used.at)} <Text span size="xs" c="dimmed">({used.outcome})</Text></> : <Text size="sm" c="dimmed">never</Text>;
                    },
                  },
                  { key: "expires", header: "Token expires", cell: (c) => c.token_expires_at ? when(c.token_expires_at) : "—", sort: (c) => c.token_expires_at },
                  ...(may ? [{
                    key: "actions", header: "Actions",
                    cell: (c: Connection) => c.status !== "active" ? "—" : (
                      <Group gap="xs" wrap="nowrap">
                        <Button size="xs" variant="light" color="red" aria-label={`Disable ${c.display_name}`} onClick={() => void disable(c)} disabled={act.busy}>
                          Disable
                        </Button>
                        {stranded.includes(c.id) && (
                          <Button size="xs" variant="outline" color="red" aria-label={`Disable without revoking (${c.display_name})`} onClick={() => void disableInDatabase(c)} disabled={act.busy}>
                            Disable without revoking
                          </Button>
                        )}
                      </Group>
                    ),
                  }] : []),
                ]}
              />
            )}
          </QueryState>
        </Box>

        {may ? (
          <>
            <ConnectDirect needed={overview.data?.needed} />
            <ConnectOAuth needed={overview.data?.needed} />
            <ConnectSandbox />
          </>
        ) : (
          <Text c="dimmed" size="sm">
            Connecting and disabling connections is for the organization's tenant admins: you can see them here, not change them.
          </Text>
        )}
      </Stack>
    </>
  );
}

function apiUrlOf(config: Json): string | null {
  const url = (config as { api_url?: unknown } | null)?.api_url;
  return typeof url === "string" ? url : null;
}

/** A sandbox connection's backend and limits, in words (the connectors function's defaults where it sets none). */
function sandboxSummary(config: Json): string {
  const c = (config ?? {}) as { backend?: string; limits?: { seconds?: number; memory_mib?: number; processes?: number } };
  const l = c.limits ?? {};
  return `runs on ${c.backend ?? "?"}: ${l.seconds ?? 10} s, ${l.memory_mib ?? 256} MiB, ${l.processes ?? 64} processes, no network`;
}

/**
 * Turning code execution on: a sandbox connection on the run worker's host (bubblewrap), with
 * limits no looser than the platform's. Tools bound to it run the code an agent writes, after the
 * approval its policy asks for; the worker proves the sandbox (its self-test) before any code runs.
 */
function ConnectSandbox() {
  const org = useOrg();
  const api = useOrgApi();
  const act = useAct([["connections", org.id]]);

  function connect(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const body = {
      provider: "sandbox",
      display_name: field(form, "display_name"),
      config: { backend: "bubblewrap", limits: { seconds: Number(form.get("seconds")), memory_mib: Number(form.get("memory_mib")) } },
    };
    act.run(async () => {
      const connection = await saveConnection(api, body);
      (formElement.elements.namedItem("display_name") as HTMLInputElement).value = "";
      return `Connected ${connection.display_name}: bind an agent's tool (code.run) to it on the Agents screen. Its code waits for the approval its policy asks for.`;
    });
  }

  return (
    <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="sandbox-heading">
      <Title order={2} size="h3" id="sandbox-heading" mb="xs">Turn on code execution</Title>
      <Text size="sm" c="dimmed" mb="sm">
        A code sandbox runs the programs agents write, each in a fresh sandbox on the run worker's host: no network, its own scratch
        directory, hard limits. The code is what people approve, pinned by its hash.
      </Text>
      <Outcome outcome={act.outcome} />
      <form onSubmit={connect} aria-label="Turn on code execution" autoComplete="off">
        <Stack>
          <SimpleGrid cols={{ base: 1, sm: 3 }}>
            <TextInput name="display_name" label="Display name" required maxLength={100} defaultValue="Code sandbox" />
            <NativeSelect name="seconds" label="Wall-clock limit" defaultValue="10"
              data={["2", "5", "10"].map((v) => ({ value: v, label: `${v} seconds` }))} />
            <NativeSelect name="memory_mib" label="Memory limit" defaultValue="256"
              data={["64", "128", "256"].map((v) => ({ value: v, label: `${v} MiB` }))} />
          </SimpleGrid>
          <Group>
            <Button type="submit" loading={act.busy}>Connect the sandbox</Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}

function revocableAtProvider(c: Connection): boolean {
  return c.provider === "oauth2" && typeof (c.config as { revoke_url?: unknown } | null)?.revoke_url === "string";
}

/** The scopes a new connection of `provider` asks for, as the admin reads them before connecting. */
function ScopesNeeded({ provider, needed }: { provider: Provider; needed: Map<Provider, string[]> | undefined }) {
  const scopes = needed?.get(provider) ?? [];
  return (
    <Text size="sm" c="dimmed" aria-live="polite">
      {needed === undefined
        ? "Reading the scopes the enabled tools need…"
        : scopes.length
          ? <>
            This connection asks for the scopes the workspace's enabled {PROVIDER_NAMES[provider]} tools need, and no more (the
            connectors function derives them when you connect): {scopes.map((s, i) => <span key={s}>{i > 0 && " "}<Code>{s}</Code></span>)}.
          </>
          : `No enabled ${PROVIDER_NAMES[provider]} tool needs a scope: the connection asks for none.`}
      {provider === "github" && " A GitHub token that reports its scopes must hold exactly this set, no more."}
    </Text>
  );
}

/** Connecting a webhook or a token: checked live by the connectors function, then kept in Vault. */
function ConnectDirect({ needed }: { needed: Map<Provider, string[]> | undefined }) {
  const org = useOrg();
  const api = useOrgApi();
  const act = useAct([["connections", org.id]]);
  const [provider, setProvider] = useState<(typeof DIRECT)[number]>("slack_webhook");
  const token = TOKEN_PROVIDERS.has(provider);

  function connect(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const secret = String(form.get("credential") ?? "").trim();
    const body = { provider, display_name: field(form, "display_name"), credential: token ? { token: secret } : { url: secret } };
    // The credential leaves the page's state at once, whatever the answer: it is never shown again.
    (formElement.elements.namedItem("credential") as HTMLInputElement).value = "";
    act.run(async () => {
      const connection = await saveConnection(api, body);
      // Not form.reset(): the provider stays as chosen (a controlled select), the name is cleared.
      (formElement.elements.namedItem("display_name") as HTMLInputElement).value = "";
      return `Connected ${connection.display_name}: the provider accepted the credential in a live check, and it is kept in Vault.`;
    });
  }

  return (
    <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="connect-heading">
      <Title order={2} size="h3" id="connect-heading" mb="sm">Connect a webhook or token</Title>
      <Outcome outcome={act.outcome} />
      <form onSubmit={connect} aria-label="Connect a webhook or token" autoComplete="off">
        <Stack>
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            <NativeSelect
              id="connect-provider"
              name="provider"
              label="Provider"
              value={provider}
              onChange={(e) => setProvider(e.currentTarget.value as typeof provider)}
              data={DIRECT.map((p) => ({ value: p, label: PROVIDER_NAMES[p] }))}
            />
            <TextInput name="display_name" label="Display name" required maxLength={100} />
          </SimpleGrid>
          {token
            ? <TextInput key="token" name="credential" label="API token" type="password" required autoComplete="off" maxLength={1024} />
            : <TextInput key="url" name="credential" label="Webhook URL" type="url" required autoComplete="off" placeholder="https://…" maxLength={2048} />}
          <ScopesNeeded provider={provider} needed={needed} />
          <Group>
            <Button type="submit" loading={act.busy}>Verify and connect</Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}

/** The console address the provider sends the admin back to: this screen, which finishes the flow. */
function redirectUri(orgId: string): string {
  return `${location.origin}/o/${orgId}/connections`;
}

/** Connecting an OAuth2 provider: out to its consent, back here with the code (OAuthReturn). */
function ConnectOAuth({ needed }: { needed: Map<Provider, string[]> | undefined }) {
  const org = useOrg();
  const api = useOrgApi();
  const act = useAct();
  // Set once the provider's address is known: the page is about to leave for it.
  const [leaving, setLeaving] = useState(false);
  const redirect = redirectUri(org.id);

  function start(event: FormEvent<HTMLFormElement>) {
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
      redirect_uri: redirect,
    };
    (formElement.elements.namedItem("client_secret") as HTMLInputElement).value = "";
    act.run(async () => {
      let answer: { authorization_url: string; state: string; scopes: string[] };
      try {
        answer = await api.invoke("connectors/oauth2/start", body);
      } catch (e) {
        throw await refused(e);
      }
      const target = new URL(answer.authorization_url);
      if (target.protocol !== "https:" && target.protocol !== "http:") {
        throw new Error("The function answered an authorization address that is not a web address; nothing was opened.");
      }
      // The state comes back on the redirect; the connectors function completes it only for the
      // person who started it (RFC 6749 §10.12), so the page keeps nothing.
      setLeaving(true);
      location.assign(target.href);
      return "Sending you to the provider to authorize the connection…";
    });
  }

  return (
    <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="oauth-heading">
      <Title order={2} size="h3" id="oauth-heading" mb="xs">Connect with OAuth2</Title>
      <Text size="sm" c="dimmed" mb="md">
        You are sent to the provider to authorize, and come back here, where the code is exchanged (with PKCE) and the tokens are
        kept in Vault. A grant with more scopes than were asked for is revoked and refused.
      </Text>
      <Outcome outcome={act.outcome} />
      <form onSubmit={start} aria-label="Connect with OAuth2" autoComplete="off">
        <Stack>
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            <TextInput name="display_name" label="Display name" required maxLength={100} />
            <TextInput name="client_id" label="Client ID" required maxLength={256} />
            <TextInput name="authorize_url" label="Authorize URL" type="url" required placeholder="https://provider.example/oauth/authorize" />
            <TextInput name="token_url" label="Token URL" type="url" required placeholder="https://provider.example/oauth/token" />
            <TextInput name="revoke_url" label="Revoke URL (optional)" type="url" placeholder="https://provider.example/oauth/revoke" />
            <TextInput name="api_url" label="API URL" type="url" required placeholder="https://api.provider.example" />
            <TextInput name="client_secret" label="Client secret" type="password" required autoComplete="off" maxLength={1024} />
          </SimpleGrid>
          <Group align="flex-end" wrap="wrap" gap="sm">
            <TextInput
              name="redirect_uri"
              label="Redirect URI"
              description="Register this exact address as the OAuth app's redirect URI: the provider sends you back here."
              readOnly
              value={redirect}
              style={{ flex: "1 1 18rem" }}
              styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }}
            />
            <CopyButton value={redirect}>
              {({ copied, copy }) => <Button variant="default" onClick={copy}>{copied ? "Copied" : "Copy the redirect URI"}</Button>}
            </CopyButton>
          </Group>
          <ScopesNeeded provider="oauth2" needed={needed} />
          <Group>
            <Button type="submit" loading={act.busy || leaving}>Start authorization</Button>
          </Group>
        </Stack>
      </form>
    </Paper>
  );
}

// An authorization's state is single use: completing it twice (React runs effects twice in
// development) would refuse the second attempt, so each state is sent once per page.
const completing = new Set<string>();

/**
 * The redirect back from the provider (?code=&state=, or ?error=): finishes the authorization
 * through the connectors function, then takes the parameters out of the address. Its outcome is
 * the screen's (act).
 */
function OAuthReturn({ act }: { act: Act }) {
  const org = useOrg();
  const api = useOrgApi();
  const [params, setParams] = useSearchParams();
  const code = params.get("code");
  const state = params.get("state");
  const denied = params.get("error");
  const [finishing, setFinishing] = useState(false);

  useEffect(() => {
    const attempt = state ?? (denied ? `error:${denied}` : null);
    if (!attempt || (!code && !denied) || completing.has(attempt)) return;
    completing.add(attempt);
    const description = params.get("error_description");
    setParams({}, { replace: true });
    setFinishing(!denied);
    act.run(async () => {
      if (denied) throw new Error(`The provider did not authorize the connection: ${description ?? denied}.`);
      try {
        const { connection: c } = await api.invoke<{ connection: Connection }>("connectors/oauth2/callback", { state, code });
        return `Connected ${c.display_name} with scopes ${c.scopes.join(", ") || "none"}: the provider's tokens are kept in Vault.`;
      } catch (e) {
        throw await refused(e);
      } finally {
        setFinishing(false);
      }
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [state, code, denied, org.id]);

  return finishing ? <Text role="status" aria-busy="true" size="sm" mb="md">Finishing the authorization with the provider…</Text> : null;
}
