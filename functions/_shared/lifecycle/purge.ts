/**
 * The workspace purge's driver (docs/lifecycle.md; the steps themselves are SQL, in
 * supabase/migrations/…_workspace_purge.sql). The run worker calls `purgeDue` on every sweep:
 *
 *   1. terminations whose subscription's grace period is over are started;
 *   2. the oldest unfinished purge is leased to this worker;
 *   3. if it is at `external`: each connection that holds tokens is revoked at its provider (as
 *      disabling one does) and its Vault secret deleted at once, so a resumed purge doesn't revoke
 *      it twice; then the Stripe subscription is cancelled;
 *   4. then private.purge_step runs, one transaction per call, until the purge is done.
 *
 * Every step is idempotent and committed on its own: a worker killed, or a step that fails (a
 * provider down, the database gone), leaves the purge where it was, and the next sweep of any
 * worker goes on from there once the lease has run out. A failed purge waits one lease before it
 * is tried again, so that one which keeps failing doesn't hold up the others. The failure's name
 * is kept for the operator (private.workspace_terminations.last_error), never a payload.
 */
import Stripe from "stripe";
import { stripeConfig, stripeConfigured } from "../billing/stripe.ts";
import { revokeAtProvider } from "../connectors/connections.ts";
import type { ConnectorEnv } from "../connectors/providers.ts";
import type { Sql } from "../http/db.ts";

export interface PurgeContext {
  sql: Sql;
  connectorEnv: ConnectorEnv;
  workerId: string;
  /** How long a purge stays leased to this worker without its next sweep. */
  leaseSeconds: number;
  /** True once the worker is stopping: the purge stops after its current step and hands its lease back. */
  stopping?: () => boolean;
}

export type PurgeOutcome = { orgId: string; step: string } | null;

/** Starts due terminations and drives the oldest unfinished purge as far as it goes; null when none is due. */
export async function purgeDue(ctx: PurgeContext): Promise<PurgeOutcome> {
  await ctx.sql`select private.start_due_terminations()`;
  const [claimed] = await ctx.sql<{ org_id: string; step: string }[]>`
    select org_id, step from private.claim_termination(${ctx.workerId}, ${ctx.leaseSeconds}) where org_id is not null`;
  if (!claimed) return null;
  const orgId = claimed.org_id;
  let step = claimed.step;
  try {
    if (step === "external") {
      await revokeConnections(ctx, orgId);
      const stripe = await cancelSubscription(ctx, orgId);
      await ctx.sql`select private.purge_external_done(${orgId}, ${stripe})`;
      step = "deleting";
    }
    while (step !== "done") {
      if (ctx.stopping?.()) {
        await ctx.sql`select private.release_termination(${orgId}, ${ctx.workerId})`;
        return { orgId, step };
      }
      const [row] = await ctx.sql<{ step: string }[]>`select private.purge_step(${orgId}) as step`;
      step = row.step;
    }
    return { orgId, step };
  } catch (e) {
    const name = e instanceof Error ? `${e.name}: ${e.message}` : "unknown failure";
    await ctx.sql`select private.purge_failed(${orgId}, ${name}, ${ctx.leaseSeconds})`.catch(() => {});
    throw e;
  }
}

/** Revokes each connection that still holds tokens at its provider, then disables it (its secret goes), as disabling one does. */
async function revokeConnections(ctx: PurgeContext, orgId: string): Promise<void> {
  const ids = await ctx.sql<{ connection_id: string }[]>`select connection_id from private.purge_connections(${orgId})`;
  for (const { connection_id: id } of ids) {
    // A provider that is down or refuses doesn't hold the purge: the outcome is counted in org.purged.
    const outcome = await revokeAtProvider({ sql: ctx.sql, caller: { kind: "service" }, env: ctx.connectorEnv }, id);
    await ctx.sql`select private.purge_connection_done(${orgId}, ${id}, ${outcome})`;
  }
}

/**
 * Cancels the organization's live Stripe subscription: `cancelled` (or already gone at Stripe),
 * `none`, or `not_configured` on a stack without Stripe. Any other failure throws, and the purge
 * waits: a customer whose data is gone must not go on being billed.
 */
async function cancelSubscription(ctx: PurgeContext, orgId: string): Promise<"cancelled" | "none" | "not_configured"> {
  const [{ subscription }] = await ctx.sql<{ subscription: string | null }[]>`select private.purge_subscription(${orgId}) as subscription`;
  if (!subscription) return "none";
  if (!stripeConfigured()) return "not_configured";
  const { stripe } = stripeConfig();
  try {
    await stripe.subscriptions.cancel(subscription, { invoice_now: true, prorate: false }, { idempotencyKey: `gatehouse-purge-${orgId}` });
  } catch (e) {
    if (!(e instanceof Stripe.errors.StripeInvalidRequestError && e.code === "resource_missing")) throw e;
  }
  return "cancelled";
}
