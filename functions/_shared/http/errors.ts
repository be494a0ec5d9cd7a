/**
 * The one error type edge functions throw for expected failures, the list of every refusal code a
 * function answers (each listed once, with its status), and the one place errors become
 * responses. Body shape, OpenAI's (so that the vendor SDKs pointed at the model gateway read it):
 * `{ "error": { "code": "…", "message": "…", "type": "…" } }`, where `type` is OpenAI's class of
 * the status (invalid_request_error, authentication_error, permission_error, rate_limit_error, …),
 * and a refusal may add fields of its own (a rate limit's `retry_after`).
 *
 * Codes raised by the database (private.refuse_request, SQLSTATE PGRST) keep the database's code
 * and status; the egress guard's codes (egress/check.ts) are answered as 422.
 */
import { HTTPException } from "hono/http-exception";
import type { EgressCode } from "../egress/check.ts";
import { DATABASE_RETRY_AFTER_SECONDS, databaseUnavailable } from "./unavailable.ts";

/**
 * Every refusal a function answers itself: its HTTP status and a default message. The same
 * condition has this one code on every path.
 */
export const REFUSALS = {
  // The request itself
  invalid_json: [400, "the body is not UTF-8 JSON"],
  invalid_body: [400, "the body does not have the expected shape"],
  invalid_text: [400, "strings may not contain NUL characters or unpaired surrogates"],
  json_too_deep: [400, "the body nests objects and arrays too deeply"],
  invalid_query: [400, "the query parameters are not valid"],
  body_too_large: [413, "the body is too large"],
  unsupported_media_type: [415, "send Content-Type: application/json"],
  method_not_allowed: [405, "this route does not take that method"],
  not_found: [404, "no such route"],
  // Who is calling
  missing_auth: [401, "send Authorization: Bearer <token>"],
  invalid_token: [401, "the bearer token is not a valid access token"],
  sign_in_required: [401, "sign in, or call with the service role"],
  runtime_only: [403, "only the agent runtime (service role) may do this"],
  // Personal access tokens (docs/tokens.md)
  token_invalid: [401, "this is not a valid personal access token"],
  token_revoked: [401, "the personal access token has been revoked"],
  token_expired: [401, "the personal access token has expired"],
  user_disabled: [401, "this account is disabled"],
  token_not_accepted: [403, "this route does not take personal access tokens"],
  token_exchange_internal: [403, "the exchange is internal: send the personal access token itself, as Authorization: Bearer gtp_… (REST: through /functions/v1/rest)"],
  token_scope: [403, "the personal access token lacks the scope this needs"],
  tokens_misconfigured: [503, "the tokens function's configuration is not valid"],
  leak_reports_not_configured: [503, "no secret scanner's keys are configured here (GATEHOUSE_LEAK_REPORT_KEYS)"],
  leak_report_signature_missing: [400, "send GitHub-Public-Key-Identifier and GitHub-Public-Key-Signature"],
  leak_report_signature_invalid: [401, "the report's signature does not verify with the key it names"],
  // The organization context
  context_missing_org_id: [400, "send X-Org-Id"],
  context_invalid_org_id: [400, "X-Org-Id must be a uuid"],
  context_not_a_member: [403, "you are not a member of this organization"],
  missing_org_id: [400, "the service role names the organization with org_id"],
  forbidden: [403, "your role in this organization does not allow this"],
  // Connections and connectors
  connection_not_found: [404, "no such connection in this organization"],
  agent_not_found: [404, "no such agent in this organization"],
  use_oauth2_flow: [400, "OAuth2 connections are made with /oauth2/start and /oauth2/callback"],
  invalid_credential: [400, "the credential does not have the provider's shape"],
  invalid_authorize_url: [400, "authorize_url must be https"],
  oauth_state_invalid: [400, "no authorization in flight with that state (unknown, used or expired)"],
  connector_credential_rejected: [422, "the provider refused the credential"],
  connector_verification_rejected: [422, "the provider rejected the check"],
  connector_missing_scopes: [422, "the token lacks scopes the enabled tools need"],
  connector_excess_scopes: [422, "the token holds scopes no enabled tool needs"],
  connector_provider_error: [502, "the provider failed the check"],
  connector_rate_limited: [429, "this workspace has reached its connector calls per minute; retry in a minute"],
  connector_budget_exhausted: [429, "this workspace has used its monthly connector budget"],
  connectors_misconfigured: [503, "the connectors function's configuration is not valid"],
  // Executing approved actions: the gate's refusals (the database's) and the admission check's
  already_executed: [409, "this approval has been used"],
  not_approved: [409, "the action is not approved"],
  expired: [409, "the action's approval window has passed"],
  payload_mismatch: [409, "the payload is not the one that was approved"],
  action_request_not_found: [404, "no such action request that this caller may execute"],
  approval_target_changed: [409, "the tool, its connection or the connection's destination is not what was approved"],
  agent_disabled: [409, "the agent is disabled"],
  connection_inactive: [409, "the tool's connection is disabled"],
  sandbox_unavailable: [409, "nothing here can run code safely (edge functions start no processes; a run worker executes it after its sandbox's self-test): the approval stays unused"],
  invalid_sandbox_config: [400, "a sandbox connection's config is {backend: \"bubblewrap\", limits?: {seconds, memory_mib, processes}}"],
  config_not_taken: [400, "only a sandbox connection takes config; a webhook or token connection has none"],
  // The model gateway (the database's refusals, and the upstream's failures)
  missing_run_id: [400, "the agent runtime names its run with X-Run-Id"],
  run_token_invalid: [401, "the run token is unknown, expired, revoked, or its run has ended"],
  run_token_scope: [403, "the run token acts for another run than the one named"],
  missing_agent_id: [400, "a member names the agent with X-Agent-Id"],
  run_not_found: [404, "no such run"],
  run_not_active: [409, "the run has ended"],
  model_not_found: [404, "no such model in the catalog"],
  model_not_allowed: [403, "the model is not allowed for this organization or agent"],
  max_tokens_too_large: [400, "max_tokens is above the model's output limit"],
  model_rate_limited: [429, "too many model calls at once; retry after retry_after seconds"],
  model_budget_exhausted: [402, "the model budget has too little left for this call"],
  model_provider_not_configured: [503, "the platform has no key for this provider; save your own"],
  model_key_rejected: [422, "the provider refused the key"],
  model_request_rejected: [400, "the provider found the request invalid"],
  model_upstream_blocked: [502, "the egress guard refused the provider's address"],
  model_upstream_unavailable: [502, "the provider failed or could not be reached"],
  model_upstream_refused: [502, "the provider refused the request"],
  model_upstream_rate_limited: [429, "the provider is rate limiting; retry later"],
  model_upstream_timeout: [504, "the provider did not answer in time"],
  model_gateway_misconfigured: [503, "the model gateway's configuration is not valid"],
  // Widgets
  widget_key_invalid: [401, "no live widget key like this (unknown, disabled, or its agent is not published)"],
  widget_origin_required: [403, "a widget session is opened from a web page (send Origin)"],
  widget_origin_not_allowed: [403, "this key may not be embedded on this origin"],
  proof_of_work_required: [428, "answer the proof-of-work challenge: SHA-256(challenge + \":\" + nonce) must start with `bits` zero bits"],
  widget_session_required: [401, "send Authorization: Bearer <session> (POST /v1/sessions)"],
  widget_session_invalid: [401, "the session token is not valid"],
  widget_renewal_refused: [401, "the session to renew was issued before the key was rotated: open a new session without renew"],
  widget_session_expired: [401, "the session has expired or its key changed; open a new one"],
  widget_origin_mismatch: [403, "the session belongs to another origin"],
  widget_conversation_not_found: [404, "no such conversation of this visitor"],
  widget_key_not_found: [404, "no live widget key of a project you work on has that id"],
  widget_preview_misconfigured: [503, "the widget-preview function's configuration is not valid"],
  // The audit chain
  no_audit_chain: [404, "this organization has no audit entries yet"],
  audit_signing_key_unavailable: [503, "the active audit signing key's private half is not in Vault: retire it (audit.signing_keys.retired_at) and a new one is made"],
  audit_checkpoint_misconfigured: [503, "the audit-checkpoint function's configuration is not valid (GATEHOUSE_AUDIT_WITNESSES)"],
  range_not_satisfiable: [416, "the range selects no entries of the chain"],
  // Invitations
  invitations_misconfigured: [503, "the invitations function's configuration is not valid"],
  domains_misconfigured: [503, "the domains function's configuration is not valid"],
  domain_not_claimed: [404, "the organization has not claimed that domain"],
  invitation_not_mailed: [502, "Supabase Auth did not send the invitation email; the invitation was withdrawn"],
  invitation_not_found: [404, "no open invitation has that token"],
  invitation_expired: [410, "the invitation has expired: ask for a new one"],
  invitations_rate_limited: [429, "too many invitations for now (the database's limits: per organization and per inviter); retry after retry_after seconds"],
  invitation_link_recent: [429, "a link was mailed less than a minute ago; check the inbox, or try again in a minute"],
  // Inbound webhooks (docs/webhooks.md)
  inbound_subscription_not_found: [404, "no live inbound webhook subscription of the token's organization has that id"],
  inbound_token_project: [403, "the token must be bound to the subscription's project"],
  inbound_headers_missing: [400, "send webhook-id, webhook-timestamp and webhook-signature (Standard Webhooks)"],
  inbound_timestamp_invalid: [400, "webhook-timestamp is whole seconds since the epoch"],
  inbound_timestamp_too_old: [400, "webhook-timestamp is more than 5 minutes old"],
  inbound_timestamp_too_new: [400, "webhook-timestamp is more than 5 minutes ahead"],
  inbound_signature_invalid: [401, "no signature in webhook-signature verifies the delivery with the subscription's secret"],
  inbound_replayed: [409, "this webhook-id was delivered before; its run is run_id"],
  // The MCP endpoint (docs/mcp.md)
  mcp_misconfigured: [503, "the mcp function's configuration is not valid"],
  mcp_run_required: [400, "a personal access token names the run it acts in: /functions/v1/mcp?run=<run id>"],
  // Billing
  billing_not_configured: [503, "billing is not configured here (no Stripe keys): see docs/billing.md"],
  webhook_signature_missing: [400, "send the Stripe-Signature header"],
  webhook_signature_invalid: [400, "the Stripe-Signature does not match the body with any of our signing secrets"],
  webhook_timestamp_stale: [400, "the Stripe-Signature's timestamp is outside the 300 s tolerance"],
  webhook_livemode_mismatch: [400, "the event's livemode is not the mode of this deployment's Stripe key"],
  credits_exhausted: [402, "the organization's prepaid credits can't cover this call: buy credits"],
  spend_ceiling_reached: [402, "the organization has reached its plan's monthly spend on the platform: subscribe, or save your own key"],
  unknown_plan: [400, "no such plan: see GET /billing/plans"],
  subscription_exists: [409, "the organization has a live subscription: change its plan in the customer portal"],
  stripe_unavailable: [502, "Stripe is not answering; try again"],
  stripe_refused: [502, "Stripe refused the request"],
  // The database's own constraints
  already_exists: [409, "something with that name (or those values) already exists here"],
  // The platform
  database_not_configured: [503, "SUPABASE_DB_URL is not set"],
  database_unavailable: [503, "the database is not answering; retry after retry_after seconds"],
  internal_error: [500, "unexpected error"],
} as const satisfies Record<string, readonly [number, string]>;

/** A refusal code: one of {@link REFUSALS}, or an egress guard's code. */
export type RefusalCode = keyof typeof REFUSALS | EgressCode;

/** Extra fields of a refusal's body, and headers of its response (Retry-After). */
export interface RefusalExtras {
  fields?: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** An expected failure with an HTTP status and a stable machine-readable code. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, readonly code: string, message: string, readonly extras: RefusalExtras = {}) {
    super(message);
  }

  /** This error as a JSON response. */
  toResponse(headers?: Record<string, string>): Response {
    return Response.json(
      { error: { code: this.code, message: this.message, type: errorType(this.status), ...this.extras.fields } },
      { status: this.status, headers: { ...this.extras.headers, ...headers } },
    );
  }
}

/** OpenAI's error `type` for a status. */
function errorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 402) return "insufficient_quota";
  if (status === 403) return "permission_error";
  if (status === 429) return "rate_limit_error";
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** The error for refusal `code`, with its listed status and `message` (default: the listed one). */
export function refuse(code: RefusalCode, message?: string, extras?: RefusalExtras): HttpError {
  if (code.startsWith("egress_")) return new HttpError(422, code, message ?? "the egress guard refused the request", extras);
  const [status, fallback] = REFUSALS[code as keyof typeof REFUSALS];
  return new HttpError(status, code, message ?? fallback, extras);
}

/**
 * A refusal raised by the database's private.refuse_request (SQLSTATE PGRST, the convention
 * PostgREST turns into a response): the same status and code here, and a Retry-After the
 * database set (a rate limit's) as the header and as `retry_after`. Null for any other error.
 */
export function databaseRefusal(e: unknown): HttpError | null {
  const err = e as { code?: string; message?: string; detail?: string; constraint_name?: string };
  // A unique constraint (say, a connection's display name) is the caller's clash, as PostgREST says.
  if (err?.code === "23505") return refuse("already_exists", err.constraint_name ? `it clashes with ${err.constraint_name}` : undefined);
  // The database's own "not allowed" (a grant, a policy's WITH CHECK, an RPC's role check).
  if (err?.code === "42501") return refuse("forbidden");
  if (err?.code !== "PGRST") return null;
  try {
    const { code, message } = JSON.parse(err.message ?? "") as { code: string; message: string };
    const { status, headers } = JSON.parse(err.detail ?? "") as { status: number; headers?: Record<string, unknown> };
    if (typeof code !== "string" || !Number.isInteger(status) || status < 400 || status > 499) return null;
    const retryAfter = headers?.["Retry-After"];
    if (typeof retryAfter === "string" && /^[0-9]{1,6}$/.test(retryAfter)) {
      return new HttpError(status, code, String(message), { fields: { retry_after: Number(retryAfter) }, headers: { "retry-after": retryAfter } });
    }
    return new HttpError(status, code, String(message));
  } catch {
    return null;
  }
}

/**
 * The response for anything a handler threw: an HttpError or a database refusal as itself,
 * anything else as a 500 whose body reveals nothing (the details may hold request data or
 * secrets, so only the error's kind is logged).
 */
export function errorResponse(e: unknown, path: string): Response {
  if (e instanceof HttpError) return e.toResponse();
  const refusal = databaseRefusal(e) ?? routerRefusal(e);
  if (refusal) return refusal.toResponse();
  // The database is down, restarting or overloaded: the caller may send the request again.
  if (databaseUnavailable(e)) {
    const after = DATABASE_RETRY_AFTER_SECONDS;
    return refuse("database_unavailable", undefined, { fields: { retry_after: after }, headers: { "retry-after": String(after) } }).toResponse();
  }
  // The kind and SQLSTATE only: messages may quote request data or secrets.
  const sqlstate = (e as { code?: unknown })?.code;
  console.error(`unexpected ${(e as Error)?.name ?? "error"}${typeof sqlstate === "string" ? ` (${sqlstate})` : ""} in ${path}`);
  return refuse("internal_error").toResponse();
}

/** The refusals Hono and its validators raise themselves (HTTPException), in our vocabulary. */
const ROUTER_REFUSALS: Record<number, keyof typeof REFUSALS> = {
  400: "invalid_body",
  404: "not_found",
  405: "method_not_allowed",
  413: "body_too_large",
  415: "unsupported_media_type",
};

function routerRefusal(e: unknown): HttpError | null {
  if (!(e instanceof HTTPException)) return null;
  const code = ROUTER_REFUSALS[e.status];
  return code ? refuse(code) : null;
}
