/**
 * The personal access token format (functions/_shared/pat/token.ts): the checksum is zlib's CRC-32
 * in base 62, so a token with any character changed, or made up, fails without a lookup.
 */
import { randomInt } from "node:crypto";
import { describe, expect, it } from "vitest";
import { base62, PAT_PREFIX, patChecksum, patFormatValid } from "../../functions/_shared/pat/token.ts";

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const body = () => Array.from({ length: 30 }, () => DIGITS[randomInt(62)]).join("");

describe("personal access tokens", () => {
  it("check a token's CRC-32 in base 62", () => {
    // The standard check value of CRC-32 ("123456789" → cbf43926), as private.base62(private.crc32(…), 6) gives it too.
    expect(patChecksum("123456789")).toBe("3jZRME");
    expect(base62(61, 2)).toBe("0z");
    const b = body();
    expect(patFormatValid(`${PAT_PREFIX}${b}${patChecksum(b)}`)).toBe(true);
  });

  it("refuse a token with any one character changed, a made-up one, or another shape", () => {
    const b = body();
    const token = `${PAT_PREFIX}${b}${patChecksum(b)}`;
    let caught = 0;
    for (let i = PAT_PREFIX.length; i < token.length; i++) {
      const other = DIGITS[(DIGITS.indexOf(token[i]) + 1 + randomInt(61)) % 62];
      if (!patFormatValid(token.slice(0, i) + other + token.slice(i + 1))) caught++;
    }
    // CRC-32 catches every single-character change.
    expect(caught).toBe(token.length - PAT_PREFIX.length);
    expect(patFormatValid(`${PAT_PREFIX}${body()}000000`)).toBe(false);
    expect(patFormatValid(`ghp_${b}${patChecksum(b)}`)).toBe(false);
    expect(patFormatValid(`${token}x`)).toBe(false);
    expect(patFormatValid("")).toBe(false);
  });
});
