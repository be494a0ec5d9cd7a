/**
 * The egress guard's URL corpus (functions/_shared/egress/guard.ts): URLs checkUrl must refuse, each with
 * the code it must refuse with, and URLs it must allow, each with the addresses it must dial.
 * Hostnames resolve through `names` (the tests' injected resolver); literal addresses never reach
 * a resolver. Boundary cases come in pairs or fours: the last address before a block, its first
 * and last address, the first address after it.
 */

export interface BlockedCase {
  url: string;
  code: string;
  why: string;
}

export interface AllowedCase {
  url: string;
  addresses: string[];
  why: string;
}

/** What the injected resolver answers; a name that is not here does not resolve. */
export const names: Record<string, string[]> = {
  "example.com": ["93.184.215.14"],
  "evil.com": ["203.0.114.7"],
  "dual.example.com": ["1.1.1.1", "2606:4700:4700::1111"],
  "private.example.com": ["10.0.0.5"],
  "cgnat.example.com": ["100.64.0.1"],
  "loopback.example.com": ["127.0.0.1"],
  "zero.example.com": ["0.0.0.0"],
  "ula.example.com": ["fd12:3456:789a::1"],
  "mapped.example.com": ["::ffff:10.0.0.1"],
  "mixed.example.com": ["8.8.8.8", "192.168.1.1"],
  "mixed6.example.com": ["2001:4860:4860::8888", "fe80::1"],
  "imds.example.com": ["169.254.169.254"],
  "imds6.example.com": ["fd00:ec2::254"],
  "empty.example.com": [],
  "octal.example.com": ["0177.0.0.1"],
  "hex.example.com": ["0x7f.0.0.1"],
  "zone.example.com": ["fe80::1%eth0"],
  "garbage.example.com": ["not-an-address"],
};

export const blocked: BlockedCase[] = [
  // Schemes
  { url: "http://example.com/", code: "egress_scheme_not_allowed", why: "plain http (only https)" },
  { url: "ftp://example.com/file", code: "egress_scheme_not_allowed", why: "ftp" },
  { url: "file:///etc/passwd", code: "egress_scheme_not_allowed", why: "file" },
  { url: "gopher://example.com:70/_x", code: "egress_scheme_not_allowed", why: "gopher (classic SSRF smuggling)" },
  { url: "data:text/plain,hello", code: "egress_scheme_not_allowed", why: "data" },
  { url: "javascript:alert(1)", code: "egress_scheme_not_allowed", why: "javascript" },
  { url: "ws://example.com/", code: "egress_scheme_not_allowed", why: "websocket" },
  { url: "http://2130706433/", code: "egress_scheme_not_allowed", why: "http is refused before the address is looked at" },

  // Unparseable
  { url: "not a url", code: "egress_invalid_url", why: "not a URL" },
  { url: "//example.com/hook", code: "egress_invalid_url", why: "scheme-relative" },
  { url: "https://exa mple.com/", code: "egress_invalid_url", why: "space in host" },
  { url: "https://example.com:65536/", code: "egress_invalid_url", why: "port out of range" },
  { url: "https://127.0.0.1%2f.evil.com/", code: "egress_invalid_url", why: "percent-encoded slash in host" },
  { url: "https://1.2.3.4.5/", code: "egress_invalid_url", why: "five-part number is not an IPv4 address" },
  { url: "https://[fe80::1%25eth0]/", code: "egress_invalid_url", why: "IPv6 zone id" },
  { url: "https://a..example.com/", code: "egress_invalid_url", why: "empty label" },
  { url: "https://example.com../", code: "egress_invalid_url", why: "two trailing dots (only one is stripped)" },
  { url: "https://ex!ample.com/", code: "egress_invalid_url", why: "not a DNS name" },

  // Credentials in the URL
  { url: "https://user:pass@example.com/", code: "egress_userinfo", why: "user and password" }, // secretlint-disable-line -- the userinfo the guard refuses
  { url: "https://user@example.com/", code: "egress_userinfo", why: "user only" },
  { url: "https://:pass@example.com/", code: "egress_userinfo", why: "password only" },
  { url: "https://evil.com@127.0.0.1/", code: "egress_userinfo", why: "the host is 127.0.0.1, evil.com is the user" },
  { url: "https://example.com:443@169.254.169.254/", code: "egress_userinfo", why: "port-looking password" },
  { url: "https://127.0.0.1%2f@evil.com/", code: "egress_userinfo", why: "the encoded slash stays in the userinfo" },

  // Parser tricks that land on a blocked host
  { url: "https://127.0.0.1\\@evil.com/", code: "egress_blocked_address", why: "backslash is a path separator: host 127.0.0.1" },
  { url: "https://127.0.0.1#@evil.com/", code: "egress_blocked_address", why: "fragment: host 127.0.0.1" },
  { url: "https://127.0.0.1?@evil.com/", code: "egress_blocked_address", why: "query: host 127.0.0.1" },

  // Ports that speak other protocols (the Fetch standard's bad ports)
  { url: "https://example.com:25/", code: "egress_port_not_allowed", why: "SMTP" },
  { url: "https://example.com:22/", code: "egress_port_not_allowed", why: "SSH" },
  { url: "https://example.com:0/", code: "egress_port_not_allowed", why: "port 0" },
  { url: "https://example.com:6667/", code: "egress_port_not_allowed", why: "IRC" },

  // IPv4 spellings of loopback, normalized by the URL parser
  { url: "https://2130706433/", code: "egress_blocked_address", why: "decimal 127.0.0.1" },
  { url: "https://0x7f.1/", code: "egress_blocked_address", why: "hex and short 127.0.0.1" },
  { url: "https://0x7F000001/", code: "egress_blocked_address", why: "hex 127.0.0.1" },
  { url: "https://0177.0.0.1/", code: "egress_blocked_address", why: "octal 127.0.0.1" },
  { url: "https://127.1/", code: "egress_blocked_address", why: "short 127.0.0.1" },
  { url: "https://127.0.0.1./", code: "egress_blocked_address", why: "trailing dot" },
  { url: "https://0/", code: "egress_blocked_address", why: "0.0.0.0, which reaches the local host" },
  { url: "https://017700000001/", code: "egress_blocked_address", why: "octal 127.0.0.1 in one number" },
  { url: "https://127.0.0.1%2e/", code: "egress_blocked_address", why: "percent-encoded trailing dot" },
  { url: "https://%31%32%37.0.0.1/", code: "egress_blocked_address", why: "percent-encoded digits" },
  { url: "https://\u2460\u2461\u2466.0.0.1/", code: "egress_blocked_address", why: "circled digits, NFKC-mapped to 127" },
  { url: "https://127\u30020\u30020\u30021/", code: "egress_blocked_address", why: "ideographic full stops" },
  { url: "https://0xa9fea9fe/", code: "egress_metadata_host", why: "hex 169.254.169.254" },

  // IPv4 ranges and their edges
  { url: "https://0.255.255.255/", code: "egress_blocked_address", why: "last of 0.0.0.0/8" },
  { url: "https://10.0.0.0/", code: "egress_blocked_address", why: "first of 10.0.0.0/8" },
  { url: "https://10.255.255.255/", code: "egress_blocked_address", why: "last of 10.0.0.0/8" },
  { url: "https://100.64.0.0/", code: "egress_blocked_address", why: "first of CGNAT 100.64.0.0/10" },
  { url: "https://100.127.255.255/", code: "egress_blocked_address", why: "last of CGNAT 100.64.0.0/10" },
  { url: "https://127.0.0.0/", code: "egress_blocked_address", why: "first of loopback" },
  { url: "https://127.255.255.255/", code: "egress_blocked_address", why: "last of loopback" },
  { url: "https://169.254.0.0/", code: "egress_blocked_address", why: "first of link-local" },
  { url: "https://169.254.255.255/", code: "egress_blocked_address", why: "last of link-local" },
  { url: "https://172.16.0.0/", code: "egress_blocked_address", why: "first of 172.16.0.0/12" },
  { url: "https://172.31.255.255/", code: "egress_blocked_address", why: "last of 172.16.0.0/12" },
  { url: "https://192.0.0.0/", code: "egress_blocked_address", why: "first of IETF protocol assignments 192.0.0.0/24" },
  { url: "https://192.0.0.255/", code: "egress_blocked_address", why: "last of 192.0.0.0/24" },
  { url: "https://192.0.2.0/", code: "egress_blocked_address", why: "first of TEST-NET-1" },
  { url: "https://192.0.2.255/", code: "egress_blocked_address", why: "last of TEST-NET-1" },
  { url: "https://192.88.99.1/", code: "egress_blocked_address", why: "deprecated 6to4 relay anycast" },
  { url: "https://192.168.0.0/", code: "egress_blocked_address", why: "first of 192.168.0.0/16" },
  { url: "https://192.168.255.255/", code: "egress_blocked_address", why: "last of 192.168.0.0/16" },
  { url: "https://198.18.0.0/", code: "egress_blocked_address", why: "first of benchmarking 198.18.0.0/15" },
  { url: "https://198.19.255.255/", code: "egress_blocked_address", why: "last of benchmarking 198.18.0.0/15" },
  { url: "https://198.51.100.0/", code: "egress_blocked_address", why: "first of TEST-NET-2" },
  { url: "https://198.51.100.255/", code: "egress_blocked_address", why: "last of TEST-NET-2" },
  { url: "https://203.0.113.0/", code: "egress_blocked_address", why: "first of TEST-NET-3" },
  { url: "https://203.0.113.255/", code: "egress_blocked_address", why: "last of TEST-NET-3" },
  { url: "https://224.0.0.0/", code: "egress_blocked_address", why: "first of multicast" },
  { url: "https://239.255.255.255/", code: "egress_blocked_address", why: "last of multicast" },
  { url: "https://240.0.0.0/", code: "egress_blocked_address", why: "first of reserved 240.0.0.0/4" },
  { url: "https://255.255.255.254/", code: "egress_blocked_address", why: "last of reserved before broadcast" },
  { url: "https://255.255.255.255/", code: "egress_blocked_address", why: "limited broadcast" },
  { url: "https://192.31.196.1/", code: "egress_blocked_address", why: "AS112-v4" },
  { url: "https://192.52.193.1/", code: "egress_blocked_address", why: "AMT" },
  { url: "https://192.175.48.1/", code: "egress_blocked_address", why: "AS112 direct delegation" },

  // IPv6 literals and their edges
  { url: "https://[::1]/", code: "egress_blocked_address", why: "loopback" },
  { url: "https://[::]/", code: "egress_blocked_address", why: "unspecified" },
  { url: "https://[0:0:0:0:0:0:0:1]/", code: "egress_blocked_address", why: "loopback, uncompressed" },
  { url: "https://[fc00::]/", code: "egress_blocked_address", why: "first of ULA fc00::/7" },
  { url: "https://[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "last of ULA fc00::/7" },
  { url: "https://[fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "just below ULA: reserved, outside 2000::/3" },
  { url: "https://[fe80::1]/", code: "egress_blocked_address", why: "link-local" },
  { url: "https://[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "last of link-local fe80::/10" },
  { url: "https://[fec0::1]/", code: "egress_blocked_address", why: "site-local (deprecated)" },
  { url: "https://[ff02::1]/", code: "egress_blocked_address", why: "multicast" },
  { url: "https://[100::1]/", code: "egress_blocked_address", why: "discard-only 100::/64" },
  { url: "https://[2001:db8::1]/", code: "egress_blocked_address", why: "documentation 2001:db8::/32" },
  { url: "https://[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "last of 2001:db8::/32" },
  { url: "https://[3fff::1]/", code: "egress_blocked_address", why: "documentation 3fff::/20" },
  { url: "https://[2001:2::1]/", code: "egress_blocked_address", why: "benchmarking 2001:2::/48" },
  { url: "https://[2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "last of IETF protocol assignments 2001::/23" },
  { url: "https://[1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", code: "egress_blocked_address", why: "just below 2000::/3" },
  { url: "https://[4000::1]/", code: "egress_blocked_address", why: "just above 2000::/3" },
  { url: "https://[5f00::1]/", code: "egress_blocked_address", why: "segment routing SIDs" },

  // IPv4 inside IPv6
  { url: "https://[::ffff:127.0.0.1]/", code: "egress_blocked_address", why: "IPv4-mapped loopback" },
  { url: "https://[::ffff:7f00:1]/", code: "egress_blocked_address", why: "IPv4-mapped loopback, hex" },
  { url: "https://[0:0:0:0:0:ffff:10.0.0.1]/", code: "egress_blocked_address", why: "IPv4-mapped private" },
  { url: "https://[::ffff:169.254.169.254]/", code: "egress_metadata_host", why: "IPv4-mapped metadata" },
  { url: "https://[::127.0.0.1]/", code: "egress_blocked_address", why: "IPv4-compatible loopback" },
  { url: "https://[::8.8.8.8]/", code: "egress_blocked_address", why: "IPv4-compatible is deprecated, even for a global IPv4" },
  { url: "https://[::ffff:0:127.0.0.1]/", code: "egress_blocked_address", why: "IPv4-translated (SIIT)" },
  { url: "https://[64:ff9b::127.0.0.1]/", code: "egress_blocked_address", why: "NAT64 to loopback" },
  { url: "https://[64:ff9b::a00:1]/", code: "egress_blocked_address", why: "NAT64 to 10.0.0.1" },
  { url: "https://[64:ff9b::a9fe:a9fe]/", code: "egress_metadata_host", why: "NAT64 to 169.254.169.254" },
  { url: "https://[64:ff9b:1::808:808]/", code: "egress_blocked_address", why: "local-use NAT64 prefix" },
  { url: "https://[2002:7f00:1::1]/", code: "egress_blocked_address", why: "6to4 of 127.0.0.1" },
  { url: "https://[2002:c0a8:101::1]/", code: "egress_blocked_address", why: "6to4 of 192.168.1.1" },
  { url: "https://[2002:a9fe:a9fe::1]/", code: "egress_metadata_host", why: "6to4 of 169.254.169.254" },
  {
    url: "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    code: "egress_blocked_address",
    why: "Teredo whose client (~3fff:fdd2) is 192.0.2.45, TEST-NET-1 (RFC 4380 example)",
  },
  { url: "https://[2001:0:7f00:1::]/", code: "egress_blocked_address", why: "Teredo whose server is 127.0.0.1" },
  { url: "https://[2001:0:808:808:0:0:80ff:fffe]/", code: "egress_blocked_address", why: "Teredo whose client is 127.0.0.1" },

  // Cloud metadata
  { url: "https://169.254.169.254/latest/meta-data/", code: "egress_metadata_host", why: "AWS/GCP/Azure/OCI IMDS" },
  { url: "https://169.254.170.2/v2/credentials", code: "egress_metadata_host", why: "AWS ECS task credentials" },
  { url: "https://[fd00:ec2::254]/", code: "egress_metadata_host", why: "AWS IMDS over IPv6" },
  { url: "https://100.100.100.200/latest/meta-data/", code: "egress_metadata_host", why: "Alibaba Cloud" },
  { url: "https://168.63.129.16/", code: "egress_metadata_host", why: "Azure WireServer (a public address)" },
  { url: "https://192.0.0.192/", code: "egress_metadata_host", why: "Oracle Cloud" },
  { url: "https://metadata.google.internal/computeMetadata/v1/", code: "egress_metadata_host", why: "GCP" },
  { url: "https://METADATA.GOOGLE.INTERNAL./", code: "egress_metadata_host", why: "GCP, uppercase and trailing dot" },
  { url: "https://metadata/", code: "egress_metadata_host", why: "GCP short name" },
  { url: "https://metadata.goog/", code: "egress_metadata_host", why: "GCP" },
  { url: "https://metadata.azure.internal/", code: "egress_metadata_host", why: "Azure" },
  { url: "https://instance-data/", code: "egress_metadata_host", why: "AWS short name" },
  { url: "https://instance-data.ec2.internal/", code: "egress_metadata_host", why: "AWS" },
  { url: "https://metadata.tencentyun.com/", code: "egress_metadata_host", why: "Tencent Cloud (a public name)" },
  { url: "https://imds.example.com/", code: "egress_metadata_host", why: "a name that resolves to 169.254.169.254" },
  { url: "https://imds6.example.com/", code: "egress_metadata_host", why: "a name that resolves to fd00:ec2::254" },

  // Local and internal names
  { url: "https://localhost/", code: "egress_internal_host", why: "localhost" },
  { url: "https://LocalHost./", code: "egress_internal_host", why: "localhost, mixed case and trailing dot" },
  { url: "https://api.localhost/", code: "egress_internal_host", why: ".localhost (RFC 6761)" },
  { url: "https://printer.local/", code: "egress_internal_host", why: "mDNS .local" },
  { url: "https://db.internal/", code: "egress_internal_host", why: ".internal" },
  { url: "https://router.home.arpa/", code: "egress_internal_host", why: ".home.arpa" },
  { url: "https://intranet/", code: "egress_internal_host", why: "single label (resolved through search domains)" },

  // Names that resolve badly
  { url: "https://private.example.com/", code: "egress_blocked_address", why: "resolves to 10.0.0.5" },
  { url: "https://cgnat.example.com/", code: "egress_blocked_address", why: "resolves to 100.64.0.1" },
  { url: "https://loopback.example.com/", code: "egress_blocked_address", why: "resolves to 127.0.0.1" },
  { url: "https://zero.example.com/", code: "egress_blocked_address", why: "resolves to 0.0.0.0" },
  { url: "https://ula.example.com/", code: "egress_blocked_address", why: "resolves to a ULA" },
  { url: "https://mapped.example.com/", code: "egress_blocked_address", why: "resolves to ::ffff:10.0.0.1" },
  { url: "https://mixed.example.com/", code: "egress_blocked_address", why: "one public and one private address" },
  { url: "https://mixed6.example.com/", code: "egress_blocked_address", why: "one public and one link-local IPv6 address" },
  { url: "https://nowhere.example.com/", code: "egress_unresolvable", why: "does not resolve" },
  { url: "https://empty.example.com/", code: "egress_unresolvable", why: "resolves to nothing" },
  { url: "https://octal.example.com/", code: "egress_unresolvable", why: "resolver answered an octal IPv4 (not strict)" },
  { url: "https://hex.example.com/", code: "egress_unresolvable", why: "resolver answered a hex IPv4 (not strict)" },
  { url: "https://zone.example.com/", code: "egress_unresolvable", why: "resolver answered a scoped IPv6" },
  { url: "https://garbage.example.com/", code: "egress_unresolvable", why: "resolver answered garbage" },
];

export const allowed: AllowedCase[] = [
  { url: "https://example.com/hook", addresses: ["93.184.215.14"], why: "a public name" },
  { url: "https://EXAMPLE.com./hook", addresses: ["93.184.215.14"], why: "uppercase and a trailing dot" },
  { url: "https://example.com:8443/hook", addresses: ["93.184.215.14"], why: "a non-default port" },
  { url: "https://dual.example.com/", addresses: ["1.1.1.1", "2606:4700:4700::1111"], why: "public IPv4 and IPv6" },
  { url: "https://evil.com#@127.0.0.1/", addresses: ["203.0.114.7"], why: "the host is evil.com; the rest is a fragment" },
  { url: "https://8.8.8.8/", addresses: ["8.8.8.8"], why: "a public IPv4 literal" },
  { url: "https://134744072/", addresses: ["8.8.8.8"], why: "decimal 8.8.8.8" },
  { url: "https://[2606:4700:4700::1111]/", addresses: ["2606:4700:4700::1111"], why: "a public IPv6 literal" },
  { url: "https://[::ffff:8.8.8.8]/", addresses: ["8.8.8.8"], why: "IPv4-mapped global, dialled as IPv4" },
  { url: "https://[64:ff9b::808:808]/", addresses: ["64:ff9b::808:808"], why: "NAT64 of 8.8.8.8 (DNS64 networks)" },
  { url: "https://[2002:808:808::1]/", addresses: ["2002:808:808::1"], why: "6to4 of 8.8.8.8" },
  {
    url: "https://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/",
    addresses: ["2001:0:4136:e378:8000:63bf:f7f7:f7f7"],
    why: "Teredo, server 65.54.227.120 and client 8.8.8.8",
  },

  // IPv4 edges: the address just outside each block
  { url: "https://1.0.0.0/", addresses: ["1.0.0.0"], why: "just above 0.0.0.0/8" },
  { url: "https://9.255.255.255/", addresses: ["9.255.255.255"], why: "just below 10.0.0.0/8" },
  { url: "https://11.0.0.0/", addresses: ["11.0.0.0"], why: "just above 10.0.0.0/8" },
  { url: "https://100.63.255.255/", addresses: ["100.63.255.255"], why: "just below CGNAT" },
  { url: "https://100.128.0.0/", addresses: ["100.128.0.0"], why: "just above CGNAT" },
  { url: "https://126.255.255.255/", addresses: ["126.255.255.255"], why: "just below loopback" },
  { url: "https://128.0.0.0/", addresses: ["128.0.0.0"], why: "just above loopback" },
  { url: "https://169.253.255.255/", addresses: ["169.253.255.255"], why: "just below link-local" },
  { url: "https://169.255.0.0/", addresses: ["169.255.0.0"], why: "just above link-local" },
  { url: "https://172.15.255.255/", addresses: ["172.15.255.255"], why: "just below 172.16.0.0/12" },
  { url: "https://172.32.0.0/", addresses: ["172.32.0.0"], why: "just above 172.16.0.0/12" },
  { url: "https://191.255.255.255/", addresses: ["191.255.255.255"], why: "just below 192.0.0.0/24" },
  { url: "https://192.0.1.0/", addresses: ["192.0.1.0"], why: "between 192.0.0.0/24 and TEST-NET-1" },
  { url: "https://192.0.3.0/", addresses: ["192.0.3.0"], why: "just above TEST-NET-1" },
  { url: "https://192.167.255.255/", addresses: ["192.167.255.255"], why: "just below 192.168.0.0/16" },
  { url: "https://192.169.0.0/", addresses: ["192.169.0.0"], why: "just above 192.168.0.0/16" },
  { url: "https://198.17.255.255/", addresses: ["198.17.255.255"], why: "just below benchmarking" },
  { url: "https://198.20.0.0/", addresses: ["198.20.0.0"], why: "just above benchmarking" },
  { url: "https://198.51.99.255/", addresses: ["198.51.99.255"], why: "just below TEST-NET-2" },
  { url: "https://198.51.101.0/", addresses: ["198.51.101.0"], why: "just above TEST-NET-2" },
  { url: "https://203.0.112.255/", addresses: ["203.0.112.255"], why: "just below TEST-NET-3" },
  { url: "https://203.0.114.0/", addresses: ["203.0.114.0"], why: "just above TEST-NET-3" },
  { url: "https://223.255.255.255/", addresses: ["223.255.255.255"], why: "just below multicast" },

  // IPv6 edges
  { url: "https://[2000::1]/", addresses: ["2000::1"], why: "start of 2000::/3" },
  { url: "https://[2001:200::1]/", addresses: ["2001:200::1"], why: "just above 2001::/23" },
  { url: "https://[2001:db7:ffff:ffff:ffff:ffff:ffff:ffff]/", addresses: ["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"], why: "just below 2001:db8::/32" },
  { url: "https://[2001:db9::]/", addresses: ["2001:db9::"], why: "just above 2001:db8::/32" },
  { url: "https://[3ffe:ffff::1]/", addresses: ["3ffe:ffff::1"], why: "just below 3fff::/20" },
  { url: "https://[3fff:1000::1]/", addresses: ["3fff:1000::1"], why: "just above 3fff::/20" },
];
