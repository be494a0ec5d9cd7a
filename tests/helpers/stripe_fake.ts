/**
 * A wire-accurate fake of the few Stripe API endpoints the billing function calls, for the tests:
 * HTTPS on the loopback port npm test reserves for it (the run's CA signs its certificate, and only
 * this stack's functions may reach it), form-encoded requests and Stripe's JSON objects and errors:
 *
 *   POST /v1/customers                  a customer (Idempotency-Key honoured, as Stripe does)
 *   POST /v1/checkout/sessions          a Checkout Session with its hosted url
 *   POST /v1/billing_portal/sessions    a customer-portal session with its url
 *   POST /v1/billing/meter_events       a billing meter event (event_name, payload[stripe_customer_id],
 *                                       payload[value], identifier, timestamp); a second event with an
 *                                       identifier already used is refused, as Stripe enforces
 *                                       identifiers' uniqueness (meterEvents keeps those accepted)
 *   DELETE /v1/subscriptions/:id        cancels a subscription the test put in `subscriptions`
 *                                       (invoice_now and prorate read from the query or the form);
 *                                       an unknown one is 404 resource_missing, as Stripe answers
 *
 * Every request is recorded (method, path, the form as an object, the Authorization header).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";

export interface StripeRequest {
  method: string;
  path: string;
  form: Record<string, string>;
  authorization: string | null;
  idempotencyKey: string | null;
}

export interface StripeFake {
  base: string;
  secretKey: string;
  requests: StripeRequest[];
  /** The meter events accepted, by identifier. */
  meterEvents: Map<string, { event_name: string; customer: string; value: string; timestamp: number }>;
  /** Subscriptions Stripe knows (the test adds them), and their status. */
  subscriptions: Map<string, { customer: string; status: string; cancelParams?: Record<string, string> }>;
  close(): Promise<void>;
}

const id = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

function settings(): { stripePort: number; stripeSecretKey: string; cert: string; key: string } {
  const file = process.env.GATEHOUSE_TEST_PROVIDERS_FILE;
  if (!file) throw new Error("the billing tests run under npm test, which reserves the Stripe fake's port (GATEHOUSE_TEST_PROVIDERS_FILE is unset)");
  return JSON.parse(readFileSync(file, "utf8"));
}

/** Starts the fake on its reserved port. */
export async function startStripeFake(): Promise<StripeFake> {
  const { stripePort, stripeSecretKey, cert, key } = settings();
  const requests: StripeRequest[] = [];
  const byIdempotencyKey = new Map<string, unknown>();
  const meterEvents: StripeFake["meterEvents"] = new Map();
  const subscriptions: StripeFake["subscriptions"] = new Map();
  const server: Server = createServer({ cert, key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "https://stripe.fake");
      const path = url.pathname;
      const form = { ...Object.fromEntries(url.searchParams), ...Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))) };
      const idempotencyKey = (req.headers["idempotency-key"] as string | undefined) ?? null;
      requests.push({ method: req.method ?? "", path, form, authorization: req.headers.authorization ?? null, idempotencyKey });
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json", "request-id": id("req") }).end(JSON.stringify(body));
      };
      if (req.headers.authorization !== `Bearer ${stripeSecretKey}`) {
        return send(401, { error: { type: "invalid_request_error", message: "Invalid API Key provided" } });
      }
      const remembered = idempotencyKey && byIdempotencyKey.get(`${path} ${idempotencyKey}`);
      if (remembered) return send(200, remembered);
      let answer: unknown;
      if (req.method === "POST" && path === "/v1/customers") {
        answer = { id: id("cus"), object: "customer", name: form.name ?? null, email: form.email ?? null, metadata: metadataOf(form), livemode: false };
      } else if (req.method === "POST" && path === "/v1/checkout/sessions") {
        if (!form.success_url || !form.customer) return send(400, { error: { type: "invalid_request_error", message: "Missing required param: success_url." } });
        const session = id("cs_test");
        answer = { id: session, object: "checkout.session", mode: form.mode, customer: form.customer, client_reference_id: form.client_reference_id ?? null,
                   metadata: metadataOf(form), url: `https://checkout.stripe.com/c/pay/${session}`, status: "open", livemode: false };
      } else if (req.method === "POST" && path === "/v1/billing_portal/sessions") {
        const session = id("bps");
        answer = { id: session, object: "billing_portal.session", customer: form.customer, return_url: form.return_url,
                   url: `https://billing.stripe.com/p/session/${session}`, livemode: false };
      } else if (req.method === "POST" && path === "/v1/billing/meter_events") {
        const customer = form["payload[stripe_customer_id]"];
        const value = form["payload[value]"];
        if (!form.event_name || !customer || !value) {
          return send(400, { error: { type: "invalid_request_error", message: "Missing required param: event_name or payload." } });
        }
        const identifier = form.identifier ?? id("mev");
        if (meterEvents.has(identifier)) {
          return send(400, { error: { type: "invalid_request_error", code: "resource_already_exists",
                                      message: `An event already exists with identifier ${identifier}.` } });
        }
        const timestamp = form.timestamp ? Number(form.timestamp) : Math.floor(Date.now() / 1000);
        meterEvents.set(identifier, { event_name: form.event_name, customer, value, timestamp });
        answer = { object: "billing.meter_event", created: Math.floor(Date.now() / 1000), event_name: form.event_name, identifier,
                   livemode: false, payload: { stripe_customer_id: customer, value }, timestamp };
      } else if (req.method === "DELETE" && /^\/v1\/subscriptions\/sub_[A-Za-z0-9]+$/.test(path)) {
        const subId = path.slice("/v1/subscriptions/".length);
        const sub = subscriptions.get(subId);
        if (!sub) {
          return send(404, { error: { type: "invalid_request_error", code: "resource_missing", param: "id", message: `No such subscription: '${subId}'` } });
        }
        sub.status = "canceled";
        sub.cancelParams = form;
        answer = { id: subId, object: "subscription", customer: sub.customer, status: "canceled", canceled_at: Math.floor(Date.now() / 1000), livemode: false };
      } else {
        return send(404, { error: { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${path}).` } });
      }
      if (idempotencyKey) byIdempotencyKey.set(`${path} ${idempotencyKey}`, answer);
      send(200, answer);
    });
  });
  await new Promise<void>((done, failed) => server.once("error", failed).listen(stripePort, "127.0.0.1", () => done()));
  return {
    base: `https://127.0.0.1:${stripePort}`,
    secretKey: stripeSecretKey,
    requests,
    meterEvents,
    subscriptions,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

/** metadata[k]=v fields of a Stripe form, as an object. */
function metadataOf(form: Record<string, string>, prefix = "metadata"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(form)) {
    const m = new RegExp(`^${prefix}\\[([^\\]]+)\\]$`).exec(k);
    if (m) out[m[1]] = v;
  }
  return out;
}
