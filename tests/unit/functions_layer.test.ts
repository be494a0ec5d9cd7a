/**
 * Rules of the functions layer that a reviewer would otherwise have to remember: one module sets
 * roles and claims, one import map pins the npm versions, and every refusal code is listed once.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { REFUSALS } from "../../functions/_shared/http/errors.ts";

const root = process.cwd();

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : /\.(ts|mts)$/.test(name) ? [path] : [];
  });
}

/** What switching roles or setting JWT claims by hand looks like, in SQL a function sends. */
const ROLE_SWITCH = /\b(set\s+(local\s+)?role|reset\s+role|set_config\s*\(\s*'role'|request\.jwt\.claim)/i;

describe("the functions layer", () => {
  it("switches roles and sets claims in http/db.ts only", () => {
    const offenders = sources(join(root, "functions"))
      .filter((f) => ROLE_SWITCH.test(readFileSync(f, "utf8")))
      .map((f) => relative(root, f));
    expect(offenders).toEqual(["functions/_shared/http/db.ts"]);
  });

  it("imports npm packages through deno.json's import map, at package.json's versions", () => {
    const map = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")).imports as Record<string, string>;
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    const versions = { ...pkg.dependencies, ...pkg.devDependencies } as Record<string, string>;
    for (const [name, target] of Object.entries(map)) {
      const bare = name.replace(/\/$/, "");
      expect(target, name).toBe(name.endsWith("/") ? `npm:/${bare}@${versions[bare]}/` : `npm:${bare}@${versions[bare]}`);
    }
    const inline = sources(join(root, "functions")).filter((f) => /from "npm:/.test(readFileSync(f, "utf8")));
    expect(inline).toEqual([]);
  });

  it("lists each refusal code once, with a 4xx status for everything the caller did", () => {
    const statuses = Object.entries(REFUSALS).map(([code, [status]]) => [code, status] as const);
    for (const [code, status] of statuses) {
      // The 5xx are what the platform or an upstream did, never the caller.
      const notTheCallers = ["internal_error", "connector_provider_error", "connectors_misconfigured", "database_not_configured",
        "model_provider_not_configured", "model_gateway_misconfigured", "model_upstream_blocked", "model_upstream_unavailable",
        "model_upstream_refused", "model_upstream_timeout", "invitations_misconfigured", "invitation_not_mailed",
        "billing_not_configured", "stripe_unavailable", "stripe_refused", "domains_misconfigured", "widget_preview_misconfigured",
        "tokens_misconfigured", "leak_reports_not_configured", "mcp_misconfigured", "audit_checkpoint_misconfigured",
        "audit_signing_key_unavailable", "database_unavailable"];
      if (!notTheCallers.includes(code)) {
        expect(status, code).toBeGreaterThanOrEqual(400);
        expect(status, code).toBeLessThan(500);
      }
    }
    // Each refusal is raised by name: no function writes a code of its own beside the list.
    const adHoc = sources(join(root, "functions")).filter((f) => /new HttpError\(/.test(readFileSync(f, "utf8")))
      .map((f) => relative(root, f));
    expect(adHoc).toEqual(["functions/_shared/http/errors.ts"]);
  });
});
