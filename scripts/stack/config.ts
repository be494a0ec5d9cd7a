/** The values the local stack takes from supabase/config.toml, so that local and hosted agree. */
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { parse } from "smol-toml";
import { z } from "zod";
import { StackError } from "./errors.ts";

/**
 * A Supabase CLI duration ("24h", "30m", "90s", "1h30m", "1.5h", "500ms": Go's time.ParseDuration
 * syntax) in milliseconds, or null when it is not one.
 */
export function parseDuration(text: string): number | null {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (text === "0") return 0;
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) return null;
  let total = 0;
  for (const [, amount, , u] of text.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(amount) * unit[u];
  return total;
}

const Duration = z.string().refine((s) => parseDuration(s) !== null, { message: 'expected a duration such as "24h", "30m" or "90s"' });

/** The email templates the auth stand-in sends (Supabase CLI's [auth.email.template.<kind>]). */
export const TEMPLATE_KINDS = ["invite", "confirmation", "recovery", "magic_link"] as const;
/** One of {@link TEMPLATE_KINDS}. */
export type TemplateKind = (typeof TEMPLATE_KINDS)[number];

const EmailTemplate = z.object({ subject: z.string().max(998).optional(), content_path: z.string().min(1).optional() });

// The [auth] part of config.toml that the local auth stand-in (auth.ts) honours, with Supabase
// Auth's defaults. Unknown keys are the CLI's business and are ignored here.
const AuthSchema = z.object({
  site_url: z.url().default("http://127.0.0.1:3000"),
  additional_redirect_urls: z.array(z.string().min(1)).default([]),
  enable_signup: z.boolean().default(true),
  jwt_expiry: z.number().int().positive().default(3600),
  minimum_password_length: z.number().int().min(1).max(72).default(6),
  sessions: z.object({ timebox: Duration.optional(), inactivity_timeout: Duration.optional() }).default({}),
  email: z.object({
    enable_confirmations: z.boolean().default(false),
    otp_expiry: z.number().int().positive().max(86_400).default(3600),
    template: z.partialRecord(z.enum(TEMPLATE_KINDS), EmailTemplate).default({}),
  }).default({ enable_confirmations: false, otp_expiry: 3600, template: {} }),
  mfa: z.object({
    max_enrolled_factors: z.number().int().positive().default(10),
    totp: z.object({ enroll_enabled: z.boolean().default(true), verify_enabled: z.boolean().default(true) })
      .default({ enroll_enabled: true, verify_enabled: true }),
  }).default({ max_enrolled_factors: 10, totp: { enroll_enabled: true, verify_enabled: true } }),
});

/** The [auth] part of config.toml, validated (template content paths made absolute). */
export type AuthConfig = z.infer<typeof AuthSchema>;

const ConfigSchema = z.object({
  api: z.object({
    port: z.number().int().default(54321),
    schemas: z.array(z.string()).default(["public"]),
    extra_search_path: z.array(z.string()).default(["public", "extensions"]),
    max_rows: z.number().int().default(1000),
  }),
  db: z.object({ port: z.number().int().default(54322) }),
  auth: AuthSchema,
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
  // The CLI resolves a template's content_path against the project root (supabase/'s parent).
  for (const template of Object.values(parsed.data.auth.email.template)) {
    if (template?.content_path && !isAbsolute(template.content_path)) template.content_path = resolve(root, template.content_path);
  }
  return parsed.data;
}

/** Whether the gateway must verify the caller's JWT before invoking function `name` (default true). */
export function functionVerifiesJwt(config: ProjectConfig, name: string): boolean {
  return config.functions[name]?.verify_jwt ?? true;
}

/**
 * The [auth] configuration as a stack on `apiUrl` runs it: a site_url naming the local gateway
 * (config.toml's, on [api] port) follows the gateway to the port it really got, so that email
 * links from a throwaway stack (npm test, benches) lead to its own console.
 */
export function localAuthConfig(config: ProjectConfig, apiUrl: string): AuthConfig {
  const configured = new URL(config.auth.site_url);
  const isLocalGateway = ["127.0.0.1", "localhost"].includes(configured.hostname) && Number(configured.port) === config.api.port;
  return isLocalGateway ? { ...config.auth, site_url: apiUrl } : config.auth;
}
