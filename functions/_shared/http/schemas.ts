/** Schemas every function's OpenAPI document shares. */
import { z } from "@hono/zod-openapi";

/** The body of every refusal. */
export const ErrorBody = z.object({
  error: z.object({
    code: z.string().describe("A stable machine-readable code"),
    message: z.string(),
    type: z.string().describe("OpenAI's class of the status: invalid_request_error, authentication_error, rate_limit_error, …"),
  }).catchall(z.unknown()),
}).openapi("Error");

/** The X-Org-Id header a member names the organization with (http/caller.ts orgIdOf validates it). */
export const OrgHeader = z.object({ "x-org-id": z.string().optional().describe("The organization a member acts in (a uuid)") });

/** `content` of a JSON request or response with `schema`. */
export function jsonContent<T extends z.ZodType>(schema: T) {
  return { "application/json": { schema } };
}

/** The OpenAPI responses of refusals with these statuses: each is an ErrorBody. */
export function refusals(...statuses: number[]) {
  return Object.fromEntries(statuses.map((s) => [s, { description: "A refusal with a stable code", content: jsonContent(ErrorBody) }]));
}

/** A route's required JSON request body with `schema`. */
export function jsonRequest<T extends z.ZodType>(schema: T) {
  return { body: { content: jsonContent(schema), required: true } };
}
