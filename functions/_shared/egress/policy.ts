/**
 * The egress guard's address policy: which ports, names and addresses no outbound request may
 * reach. Every address must be global unicast: an IPv4 address that ipaddr.js calls "unicast" and
 * that no IANA special-purpose block below contains; an IPv6 address inside 2000::/3 that
 * ipaddr.js calls "unicast" and no block contains. IPv4 carried inside IPv6 (mapped, NAT64, 6to4,
 * Teredo) is decoded and checked as IPv4. Anything else fails closed. Cloud-metadata names and
 * addresses, and special-use names, are refused by name.
 */
import ipaddr from "ipaddr.js";

/** An IPv4 or IPv6 address, parsed. */
export type IP = ipaddr.IPv4 | ipaddr.IPv6;

/** The Fetch standard's bad ports (https://fetch.spec.whatwg.org/#bad-port): ports that speak other protocols. */
export const BAD_PORTS = new Set([
  0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109,
  110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531,
  532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060,
  5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** Names of cloud metadata services; a name matches itself and its subdomains. */
export const METADATA_NAMES = [
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

/** Special-use names (RFC 6761, 6762, 8375, ICANN's .internal): never a customer's public endpoint. */
export const INTERNAL_SUFFIXES = ["localhost", "local", "internal", "home.arpa"];

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

/** Whether an address may be dialled, and why not. */
export type Verdict = { ok: true } | { ok: false; metadata: boolean; why: string };

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
export function verdictOf(a: IP): Verdict {
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
export function dialable(a: IP): string {
  if (a.kind() === "ipv6" && a.match(MAPPED)) return (a as ipaddr.IPv6).toIPv4Address().toString();
  return a.toString();
}

/** Parses an address a resolver returned, strictly (no octal, hex or short IPv4; no zone). */
export function parseAddress(text: string): IP | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!text.includes("%") && ipaddr.IPv6.isValid(text)) return ipaddr.IPv6.parse(text);
  return null;
}

/** True for a hostname that is a valid DNS name (after lowercasing by the URL parser). */
export function validName(hostname: string): boolean {
  const labels = hostname.split(".");
  return hostname.length <= 253 && labels.every((label) => /^[a-z0-9_-]{1,63}$/.test(label));
}

/** True when `hostname` is one of `names` or a subdomain of one. */
export function underAny(hostname: string, names: string[]): boolean {
  return names.some((name) => hostname === name || hostname.endsWith(`.${name}`));
}
