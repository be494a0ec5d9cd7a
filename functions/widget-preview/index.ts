/**
 * POST /functions/v1/widget-preview: a person in the console chats with a widget before it goes on
 * a site (issue 25, section 2). It takes the widget's own path: the key's and the visitor's rate
 * limits, the key's budget and the organization's, the agent's published version, the transcript
 * (on the console's origin) and the review queue. Only the way in differs: a signed-in person
 * (verify_jwt on) who works on the key's project (project contributor or above), checked as that
 * person under RLS, instead of a publishable key and an allowed origin. The database lets that one
 * message through for that one key (gatehouse.widget_preview_key, for its transaction alone:
 * …_widget_preview.sql); no origin is added to the key.
 *
 *   POST /   {key_id, content, conversation_id?, visitor_id?} with X-Org-Id: the agent's answer
 *
 * The answer is JSON (no stream), with the conversation and the preview's visitor to send back for
 * the next message. A refusal of the model path (a spent budget, a limit) is the polite notice, as
 * a visitor would see it, with its code.
 *
 * Configuration: GATEHOUSE_CONSOLE_URL, the console's origin, which the preview's conversations
 * name (default: SUPABASE_URL, where the local gateway serves the console).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { functionApp } from "../_shared/http/app.ts";
import { jsonBody } from "../_shared/http/body.ts";
import { callerOf, orgIdOf } from "../_shared/http/caller.ts";
import { configuration } from "../_shared/http/config.ts";
import { asMember, asService, db } from "../_shared/http/db.ts";
import { refuse } from "../_shared/http/errors.ts";
import { jsonContent, jsonRequest, OrgHeader, refusals } from "../_shared/http/schemas.ts";
import { answer, type Begun, NOTICES, refusedReply } from "../_shared/widgets/answer.ts";

const config = configuration((get) => ({
  consoleOrigin: new URL(z.url().parse(get("GATEHOUSE_CONSOLE_URL") ?? get("SUPABASE_URL"))).origin,
}), "widget_preview_misconfigured");

const PreviewBody = z.strictObject({
  key_id: z.uuid(),
  content: z.string().trim().min(1).max(4000),
  conversation_id: z.uuid().optional(),
  visitor_id: z.uuid().optional().describe("The preview's visitor, as the last answer named it (with conversation_id)"),
});
const PreviewReply = z.object({
  conversation_id: z.uuid().nullable(),
  visitor_id: z.uuid(),
  reply: z.object({ role: z.enum(["assistant", "notice"]), content: z.string() }),
  degraded: z.string().optional(),
  code: z.string().optional().describe("With degraded: the refusal's own stable code"),
  held: z.boolean().optional(),
  retry_after: z.number().int().optional(),
});

const app = functionApp({
  name: "widget-preview",
  version: "1.0.0",
  description: "Chats with a widget from the console, through the widget's own path, before it goes on a site.",
});
app.use(jsonBody(16 * 1024));

app.openapi(createRoute({
  method: "post", path: "/", summary: "A message to a widget's agent from the console (project contributor or above, X-Org-Id)",
  request: { headers: OrgHeader, ...jsonRequest(PreviewBody) },
  responses: {
    200: { description: "The agent's answer, or the polite notice a visitor would get", content: jsonContent(PreviewReply) },
    ...refusals(400, 401, 403, 404, 413, 415, 503),
  },
}), async (c) => {
  const caller = callerOf(c.req.raw);
  if (caller.kind !== "user") throw refuse("sign_in_required", "a preview is a person's, from the console");
  const orgId = orgIdOf(c.req.raw);
  const { key_id, content, conversation_id } = c.req.valid("json");
  const visitorId = c.req.valid("json").visitor_id ?? crypto.randomUUID();
  const { consoleOrigin } = config();
  const begun = await db().begin(async (tx) => {
    // As the person, under RLS: a live key of a project they work on (contributor or above).
    await asMember(tx, caller, orgId);
    const [key] = await tx`select k.id, k.version from public.widget_keys k
                            where k.id = ${key_id} and k.disabled_at is null
                              and k.project_id = any (private.project_ids_with_role('project_contributor'))`;
    if (!key) throw refuse("widget_key_not_found");
    // Then the widget's own path, for this key and this transaction alone.
    await asService(tx, { actingFor: caller, orgId });
    const [{ r }] = await tx`
      select set_config('gatehouse.widget_preview_key', ${key.id}, true),
             private.widget_message_begin(${key.id}, ${key.version}, ${visitorId}, ${consoleOrigin},
                                          ${conversation_id ?? null}, ${content}, false, null, ${NOTICES.unavailable}) as r`;
    return r as Begun;
  });
  if (!begun.ok) {
    if (begun.reason === "widget_conversation_not_found") throw refuse("widget_conversation_not_found");
    if (begun.reason === "widget_session_expired") throw refuse("widget_key_not_found");
    return c.json({ ...refusedReply(begun), visitor_id: visitorId }, 200);
  }
  const answered = await answer(c, begun, false);
  const body = await answered.json() as Record<string, unknown>;
  return c.json({ ...body, visitor_id: visitorId } as z.infer<typeof PreviewReply>, 200);
});

Deno.serve(app.fetch);
