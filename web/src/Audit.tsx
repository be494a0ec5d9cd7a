/**
 * The audit log (seed 000, audit-event hash chain): the organization's events as its members read
 * them (public.audit_log, under the chain's RLS), filtered and paged, newest first, in a table
 * whose columns sort the page shown; the chain's head, its latest signed checkpoint and its
 * signing keys; an export through the audit-export function, downloaded as a file; and
 * verification of an export here in the browser (functions/_shared/audit/verify.ts, the CLI's verifier) against a signing
 * key and checkpoint the person pinned, so that the answer does not rest on this page's server
 * telling the truth about itself.
 *
 * Every member reads, exports (which signs a checkpoint) and verifies; signing a checkpoint on
 * demand is offered to whoever may manage the organization (my_permissions: manage_organization;
 * the audit-checkpoint function asks for a tenant admin, and refuses anyone else regardless).
 * A pin is the person's own, kept in the database (loadPins / savePins below): it survives a
 * reload, and nobody else reads it.
 */
import { Alert, Anchor, Badge, Box, Button, Code, DataList, FileButton, Group, NativeSelect, Paper, SimpleGrid, Stack, Text, TextInput, Textarea, Title } from "@mantine/core";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import type { Database, Json } from "../../supabase/database.types.ts";
import { apiError, describeError, type OrgApi } from "./api.ts";
import { parseCheckpoint, type SignedCheckpoint, verifyExportText, type VerifyResult } from "../../functions/_shared/audit/verify.ts";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi } from "./kit.tsx";
import { consoleFetch } from "./session.ts";
import { field, useOrg, when } from "./ui.tsx";

type Directory = Database["public"]["Functions"]["organization_directory"]["Returns"];
type SigningKey = Database["public"]["Functions"]["audit_signing_keys"]["Returns"][number];

const PAGE = 50;

/** What a person trusts: a signing key (raw Ed25519, base64) and, optionally, a checkpoint the export must extend. */
interface Pin {
  keyId: string;
  publicKey: string;
  checkpoint?: SignedCheckpoint;
}

// ---------------------------------------------------------------------------------------------
// The pins: where the pinned key and checkpoint are kept
// ---------------------------------------------------------------------------------------------
/**
 * The key (and checkpoint) the signed-in person pinned for this organization's chain, kept in the
 * database per person (public.audit_pins: read by nobody else, written through pin_audit_key and
 * unpin_audit_key only, audited), so that it survives a reload and follows them to another
 * browser. The browser still does the verifying, against what is pinned here.
 */
async function loadPins(api: OrgApi): Promise<Pin | null> {
  const row = await api.run(api.from("audit_pins").select("key_id, public_key, checkpoint").maybeSingle()) as
    Pick<Database["public"]["Tables"]["audit_pins"]["Row"], "key_id" | "public_key" | "checkpoint"> | null;
  return row ? { keyId: row.key_id, publicKey: row.public_key, ...(row.checkpoint ? { checkpoint: row.checkpoint as unknown as SignedCheckpoint } : {}) } : null;
}

/** Pins `pin` for the person in this organization; null unpins. */
async function savePins(api: OrgApi, pin: Pin | null): Promise<void> {
  if (!pin) return void await api.run(api.rpc("unpin_audit_key"));
  await api.run(api.rpc("pin_audit_key", {
    p_key_id: pin.keyId,
    p_public_key: pin.publicKey,
    ...(pin.checkpoint ? { p_checkpoint: pin.checkpoint as unknown as Json } : {}),
  }));
}

/** Moves to a section of the screen and puts the focus on its first control. */
function jumpTo(headingId: string, controlId: string) {
  document.getElementById(headingId)?.scrollIntoView({ behavior: "smooth", block: "start" });
  document.getElementById(controlId)?.focus({ preventScroll: true });
}

/** /o/:org/audit: the chain's head, its events, and export with in-browser verification. */
export function Audit() {
  const org = useOrg();
  // A pin belongs to one organization's chain: switching organization starts from that one's pin.
  return <AuditOf key={org.id} />;
}

function AuditOf() {
  const org = useOrg();
  const api = useOrgApi();
  const pins = useQuery({ queryKey: ["audit", org.id, "pin"], queryFn: () => loadPins(api) });
  const pinAct = useAct([["audit", org.id, "pin"]]);
  const pin = pins.data ?? null;
  const setPin = (next: Pin | null) => pinAct.run(async () => {
    await savePins(api, next);
    return next ? `Pinned key ${next.keyId}${next.checkpoint ? " with its checkpoint" : ""}: exports are verified against it.` : "Unpinned.";
  });
  const directory = useQuery({
    queryKey: ["audit", org.id, "directory"],
    queryFn: () => api.run(api.rpc("organization_directory")),
  });
  const people = new Map((directory.data ?? []).map((p) => [p.user_id, p.email]));

  return (
    <>
      <PageHeader
        title={`Audit log of ${org.name}`}
        description={<>
          Every consequential action is appended to this organization's hash chain. Export it and verify it here, against a key
          you pinned, or offline with <Code>npm run audit:verify</Code>.
        </>}
        action={<Button variant="light" onClick={() => jumpTo("export-heading", "export-from")}>Export and verify</Button>}
      />
      <Stack gap="xl">
        <div>
          <Outcome outcome={pinAct.outcome} />
          <ChainHead pin={pin} setPin={setPin} />
        </div>
        <Events people={people} directory={directory.data ?? []} />
        <ExportAndVerify pin={pin} />
      </Stack>
    </>
  );
}

/** A labelled list of facts (a dl) that stacks its labels over their values on a phone. */
function Facts({ items }: { items: [string, ReactNode][] }) {
  return (
    <DataList size="sm" labelWidth="9rem" gap="xs">
      {items.map(([label, value]) => (
        <DataList.Item key={label} style={{ flexWrap: "wrap" }}>
          <DataList.ItemLabel>{label}</DataList.ItemLabel>
          <DataList.ItemValue style={{ flex: "1 1 16rem", minWidth: 0, overflowWrap: "anywhere" }}>{value}</DataList.ItemValue>
        </DataList.Item>
      ))}
    </DataList>
  );
}

/** A hash or key: monospace, broken anywhere rather than overflowing a phone's width. */
function Hex({ children, label }: { children: ReactNode; label?: string }) {
  return <Code aria-label={label} style={{ wordBreak: "break-all" }}>{children}</Code>;
}

// ---------------------------------------------------------------------------------------------
// The chain head, the latest checkpoint, signing keys and the pin
// ---------------------------------------------------------------------------------------------
interface Head {
  latest: { seq: number | null; entry_hash: string | null; occurred_at: string | null } | null;
  unsealed: number;
  checkpoint: SignedCheckpoint | null;
  keys: SigningKey[];
}

async function loadHead(api: OrgApi): Promise<Head> {
  const countUnsealed = async () => {
    const { count, error, status } = await api.from("audit_log").select("action", { count: "exact", head: true }).eq("sealed", false);
    if (error) throw await apiError(error, status);
    return count ?? 0;
  };
  const [latest, unsealed, checkpoints, keys] = await Promise.all([
    api.run(api.from("audit_log").select("seq, entry_hash, occurred_at").eq("sealed", true).order("seq", { ascending: false }).limit(1)),
    countUnsealed(),
    api.run(api.rpc("latest_audit_checkpoint")),
    api.run(api.rpc("audit_signing_keys")),
  ]);
  return { latest: latest[0] ?? null, unsealed, checkpoint: checkpoints[0] ?? null, keys };
}

const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;

function ChainHead({ pin, setPin }: { pin: Pin | null; setPin: (pin: Pin | null) => void }) {
  const org = useOrg();
  const api = useOrgApi();
  const head = useQuery({ queryKey: ["audit", org.id, "head"], queryFn: () => loadHead(api) });
  const act = useAct([["audit", org.id, "head"]]);
  const maySign = org.permissions.organization.manage_organization;
  const [pastedError, setPastedError] = useState<string | null>(null);

  function signNow() {
    act.run(async () => {
      await api.invoke("audit-checkpoint", {});
      return "Checkpoint signed: it states the chain as it is now.";
    });
  }

  function pinPasted(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const publicKey = field(form, "public_key");
    if (!BASE64_KEY.test(publicKey)) {
      setPastedError("That is not a raw Ed25519 public key: 32 bytes in base64 (44 characters ending in =).");
      (formElement.elements.namedItem("public_key") as HTMLInputElement).focus();
      return;
    }
    setPastedError(null);
    setPin({ keyId: field(form, "key_id") || "pasted key", publicKey });
    formElement.reset();
  }

  const pinnedBody = pin?.checkpoint ? parseCheckpoint(pin.checkpoint.checkpoint) : null;

  return (
    <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="head-heading">
      <Group justify="space-between" align="center" mb="sm" gap="sm">
        <Title order={2} size="h3" id="head-heading">Chain head</Title>
        <Group gap="xs">
          <Button variant="default" size="xs" onClick={() => void head.refetch()} loading={head.isFetching && !head.isPending}>Refresh</Button>
          {maySign && <Button size="xs" onClick={signNow} loading={act.busy}>Sign a checkpoint now</Button>}
        </Group>
      </Group>
      <Outcome outcome={act.outcome} />
      <QueryState query={head} empty="" isEmpty={() => false} rows={4}>
        {(h) => {
          const body = h.checkpoint ? parseCheckpoint(h.checkpoint.checkpoint) : null;
          return (
            <Stack gap="lg">
              {h.latest ? (
                <Facts items={[
                  ["Latest entry", h.latest.seq],
                  ["Its hash", <Hex label="Head hash">{h.latest.entry_hash}</Hex>],
                  ["Recorded", when(h.latest.occurred_at)],
                  ["Not sealed yet", `${h.unsealed} ${h.unsealed === 1 ? "event" : "events"} (chained within seconds)`],
                ]} />
              ) : <Text size="sm" c="dimmed">The chain has no entries yet.</Text>}

              <div>
                <Title order={3} size="h4" mb="xs">Latest signed checkpoint</Title>
                {h.checkpoint && body ? (
                  <Stack gap="sm" align="flex-start">
                    <Facts items={[
                      ["Size", `${body.size} entries`],
                      ["Head", <Hex>{body.head}</Hex>],
                      ["Merkle root", <Hex>{body.root}</Hex>],
                      ["Signed", <>{when(body.time)} by key <Code>{h.checkpoint.key_id}</Code></>],
                    ]} />
                    {/* A key pinned already stays: the checkpoint must then be signed by it, not by the key it names. */}
                    <Button variant="light" onClick={() => setPin({ keyId: pin?.keyId ?? h.checkpoint!.key_id, publicKey: pin?.publicKey ?? h.checkpoint!.public_key, checkpoint: h.checkpoint! })}>
                      Pin this checkpoint
                    </Button>
                  </Stack>
                ) : <Text size="sm" c="dimmed">No checkpoint signed yet. Every export signs one.</Text>}
                {!maySign && <Text size="sm" c="dimmed" mt="xs">Tenant admins can sign a checkpoint on demand; every export signs one too.</Text>}
              </div>

              <div>
                <Title order={3} size="h4" mb="xs">Signing keys</Title>
                {h.keys.length === 0 ? <Text size="sm" c="dimmed">No signing key yet: the first checkpoint creates one.</Text> : (
                  <DataTable
                    label="Signing keys"
                    rows={h.keys}
                    rowKey={(k) => k.key_id}
                    minWidth={720}
                    columns={[
                      { key: "key", header: "Key", cell: (k) => <Code>{k.key_id}</Code>, sort: (k) => k.key_id },
                      { key: "public", header: "Public key (Ed25519, base64)", cell: (k) => <Hex>{k.public_key}</Hex> },
                      { key: "created", header: "Created", cell: (k) => when(k.created_at), sort: (k) => k.created_at },
                      {
                        key: "status", header: "Status", sort: (k) => k.retired_at ? "retired" : "active",
                        cell: (k) => k.retired_at
                          ? <Stack gap={2} align="flex-start"><Badge variant="light" color="gray" miw="max-content">retired</Badge><Text size="xs" c="dimmed">{when(k.retired_at)}</Text></Stack>
                          : <Badge variant="light" color="teal" miw="max-content">active</Badge>,
                      },
                      { key: "pin", header: "Pin", cell: (k) => <Button size="xs" variant="default" onClick={() => setPin({ keyId: k.key_id, publicKey: k.public_key })}>Pin key {k.key_id}</Button> },
                    ]}
                  />
                )}
              </div>
            </Stack>
          );
        }}
      </QueryState>

      <Title order={3} size="h4" mt="lg" mb="xs">Pinned</Title>
      <Box role="status" aria-label="Pinned key and checkpoint">
        {pin ? (
          <Facts items={[
            ["Pinned key", <><Code>{pin.keyId}</Code>: <Hex>{pin.publicKey}</Hex></>],
            ["Pinned checkpoint", pin.checkpoint
              ? <>size {pinnedBody?.size}, head <Hex>{pinnedBody?.head}</Hex></>
              : "none: exports are checked against the key alone"],
          ]} />
        ) : <Text size="sm" c="dimmed">Nothing pinned. Pin a key (or a checkpoint with its key) before verifying an export.</Text>}
      </Box>
      {pin && <Button variant="default" size="xs" mt="sm" onClick={() => setPin(null)}>Unpin</Button>}

      <form onSubmit={pinPasted} aria-label="Pin a public key you hold">
        <Group align="flex-start" wrap="wrap" gap="sm" mt="md">
          <TextInput
            name="public_key"
            label="Public key you hold (base64)"
            required
            autoComplete="off"
            spellCheck={false}
            error={pastedError}
            onChange={() => setPastedError(null)}
            style={{ flex: "3 1 18rem" }}
            styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)" } }}
          />
          <TextInput name="key_id" label="Key id (optional)" autoComplete="off" style={{ flex: "1 1 10rem" }} />
          <Button type="submit" variant="light" mt={{ base: 0, sm: 25 }}>Pin this public key</Button>
        </Group>
      </form>
      <Text size="sm" c="dimmed" mt="sm">
        Pinning a key or checkpoint read from this server trusts the server as it is now. For a check that holds even if the server
        is compromised later, record them somewhere else and paste the key you recorded.
      </Text>
    </Paper>
  );
}

// ---------------------------------------------------------------------------------------------
// Events: filters and paging
// ---------------------------------------------------------------------------------------------
interface Filters {
  action: string;
  actor: string;
  from: string;
  to: string;
}

const NO_FILTERS: Filters = { action: "", actor: "", from: "", to: "" };
const NO_ACTOR = "none";

/** LIKE's own wildcards in what the person typed are literal characters. */
function likePrefix(text: string): string {
  return `${text.replace(/[\\%_*]/g, (c) => `\\${c}`)}*`;
}

async function loadEvents(api: OrgApi, filters: Filters, page: number) {
  let query = api.from("audit_log")
    .select("seq, action, actor, target_type, target_id, occurred_at, entry_hash, payload, sealed")
    // Not yet sealed events have no number and are the newest.
    .order("seq", { ascending: false, nullsFirst: true })
    .order("occurred_at", { ascending: false });
  if (filters.action) query = query.like("action", likePrefix(filters.action));
  if (filters.actor === NO_ACTOR) query = query.is("actor", null);
  else if (filters.actor) query = query.eq("actor", filters.actor);
  if (filters.from) query = query.gte("occurred_at", new Date(filters.from).toISOString());
  if (filters.to) query = query.lte("occurred_at", new Date(filters.to).toISOString());
  // One row more than a page says whether there is an older page.
  const rows = await api.run(query.range(page * PAGE, page * PAGE + PAGE));
  return {
    // A row's key: its number, or (not sealed yet) its place on the page.
    rows: rows.slice(0, PAGE).map((e, i) => ({ ...e, key: e.seq === null ? `pending-${i}` : String(e.seq) })),
    more: rows.length > PAGE,
  };
}

type Event = Awaited<ReturnType<typeof loadEvents>>["rows"][number];

function payloadText(payload: Json | null): string {
  return payload === null ? "(purged)" : JSON.stringify(payload, null, 2);
}

/** An event's payload, behind a toggle: the table stays readable. */
function PayloadCell({ event }: { event: Event }) {
  const [open, setOpen] = useState(false);
  return (
    <Stack gap={4} align="flex-start">
      <Anchor component="button" type="button" size="sm" ta="left" style={{ whiteSpace: "nowrap" }} aria-expanded={open} onClick={() => setOpen(!open)}>
        Show the payload{event.seq ? ` of entry ${event.seq}` : ""}
      </Anchor>
      {open && (
        <Code block maw={420} style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>{payloadText(event.payload)}</Code>
      )}
    </Stack>
  );
}

function Events({ people, directory }: { people: Map<string, string>; directory: Directory }) {
  const org = useOrg();
  const api = useOrgApi();
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [page, setPage] = useState(0);
  const events = useQuery({
    queryKey: ["audit", org.id, "events", filters, page],
    queryFn: () => loadEvents(api, filters, page),
    // The page shown stays while the next loads, instead of a skeleton at every page turn.
    placeholderData: keepPreviousData,
  });
  const edit = (name: keyof Filters) => (e: { currentTarget: { value: string } }) => {
    const value = e.currentTarget.value;
    setDraft((d) => ({ ...d, [name]: value }));
  };
  const actorName = (e: Event) => e.actor ? people.get(e.actor) ?? e.actor : "";

  function show(next: Filters) {
    setDraft(next);
    setFilters({ ...next, action: next.action.trim() });
    setPage(0);
  }

  return (
    <Box component="section" mt={0} aria-labelledby="events-heading">
      <Title order={2} size="h3" id="events-heading" mb="sm">Events</Title>
      <Paper withBorder p="md" radius="md" mb="md" component="form" role="search" aria-label="Filter audit events"
        onSubmit={(e: FormEvent<HTMLFormElement>) => { e.preventDefault(); show(draft); }}>
        <SimpleGrid cols={{ base: 1, sm: 2, lg: 4 }}>
          <TextInput name="action" label="Action starts with" placeholder="connector.call" value={draft.action} onChange={edit("action")} autoComplete="off" />
          <NativeSelect
            name="actor"
            label="Actor"
            value={draft.actor}
            onChange={edit("actor")}
            data={[
              { value: "", label: "Anyone" },
              { value: NO_ACTOR, label: "No person (the platform or an agent runtime)" },
              ...directory.map((p) => ({ value: p.user_id, label: p.email })),
            ]}
          />
          <TextInput name="from" label="From" type="datetime-local" value={draft.from} onChange={edit("from")} />
          <TextInput name="to" label="Until" type="datetime-local" value={draft.to} onChange={edit("to")} />
        </SimpleGrid>
        <Group mt="md" gap="sm">
          <Button type="submit">Filter events</Button>
          <Button variant="default" onClick={() => show(NO_FILTERS)}>Clear filters</Button>
        </Group>
      </Paper>
      <QueryState query={events} empty="No events match." isEmpty={(d) => d.rows.length === 0 && page === 0} rows={6}>
        {({ rows, more }) => (
          <>
            {rows.length === 0 ? <Text size="sm" c="dimmed">No events on this page.</Text> : (
              <DataTable
                label="Audit events"
                rows={rows}
                rowKey={(e) => e.key}
                minWidth={900}
                columns={[
                  { key: "entry", header: "Entry", cell: (e) => e.seq ?? <Text span size="sm" c="dimmed">not sealed yet</Text>, sort: (e) => e.seq ?? Number.MAX_SAFE_INTEGER },
                  { key: "when", header: "When", cell: (e) => when(e.occurred_at), sort: (e) => e.occurred_at },
                  { key: "action", header: "Action", cell: (e) => <Code>{e.action}</Code>, sort: (e) => e.action },
                  { key: "actor", header: "Actor", cell: (e) => actorName(e) || "—", sort: actorName },
                  {
                    key: "target", header: "Target", sort: (e) => `${e.target_type ?? ""} ${e.target_id ?? ""}`,
                    cell: (e) => e.target_type
                      ? <Text size="sm" style={{ overflowWrap: "anywhere" }}>{e.target_type} <Text span size="xs" c="dimmed" ff="monospace">{e.target_id ?? ""}</Text></Text>
                      : "—",
                  },
                  { key: "payload", header: "Payload", cell: (e) => <PayloadCell event={e} /> },
                ]}
              />
            )}
            <Group justify="space-between" mt="md" gap="sm">
              <Button variant="default" onClick={() => setPage((p) => p - 1)} disabled={page === 0}>Newer events</Button>
              <Text size="sm" aria-live="polite">Page {page + 1}{events.isPlaceholderData ? " (loading…)" : ""}</Text>
              <Button variant="default" onClick={() => setPage((p) => p + 1)} disabled={!more || events.isPlaceholderData}>Older events</Button>
            </Group>
          </>
        )}
      </QueryState>
    </Box>
  );
}

// ---------------------------------------------------------------------------------------------
// Export and verification
// ---------------------------------------------------------------------------------------------
/**
 * The audit-export function's answer: the export's text and its file name. A GET with the range
 * in the query, whose file name is in a response header, which api.invoke (a POST answering the
 * body alone) does not give; so it goes through the console's fetch (session.ts), as every call does.
 */
async function exportChain(orgId: string, range: URLSearchParams): Promise<{ text: string; name: string }> {
  const res = await consoleFetch(`${location.origin}/console/api/functions/v1/audit-export${range.size ? `?${range}` : ""}`, {
    headers: { "x-org-id": orgId },
  });
  if (!res.ok) throw await apiError({ context: res });
  const name = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? `audit-${orgId}.jsonl`;
  return { text: await res.text(), name };
}

function ExportAndVerify({ pin }: { pin: Pin | null }) {
  const org = useOrg();
  // An export seals what was recorded and signs a checkpoint (the first time, with a new key).
  const exporting = useAct([["audit", org.id, "head"], ["audit", org.id, "events"]]);
  const [download, setDownload] = useState<{ url: string; name: string } | null>(null);
  const [text, setText] = useState("");
  const [opened, setOpened] = useState<string | null>(null);
  const [result, setResult] = useState<VerifyResult | null>(null);
  const [verifying, setVerifying] = useState(false);

  // A download link holds the export in memory until it is replaced or the screen closes.
  useEffect(() => () => {
    if (download) URL.revokeObjectURL(download.url);
  }, [download]);

  function exportLog(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const range = new URLSearchParams();
    for (const name of ["from_seq", "to_seq"]) if (field(form, name)) range.set(name, field(form, name));
    exporting.run(async () => {
      const exported = await exportChain(org.id, range);
      setDownload({ url: URL.createObjectURL(new Blob([exported.text], { type: "application/x-ndjson" })), name: exported.name });
      setText(exported.text);
      setOpened(null);
      setResult(null);
      const entries = exported.text.split("\n").filter((l) => l.startsWith('{"type":"entry"')).length;
      return `Exported ${entries} ${entries === 1 ? "entry" : "entries"} with a signed checkpoint. Download it, and verify it below.`;
    });
  }

  async function verify() {
    if (!pin) return;
    setVerifying(true);
    setResult(null);
    try {
      // The same verifier as the offline CLI (functions/_shared/audit/verify.ts), against what is pinned.
      setResult(await verifyExportText(text, { publicKey: pin.publicKey, ...(pin.checkpoint ? { pin: pin.checkpoint } : {}) }));
    } catch (e) {
      setResult({ ok: false, seq: null, reason: describeError(e) });
    } finally {
      setVerifying(false);
    }
  }

  return (
    <>
      <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="export-heading">
        <Title order={2} size="h3" id="export-heading" mb="sm">Export</Title>
        <Outcome outcome={exporting.outcome} />
        <form onSubmit={exportLog} aria-label="Export the audit log">
          <Group align="flex-end" wrap="wrap" gap="sm">
            <TextInput id="export-from" name="from_seq" label="From entry (optional)" type="number" min={1} step={1} style={{ flex: "1 1 10rem" }} />
            <TextInput name="to_seq" label="Until entry (optional)" type="number" min={1} step={1} style={{ flex: "1 1 10rem" }} />
            <Button type="submit" loading={exporting.busy}>Export audit log</Button>
          </Group>
        </form>
        {download && (
          <Text size="sm" mt="md">
            <Anchor href={download.url} download={download.name} style={{ overflowWrap: "anywhere" }}>Download {download.name}</Anchor>
          </Text>
        )}
      </Paper>

      <Paper withBorder p={{ base: "md", sm: "lg" }} radius="md" component="section" mt={0} aria-labelledby="verify-heading">
        <Title order={2} size="h3" id="verify-heading" mb="xs">Verify an export</Title>
        <Text size="sm" c="dimmed" mb="md">
          Checked here with Web Crypto: every entry's hash and link, each payload's hash, the Merkle root, and the checkpoint's
          Ed25519 signature by the pinned key; with a pinned checkpoint, that the export extends it.
        </Text>
        <Stack>
          <Group gap="sm">
            <FileButton accept=".jsonl,.ndjson,application/x-ndjson,application/json,text/plain" onChange={async (file) => {
              if (!file) return;
              setText(await file.text());
              setOpened(file.name);
              setResult(null);
            }}>
              {(props) => <Button variant="default" {...props}>Open an export file</Button>}
            </FileButton>
            {opened && <Text size="sm" c="dimmed" style={{ overflowWrap: "anywhere" }}>Opened {opened}</Text>}
          </Group>
          <Textarea
            label="Export to verify (JSON Lines)"
            description="An export from above, a file you opened, or one pasted here."
            value={text}
            rows={8}
            spellCheck={false}
            wrap="off"
            onChange={(e) => {
              setText(e.currentTarget.value);
              setResult(null);
            }}
            styles={{ input: { fontFamily: "var(--mantine-font-family-monospace)", fontSize: "var(--mantine-font-size-xs)" } }}
          />
          {!pin && (
            <Text size="sm" c="dimmed">
              Pin a signing key or checkpoint (above) first: the export is checked against what you pinned, not against the key it
              carries.
            </Text>
          )}
          <Group>
            <Button onClick={() => void verify()} disabled={!pin || text.trim() === ""} loading={verifying}>Verify export</Button>
          </Group>
          {result?.ok && (
            <Alert color="teal" role="status">
              Verified: {result.entries} {result.entries === 1 ? "entry" : "entries"} ({result.fromSeq} to {result.size}) of{" "}
              {result.org === org.id ? `the chain of ${org.name}` : `the chain of another organization (${result.org})`} check out, up to
              head <Hex>{result.head}</Hex>, signed by the pinned key {pin?.keyId}
              {result.extendsPin ? ", and the export extends the pinned checkpoint" : ""}.
            </Alert>
          )}
          {result && !result.ok && (
            <Alert color="red" role="alert">
              Verification failed{result.seq !== null ? ` at entry ${result.seq}` : ""}: {result.reason}.
            </Alert>
          )}
        </Stack>
      </Paper>
    </>
  );
}
