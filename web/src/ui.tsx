/**
 * The console's shared pieces outside the screen kit (kit.tsx): the organization context each
 * screen reads (its id, the signed-in person's role, and what the database says they may do, which
 * only decides what is offered: the database decides what is allowed), and small formatters.
 */
import { createContext, useContext } from "react";
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

/** A short date and time. */
export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) : "—";
}

/** The text of a form field. */
export function field(form: FormData, name: string): string {
  return String(form.get(name) ?? "").trim();
}
