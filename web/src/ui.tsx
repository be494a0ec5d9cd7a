/**
 * The console's shared pieces: loading, empty and error states, a data hook that has all three,
 * and the organization context each screen reads (its id, and the signed-in person's role, which
 * only decides what is offered: the database decides what is allowed).
 */
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import type { Database } from "../../supabase/database.types.ts";

export type Role = Database["public"]["Enums"]["member_role"];

/** The organization a screen works in, and what the signed-in person's role there offers. */
export interface OrgContext {
  id: string;
  name: string;
  slug: string;
  role: Role;
  /** tenant_admin: offers the organization's settings. */
  isAdmin: boolean;
  /** project_viewer only: every screen is read-only. */
  readOnly: boolean;
  /** What the database says the person may do here (public.my_permissions). */
  permissions: import("./App.tsx").Permissions;
}

export const Org = createContext<OrgContext | null>(null);

/** The organization in context (screens under /o/:org only). */
export function useOrg(): OrgContext {
  const org = useContext(Org);
  if (!org) throw new Error("useOrg outside an organization");
  return org;
}

/** An error from supabase-js, the console server or a function, as one readable line. */
export function describe(error: unknown): string {
  if (!error) return "";
  const e = error as { code?: string; message?: string; error?: { code?: string; message?: string } };
  const code = e.error?.code ?? e.code;
  const message = e.error?.message ?? e.message ?? String(error);
  return code && !/^\d+$/.test(code) && !message.startsWith(code) ? `${message} (${code})` : message;
}

/** The answer of a supabase-js call, or its error thrown. */
export async function unwrap<T>(call: PromiseLike<{ data: T | null; error: unknown }>): Promise<T> {
  const { data, error } = await call;
  if (error) throw error;
  return data as T;
}

/** The body of a function's error response (supabase-js FunctionsHttpError), as an Error. */
export async function functionError(error: unknown): Promise<Error> {
  const response = (error as { context?: Response }).context;
  try {
    const body = (await response?.clone().json()) as { error?: { code: string; message: string } };
    if (body?.error) return Object.assign(new Error(body.error.message), { code: body.error.code });
  } catch {
    // not JSON: the error's own message will do
  }
  return error as Error;
}

interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/** Loads `fn` when `deps` change, with loading and error states and a reload. */
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    fn().then(
      (value) => {
        if (!live) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (e: unknown) => {
        if (!live) return;
        setError(describe(e));
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

/** Runs an action, then reports its outcome (or refusal) in a status line and reloads. */
export function useAction(after?: () => void) {
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  async function run(fn: () => Promise<string>) {
    setBusy(true);
    try {
      setNotice({ ok: true, text: await fn() });
      after?.();
    } catch (e) {
      setNotice({ ok: false, text: describe(e) });
    } finally {
      setBusy(false);
    }
  }
  return { notice, busy, run, clear: () => setNotice(null) };
}

/** The outcome line of an action. */
export function Notice({ notice }: { notice: { ok: boolean; text: string } | null }) {
  if (!notice) return null;
  return notice.ok ? (
    <p role="status" className="notice">{notice.text}</p>
  ) : (
    <p role="alert" className="error">{notice.text}</p>
  );
}

/** Loading, error and empty states around a loaded list or value. */
export function States<T>({ loaded, empty, isEmpty, children }: {
  loaded: Loaded<T>;
  empty: string;
  isEmpty?: (data: T) => boolean;
  children: (data: T) => ReactNode;
}) {
  if (loaded.loading && loaded.data === undefined) return <p aria-busy="true" className="muted">Loading…</p>;
  if (loaded.error) {
    return (
      <p role="alert" className="error">
        {loaded.error} <button type="button" onClick={loaded.reload}>Try again</button>
      </p>
    );
  }
  const data = loaded.data as T;
  const none = isEmpty ? isEmpty(data) : Array.isArray(data) && data.length === 0;
  if (none) return <p className="muted">{empty}</p>;
  return <>{children(data)}</>;
}

/** A short date and time. */
export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "—";
}

/** The text of a form field. */
export function field(form: FormData, name: string): string {
  return String(form.get(name) ?? "").trim();
}
