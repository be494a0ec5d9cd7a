/**
 * The Hono app every edge function is: routes declared with @hono/zod-openapi (so the route table
 * is also the function's OpenAPI 3.1 document, served at `/<name>/openapi.json`), one onError that
 * turns HttpErrors and database refusals into responses (errors.ts), validation failures answered
 * with our codes, and JSON 404s.
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { errorResponse, refuse } from "./errors.ts";

/** What a function's OpenAPI document says about it. */
export interface FunctionInfo {
  /** The function's folder name: its routes live under `/<name>`. */
  name: string;
  version: string;
  description: string;
}

const INVALID: Record<string, Parameters<typeof refuse>[0]> = {
  json: "invalid_body",
  query: "invalid_query",
  param: "not_found",
  header: "invalid_body",
};

/** A new function app serving under `/<info.name>`, with its OpenAPI document at `/<info.name>/openapi.json`. */
export function functionApp(info: FunctionInfo) {
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (result.success) return;
      const problems = result.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || result.target}: ${i.message}`).join("; ");
      throw refuse(INVALID[result.target] ?? "invalid_body", result.target === "param" ? "no such resource" : problems);
    },
  }).basePath(`/${info.name}`);
  app.onError((e, c) => errorResponse(e, c.req.path));
  app.notFound((c) => {
    // A path some route serves, with another method, is a 405 naming the methods it takes.
    const allowed = [...new Set(app.routes.filter((r) => r.method !== "ALL" && pathPattern(r.path).test(c.req.path)).map((r) => r.method))];
    if (allowed.length > 0) return refuse("method_not_allowed", `use ${allowed.join(" or ")}`).toResponse({ allow: allowed.join(", ") });
    return refuse("not_found", `no route ${c.req.method} ${c.req.path}`).toResponse();
  });
  app.doc31("/openapi.json", (c) => ({
    openapi: "3.1.0",
    info: { title: `Gatehouse ${info.name}`, version: info.version, description: info.description },
    // Route paths carry the function's name (the app's base path), so the server is /functions/v1.
    servers: [{ url: `${publicUrl(c.req.url)}/functions/v1` }],
    security: [{ bearer: [] }],
  }));
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "A user's access token, or the service role key",
  });
  return app;
}

/** A Hono route path (`/a/:id/b`) as a regular expression over request paths. */
function pathPattern(path: string): RegExp {
  const escaped = path.split("/").map((part) => (part.startsWith(":") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  return new RegExp(`^${escaped.join("/")}$`);
}

/** The public base URL of the API (SUPABASE_URL), falling back to the request's origin. */
function publicUrl(requestUrl: string): string {
  return (Deno.env.get("SUPABASE_URL") ?? new URL(requestUrl).origin).replace(/\/$/, "");
}
