/**
 * The audit log (seed 000, audit-event hash chain): the organization's events as its members read
 * them (public.audit_log, under the chain's RLS), filtered and paged, newest first; the chain's
 * head and latest signed checkpoint; an export through the audit-export function, downloaded as a
 * file; and verification of an export here in the browser (audit_verify.ts, Web Crypto) against
 * a signing key and checkpoint the person pinned, so that the answer does not rest on this page's
 * server telling the truth about itself.
 */
import { useEffect, useState, type FormEvent } from "react";
import type { Database, Json } from "../../supabase/database.types.ts";
import { parseCheckpoint, verifyExport, type Pin, type SignedCheckpoint, type Verification } from "./audit_verify.ts";
import { supabase } from "./supabase.ts";
import { describe, field, functionError, Notice, States, unwrap, useAction, useLoad, useOrg, when, type OrgContext } from "./ui.tsx";

type Directory = Database["public"]["Functions"]["organization_directory"]["Returns"];
type SigningKey = Database["public"]["Functions"]["audit_signing_keys"]["Returns"][number];

const PAGE = 50;

/** /o/:org/audit: the chain's head, its events, and export with in-browser verification. */
export function Audit() {
  const org = useOrg();
  // A pin belongs to one organization's chain: switching organization starts afresh.
  return <AuditOf key={org.id} org={org} />;
}

function AuditOf({ org }: { org: OrgContext }) {
  const [pin, setPin] = useState<Pin | null>(null);
  // An export signs a checkpoint (and, the first time, creates the signing key): the head shows it.
  const [exports, setExports] = useState(0);
  const directory = useLoad(() => unwrap(supabase().rpc("organization_directory").setHeader("x-org-id", org.id)), [org.id]);
  const people = new Map((directory.data ?? []).map((p) => [p.user_id, p.email]));

  return (
    <>
      <h1>Audit log of {org.name}</h1>
      <p className="muted">
        Every consequential action is appended to this organization's hash chain. Export it and verify it here, against a
        key you pinned, or offline with <code>npm run audit:verify</code>.
      </p>
      <ChainHead org={org} pin={pin} setPin={setPin} exports={exports} />
      <Events org={org} people={people} directory={directory.data ?? []} />
      <ExportAndVerify org={org} pin={pin} onExported={() => setExports((n) => n + 1)} />
    </>
  );
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

async function loadHead(org: OrgContext): Promise<Head> {
  const sb = supabase();
  const [latest, unsealed, checkpoints, keys] = await Promise.all([
    unwrap(sb.from("audit_log").select("seq, entry_hash, occurred_at").eq("sealed", true).order("seq", { ascending: false }).limit(1).setHeader("x-org-id", org.id)),
    sb.from("audit_log").select("action", { count: "exact", head: true }).eq("sealed", false).setHeader("x-org-id", org.id),
    unwrap(sb.rpc("latest_audit_checkpoint").setHeader("x-org-id", org.id)),
    unwrap(sb.rpc("audit_signing_keys")),
  ]);
  if (unsealed.error) throw unsealed.error;
  return { latest: latest[0] ?? null, unsealed: unsealed.count ?? 0, checkpoint: checkpoints[0] ?? null, keys };
}

const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;

interface ChainHeadProps {
  org: OrgContext;
  pin: Pin | null;
  setPin: (pin: Pin | null) => void;
  /** How many exports were made here: each one signed a checkpoint. */
  exports: number;
}

function ChainHead({ org, pin, setPin, exports }: ChainHeadProps) {
  const head = useLoad(() => loadHead(org), [org.id, exports]);
  const action = useAction(head.reload);
  const [pastedError, setPastedError] = useState<string | null>(null);

  function signNow() {
    void action.run(async () => {
      const { error } = await supabase().functions.invoke("audit-checkpoint", { body: {}, headers: { "x-org-id": org.id } });
      if (error) throw await functionError(error);
      return "Checkpoint signed: it states the chain as it is now.";
    });
  }

  function pinPasted(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const publicKey = field(form, "public_key");
    if (!BASE64_KEY.test(publicKey)) {
      setPastedError("That is not a raw Ed25519 public key: 32 bytes in base64 (44 characters ending in =).");
      return;
    }
    setPastedError(null);
    setPin({ keyId: field(form, "key_id") || "pasted key", publicKey });
  }

  return (
    <section aria-labelledby="head-heading">
      <h2 id="head-heading">Chain head</h2>
      <Notice notice={action.notice} />
      <States loaded={head} empty="">
        {(h) => {
          const body = h.checkpoint ? parseCheckpoint(h.checkpoint.checkpoint) : null;
          return (
            <>
              {h.latest ? (
                <dl className="facts">
                  <dt>Latest entry</dt><dd>{h.latest.seq}</dd>
                  <dt>Its hash</dt><dd><code aria-label="Head hash">{h.latest.entry_hash}</code></dd>
                  <dt>Recorded</dt><dd>{when(h.latest.occurred_at)}</dd>
                  <dt>Not sealed yet</dt><dd>{h.unsealed} {h.unsealed === 1 ? "event" : "events"} (chained within seconds)</dd>
                </dl>
              ) : <p className="muted">The chain has no entries yet.</p>}

              <h3>Latest signed checkpoint</h3>
              {h.checkpoint && body ? (
                <>
                  <dl className="facts">
                    <dt>Size</dt><dd>{body.size} entries</dd>
                    <dt>Head</dt><dd><code>{body.head}</code></dd>
                    <dt>Merkle root</dt><dd><code>{body.root}</code></dd>
                    <dt>Signed</dt><dd>{when(body.time)} by key <code>{h.checkpoint.key_id}</code></dd>
                  </dl>
                  {/* A key pinned already stays: the checkpoint must then be signed by it, not by the key it names. */}
                  <button type="button" onClick={() => setPin({ keyId: pin?.keyId ?? h.checkpoint!.key_id, publicKey: pin?.publicKey ?? h.checkpoint!.public_key, checkpoint: h.checkpoint! })}>
                    Pin this checkpoint
                  </button>
                </>
              ) : <p className="muted">No checkpoint signed yet. Every export signs one.</p>}{" "}
              <button type="button" onClick={head.reload}>Refresh the chain head</button>{" "}
              {org.isAdmin
                ? <button type="button" onClick={signNow} disabled={action.busy}>Sign a checkpoint now</button>
                : <p className="muted">Tenant admins can sign a checkpoint on demand; every export signs one too.</p>}

              <h3>Signing keys</h3>
              {h.keys.length === 0 ? <p className="muted">No signing key yet: the first checkpoint creates one.</p> : (
                <table aria-label="Signing keys">
                  <thead><tr><th scope="col">Key</th><th scope="col">Public key (Ed25519, base64)</th><th scope="col">Created</th><th scope="col">Status</th><th scope="col">Pin</th></tr></thead>
                  <tbody>
                    {h.keys.map((k) => (
                      <tr key={k.key_id}>
                        <td><code>{k.key_id}</code></td>
                        <td><code>{k.public_key}</code></td>
                        <td>{when(k.created_at)}</td>
                        <td>{k.retired_at ? `retired ${when(k.retired_at)}` : "active"}</td>
                        <td>
                          <button type="button" onClick={() => setPin({ keyId: k.key_id, publicKey: k.public_key })}>Pin key {k.key_id}</button>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </>
          );
        }}
      </States>

      <form className="row" onSubmit={pinPasted} aria-label="Pin a public key you hold">
        <label>Public key you hold (base64) <input name="public_key" required autoComplete="off" spellCheck={false} size={48} /></label>
        <label>Key id (optional) <input name="key_id" autoComplete="off" size={18} /></label>
        <button type="submit">Pin this public key</button>
      </form>
      {pastedError && <p role="alert" className="error">{pastedError}</p>}

      <h3>Pinned</h3>
      <div role="status" aria-label="Pinned key and checkpoint">
        {pin ? (
          <dl className="facts">
            <dt>Pinned key</dt><dd><code>{pin.keyId}</code>: <code>{pin.publicKey}</code></dd>
            <dt>Pinned checkpoint</dt>
            <dd>{pin.checkpoint ? `size ${parseCheckpoint(pin.checkpoint.checkpoint)?.size}, head ${parseCheckpoint(pin.checkpoint.checkpoint)?.head}` : "none: exports are checked against the key alone"}</dd>
          </dl>
        ) : <p className="muted">Nothing pinned. Pin a key (or a checkpoint with its key) before verifying an export.</p>}
      </div>
      {pin && <button type="button" onClick={() => setPin(null)}>Unpin</button>}
      <p className="muted">
        Pinning a key or checkpoint read from this server trusts the server as it is now. For a check that holds even if the
        server is compromised later, record them somewhere else and paste the key you recorded.
      </p>
    </section>
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

async function loadEvents(org: OrgContext, filters: Filters, page: number) {
  let query = supabase().from("audit_log")
    .select("seq, action, actor, target_type, target_id, occurred_at, entry_hash, payload, sealed")
    // Not yet sealed events have no number and are the newest.
    .order("seq", { ascending: false, nullsFirst: true })
    .order("occurred_at", { ascending: false })
    .setHeader("x-org-id", org.id);
  if (filters.action) query = query.like("action", likePrefix(filters.action));
  if (filters.actor === NO_ACTOR) query = query.is("actor", null);
  else if (filters.actor) query = query.eq("actor", filters.actor);
  if (filters.from) query = query.gte("occurred_at", new Date(filters.from).toISOString());
  if (filters.to) query = query.lte("occurred_at", new Date(filters.to).toISOString());
  // One row more than a page says whether there is an older page.
  const rows = await unwrap(query.range(page * PAGE, page * PAGE + PAGE));
  return { rows: rows.slice(0, PAGE), more: rows.length > PAGE };
}

function payloadText(payload: Json | null): string {
  return payload === null ? "(purged)" : JSON.stringify(payload, null, 2);
}

function Events({ org, people, directory }: { org: OrgContext; people: Map<string, string>; directory: Directory }) {
  const [draft, setDraft] = useState<Filters>(NO_FILTERS);
  const [filters, setFilters] = useState<Filters>(NO_FILTERS);
  const [page, setPage] = useState(0);
  const events = useLoad(() => loadEvents(org, filters, page), [org.id, filters, page]);
  const edit = (name: keyof Filters) => (e: { target: { value: string } }) => setDraft((d) => ({ ...d, [name]: e.target.value }));

  function show(next: Filters) {
    setDraft(next);
    setFilters({ ...next, action: next.action.trim() });
    setPage(0);
  }

  return (
    <section aria-labelledby="events-heading">
      <h2 id="events-heading">Events</h2>
      <form className="row" role="search" aria-label="Filter audit events" onSubmit={(e) => { e.preventDefault(); show(draft); }}>
        <label>Action starts with <input name="action" placeholder="connector.call" value={draft.action} onChange={edit("action")} autoComplete="off" /></label>
        <label>
          Actor{" "}
          <select name="actor" value={draft.actor} onChange={edit("actor")}>
            <option value="">Anyone</option>
            <option value={NO_ACTOR}>No person (the platform or an agent runtime)</option>
            {directory.map((p) => <option key={p.user_id} value={p.user_id}>{p.email}</option>)}
          </select>
        </label>
        <label>From <input name="from" type="datetime-local" value={draft.from} onChange={edit("from")} /></label>
        <label>To <input name="to" type="datetime-local" value={draft.to} onChange={edit("to")} /></label>
        <button type="submit">Apply filters</button>
        <button type="button" onClick={() => show(NO_FILTERS)}>Clear filters</button>
      </form>
      <States loaded={events} empty="" isEmpty={() => false}>
        {({ rows, more }) => (
          <>
            {rows.length === 0 ? <p className="muted">No events match.</p> : (
              <table aria-label="Audit events">
                <thead>
                  <tr><th scope="col">Entry</th><th scope="col">When</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Target</th><th scope="col">Payload</th></tr>
                </thead>
                <tbody>
                  {rows.map((e, i) => (
                    <tr key={e.seq ?? `pending-${i}-${e.occurred_at}`}>
                      <td>{e.seq ?? "not sealed yet"}</td>
                      <td>{when(e.occurred_at)}</td>
                      <td><code>{e.action}</code></td>
                      <td>{e.actor ? people.get(e.actor) ?? e.actor : "—"}</td>
                      <td>{e.target_type ? `${e.target_type} ${e.target_id ?? ""}` : "—"}</td>
                      <td>
                        <details>
                          <summary>Payload{e.seq ? ` of entry ${e.seq}` : ""}</summary>
                          <pre>{payloadText(e.payload)}</pre>
                        </details>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <div className="row">
              <button type="button" onClick={() => setPage((p) => p - 1)} disabled={page === 0}>Newer events</button>
              <span>Page {page + 1}</span>
              <button type="button" onClick={() => setPage((p) => p + 1)} disabled={!more}>Older events</button>
            </div>
          </>
        )}
      </States>
    </section>
  );
}

// ---------------------------------------------------------------------------------------------
// Export and verification
// ---------------------------------------------------------------------------------------------
function ExportAndVerify({ org, pin, onExported }: { org: OrgContext; pin: Pin | null; onExported: () => void }) {
  const exporting = useAction();
  const [download, setDownload] = useState<{ url: string; name: string } | null>(null);
  const [text, setText] = useState("");
  const [result, setResult] = useState<Verification | null>(null);
  const [verifying, setVerifying] = useState(false);

  // A download link holds the export in memory until it is replaced or the screen closes.
  useEffect(() => () => {
    if (download) URL.revokeObjectURL(download.url);
  }, [download]);

  function exportLog(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const query = new URLSearchParams();
    for (const name of ["from_seq", "to_seq"]) if (field(form, name)) query.set(name, field(form, name));
    void exporting.run(async () => {
      const { data, error, response } = await supabase().functions.invoke<string>(`audit-export${query.size ? `?${query}` : ""}`, {
        method: "GET",
        headers: { "x-org-id": org.id },
      });
      if (error) throw await functionError(error);
      const exported = String(data);
      const name = /filename="([^"]+)"/.exec(response?.headers.get("content-disposition") ?? "")?.[1] ?? `audit-${org.id}.jsonl`;
      setDownload({ url: URL.createObjectURL(new Blob([exported], { type: "application/x-ndjson" })), name });
      setText(exported);
      setResult(null);
      onExported();
      const entries = exported.split("\n").filter((l) => l.startsWith('{"type":"entry"')).length;
      return `Exported ${entries} ${entries === 1 ? "entry" : "entries"} with a signed checkpoint. Download it, and verify it below.`;
    });
  }

  async function verify() {
    if (!pin) return;
    setVerifying(true);
    setResult(null);
    try {
      setResult(await verifyExport(text, pin));
    } catch (e) {
      setResult({ ok: false, firstBadSeq: null, reason: describe(e) });
    } finally {
      setVerifying(false);
    }
  }

  return (
    <>
      <section aria-labelledby="export-heading">
        <h2 id="export-heading">Export</h2>
        <form className="row" onSubmit={exportLog} aria-label="Export the audit log">
          <label>From entry (optional) <input name="from_seq" type="number" min={1} step={1} /></label>
          <label>To entry (optional) <input name="to_seq" type="number" min={1} step={1} /></label>
          <button type="submit" disabled={exporting.busy}>{exporting.busy ? "Exporting…" : "Export audit log"}</button>
        </form>
        <Notice notice={exporting.notice} />
        {download && <p><a href={download.url} download={download.name}>Download {download.name}</a></p>}
      </section>

      <section aria-labelledby="verify-heading">
        <h2 id="verify-heading">Verify an export</h2>
        <p className="muted">
          Checked here with Web Crypto: every entry's hash and link, each payload's hash, the Merkle root, and the checkpoint's
          Ed25519 signature by the pinned key; with a pinned checkpoint, that the export extends it.
        </p>
        <div className="stack">
          <label>
            Open an export file{" "}
            <input type="file" accept=".jsonl,.ndjson,application/x-ndjson,application/json,text/plain" onChange={async (e) => {
              const file = e.currentTarget.files?.[0];
              if (!file) return;
              setText(await file.text());
              setResult(null);
            }} />
          </label>
          <label>
            Export to verify (JSON Lines)
            <textarea value={text} rows={8} spellCheck={false} wrap="off" onChange={(e) => {
              setText(e.target.value);
              setResult(null);
            }} />
          </label>
          {!pin && <p className="muted">Pin a signing key or checkpoint (above) first: the export is checked against what you pinned, not against the key it carries.</p>}
          <div>
            <button type="button" onClick={() => void verify()} disabled={!pin || text.trim() === "" || verifying}>
              {verifying ? "Verifying…" : "Verify export"}
            </button>
          </div>
        </div>
        {result?.ok && (
          <p role="status" className="notice">
            Verified: {result.checked} {result.checked === 1 ? "entry" : "entries"} ({result.fromSeq} to {result.head.seq}) of{" "}
            {result.org === org.id ? `the chain of ${org.name}` : `the chain of another organization (${result.org})`} check out, up to
            head <code>{result.head.hash}</code>, signed by the pinned key {pin?.keyId}
            {result.extendsPin ? ", and the export extends the pinned checkpoint" : ""}.
          </p>
        )}
        {result && !result.ok && (
          <p role="alert" className="error">
            Verification failed{result.firstBadSeq !== null ? ` at entry ${result.firstBadSeq}` : ""}: {result.reason}.
          </p>
        )}
      </section>
    </>
  );
}
