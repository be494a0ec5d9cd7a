/**
 * The egress guard: the only way Gatehouse sends a request to a URL it did not write itself
 * (customer webhooks, provider endpoints). Invariant 4: no outbound request reaches a non-public
 * address.
 *
 * - Only `https` (a test allowance may add `http`); no credentials in the URL; no port that
 *   browsers refuse (the Fetch standard's "bad ports", which speak other protocols).
 * - The host is parsed by WHATWG `new URL()`, which turns `2130706433`, `0x7f.1`, `0177.0.0.1` and
 *   `127.1` into `127.0.0.1`. Cloud-metadata names and special-use names (localhost, .local,
 *   .internal, single labels) are refused before any lookup.
 * - Every address the host resolves to must be global unicast: an IPv4 address that ipaddr.js
 *   calls "unicast" and that no IANA special-purpose block below contains; an IPv6 address inside
 *   2000::/3 that ipaddr.js calls "unicast" and no block contains. IPv4 carried inside IPv6
 *   (mapped, NAT64, 6to4, Teredo) is decoded and checked as IPv4. Anything else fails closed.
 * - The connection goes to an address that was checked, by address (never by name), so a second
 *   DNS answer can't move it; TLS still verifies the certificate against the hostname (SNI).
 * - Redirects are followed only after the new URL passes every check again, at most
 *   `maxRedirects` hops; a cross-origin hop forwards no caller header but a few harmless ones.
 * - The whole exchange (lookup, connect, request, response body) has one deadline, and the body is
 *   read up to a byte cap and no further.
 */
import ipaddr from "ipaddr.js";
import http from "node:http";
import net from "node:net";
import tls from "node:tls";

type IP = ipaddr.IPv4 | ipaddr.IPv6;

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
  code: EgressCode;
  reason: string;
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
  /** Test-only allowances; never set it in production code. */
  testOnly?: EgressTestAllowance;
}

/** A URL that passed the checks, and the addresses its host resolved to (all global). */
export interface CheckedUrl {
  url: string;
  addresses: string[];
}

/** The request guardedFetch sends. */
export interface EgressRequest {
  method?: string;
  headers?: HeadersInit;
  body?: string | Uint8Array | null;
  signal?: AbortSignal;
}

/** A response read in full (up to maxBytes), with the URL and the address it came from. */
export interface EgressResponse {
  response: Response;
  url: string;
  address: string;
  redirects: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS = 3;

// The Fetch standard's bad ports (https://fetch.spec.whatwg.org/#bad-port).
const BAD_PORTS = new Set([
  0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109,
  110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531,
  532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060,
  5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

// Names of cloud metadata services; a name matches itself and its subdomains.
const METADATA_NAMES = [
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "metadata.azure.internal",
  "metadata.azure.com",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.tencentyun.com",
  "metadata.platformequinix.com",
];

// Metadata addresses, some of them public (Azure's WireServer), so they are named one by one.
const METADATA_ADDRESSES = new Set([
  "169.254.169.254", // AWS, GCP, Azure IMDS, OCI, DigitalOcean, Hetzner, OpenStack
  "169.254.170.2", // AWS ECS task metadata
  "169.254.169.253", // AWS VPC DNS
  "169.254.169.123", // AWS time sync
  "169.254.0.23", // Tencent Cloud
  "100.100.100.200", // Alibaba Cloud
  "168.63.129.16", // Azure WireServer (a public address)
  "192.0.0.192", // Oracle Cloud
  "fd00:ec2:0:0:0:0:0:254", // AWS IMDS over IPv6
  "fd00:ec2:0:0:0:0:0:253", // AWS DNS over IPv6
  "fd00:ec2:0:0:0:0:0:123", // AWS time sync over IPv6
]);

// Special-use names (RFC 6761, 6762, 8375, ICANN's .internal): never a customer's public endpoint.
const INTERNAL_SUFFIXES = ["localhost", "local", "internal", "home.arpa"];

/** An IANA special-purpose block, with the reason it is refused. */
interface Block {
  cidr: [IP, number];
  why: string;
}

function blocks(list: [string, string][]): Block[] {
  return list.map(([cidr, why]) => ({ cidr: ipaddr.parseCIDR(cidr), why: `${cidr} ${why}` }));
}

/** IPv4 special-purpose blocks (IANA IPv4 Special-Purpose Address Registry and friends). */
const V4_BLOCKS = blocks([
  ["0.0.0.0/8", "\"this network\" (RFC 791); 0.0.0.0 reaches the local host"],
  ["10.0.0.0/8", "private-use (RFC 1918)"],
  ["100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"],
  ["127.0.0.0/8", "loopback (RFC 1122)"],
  ["169.254.0.0/16", "link-local (RFC 3927)"],
  ["172.16.0.0/12", "private-use (RFC 1918)"],
  ["192.0.0.0/24", "IETF protocol assignments (RFC 6890)"],
  ["192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"],
  ["192.31.196.0/24", "AS112-v4 (RFC 7535)"],
  ["192.52.193.0/24", "AMT (RFC 7450)"],
  ["192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"],
  ["192.168.0.0/16", "private-use (RFC 1918)"],
  ["192.175.48.0/24", "AS112 direct delegation (RFC 7534)"],
  ["198.18.0.0/15", "benchmarking (RFC 2544)"],
  ["198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"],
  ["203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"],
  ["224.0.0.0/4", "multicast (RFC 5771)"],
  ["255.255.255.255/32", "limited broadcast (RFC 919)"],
  ["240.0.0.0/4", "reserved (RFC 1112)"],
]);

/** IPv6 special-purpose blocks, after the ones that carry IPv4 (decoded separately). */
const V6_BLOCKS = blocks([
  ["::/128", "unspecified (RFC 4291)"],
  ["::1/128", "loopback (RFC 4291)"],
  ["::/96", "IPv4-compatible, deprecated (RFC 4291)"],
  ["::ffff:0:0:0/96", "IPv4-translated (RFC 6145)"],
  ["64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"],
  ["100::/64", "discard-only (RFC 6666)"],
  ["100:0:0:1::/64", "dummy prefix (RFC 9780)"],
  ["2001::/23", "IETF protocol assignments (RFC 2928)"],
  ["2001:db8::/32", "documentation (RFC 3849)"],
  ["2620:4f:8000::/48", "AS112-v6 direct delegation (RFC 7534)"],
  ["3fff::/20", "documentation (RFC 9637)"],
  ["5f00::/16", "segment routing SIDs (RFC 9602)"],
  ["fc00::/7", "unique local (RFC 4193)"],
  ["fe80::/10", "link-local (RFC 4291)"],
  ["fec0::/10", "site-local, deprecated (RFC 3879)"],
  ["ff00::/8", "multicast (RFC 4291)"],
]);

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR("2000::/3");
const MAPPED = ipaddr.parseCIDR("::ffff:0:0/96");
const NAT64 = ipaddr.parseCIDR("64:ff9b::/96");
const SIX_TO_FOUR = ipaddr.parseCIDR("2002::/16");
const TEREDO = ipaddr.parseCIDR("2001::/32");

type Verdict = { ok: true } | { ok: false; metadata: boolean; why: string };

function v4Of(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

/** IPv4 addresses an IPv6 address carries, with the name of the mechanism; null if none. */
function embeddedIPv4(a: ipaddr.IPv6): { via: string; addresses: ipaddr.IPv4[] } | null {
  const p = a.parts;
  if (a.match(MAPPED)) return { via: "IPv4-mapped", addresses: [v4Of(p[6], p[7])] };
  if (a.match(NAT64)) return { via: "NAT64 (64:ff9b::/96)", addresses: [v4Of(p[6], p[7])] };
  if (a.match(SIX_TO_FOUR)) return { via: "6to4 (2002::/16)", addresses: [v4Of(p[1], p[2])] };
  // Teredo (RFC 4380): the server's IPv4 is bits 32..63, the client's the last 32 bits inverted.
  if (a.match(TEREDO)) {
    return { via: "Teredo (2001::/32)", addresses: [v4Of(p[2], p[3]), v4Of(p[6] ^ 0xffff, p[7] ^ 0xffff)] };
  }
  return null;
}

/** Whether an address is global unicast and no metadata service; the reason when it is not. */
function verdictOf(a: IP): Verdict {
  if (METADATA_ADDRESSES.has(a.toNormalizedString())) {
    return { ok: false, metadata: true, why: "a cloud metadata address" };
  }
  if (a.kind() === "ipv4") {
    const block = V4_BLOCKS.find((b) => a.match(b.cidr));
    if (block) return { ok: false, metadata: false, why: block.why };
    if (a.range() !== "unicast") return { ok: false, metadata: false, why: `special-purpose (${a.range()})` };
    return { ok: true };
  }
  const v6 = a as ipaddr.IPv6;
  const embedded = embeddedIPv4(v6);
  if (embedded) {
    for (const inner of embedded.addresses) {
      const verdict = verdictOf(inner);
      if (!verdict.ok) return { ...verdict, why: `${embedded.via}, carrying ${verdict.why}` };
    }
    return { ok: true };
  }
  const block = V6_BLOCKS.find((b) => v6.match(b.cidr));
  if (block) return { ok: false, metadata: false, why: block.why };
  if (!v6.match(GLOBAL_UNICAST_V6)) return { ok: false, metadata: false, why: "outside global unicast (2000::/3)" };
  if (v6.range() !== "unicast") return { ok: false, metadata: false, why: `special-purpose (${v6.range()})` };
  return { ok: true };
}

/** The address to dial: IPv4-mapped addresses are dialled as the IPv4 they are. */
function dialable(a: IP): string {
  if (a.kind() === "ipv6" && a.match(MAPPED)) return (a as ipaddr.IPv6).toIPv4Address().toString();
  return a.toString();
}

/** Parses an address a resolver returned, strictly (no octal, hex or short IPv4; no zone). */
function parseAddress(text: string): IP | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!text.includes("%") && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return null;
}

function fail(code: EgressCode, reason: string): EgressFailure {
  return { ok: false, code, reason };
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
interface Target {
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
function abortFailure(signal: AbortSignal): EgressFailure {
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

function validName(hostname: string): boolean {
  const labels = hostname.split(".");
  return hostname.length <= 253 && labels.every((label) => /^[a-z0-9_-]{1,63}$/.test(label));
}

function underAny(hostname: string, names: string[]): boolean {
  return names.some((name) => hostname === name || hostname.endsWith(`.${name}`));
}

/** Every check, from scratch: parse, scheme, userinfo, port, name, resolution, each address. */
async function check(raw: string | URL, options: EgressOptions, signal: AbortSignal): Promise<EgressResult<Target>> {
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
  const checked = await check(url, options, AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS));
  if (!checked.ok) return checked;
  return { ok: true, value: { url: checked.value.url.href, addresses: checked.value.addresses } };
}

/** Opens a TCP (and TLS) connection to one checked address; TLS verifies the hostname, not the address. */
function connectTo(target: Target, address: string, caCerts: string[] | undefined, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((done, failed) => {
    const socket = target.secure
      ? tls.connect({
        host: address,
        port: target.port,
        ...(target.literal ? {} : { servername: target.hostname }),
        ALPNProtocols: ["http/1.1"],
        ...(caCerts ? { ca: caCerts } : {}),
      })
      : net.connect({ host: address, port: target.port });
    const onAbort = () => {
      socket.destroy();
      failed(signal.reason);
    };
    const onError = (e: Error) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      failed(e);
    };
    socket.once(target.secure ? "secureConnect" : "connect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.off("error", onError);
      // From here the HTTP request reports errors; this only keeps a late one from crashing the isolate.
      socket.on("error", () => {});
      done(socket);
    });
    socket.once("error", onError);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Connects to the checked addresses in turn, and to nothing else. */
async function connectPinned(
  target: Target,
  caCerts: string[] | undefined,
  signal: AbortSignal,
): Promise<EgressResult<{ socket: net.Socket; address: string }>> {
  let last = "no address to connect to";
  for (const address of target.addresses) {
    if (signal.aborted) return abortFailure(signal);
    try {
      return { ok: true, value: { socket: await connectTo(target, address, caCerts, signal), address } };
    } catch (e) {
      if (signal.aborted) return abortFailure(signal);
      last = (e as Error)?.message ?? String(e);
    }
  }
  return fail("egress_connect_failed", `could not connect to ${target.hostname}: ${last}`);
}

/** A request ready to send: method, headers (without the ones the guard sets) and body bytes. */
interface Outgoing {
  method: string;
  headers: Headers;
  body: Uint8Array | null;
}

/** A response read in full. */
interface Incoming {
  status: number;
  rawHeaders: string[];
  body: Uint8Array<ArrayBuffer>;
}

// Headers the guard sets itself (or that would let a caller reframe the request).
const GUARD_HEADERS = ["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "proxy-connection"];

function prepare(init: EgressRequest): EgressResult<Outgoing> {
  const method = (init.method ?? "GET").toUpperCase();
  if (!/^[!#$%&'*+.^_`|~0-9A-Z-]+$/.test(method) || method === "CONNECT") {
    return fail("egress_invalid_request", `${init.method} is not a method the guard sends`);
  }
  let headers: Headers;
  try {
    headers = new Headers(init.headers);
  } catch {
    return fail("egress_invalid_request", "the request headers are not valid");
  }
  for (const name of GUARD_HEADERS) headers.delete(name);
  const body = init.body == null ? null : typeof init.body === "string" ? new TextEncoder().encode(init.body) : init.body;
  if (body && (method === "GET" || method === "HEAD")) return fail("egress_invalid_request", `a ${method} request has no body`);
  return { ok: true, value: { method, headers, body } };
}

function concat(chunks: Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}

/** One HTTP/1.1 exchange over an open connection; reads at most maxBytes of body. */
function exchange(
  socket: net.Socket,
  target: Target,
  outgoing: Outgoing,
  maxBytes: number,
  signal: AbortSignal,
): Promise<EgressResult<Incoming>> {
  return new Promise((done) => {
    let settled = false;
    const finish = (result: EgressResult<Incoming>) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener("abort", onAbort);
      request.destroy();
      socket.destroy();
      done(result);
    };
    const onAbort = () => finish(abortFailure(signal));
    const tooLarge = () => fail("egress_response_too_large", `the response is larger than ${maxBytes} bytes`);

    const headers: Record<string, string> = Object.fromEntries(outgoing.headers);
    headers.host = target.authority;
    headers.connection = "close";
    if (outgoing.body) headers["content-length"] = String(outgoing.body.byteLength);
    const request = http.request({
      method: outgoing.method,
      path: `${target.url.pathname}${target.url.search}`,
      headers,
      createConnection: () => socket,
    });
    request.on("error", (e: Error) => finish(fail("egress_request_failed", `the request failed: ${e.message}`)));
    request.on("response", (response: http.IncomingMessage) => {
      const declared = Number(response.headers["content-length"]);
      if (declared > maxBytes) return finish(tooLarge());
      const chunks: Uint8Array[] = [];
      let total = 0;
      response.on("data", (chunk: Uint8Array) => {
        total += chunk.byteLength;
        if (total > maxBytes) return finish(tooLarge());
        chunks.push(chunk);
      });
      response.on("end", () => {
        finish({ ok: true, value: { status: response.statusCode ?? 0, rawHeaders: response.rawHeaders, body: concat(chunks, total) } });
      });
      response.on("error", (e: Error) => finish(fail("egress_request_failed", `the response failed: ${e.message}`)));
      response.on("close", () => finish(fail("egress_request_failed", "the connection closed before the response ended")));
    });
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    request.end(outgoing.body ?? undefined);
  });
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
// Request-body headers (Fetch standard), dropped when a redirect turns the request into a GET.
const BODY_HEADERS = ["content-type", "content-encoding", "content-language", "content-location"];
// The only caller headers a cross-origin redirect carries: nothing that could be a credential.
const CROSS_ORIGIN_HEADERS = new Set(["accept", "accept-language", "content-language", "content-type", "user-agent"]);

/** The request for the next hop, following the Fetch standard's method rewrite. */
function redirected(outgoing: Outgoing, status: number, from: URL, to: URL): Outgoing {
  let { method, body } = outgoing;
  const headers = new Headers(outgoing.headers);
  if ((status === 303 && method !== "HEAD") || ((status === 301 || status === 302) && method === "POST")) {
    method = "GET";
    body = null;
    for (const name of BODY_HEADERS) headers.delete(name);
  }
  if (from.origin !== to.origin) {
    for (const name of [...headers.keys()]) if (!CROSS_ORIGIN_HEADERS.has(name)) headers.delete(name);
  }
  return { method, headers, body };
}

function headerOf(incoming: Incoming, name: string): string | null {
  for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) {
    if (incoming.rawHeaders[i].toLowerCase() === name) return incoming.rawHeaders[i + 1];
  }
  return null;
}

function responseOf(incoming: Incoming): EgressResult<Response> {
  try {
    const headers = new Headers();
    for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) headers.append(incoming.rawHeaders[i], incoming.rawHeaders[i + 1]);
    const body = NULL_BODY.has(incoming.status) ? null : incoming.body;
    return { ok: true, value: new Response(body, { status: incoming.status, headers }) };
  } catch {
    return fail("egress_request_failed", "the response is not valid HTTP");
  }
}

/**
 * Sends a request through the guard: checks the URL from scratch, connects only to an address it
 * checked (TLS verified against the hostname), follows redirects only after checking each new URL
 * again, and reads the body up to maxBytes, all within timeoutMs. Never throws for network or
 * policy failures; the failure's code says what happened.
 */
export async function guardedFetch(
  url: string | URL,
  init: EgressRequest = {},
  options: EgressOptions = {},
): Promise<EgressResult<EgressResponse>> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxRedirects = options.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  const deadline = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const signal = init.signal ? AbortSignal.any([init.signal, deadline]) : deadline;
  const prepared = prepare(init);
  if (!prepared.ok) return prepared;
  let outgoing = prepared.value;
  let next: string | URL = url;

  for (let hop = 0;; hop++) {
    const checked = await check(next, options, signal);
    if (!checked.ok) {
      if (hop === 0 || checked.code === "egress_timeout" || checked.code === "egress_aborted") return checked;
      return fail("egress_redirect_blocked", `redirect ${hop} was refused: ${checked.reason} (${checked.code})`);
    }
    const target = checked.value;
    const connected = await connectPinned(target, options.testOnly?.caCerts, signal);
    if (!connected.ok) return connected;
    const exchanged = await exchange(connected.value.socket, target, outgoing, maxBytes, signal);
    if (!exchanged.ok) return exchanged;
    const incoming = exchanged.value;
    const where = REDIRECTS.has(incoming.status) ? headerOf(incoming, "location") : null;
    if (where === null) {
      const response = responseOf(incoming);
      if (!response.ok) return response;
      return { ok: true, value: { response: response.value, url: target.url.href, address: connected.value.address, redirects: hop } };
    }
    if (hop >= maxRedirects) {
      return fail("egress_redirect_blocked", maxRedirects === 0 ? "redirects are not followed" : `more than ${maxRedirects} redirects`);
    }
    let to: URL;
    try {
      to = new URL(where, target.url);
    } catch {
      return fail("egress_redirect_blocked", `redirect ${hop + 1} is to an invalid URL`);
    }
    outgoing = redirected(outgoing, incoming.status, target.url, to);
    next = to;
  }
}
