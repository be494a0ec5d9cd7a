/**
 * The one error type edge functions throw for expected failures, and the one place errors become
 * responses. Body shape: `{ "error": { "code": "…", "message": "…" } }`.
 */

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
      console.error(`unexpected ${(e as Error)?.name ?? "error"} in ${new URL(req.url).pathname}`);
      return new HttpError(500, "internal_error", "unexpected error").toResponse();
    }
  };
}

/** Refuses any method not in `allowed` with a 405. */
export function requireMethod(req: Request, ...allowed: string[]): void {
  if (!allowed.includes(req.method)) {
    throw new HttpError(405, "method_not_allowed", `use ${allowed.join(" or ")}`);
  }
}
