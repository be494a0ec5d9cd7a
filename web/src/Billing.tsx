/**
 * The organization's billing (issue 25): plan and subscription, the card on file (brand and last
 * four only), the credit balance and the ledger it is the sum of (sortable, to the micro-dollar
 * where an amount is below a cent). Whoever may manage billing (my_permissions: manage_billing)
 * buys credits (Stripe Checkout, where the card is entered: never here), opens Stripe's customer
 * portal, and takes credits away with a reason, after a confirmation (credits are bought or come
 * with the plan, never added here); everyone else sees the same figures and no controls. What a
 * payment buys arrives through Stripe's webhook, so the page says so on return.
 */
import { Alert, Box, Button, Group, Paper, SimpleGrid, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import type { FormEvent, ReactNode } from "react";
import { useSearchParams } from "react-router";
import { ApiError } from "./api.ts";
import { confirmAction } from "./confirm.tsx";
import { DataTable, Outcome, PageHeader, QueryState, useAct, useOrgApi } from "./kit.tsx";
import { field, useOrg, when } from "./ui.tsx";

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

/** /o/:org/billing: plan, credits and ledger; buying and taking away credits for whoever may. */
export function Billing() {
  const org = useOrg();
  const api = useOrgApi();
  const manage = org.permissions.organization.manage_billing;
  const [params] = useSearchParams();
  const account = useQuery({
    queryKey: ["billing", org.id, "account"],
    queryFn: async () => (await api.run(api.from("billing_accounts").select("*")))[0] ?? null,
  });
  const balance = useQuery({
    queryKey: ["billing", org.id, "balance"],
    queryFn: async () => (await api.run(api.from("credit_balances").select("balance_micro, entries")))[0] ?? null,
  });
  const ledger = useQuery({
    queryKey: ["billing", org.id, "ledger"],
    queryFn: () => api.run(api.from("credit_ledger").select("id, kind, amount_micro, reason, created_at").order("created_at", { ascending: false }).limit(PAGE)),
  });
  const stripeAct = useAct();
  const adjustAct = useAct([["billing", org.id]]);

  /** Asks the billing function for a Stripe page and goes there. */
  async function toStripe(path: "checkout" | "portal", body: Record<string, unknown>): Promise<string> {
    let page: { url: string };
    try {
      page = await api.invoke<{ url: string }>(`billing/${path}`, body);
    } catch (e) {
      if (e instanceof ApiError && e.code === "billing_not_configured") {
        throw new ApiError(e.status, e.code, "Billing is not configured here (no Stripe keys): see docs/billing.md.");
      }
      throw e;
    }
    location.assign(page.url);
    return path === "checkout" ? "Taking you to Stripe Checkout…" : "Opening Stripe's customer portal…";
  }

  function buy(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const amount = Math.round(Number(field(new FormData(event.currentTarget), "amount")) * 100);
    stripeAct.run(() => toStripe("checkout", { kind: "credits", amount_cents: amount }));
  }

  async function takeAway(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = event.currentTarget;
    const data = new FormData(form);
    const micro = -Math.round(Number(field(data, "adjust")) * 1e6);
    if (!(await confirmAction({
      title: `Take ${dollars(-micro)} of credits away?`,
      body: <>The organization's balance drops at once; a prepaid organization without credits has its model calls refused. Only a purchase adds credits back.</>,
      confirmLabel: "Take the credits away",
    }))) return;
    adjustAct.run(async () => {
      await api.run(api.rpc("adjust_credits", { p_amount_micro: micro, p_reason: field(data, "reason") }));
      form.reset();
      return `Adjusted by ${dollars(micro)}.`;
    });
  }

  const returned = params.get("checkout");
  return (
    <>
      <PageHeader
        title={`Billing of ${org.name}`}
        description="The plan, the credits model calls draw on, and every entry of the ledger the balance is the sum of."
        action={manage ? (
          <Button variant="default" loading={stripeAct.busy} onClick={() => stripeAct.run(() => toStripe("portal", {}))}>Manage payment and invoices</Button>
        ) : undefined}
      />
      {returned === "done" && <Alert color="teal" role="status" mb="md">Stripe took the payment: the credits appear here as soon as Stripe confirms it to us.</Alert>}
      {returned === "canceled" && <Alert color="gray" role="status" mb="md">Checkout was canceled: nothing was charged.</Alert>}
      <Outcome outcome={stripeAct.outcome} />

      <SimpleGrid cols={{ base: 1, md: 2 }} spacing="lg">
        <Paper withBorder p="lg" radius="md" component="section" aria-labelledby="plan-heading" style={{ marginTop: 0 }}>
          <Title order={2} size="h3" id="plan-heading" mb="sm">Plan</Title>
          <QueryState query={account} empty="No billing account yet: it is made on the first purchase." isEmpty={(a) => a === null} rows={4}>
            {(a) => a && (
              <SimpleGrid cols={{ base: 1, xs: 2 }} spacing="sm">
                <Fact label="Plan">{a.plan ?? "none"}</Fact>
                <Fact label="Mode">{a.mode === "prepaid" ? "prepaid: model calls need credits" : "postpaid"}</Fact>
                <Fact label="Subscription">{a.subscription_status ?? "none"}{a.cancel_at_period_end ? ", ends at the period's end" : ""}</Fact>
                <Fact label="Period ends">{when(a.current_period_end)}</Fact>
                {a.grace_until && <Fact label="Data kept until">{when(a.grace_until)}</Fact>}
                <Fact label="Card">{a.card_last4 ? `${a.card_brand ?? "card"} ending ${a.card_last4}, expires ${a.card_exp_month}/${a.card_exp_year}` : "none on file"}</Fact>
              </SimpleGrid>
            )}
          </QueryState>
        </Paper>

        <Paper withBorder p="lg" radius="md" component="section" aria-labelledby="credits-heading" style={{ marginTop: 0 }}>
          <Title order={2} size="h3" id="credits-heading" mb="sm">Credits</Title>
          <QueryState query={balance} empty="No credits yet." isEmpty={(b) => b === null} rows={1}>
            {(b) => b && (
              <Box role="group" aria-label="Credit balance" mb="md">
                <Text size="xs" c="dimmed" tt="uppercase" fw={600}>Balance</Text>
                <Text fz={28} fw={700} lh={1.2}>{dollars(b.balance_micro)}</Text>
                <Text size="xs" c="dimmed">the sum of {b.entries} entries</Text>
              </Box>
            )}
          </QueryState>
          {manage && (
            <form aria-label="Buy credits with Stripe" onSubmit={buy}>
              <Group align="flex-end" wrap="wrap">
                <TextInput name="amount" label="Credits to buy ($)" type="number" min={5} max={10000} step="0.01" defaultValue={25} required w={180} />
                <Button type="submit" loading={stripeAct.busy}>Buy credits</Button>
              </Group>
              <Text size="xs" c="dimmed" mt="xs">You pay on Stripe's page; the card never passes through here.</Text>
            </form>
          )}
        </Paper>
      </SimpleGrid>

      <Box component="section" aria-labelledby="ledger-heading" mt="xl">
        <Title order={2} size="h3" id="ledger-heading" mb="sm">Ledger</Title>
        <Outcome outcome={adjustAct.outcome} />
        <QueryState query={ledger} empty="No entries yet.">
          {(list) => (
            <Stack gap="xs">
              <DataTable
                label="Credit ledger"
                rows={list}
                rowKey={(l) => l.id}
                columns={[
                  { key: "when", header: "When", cell: (l) => when(l.created_at), sort: (l) => l.created_at },
                  { key: "kind", header: "Kind", cell: (l) => KIND[l.kind] ?? l.kind, sort: (l) => KIND[l.kind] ?? l.kind },
                  { key: "amount", header: "Amount", cell: (l) => <Text size="sm" ff="monospace" style={{ whiteSpace: "nowrap" }}>{dollars(l.amount_micro)}</Text>, sort: (l) => l.amount_micro },
                  { key: "reason", header: "Reason", cell: (l) => l.reason ?? "" },
                ]}
              />
              {list.length === PAGE && <Text size="xs" c="dimmed">The latest {PAGE} entries.</Text>}
            </Stack>
          )}
        </QueryState>
        {manage && (
          <Paper withBorder p="md" radius="md" mt="md" component="form" aria-label="Adjust credits" onSubmit={(e: FormEvent<HTMLFormElement>) => void takeAway(e)}>
            <Title order={3} size="h5" mb="xs">Take credits away</Title>
            <SimpleGrid cols={{ base: 1, sm: 3 }} style={{ alignItems: "end" }}>
              <TextInput name="adjust" label="Credits to take away ($)" type="number" min={0.01} step="0.01" required />
              <TextInput name="reason" label="Reason" required maxLength={500} />
              <Group><Button type="submit" color="red" variant="light" loading={adjustAct.busy}>Take credits away</Button></Group>
            </SimpleGrid>
          </Paper>
        )}
      </Box>
    </>
  );
}

/** One fact: its label and its value. */
function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Stack gap={2}>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>{label}</Text>
      <Text size="sm" component="div">{children}</Text>
    </Stack>
  );
}
