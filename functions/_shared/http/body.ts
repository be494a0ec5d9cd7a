/**
 * Reading request bodies: JSON of a bounded size, checked against json/text.ts's rules before
 * anything else sees it. Failures are 413 body_too_large, 415 unsupported_media_type, 400
 * invalid_json, invalid_text or json_too_deep.
 */
import type { MiddlewareHandler } from "hono";
import { unsafeJsonText } from "../json/text.ts";
import { refuse } from "./errors.ts";

const JSON_TYPE = /^application\/json\s*(;|$)/i;

/** Reads the body of `req` (at most `maxBytes`, stopping as soon as it is over) as JSON; an empty body reads as `{}`. */
async function readJsonBytes(req: Request, maxBytes: number): Promise<{ json: unknown; bytes: Uint8Array<ArrayBuffer> }> {
  const bytes = await readRawBody(req, maxBytes);
  if (bytes.byteLength === 0) return { json: {}, bytes };
  return { json: parseJsonBytes(req.headers.get("content-type"), bytes), bytes };
}

/** `bytes` as JSON, sent with `contentType`: 415 unsupported_media_type, 400 invalid_json, invalid_text or json_too_deep. */
export function parseJsonBytes(contentType: string | null | undefined, bytes: Uint8Array): unknown {
  if (!contentType || !JSON_TYPE.test(contentType)) throw refuse("unsupported_media_type");
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw refuse("invalid_json");
  }
  const unsafe = unsafeJsonText(json);
  if (unsafe) throw refuse(unsafe.reason, `${unsafe.path}: ${unsafe.reason === "invalid_text" ? "NUL characters and unpaired surrogates are refused" : "nested too deeply"}`);
  return json;
}

/**
 * The raw body of `req`, at most `maxBytes` (413 body_too_large as soon as it is over, declared or
 * not): for routes that check a signature over the exact bytes before they read them as JSON.
 */
export async function readRawBody(req: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(req.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) throw refuse("body_too_large", `the body is limited to ${maxBytes} bytes`);
  return await readBytes(req, maxBytes);
}

async function readBytes(req: Request, maxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
  if (!req.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw refuse("body_too_large", `the body is limited to ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  return bytes;
}

/**
 * Hono middleware: reads the JSON body with readJsonBytes before a route's validator runs, and hands
 * the validator (which reads `c.req.json()`) the checked value, and the bytes to whatever asks
 * whether there was a body. (A validator reads no body without a JSON content type, and
 * validates `{}`: what readJson reads from an empty body.)
 */
export function jsonBody(maxBytes: number): MiddlewareHandler {
  return async (c, next) => {
    const { json, bytes } = await readJsonBytes(c.req.raw, maxBytes);
    // Hono keeps promises in bodyCache (its type says values).
    const cache = c.req.bodyCache as Record<string, Promise<unknown>>;
    cache.json = Promise.resolve(json);
    cache.arrayBuffer = Promise.resolve(bytes.buffer);
    await next();
  };
}
