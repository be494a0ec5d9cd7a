/**
 * The database's RFC 8785 implementation (private.jcs, private.payload_sha256), which seals the audit
 * chain and pins approved payloads, against the RFC's test vectors and the TypeScript side
 * (functions/_shared/json/canonical.ts, tested in tests/unit/canonical_json.test.ts).
 */
import { afterAll, describe, expect, it } from "vitest";
import { canonicalJson, payloadSha256 } from "../../functions/_shared/json/canonical.ts";
import { NUMBERS, SAMPLES, binary64 } from "../fixtures/rfc8785.ts";
import { superuser } from "../helpers/stack.ts";

const sql = superuser();
afterAll(() => sql.end());

/** private.jcs of raw JSON text, so that numbers arrive in the spellings a client might send. */
async function jcs(text: string): Promise<string> {
  const [{ out }] = await sql`select private.jcs(${text}::text::jsonb) as out`;
  return out;
}

describe("RFC 8785 in the database", () => {
  for (const sample of SAMPLES) {
    it(`serializes the RFC's sample "${sample.name}"`, async () => {
      expect(await jcs(sample.input)).toBe(sample.canonical);
    });
  }

  it("serializes every finite number of appendix B as the RFC does, however it is spelled", async () => {
    for (const [hex, canonical] of NUMBERS) {
      if (canonical === null) continue; // NaN and Infinity have no JSON spelling.
      const value = binary64(hex);
      // The canonical spelling, a 21-digit one and, for -0, the sign: all the same binary64 value.
      for (const spelling of [canonical, value.toPrecision(21), Object.is(value, -0) ? "-0" : canonical]) {
        expect(await jcs(`[${spelling}]`), `${hex} spelled ${spelling}`).toBe(`[${canonical}]`);
      }
    }
  });

  it("prints thousands of random doubles exactly as ECMAScript does", async () => {
    // A fixed-seed generator (xorshift64), so that a failure reproduces.
    let state = 0x9e3779b97f4a7c15n;
    const view = new DataView(new ArrayBuffer(8));
    const values: number[] = [];
    while (values.length < 3000) {
      state ^= (state << 13n) & 0xffffffffffffffffn;
      state ^= state >> 7n;
      state ^= (state << 17n) & 0xffffffffffffffffn;
      view.setBigUint64(0, state);
      const value = view.getFloat64(0);
      if (Number.isFinite(value)) values.push(value);
    }
    const text = `[${values.map((v) => v.toPrecision(21)).join(",")}]`;
    expect(await jcs(text)).toBe(JSON.stringify(values));
  });

  it("agrees with the TypeScript canonicalizer and hash on awkward input", async () => {
    const samples = [
      "[1.0, 1E21, 1e-7, 0.10, -0, 123456789012345678901234, 5e-324, 1.7976931348623157e308, 0.000001, 3e-6, 1e2, 0.1e1, -1.5e-10, 333333333.3333333, 9007199254740993]",
      '{"\u20ac": 1, "\ud83d\ude00": 2, "\ue000": 3, "a": {"z": null, "": true}}',
      '{"s": "quote \\" backslash \\\\ tab \\t nl \\n ctrl \\u0001 del \u007f \u00e9 \u2603 \ud83d\ude00 / <"}',
      '[[], {}, "", 0, false, null]',
    ];
    for (const text of samples) {
      const [{ out, sha }] = await sql`select private.jcs(${text}::text::jsonb) as out, private.payload_sha256(${text}::text::jsonb) as sha`;
      expect(out).toBe(canonicalJson(JSON.parse(text)));
      expect(sha).toBe(payloadSha256(JSON.parse(text)));
    }
  });
});
