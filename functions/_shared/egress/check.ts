/**
 * The egress guard's checks (invariant 4: no outbound request reaches a non-public address): a URL
 * is parsed by WHATWG `new URL()` (which turns `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1`
 * into `127.0.0.1`), then its scheme (only `https`; a test allowance may add `http`), credentials
 * (none), port (not a "bad port"), hostname (no metadata or special-use name) and every address it
 * resolves to (policy.ts) are checked. checkUrl answers whether a URL passes now;
 * transport.ts's guardedFetch checks again on every send and every redirect.
 */
import ipaddr from "ipaddr.js";
import {
  BAD_PORTS,
  dialable,
  INTERNAL_SUFFIXES,
  type IP,
  METADATA_NAMES,
  parseAddress,
  underAny,
  validName,
  verdictOf,
} from "./policy.ts";

/** The stable codes of an egress refusal or failure. */
export type EgressCode =
  | "egress_invalid_url"
  | "egress_scheme_not_allowed"
  | "egress_userinfo"
  | "egress_port_not_allowed"
  | "egress_metadata_host"
  | "egress_internal_host"
  | "egress_blocked_address"
  | "egress_unresolvable"
  | "egress_invalid_request"
  | "egress_connect_failed"
  | "egress_request_failed"
  | "egress_redirect_blocked"
  | "egress_response_too_large"
  | "egress_timeout"
  | "egress_aborted";

/** An expected egress failure: a stable code and a sentence for people (it never names a resolved address). */
export interface EgressFailure {
  ok: false;
  reason: EgressCode;
  message: string;
}

/** What the guard returns: the value, or why it refused or failed. */
export type EgressResult<T> = { ok: true; value: T } | EgressFailure;

/**
 * Test-only allowances, for a local server in tests. Only code can pass this; nothing in a URL or
 * in tenant data turns it on. Endpoints must be loopback addresses, so even a misuse can't open
 * a private network or a metadata service.
 */
export interface EgressTestAllowance {
  /** Loopback `address:port` pairs treated as public, e.g. "127.0.0.1:8080" or "[::1]:8080". */
  endpoints: string[];
  /** Also allow `http:` URLs. */
  http?: boolean;
  /** Extra root certificates (PEM) to trust, instead of the default ones. */
  caCerts?: string[];
}

/** Resolves a hostname to the addresses to check and connect to. */
export type Resolver = (hostname: string, options: { signal: AbortSignal }) => Promise<string[]>;

/** Options of checkUrl and guardedFetch. */
export interface EgressOptions {
  /** Maps a hostname to addresses; default: Deno.resolveDns, A and AAAA, as an absolute name. */
  resolve?: Resolver;
  /** Deadline for everything (lookups, connects, redirects, the body). Default 10 000 ms. */
  timeoutMs?: number;
  /** Largest response body read, in bytes. Default 1 MiB. */
  maxBytes?: number;
  /** Redirects followed, each re-checked from scratch. Default 3; 0 makes any redirect a failure. */
  maxRedirects?: number;
  /**
   * guardedFetch only: return as soon as the final response's head arrives, its body a stream fed
   * from the connection. maxBytes and timeoutMs still hold for the body (past either, or when the
   * caller's signal aborts, the stream errors with an EgressError and the connection is destroyed),
   * and cancelling the stream hangs up. Default false: the body is read in full first.
   */
  stream?: boolean;
  /**
   * guardedFetch only: send over an idle connection to a checked address when there is one, and
   * keep the connection for the next request after an exchange that ended cleanly (pool.ts).
   * Default false: a connection per request, closed after it.
   */
  keepAlive?: boolean;
  /** Test-only allowances; never set it in production code. */
  testOnly?: EgressTestAllowance;
}

/** A URL that passed the checks, and the addresses its host resolved to (all global). */
export interface CheckedUrl {
  url: string;
  addresses: string[];
}

/** The default deadline of a check or an exchange. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** An egress failure with its code and a sentence for people. */
export function fail(reason: EgressCode, message: string): EgressFailure {
  return { ok: false, reason, message };
}

/** The test allowance's endpoints as "address|port"; a non-loopback endpoint is a programming error. */
function testEndpoints(allowance: EgressTestAllowance | undefined): Set<string> {
  const endpoints = new Set<string>();
  for (const endpoint of allowance?.endpoints ?? []) {
    const match = endpoint.match(/^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/);
    const address = match ? parseAddress(match[1] ?? match[2]) : null;
    if (!match || !address || address.range() !== "loopback") {
      throw new TypeError(`testOnly endpoint ${JSON.stringify(endpoint)} is not a loopback address:port`);
    }
    endpoints.add(`${address.toString()}|${Number(match[3])}`);
  }
  return endpoints;
}

/** Where a checked URL goes: the canonical hostname (for SNI and Host) and the addresses to dial. */
export interface Target {
  url: URL;
  hostname: string;
  /** The Host header: hostname (bracketed if IPv6, no trailing dot) and any explicit port. */
  authority: string;
  literal: boolean;
  port: number;
  secure: boolean;
  addresses: string[];
}

/** The reason an aborted step failed: the deadline, or the caller's signal. */
export function abortFailure(signal: AbortSignal): EgressFailure {
  return (signal.reason as Error | undefined)?.name === "TimeoutError"
    ? fail("egress_timeout", "the request did not finish in time")
    : fail("egress_aborted", "the request was aborted");
}

/** The default resolver: A and AAAA through Deno, for the absolute name (no search domains). */
async function resolveWithDeno(hostname: string, options: { signal: AbortSignal }): Promise<string[]> {
  const lookups = await Promise.allSettled([
    Deno.resolveDns(`${hostname}.`, "A", { signal: options.signal }),
    Deno.resolveDns(`${hostname}.`, "AAAA", { signal: options.signal }),
  ]);
  return lookups.flatMap((lookup) => (lookup.status === "fulfilled" ? lookup.value : []));
}

/** Runs the resolver, giving up when the signal aborts even if the resolver ignores it. */
function resolveWithin(resolve: Resolver, hostname: string, signal: AbortSignal): Promise<string[]> {
  return new Promise((done, failed) => {
    const onAbort = () => failed(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    resolve(hostname, { signal }).then(done, failed).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Every check, from scratch: parse, scheme, userinfo, port, name, resolution, each address. */
export async function checkTarget(raw: string | URL, options: EgressOptions, signal: AbortSignal): Promise<EgressResult<Target>> {
  let url: URL;
  try {
    url = new URL(String(raw));
  } catch {
    return fail("egress_invalid_url", "not a valid absolute URL");
  }
  const schemes = options.testOnly?.http ? ["https:", "http:"] : ["https:"];
  if (!schemes.includes(url.protocol)) return fail("egress_scheme_not_allowed", `${url.protocol} URLs are not allowed; use https`);
  if (url.username !== "" || url.password !== "") return fail("egress_userinfo", "URLs with credentials (user:password@) are refused");
  const port = url.port === "" ? (url.protocol === "https:" ? 443 : 80) : Number(url.port);
  if (BAD_PORTS.has(port)) return fail("egress_port_not_allowed", `port ${port} is not allowed`);
  const endpoints = testEndpoints(options.testOnly);

  let hostname = url.hostname;
  let literal: IP | null = null;
  if (hostname.startsWith("[") && hostname.endsWith("]")) {
    hostname = hostname.slice(1, -1);
    literal = ipaddr.IPv6.isValid(hostname) ? ipaddr.IPv6.parse(hostname) : null;
    if (!literal) return fail("egress_invalid_url", "the IPv6 address is not valid");
  } else if (ipaddr.IPv4.isValidFourPartDecimal(hostname)) {
    literal = ipaddr.IPv4.parse(hostname);
  } else {
    if (hostname.endsWith(".")) hostname = hostname.slice(0, -1);
    if (!validName(hostname)) return fail("egress_invalid_url", "the hostname is not a valid DNS name");
    if (underAny(hostname, METADATA_NAMES)) return fail("egress_metadata_host", `${hostname} is a cloud metadata service`);
    if (!hostname.includes(".") || underAny(hostname, INTERNAL_SUFFIXES)) {
      return fail("egress_internal_host", `${hostname} is a local or internal name, not a public host`);
    }
  }

  let found: string[];
  if (literal) {
    found = [literal.toString()];
  } else {
    if (signal.aborted) return abortFailure(signal);
    try {
      found = await resolveWithin(options.resolve ?? resolveWithDeno, hostname, signal);
    } catch {
      if (signal.aborted) return abortFailure(signal);
      return fail("egress_unresolvable", `${hostname} could not be resolved`);
    }
    if (!Array.isArray(found) || found.length === 0) return fail("egress_unresolvable", `${hostname} has no addresses`);
  }

  const addresses: string[] = [];
  for (const text of found) {
    const address = typeof text === "string" ? parseAddress(text) : null;
    if (!address) return fail("egress_unresolvable", `${hostname} resolved to something that is not an IP address`);
    const dial = dialable(address);
    if (!endpoints.has(`${dial}|${port}`)) {
      const verdict = verdictOf(address);
      if (!verdict.ok) {
        const subject = literal ? `${hostname} is` : `${hostname} resolves to`;
        return verdict.metadata
          ? fail("egress_metadata_host", `${subject} a cloud metadata address`)
          : fail("egress_blocked_address", `${subject} a non-public address: ${verdict.why}`);
      }
    }
    if (!addresses.includes(dial)) addresses.push(dial);
  }
  const authority = `${literal?.kind() === "ipv6" ? `[${hostname}]` : hostname}${url.port === "" ? "" : `:${url.port}`}`;
  return {
    ok: true,
    value: { url, hostname, authority, literal: literal !== null, port, secure: url.protocol === "https:", addresses },
  };
}

/**
 * Checks a URL as guardedFetch would before sending (for example when a tenant saves a webhook):
 * scheme, credentials, port, name, and every address it resolves to now. guardedFetch checks
 * again on every send, since DNS answers change.
 */
export async function checkUrl(url: string | URL, options: EgressOptions = {}): Promise<EgressResult<CheckedUrl>> {
  const checked = await checkTarget(url, options, AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS));
  if (!checked.ok) return checked;
  return { ok: true, value: { url: checked.value.url.href, addresses: checked.value.addresses } };
}
