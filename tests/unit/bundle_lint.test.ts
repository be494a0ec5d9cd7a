/**
 * The bundle lint finds what it is for: planted on purpose in a bundle-like folder, the stack's
 * service-role key and JWT secret, any service-role JWT, and the service-role client pattern; and a
 * clean bundle (the real web/dist, built by npm test before the suites) has nothing.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { lintBundle } from "../../scripts/bundle_lint.ts";

const dir = mkdtempSync(join(tmpdir(), "gatehouse-bundle-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function bundle(name: string, text: string): string {
  const dist = join(dir, name);
  mkdirSync(join(dist, "assets"), { recursive: true });
  writeFileSync(join(dist, "assets", "index.js"), `console.log("app");\n${text}\n`);
  return dist;
}

describe("the bundle lint", () => {
  it("finds the stack's own secrets planted in the bundle", () => {
    const dist = bundle("secrets", `const k = "not-a-jwt-but-the-stack-secret-123";`);
    expect(lintBundle(dist, { "JWT secret": "not-a-jwt-but-the-stack-secret-123" })).toEqual([{ file: "assets/index.js", what: "the stack's JWT secret" }]);
  });

  it("finds any service-role JWT, and not an anon one", async () => {
    const sign = (role: string) => new SignJWT({ role }).setProtectedHeader({ alg: "HS256" }).setIssuedAt().sign(new TextEncoder().encode("x".repeat(32)));
    const dist = bundle("jwt", `const a = "${await sign("anon")}"; const b = "${await sign("service_role")}";`);
    expect(lintBundle(dist)).toEqual([{ file: "assets/index.js", what: "a service-role JWT" }]);
  });

  it("finds the service-role client pattern", () => {
    const dist = bundle("client", `createClient(url, import.meta.env.SUPABASE_SERVICE_ROLE_KEY)`);
    expect(lintBundle(dist).map((f) => f.what)).toEqual(["a service-role client pattern (SUPABASE_SERVICE_ROLE_KEY)"]);
  });

  it("passes the real bundle", () => {
    expect(lintBundle(join(process.cwd(), "web", "dist"))).toEqual([]);
  });
});
