/**
 * GET /functions/v1/health: reports this function's version and whether the database answers.
 * 200 when the database is up, 503 when it is not. Public (verify_jwt = false in config.toml):
 * it reveals versions and up/down, nothing else.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { asService, db } from "../_shared/http/db.ts";
import { jsonContent } from "../_shared/http/schemas.ts";

const FUNCTION_VERSION = "1.1.0";

const Health = z.object({
  status: z.enum(["ok", "degraded"]),
  function: z.object({ name: z.string(), version: z.string(), runtime: z.string() }),
  database: z.union([z.object({ status: z.literal("up"), version: z.string() }), z.object({ status: z.literal("down") })]),
});

async function probeDatabase(): Promise<{ status: "up"; version: string } | { status: "down" }> {
  try {
    const version = await db().begin(async (tx) => {
      await asService(tx);
      const [row] = await tx`select current_setting('server_version') as version`;
      return String(row.version);
    });
    return { status: "up", version };
  } catch {
    return { status: "down" };
  }
}

const app = functionApp({ name: "health", version: FUNCTION_VERSION, description: "Liveness of the functions runtime and the database." });

app.openapi(createRoute({
  method: "get", path: "/", summary: "Is the function runtime up, and does the database answer?", security: [],
  responses: {
    200: { description: "Up", content: jsonContent(Health) },
    503: { description: "The database does not answer", content: jsonContent(Health) },
  },
}), async (c) => {
  const database = await probeDatabase();
  const body = {
    status: database.status === "up" ? "ok" as const : "degraded" as const,
    function: { name: "health", version: FUNCTION_VERSION, runtime: `deno ${Deno.version.deno}` },
    database,
  };
  return database.status === "up" ? c.json(body, 200) : c.json(body, 503);
});

Deno.serve(app.fetch);
