/**
 * What JSON Gatehouse accepts, beyond being JSON: every string and every member name is valid
 * Unicode text without U+0000 (Postgres' text and jsonb can't hold NUL, and an unpaired
 * surrogate, which `"\ud800"` escapes into, is not Unicode text and has no RFC 8785 form), and
 * values nest at most MAX_DEPTH deep. Checked once at the JSON boundary (http/body.ts), so no
 * such value reaches the database or a hash.
 */

/** How deep objects and arrays may nest in a request body. */
export const MAX_DEPTH = 64;

/** Why a parsed JSON value is refused, with the path of the first offending place. */
export type TextRefusal = { reason: "invalid_text" | "json_too_deep"; path: string };

// deno-lint-ignore no-control-regex -- U+0000 is exactly what this refuses.
const NUL_OR_LONE_SURROGATE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when `s` is text a payload may carry: no NUL and no unpaired surrogate. */
function isSafeText(s: string): boolean {
  return !NUL_OR_LONE_SURROGATE.test(s);
}

/** The first place in `value` (a JSON.parse result) that Gatehouse refuses, or null when there is none. */
export function unsafeJsonText(value: unknown): TextRefusal | null {
  const stack: [unknown, string, number][] = [[value, "", 0]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop()!;
    if (typeof v === "string") {
      if (!isSafeText(v)) return { reason: "invalid_text", path: path || "body" };
    } else if (v !== null && typeof v === "object") {
      if (depth >= MAX_DEPTH) return { reason: "json_too_deep", path: path || "body" };
      for (const [k, child] of Array.isArray(v) ? v.entries() : Object.entries(v)) {
        const at = path ? `${path}.${k}` : String(k);
        if (typeof k === "string" && !isSafeText(k)) return { reason: "invalid_text", path: at };
        stack.push([child, at, depth + 1]);
      }
    }
  }
  return null;
}
