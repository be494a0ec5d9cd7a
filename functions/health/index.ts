/**
 * GET /functions/v1/health: reports this function's version and whether the database answers.
 * 200 when the database is up, 503 when it is not. Public (verify_jwt = false in config.toml):
 * it reveals versions and up/down, nothing else.
 */
import { db } from "../_shared/http/db.ts";
import { requireMethod, withErrors } from "../_shared/http/errors.ts";

const FUNCTION_VERSION = "1.0.0";

async function probeDatabase(): Promise<{ status: "up"; version: string } | { status: "down" }> {
  try {
    const [row] = await db()`select current_setting('server_version') as version`;
    return { status: "up", version: String(row.version) };
  } catch {
    return { status: "down" };
  }
}

Deno.serve(withErrors(async (req) => {
  requireMethod(req, "GET");
  const database = await probeDatabase();
  const body = {
    status: database.status === "up" ? "ok" : "degraded",
    function: { name: "health", version: FUNCTION_VERSION, runtime: `deno ${Deno.version.deno}` },
    database,
  };
  return Response.json(body, { status: database.status === "up" ? 200 : 503 });
}));
