/**
 * The organization's billing: plan and subscription, the card on file (brand and last four only),
 * the credit balance and the ledger it is the sum of; buying credits (Stripe Checkout, where the
 * card is entered: never here), Stripe's customer portal, and a tenant admin's downward
 * adjustment with a reason (credits are bought or come with the plan, never added here). What a payment buys arrives through Stripe's webhook, so the page says so on return.
 */
import { confirmAction } from "./confirm.tsx";
import { useSearchParams } from "react-router";
import { supabase } from "./supabase.ts";
import { describe, field, functionError, Notice, States, unwrap, useAction, useLoad, useOrg, when } from "./ui.tsx";

const PAGE = 50;

/**
 * Micro-units as dollars: cents, or, below a cent (a model call's usage), to the micro-dollar, so
 * that a charge never shows as "−$0.00".
 */
const dollars = (micro: number | null | undefined) => {
  if (micro == null) return "—";
  const abs = Math.abs(micro);
  const text = abs !== 0 && abs < 10_000 ? (abs / 1e6).toFixed(6).replace(/0+$/, "") : (abs / 1e6).toFixed(2);
  return `${micro < 0 ? "−" : ""}$${text}`;
};

const KIND: Record<string, string> = {
  grant: "Plan credits",
  top_up: "Credits bought",
  usage_debit: "Usage",
  reversal: "Reversal",
  adjustment: "Adjustment",
};

export function Billing() {
  const org = useOrg();
  const sb = supabase();
  const [params] = useSearchParams();
  const account = useLoad(async () => (await unwrap(sb.from("billing_accounts").select("*").setHeader("x-org-id", org.id)))[0] ?? null, [org.id]);
  const balance = useLoad(async () => (await unwrap(sb.from("credit_balances").select("balance_micro, entries").setHeader("x-org-id", org.id)))[0] ?? null, [org.id]);
  const ledger = useLoad(
    () => unwrap(sb.from("credit_ledger").select("id, kind, amount_micro, reason, created_at").order("created_at", { ascending: false }).limit(PAGE).setHeader("x-org-id", org.id)),
    [org.id],
  );
  const action = useAction(() => {
    balance.reload();
    ledger.reload();
  });

  /** Asks the billing function for a Stripe page and goes there. */
  async function toStripe(path: "checkout" | "portal", body: Record<string, unknown>): Promise<string> {
    const { data, error } = await sb.functions.invoke<{ url: string }>(`billing/${path}`, { body, headers: { "x-org-id": org.id } });
    if (error) {
      const e = (await functionError(error)) as Error & { code?: string };
      throw new Error(e.code === "billing_not_configured" ? "Billing is not configured here (no Stripe keys): see the README's Billing section." : describe(e));
    }
    location.assign(data!.url);
    return path === "checkout" ? "Taking you to Stripe Checkout…" : "Opening Stripe's customer portal…";
  }

  const returned = params.get("checkout");
  return (
    <>
      <h1>Billing of {org.name}</h1>
      {returned === "done" && <p role="status" className="notice">Stripe took the payment: the credits appear here as soon as Stripe confirms it to us.</p>}
      {returned === "canceled" && <p role="status" className="notice">Checkout was canceled: nothing was charged.</p>}
      <Notice notice={action.notice} />

      <section aria-labelledby="plan-heading">
        <h2 id="plan-heading">Plan</h2>
        <States loaded={account} empty="No billing account yet: it is made on the first purchase." isEmpty={(a) => a === null}>
          {(a) => (
            <dl className="facts">
              <dt>Plan</dt><dd>{a!.plan ?? "none"}</dd>
              <dt>Mode</dt><dd>{a!.mode === "prepaid" ? "prepaid: model calls need credits" : "postpaid"}</dd>
              <dt>Subscription</dt><dd>{a!.subscription_status ?? "none"}{a!.cancel_at_period_end ? ", ends at the period's end" : ""}</dd>
              <dt>Period ends</dt><dd>{when(a!.current_period_end)}</dd>
              {a!.grace_until && <><dt>Data kept until</dt><dd>{when(a!.grace_until)}</dd></>}
              <dt>Card</dt><dd>{a!.card_last4 ? `${a!.card_brand ?? "card"} ending ${a!.card_last4}, expires ${a!.card_exp_month}/${a!.card_exp_year}` : "none on file"}</dd>
            </dl>
          )}
        </States>
        {org.isAdmin && (
          <button type="button" disabled={action.busy} onClick={() => void action.run(() => toStripe("portal", {}))}>
            Manage payment and invoices
          </button>
        )}
      </section>

      <section aria-labelledby="credits-heading">
        <h2 id="credits-heading">Credits</h2>
        <States loaded={balance} empty="No credits yet." isEmpty={(b) => b === null}>
          {(b) => <p>Balance: <strong aria-label="Credit balance">{dollars(b!.balance_micro)}</strong> <small className="muted">(the sum of {b!.entries} entries)</small></p>}
        </States>
        {org.isAdmin && (
          <form className="row" onSubmit={(e) => {
            e.preventDefault();
            const amount = Math.round(Number(field(new FormData(e.currentTarget), "amount")) * 100);
            void action.run(() => toStripe("checkout", { kind: "credits", amount_cents: amount }));
          }}>
            <label>Credits to buy ($) <input name="amount" type="number" min={5} max={10000} step="0.01" defaultValue={25} required /></label>
            <button type="submit" disabled={action.busy}>Buy credits</button>
          </form>
        )}
      </section>

      <section aria-labelledby="ledger-heading">
        <h2 id="ledger-heading">Ledger</h2>
        <States loaded={ledger} empty="No entries yet.">
          {(list) => (
            <table aria-label="Credit ledger">
              <thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col">Amount</th><th scope="col">Reason</th></tr></thead>
              <tbody>
                {list.map((l) => (
                  <tr key={l.id}>
                    <td>{when(l.created_at)}</td>
                    <td>{KIND[l.kind] ?? l.kind}</td>
                    <td>{dollars(l.amount_micro)}</td>
                    <td>{l.reason ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </States>
        {ledger.data?.length === PAGE && <p className="muted">The latest {PAGE} entries.</p>}
        {org.isAdmin && (
          <form className="row" aria-label="Adjust credits" onSubmit={async (e) => {
            e.preventDefault();
            const form = e.currentTarget;
            const data = new FormData(form);
            const micro = -Math.round(Number(field(data, "adjust")) * 1e6);
            if (!(await confirmAction({
              title: `Take ${dollars(-micro)} of credits away?`,
              body: <>The organization's balance drops at once; a prepaid organization without credits has its model calls refused. Only a purchase adds credits back.</>,
              confirmLabel: "Take the credits away",
            }))) return;
            void action.run(async () => {
              await unwrap(sb.rpc("adjust_credits", { p_amount_micro: micro, p_reason: field(data, "reason") }).setHeader("x-org-id", org.id));
              form.reset();
              return `Adjusted by ${dollars(micro)}.`;
            });
          }}>
            <label>Credits to take away ($) <input name="adjust" type="number" min={0.01} step="0.01" required /></label>
            <label>Reason <input name="reason" required maxLength={500} /></label>
            <button type="submit" disabled={action.busy}>Take credits away</button>
          </form>
        )}
      </section>
    </>
  );
}
