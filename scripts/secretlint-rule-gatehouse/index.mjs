/**
 * A secretlint rule for the secrets Gatehouse makes or holds that the recommended preset does not
 * know (docs/supply-chain.md):
 *   - personal access tokens: gtp_ + 30 base62 characters + their CRC-32 in 6 base62 characters
 *     (functions/_shared/pat/token.ts); reported only when the checksum holds, so a made-up or
 *     truncated example is not a finding, and a live-looking token always is;
 *   - widget keys: ghw_ + 32 base64url characters + _ + the first 6 hex digits of their SHA-256
 *     (private.new_widget_key); likewise only when the checksum holds;
 *   - Standard Webhooks signing secrets (inbound subscriptions, Stripe's): whsec_ + base64 of at
 *     least 24 bytes;
 *   - Stripe secret and restricted keys, live and test: sk_live_, rk_live_, sk_test_, rk_test_.
 * Plain JavaScript, so that the secretlint CLI (and the pre-commit hook) load it without a build.
 * tests/unit/secret_scan.test.ts holds it to the token code it mirrors.
 */
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

function base62(n, width) {
  let out = "";
  do {
    out = DIGITS[n % 62] + out;
    n = Math.floor(n / 62);
  } while (n > 0);
  return out.padStart(width, "0");
}

/** Whether a gtp_ token's last 6 characters are the CRC-32 of its 30 random ones. */
export function patChecksumHolds(token) {
  const body = token.slice(4, 34);
  return base62(crc32(body), 6) === token.slice(34);
}

/** Whether a ghw_ key's last 6 hex digits start the SHA-256 of what precedes its last underscore. */
export function widgetKeyChecksumHolds(key) {
  return createHash("sha256").update(key.slice(0, 36)).digest("hex").slice(0, 6) === key.slice(37);
}

const FINDERS = [
  { id: "GATEHOUSE_PAT", pattern: /(?<![0-9A-Za-z_])gtp_[0-9A-Za-z]{36}(?![0-9A-Za-z_])/g, holds: patChecksumHolds },
  { id: "GATEHOUSE_WIDGET_KEY", pattern: /(?<![0-9A-Za-z_-])ghw_[A-Za-z0-9_-]{32}_[0-9a-f]{6}(?![0-9A-Za-z_-])/g, holds: widgetKeyChecksumHolds },
  { id: "WEBHOOK_SECRET", pattern: /(?<![0-9A-Za-z_])whsec_[A-Za-z0-9+/]{32,}={0,2}/g, holds: () => true },
  { id: "STRIPE_KEY", pattern: /(?<![0-9A-Za-z_])[sr]k_(?:live|test)_[0-9A-Za-z]{20,}(?![0-9A-Za-z_])/g, holds: () => true },
];

const describe = {
  GATEHOUSE_PAT: "a Gatehouse personal access token (its checksum holds)",
  GATEHOUSE_WIDGET_KEY: "a Gatehouse widget key (its checksum holds)",
  WEBHOOK_SECRET: "a Standard Webhooks signing secret",
  STRIPE_KEY: "a Stripe secret or restricted key",
};

const messages = Object.fromEntries(
  Object.entries(describe).map(([id, what]) => [id, { en: (props) => `found ${what}: ${props.KEY}` }]),
);

export const creator = {
  messages,
  meta: {
    id: "secretlint-rule-gatehouse",
    recommended: true,
    type: "scanner",
    supportedContentTypes: ["text"],
    docs: { url: "docs/supply-chain.md (in the Gatehouse repository)" },
  },
  create(context) {
    const t = context.createTranslator(messages);
    return {
      file(source) {
        for (const finder of FINDERS) {
          for (const match of source.content.matchAll(finder.pattern)) {
            if (!finder.holds(match[0])) continue;
            const index = match.index ?? 0;
            context.report({ message: t(finder.id, { KEY: match[0] }), range: [index, index + match[0].length] });
          }
        }
      },
    };
  },
};

export default creator;
