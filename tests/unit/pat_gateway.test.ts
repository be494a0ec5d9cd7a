/**
 * The local gateway's side of personal access tokens (scripts/stack/gateway.ts PatExchanger): a
 * `gtp_` bearer whose checksum fails is refused there, without asking the tokens function (and so
 * the database); one that holds is exchanged once and its access token kept until shortly before
 * it expires. A stand-in tokens function counts what reaches it.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { patChecksum } from "../../functions/_shared/pat/token.ts";
import { PatExchanger } from "../../scripts/stack/gateway.ts";

let server: Server;
const asked: string[] = [];
beforeAll(async () => {
  server = createServer((req, res) => {
    // The exchange is internal: the gateway calls it with the service role's key, the token beside it.
    expect(req.headers.authorization).toBe("Bearer service-role-key");
    asked.push(String(req.headers["x-personal-access-token"] ?? ""));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ access_token: "header.claims.signature", expires_at: Math.floor(Date.now() / 1000) + 300 }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("the gateway's personal access token exchange", () => {
  const body = "abcdefghijABCDEFGHIJ0123456789";
  const token = `gtp_${body}${patChecksum(body)}`;

  it("refuses a bad checksum without asking the tokens function", async () => {
    const exchanger = new PatExchanger((server.address() as AddressInfo).port, "service-role-key");
    for (const wrong of [token.slice(0, -1) + (token.endsWith("a") ? "b" : "a"), "gtp_", `gtp_${body}000000`]) {
      expect(await exchanger.exchange(wrong)).toEqual({ status: 401, code: "token_invalid", message: expect.any(String) });
    }
    expect(asked).toEqual([]);
  });

  it("exchanges a token once and keeps its access token", async () => {
    const exchanger = new PatExchanger((server.address() as AddressInfo).port, "service-role-key");
    expect(await exchanger.exchange(token)).toEqual({ authorization: "Bearer header.claims.signature" });
    expect(await exchanger.exchange(token)).toEqual({ authorization: "Bearer header.claims.signature" });
    expect(asked).toEqual([token]);
  });
});
