/**
 * The one error type edge functions throw for expected failures, and the one place errors become
 * responses. Body shape: `{ "error": { "code": "…", "message": "…" } }`.
 */
import type { z } from "zod";

/** An expected failure with an HTTP status and a stable machine-readable code. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }

  /** This error as a JSON response. */
  toResponse(headers?: HeadersInit): Response {
    return Response.json({ error: { code: this.code, message: this.message } }, { status: this.status, headers });
  }
}

/**
 * Wraps a handler so that an HttpError becomes its response and anything else becomes a 500 whose
 * body reveals nothing (the details may hold request data or secrets, so they are not logged either).
 */
export function withErrors(handler: (req: Request) => Promise<Response>): (req: Request) => Promise<Response> {
  return async (req) => {
    try {
      return await handler(req);
    } catch (e) {
      if (e instanceof HttpError) return e.toResponse();
      const refusal = databaseRefusal(e);
      if (refusal) return refusal.toResponse();
      console.error(`unexpected ${(e as Error)?.name ?? "error"} in ${new URL(req.url).pathname}`);
      return new HttpError(500, "internal_error", "unexpected error").toResponse();
    }
  };
}

/**
 * A refusal raised by the database's private.refuse_request (SQLSTATE PGRST, the convention
 * PostgREST turns into a response): the same status and code here. Null for any other error.
 */
export function databaseRefusal(e: unknown): HttpError | null {
  const err = e as { code?: string; message?: string; detail?: string };
  if (err?.code !== "PGRST") return null;
  try {
    const { code, message } = JSON.parse(err.message ?? "") as { code: string; message: string };
    const { status } = JSON.parse(err.detail ?? "") as { status: number };
    if (typeof code !== "string" || !Number.isInteger(status) || status < 400 || status > 499) return null;
    return new HttpError(status, code, String(message));
  } catch {
    return null;
  }
}

/** Refuses any method not in `allowed` with a 405. */
export function requireMethod(req: Request, ...allowed: string[]): void {
  if (!allowed.includes(req.method)) {
    throw new HttpError(405, "method_not_allowed", `use ${allowed.join(" or ")}`);
  }
}

/**
 * Reads a JSON request body of at most `maxBytes` (stopping as soon as it is over) and validates
 * it with `schema`. An empty body reads as `{}`. Failures are 413 body_too_large, 415
 * unsupported_media_type, 400 invalid_json or 400 invalid_body (naming the first problems).
 */
export async function readJsonBody<T>(req: Request, schema: z.ZodType<T>, maxBytes: number): Promise<T> {
  const type = req.headers.get("content-type");
  if (type !== null && !/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(415, "unsupported_media_type", "send Content-Type: application/json");
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new HttpError(413, "body_too_large", `the body is limited to ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  let json: unknown = {};
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    if (text.trim() !== "") json = JSON.parse(text);
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not UTF-8 JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
    throw new HttpError(400, "invalid_body", problems);
  }
  return parsed.data;
}
