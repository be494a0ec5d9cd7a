/**
 * The API describes itself: every edge function serves an OpenAPI 3.1 document generated from its
 * route table (zod schemas), valid against the OpenAPI schema, naming the public URL; PostgREST's
 * document names the gateway, not its internal port.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import { describe, expect, it } from "vitest";
import { stack } from "../helpers/stack.ts";

const s = stack();
const root = join(process.cwd(), "functions");
const functions = readdirSync(root).filter((n) => !n.startsWith("_") && statSync(join(root, n)).isDirectory());

describe("OpenAPI documents", () => {
  it.each(functions)("%s serves a valid OpenAPI 3.1 document of its routes at the public URL", async (name) => {
    const res = await fetch(`${s.functionsUrl}/${name}/openapi.json`, { headers: { authorization: `Bearer ${s.anonKey}` } });
    expect(res.status).toBe(200);
    const doc = await res.json();
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.servers).toEqual([{ url: `${s.apiUrl}/functions/v1` }]);
    expect(Object.keys(doc.paths).length).toBeGreaterThan(0);
    for (const path of Object.keys(doc.paths)) expect(path.startsWith(`/${name}`)).toBe(true);
  });

  it("describes the connectors routes with their request bodies and refusals", async () => {
    const doc = await (await fetch(`${s.functionsUrl}/connectors/openapi.json`, { headers: { authorization: `Bearer ${s.anonKey}` } })).json();
    const save = doc.paths["/connectors/connections"].post;
    expect(save.requestBody.content["application/json"].schema.properties.provider.enum).toContain("slack_webhook");
    expect(Object.keys(save.responses)).toEqual(expect.arrayContaining(["201", "400", "401", "413", "429"]));
    expect(doc.paths["/connectors/actions/{id}/execute"].post.parameters).toEqual(
      expect.arrayContaining([expect.objectContaining({ in: "path", name: "id", required: true })]),
    );
  });

  it("PostgREST's document names the gateway's URL, not PostgREST's own port", async () => {
    const doc = await (await fetch(`${s.restUrl}/`, { headers: { apikey: s.anonKey } })).json();
    expect(`${doc.schemes?.[0] ?? "http"}://${doc.host}${doc.basePath}`).toBe(s.restUrl);
  });
});
