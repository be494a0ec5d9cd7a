import { mkdtempSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { parse } from "smol-toml";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { functionVerifiesJwt, readProjectConfig } from "../../scripts/stack/config.ts";
import { StackError } from "../../scripts/stack/errors.ts";

function projectWith(toml: string): string {
  const root = mkdtempSync(join(tmpdir(), "gatehouse-config-"));
  mkdirSync(join(root, "supabase"));
  writeFileSync(join(root, "supabase", "config.toml"), toml);
  return root;
}

describe("project config", () => {
  it("reads the repository's config.toml, exposing only public and keeping health public", () => {
    const config = readProjectConfig(process.cwd());
    expect(config.api.schemas).toEqual(["public"]);
    expect(functionVerifiesJwt(config, "health")).toBe(false);
  });

  it("verifies JWTs for functions that config.toml does not mention", () => {
    const config = readProjectConfig(process.cwd());
    expect(functionVerifiesJwt(config, "some-new-function")).toBe(true);
  });

  it("reports an invalid config.toml as a one-line StackError", () => {
    const root = projectWith('[api]\nport = "not a number"\n[db]\n[auth]\n');
    expect(() => readProjectConfig(root)).toThrow(StackError);
  });

  it("reports unparseable TOML as a StackError", () => {
    const root = projectWith("[api\n");
    expect(() => readProjectConfig(root)).toThrow(/cannot read/);
  });
});

describe("deploying the functions", () => {
  it("tells supabase functions deploy where every function is, with the shared import map", () => {
    const toml = parse(readFileSync(join(process.cwd(), "supabase", "config.toml"), "utf8")) as { functions: Record<string, { entrypoint?: string; import_map?: string }> };
    const root = join(process.cwd(), "functions");
    const names = readdirSync(root).filter((n) => !n.startsWith("_") && statSync(join(root, n)).isDirectory());
    for (const name of names) {
      expect(toml.functions[name], name).toMatchObject({ entrypoint: `../functions/${name}/index.ts`, import_map: "../deno.json" });
    }
  });
});
