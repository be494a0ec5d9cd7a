/** Schemas every function's OpenAPI document shares. */
import { z } from "@hono/zod-openapi";

/** The body of every refusal. */
export const ErrorBody = z.object({
  error: z.object({ code: z.string().describe("A stable machine-readable code"), message: z.string() }),
}).openapi("Error");

/** `content` of a JSON request or response with `schema`. */
export function jsonContent<T extends z.ZodType>(schema: T) {
  return { "application/json": { schema } };
}
