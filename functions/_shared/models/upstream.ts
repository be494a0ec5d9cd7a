/**
 * Which vendor endpoint serves a call, with whose key, and what its failures mean to the caller.
 *
 * The platform's keys and endpoints come from the function's secrets (`supabase secrets set
 * OPENAI_API_KEY=… ANTHROPIC_API_KEY=…`; OPENAI_BASE_URL and ANTHROPIC_BASE_URL default to the
 * vendors'). An organization's own key (bring-your-own-key) comes from the reservation, with the
 * organization's own base URL if it set one; the platform's key is never sent to a tenant's URL.
 * Every request goes through the egress guard, whoever chose the URL.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import type { EgressOptions } from "../egress/check.ts";
import { testAllowanceFrom } from "../egress/allowance.ts";
import { egressFailureOf } from "../egress/fetch.ts";
import { HttpError, refuse } from "../http/errors.ts";
import { anthropicUpstream } from "./anthropic.ts";
import { openAiUpstream, type VendorEndpoint } from "./openai.ts";
import type { Upstream } from "./wire.ts";

export type Provider = "openai" | "anthropic";

/** The gateway's configuration. */
export interface ModelEnv {
  platform: Record<Provider, { apiKey: string | null; baseUrl: string }>;
  egress: EgressOptions;
  /** Time to a response's headers (a non-streamed call's whole answer), in ms. */
  timeoutMs: number;
}

const DEFAULT_BASE_URLS: Record<Provider, string> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com",
};

/**
 * The gateway's configuration from its environment. GATEHOUSE_MODEL_TIMEOUT_MS (default 60 000,
 * at most 300 000) bounds the wait for an answer; a stream may then run for up to 10 minutes, its
 * body capped at 16 MiB, and redirects are never followed. All of it fits in a reservation's 15
 * minutes. Connections to the vendors are kept alive between calls.
 */
export function modelEnvFrom(get: (name: string) => string | undefined): ModelEnv {
  const timeoutMs = Number(get("GATEHOUSE_MODEL_TIMEOUT_MS") ?? 60_000);
  // At most 5 minutes: a reservation lives 15, and must outlast the call it holds.
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 300_000) {
    throw new Error("GATEHOUSE_MODEL_TIMEOUT_MS must be a whole number of ms from 100 to 300000");
  }
  const platform = (provider: Provider, prefix: string) => {
    const baseUrl = get(`${prefix}_BASE_URL`) || DEFAULT_BASE_URLS[provider];
    new URL(baseUrl);
    return { apiKey: get(`${prefix}_API_KEY`) || null, baseUrl };
  };
  const testOnly = testAllowanceFrom(get);
  return {
    platform: { openai: platform("openai", "OPENAI"), anthropic: platform("anthropic", "ANTHROPIC") },
    // Vendor connections are kept alive between calls (egress/pool.ts): each new one is checked,
    // and a kept one carries only a call whose own check allows its address.
    egress: { timeoutMs: 10 * 60_000, maxBytes: 16 * 1024 * 1024, maxRedirects: 0, keepAlive: true, ...(testOnly ? { testOnly } : {}) },
    timeoutMs,
  };
}

/** An organization's own key for a provider, and its own endpoint if it set one. */
export interface OwnKey {
  apiKey: string;
  baseUrl: string | null;
}

/** The platform key's adapters, made once per configuration (an organization's own key gets a fresh one per call). */
const platformUpstreams = new WeakMap<ModelEnv, Partial<Record<Provider, Upstream>>>();

/** The adapter for a provider, with the organization's own key or else the platform's. */
export function upstreamFor(env: ModelEnv, provider: Provider, own: OwnKey | null): Upstream {
  if (own) {
    // Without a URL of its own, the organization's key goes where the platform's does: the vendor.
    return adapter(provider, { apiKey: own.apiKey, baseUrl: own.baseUrl ?? env.platform[provider].baseUrl, egress: env.egress, timeoutMs: env.timeoutMs });
  }
  const platform = env.platform[provider];
  if (!platform.apiKey) throw refuse("model_provider_not_configured", `the platform has no ${provider} key; save your organization's own`);
  const made = platformUpstreams.get(env) ?? {};
  platformUpstreams.set(env, made);
  return made[provider] ??= adapter(provider, { apiKey: platform.apiKey, baseUrl: platform.baseUrl, egress: env.egress, timeoutMs: env.timeoutMs });
}

function adapter(provider: Provider, endpoint: VendorEndpoint): Upstream {
  return provider === "anthropic" ? anthropicUpstream(endpoint) : openAiUpstream(endpoint);
}

// The guard's refusals of the address itself (as opposed to failures reaching it).
const POLICY_REFUSALS = new Set([
  "egress_invalid_url", "egress_scheme_not_allowed", "egress_userinfo", "egress_port_not_allowed",
  "egress_metadata_host", "egress_internal_host", "egress_blocked_address", "egress_redirect_blocked",
]);

/**
 * What a vendor SDK's failure means to the caller: the guard refusing the address (502
 * model_upstream_blocked), a timeout (504), the vendor's rate limit (429), the vendor finding the
 * request invalid (400 model_request_rejected: too long for the context window, say), the vendor
 * refusing the key (502 model_upstream_refused), anything else (502 model_upstream_unavailable).
 * The answer names the vendor's status, never its body (which may quote the key or the prompt).
 */
export function upstreamFailure(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  // The SDK's own timeout aborts the request, and says so.
  if (e instanceof OpenAI.APIConnectionTimeoutError || e instanceof Anthropic.APIConnectionTimeoutError) return refuse("model_upstream_timeout");
  const egress = egressFailureOf(e);
  if (egress) {
    if (egress.reason === "egress_timeout") return refuse("model_upstream_timeout");
    if (POLICY_REFUSALS.has(egress.reason)) return refuse("model_upstream_blocked", `the egress guard refused the provider's address (${egress.reason})`);
    return refuse("model_upstream_unavailable", `the provider could not be reached (${egress.reason})`);
  }
  const status = (e as { status?: unknown })?.status;
  if (typeof status === "number") {
    if (status === 429) {
      const retry = Number((e as { headers?: Headers })?.headers?.get?.("retry-after"));
      return Number.isFinite(retry) && retry > 0
        ? refuse("model_upstream_rate_limited", undefined, { fields: { retry_after: Math.ceil(retry) }, headers: { "retry-after": String(Math.ceil(retry)) } })
        : refuse("model_upstream_rate_limited");
    }
    if ([400, 404, 413, 422].includes(status)) return refuse("model_request_rejected", `the provider found the request invalid (${status})`);
    if (status >= 400 && status < 500) return refuse("model_upstream_refused", `the provider answered ${status}`);
    return refuse("model_upstream_unavailable", `the provider answered ${status}`);
  }
  return refuse("model_upstream_unavailable");
}

/** The stable code of a failure, for the model_calls row. */
export function failureCode(e: unknown): string {
  return upstreamFailure(e).code;
}
