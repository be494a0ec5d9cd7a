/**
 * functions/_shared/connectors/sanitize.ts: a planted credential never comes out of a tool result, wherever it
 * hides, and ordinary content passes through unchanged.
 */
import { describe, expect, it } from "vitest";
import { REDACTED, sanitizeToolResult } from "../../functions/_shared/connectors/sanitize.ts";

// Credential-shaped strings are assembled here, so that the repository holds nothing a secret
// scanner would (rightly) flag.
const shaped = (...parts: string[]) => parts.join("");
const PLANTED = shaped("ghp", "_PLANTEDplantedPLANTED1234567890ab");

describe("sanitizeToolResult", () => {
  it("never lets the connection's own credential out, wherever it is", () => {
    const custom = "c0nn3ction-cr3dential-without-a-known-shape";
    const result = {
      status: 200,
      headers: { Authorization: `token ${custom}`, "X-Api-Key": custom, "content-type": "application/json" },
      body: {
        echo: `you sent ${custom} and ${PLANTED}`,
        items: [{ note: `nested ${custom}` }, [`deeper ${PLANTED}`]],
        [custom]: "as a key",
      },
    };
    const text = JSON.stringify(sanitizeToolResult(result, { secrets: [custom] }));
    expect(text).not.toContain(custom);
    expect(text).not.toContain(PLANTED);
    expect(text).toContain("application/json");
  });

  it("catches the credential echoed back URL-encoded or in base64", () => {
    const custom = "c0nn3ction/cr3dential+with=odd&chars~";
    const b64 = Buffer.from(custom).toString("base64");
    const result = {
      redirect: `https://app.example/cb?page=2&state=${encodeURIComponent(custom)}`,
      basic: `user:pass header was ${b64}`,
      compact: `jwt-ish ${Buffer.from(custom).toString("base64url")}.payload`,
    };
    const text = JSON.stringify(sanitizeToolResult(result, { secrets: [custom] }));
    for (const form of [custom, encodeURIComponent(custom), b64, b64.replace(/=+$/, ""), Buffer.from(custom).toString("base64url")]) {
      expect(text).not.toContain(form);
    }
    expect(text).toContain("https://app.example/cb?page=2&state=");
  });

  it("drops auth headers and credential members by name", () => {
    const out = sanitizeToolResult({
      authorization: "anything", Cookie: "s=1", "set-cookie": "s=2", access_token: "a", refresh_token: "r",
      client_secret: "c", password: "p", private_key: "k", ok: true,
    });
    expect(out).toEqual({ ok: true });
  });

  it("redacts strings shaped like well-known credentials", () => {
    const samples = [
      shaped("Bearer ", "abc.def-ghi_jkl"),
      shaped("eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiJ4In0", ".c2lnbmF0dXJl"),
      shaped("xoxb", "-1234567890-abcdefghij"),
      PLANTED,
      shaped("github_pat", "_11ABCDEFG0abcdefghijklmnopqrstuvwxyz"),
      shaped("secret", "_abcdefghijklmnopqrstuvwxyz0123456789"),
      shaped("sk", "_live_", "abcdefghijklmnop"),
      shaped("AKIA", "ABCDEFGHIJKLMNOP"),
      shaped("https://hooks.slack.com", "/services/T000/B000/XXXXXXXXXXXXXXXX"),
      shaped("https://discord.com", "/api/webhooks/123/abcDEF"),
      shaped("https://user:", "hunter22@example.com/path"),
      "https://api.example.com/cb?code=1&access_token=abc123&x=2",
      shaped("-----BEGIN ", "PRIVATE KEY-----\nMIIE\n-----END ", "PRIVATE KEY-----"),
    ];
    for (const sample of samples) {
      const out = sanitizeToolResult({ text: `before ${sample} after` }) as { text: string };
      expect(out.text, sample).toContain(REDACTED);
      expect(out.text, sample).toMatch(/^before /);
    }
    expect(JSON.stringify(sanitizeToolResult(samples))).not.toMatch(/hunter22|abc123|XXXXXXXXXXXXXXXX|PLANTED|AKIAABCD/);
  });

  it("leaves ordinary content alone", () => {
    const ordinary = { title: "Refund for order 1042", tokens_used: 120, url: "https://example.com/a?page=2", tags: ["a", "b"], n: null };
    expect(sanitizeToolResult(ordinary)).toEqual(ordinary);
  });
});
