/**
 * How the supply-chain checks read an npm audit that produced no report (scripts/supply_chain.ts):
 * only a registry that could not answer makes a check "unavailable"; any other failure of npm
 * fails it, so that nothing but a real report can keep CI green.
 */
import { describe, expect, it } from "vitest";
import { noReport } from "../../scripts/supply_chain.ts";

describe("an npm audit without a report", () => {
  it("is unavailable when the registry could not answer", () => {
    expect(noReport("npm audit", { statusCode: 405, message: "405 Method Not Allowed" }, "").status).toBe("unavailable");
    expect(noReport("npm audit signatures", { error: { code: "ENOTFOUND", summary: "getaddrinfo ENOTFOUND" } }, "").status).toBe("unavailable");
    expect(noReport("npm audit", { error: { code: "E503", summary: "Service Unavailable" } }, "").status).toBe("unavailable");
  });

  it("fails for any other reason: no lockfile, no JSON, an error npm has no network code for", () => {
    expect(noReport("npm audit", { error: { code: "ENOLOCK", summary: "This command requires an existing lockfile." } }, "")).toMatchObject({
      status: "failed", detail: expect.stringContaining("ENOLOCK"),
    });
    expect(noReport("npm audit", null, "npm ERR! something broke\n").status).toBe("failed");
    expect(noReport("npm audit signatures", { error: { code: "EAUDITNOPJSON", summary: "no package.json" } }, "").status).toBe("failed");
  });
});
