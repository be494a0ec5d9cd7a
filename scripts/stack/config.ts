/** The values the local stack takes from supabase/config.toml, so that local and hosted agree. */
import { readFileSync } from "node:fs";
import { parse } from "smol-toml";
import { z } from "zod";
import { StackError } from "./errors.ts";

const ConfigSchema = z.object({
  api: z.object({
    port: z.number().int().default(54321),
    schemas: z.array(z.string()).default(["public"]),
    extra_search_path: z.array(z.string()).default(["public", "extensions"]),
    max_rows: z.number().int().default(1000),
  }),
  db: z.object({ port: z.number().int().default(54322) }),
  auth: z.object({ jwt_expiry: z.number().int().positive().default(3600) }),
  functions: z.record(z.string(), z.object({ verify_jwt: z.boolean().default(true) })).default({}),
});

/** Parsed supabase/config.toml. */
export type ProjectConfig = z.infer<typeof ConfigSchema>;

/** Reads and validates supabase/config.toml under `root`. */
export function readProjectConfig(root: string): ProjectConfig {
  const path = `${root}/supabase/config.toml`;
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new StackError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) throw new StackError(`${path} is invalid: ${parsed.error.message}`);
  return parsed.data;
}

/** Whether the gateway must verify the caller's JWT before invoking function `name` (default true). */
export function functionVerifiesJwt(config: ProjectConfig, name: string): boolean {
  return config.functions[name]?.verify_jwt ?? true;
}
