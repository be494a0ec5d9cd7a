/**
 * functions/_shared/json/canonical.ts against the RFC 8785 test vectors (tests/fixtures/rfc8785.ts).
 * The database's private.jcs() meets the same vectors in tests/integration/canonical_json.test.ts.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { canonicalJson, payloadSha256 } from "../../functions/_shared/json/canonical.ts";
import { NUMBERS, SAMPLES, binary64 } from "../fixtures/rfc8785.ts";

describe("canonicalJson", () => {
  for (const sample of SAMPLES) {
    it(`serializes the RFC's sample "${sample.name}"`, () => {
      expect(canonicalJson(JSON.parse(sample.input))).toBe(sample.canonical);
    });
  }

  it("serializes every number of appendix B as the RFC does", () => {
    for (const [hex, canonical] of NUMBERS) {
      const value = binary64(hex);
      if (canonical === null) expect(() => canonicalJson(value), hex).toThrow();
      else expect(canonicalJson(value), hex).toBe(canonical);
    }
  });

  it("refuses values JSON cannot carry", () => {
    expect(() => canonicalJson(undefined)).toThrow(TypeError);
    expect(() => canonicalJson({ s: "\ud800" })).toThrow();
  });
});

describe("payloadSha256", () => {
  it("is the SHA-256 of the canonical bytes, whatever the key order and spelling", () => {
    const approved = JSON.parse('{"to": "#returns", "amount": 10.50, "tags": ["refund"]}');
    const reordered = JSON.parse('{"tags":["refund"],"amount":1.05e1,"to":"#returns"}');
    const expected = createHash("sha256").update('{"amount":10.5,"tags":["refund"],"to":"#returns"}').digest("hex");
    expect(payloadSha256(approved)).toBe(expected);
    expect(payloadSha256(reordered)).toBe(expected);
    expect(payloadSha256({ ...approved, amount: 10.51 })).not.toBe(expected);
  });
});
