/**
 * The egress guard as a `fetch`: what a vendor SDK (openai, @anthropic-ai/sdk) takes as its
 * `fetch` option, so that its requests go through guardedFetch (transport.ts) like every other
 * outbound request, and are refused or cut off the same way (invariant 4).
 *
 * - The request is normalized as fetch would (a Request or a URL, the method, the headers, the body
 *   read in full into bytes, with fetch's default Content-Type for it) and sent with `stream`, so
 *   that a streamed completion (SSE) arrives as it is written, under the guard's cap and deadline.
 * - Failures are thrown as fetch's are, so SDKs classify them: a guard failure is an EgressError
 *   (a TypeError with the guard's code); an abort by the caller's signal is an AbortError, whether
 *   it happens before the response or while its body streams.
 * - The request asks for an identity encoding: the body is handed over as the server wrote it,
 *   never decompressed past the byte cap.
 */
import type { EgressFailure, EgressOptions } from "./check.ts";
import { EgressError, type EgressRequest, guardedFetch } from "./transport.ts";

export { EgressError };

/** The abort a fetch reports: the signal's reason when it is an AbortError, else a new one. */
function abortError(signal: AbortSignal): DOMException {
  const reason: unknown = signal.reason;
  return reason instanceof DOMException && reason.name === "AbortError" ? reason : new DOMException("The request was aborted", "AbortError");
}

/** What fetch throws for a guard failure: an AbortError when the caller's signal caused it. */
function thrown(failure: EgressError | EgressFailure, signal: AbortSignal | undefined): Error {
  if (signal?.aborted && (failure.reason === "egress_aborted" || failure.reason === "egress_timeout")) return abortError(signal);
  return failure instanceof EgressError ? failure : new EgressError(failure.reason, failure.message);
}

/** The body, erroring as fetch's would; cancelling it cancels the guard's stream (and hangs up). */
function fetchBody(body: ReadableStream<Uint8Array>, signal: AbortSignal | undefined): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        controller.error(e instanceof EgressError ? thrown(e, signal) : e);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/** A fetch call's arguments as the guard's request: URL, method, headers, body bytes and signal. */
async function requestOf(input: RequestInfo | URL, init: RequestInit = {}): Promise<{ url: string; request: EgressRequest }> {
  const source = input instanceof Request ? input : null;
  const headers = new Headers(init.headers ?? source?.headers);
  headers.set("accept-encoding", "identity");
  const signal = init.signal ?? source?.signal ?? undefined;
  // A Response reads any BodyInit (string, bytes, URLSearchParams, FormData, Blob, a stream) and
  // knows the Content-Type fetch would send with it.
  const carrier = init.body !== undefined ? (init.body === null ? null : new Response(init.body)) : source;
  let body: Uint8Array | null = null;
  if (carrier?.body) {
    body = new Uint8Array(await carrier.arrayBuffer());
    const type = carrier.headers.get("content-type");
    if (type && !headers.has("content-type")) headers.set("content-type", type);
  }
  return { url: source ? source.url : String(input), request: { method: init.method ?? source?.method ?? "GET", headers, body, signal } };
}

/**
 * A `fetch` that sends every request through the egress guard with these options (and `stream`),
 * e.g. `new OpenAI({ apiKey, baseURL, fetch: egressFetch(env.egress) })`. Note that timeoutMs
 * covers the whole exchange, a streamed body included.
 */
export function egressFetch(options: EgressOptions): typeof fetch {
  const streamed: EgressOptions = { ...options, stream: true };
  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const { url, request } = await requestOf(input, init);
    const signal = request.signal;
    if (signal?.aborted) throw abortError(signal);
    const sent = await guardedFetch(url, request, streamed);
    if (!sent.ok) throw thrown(sent, signal);
    const { response } = sent.value;
    const fetched = new Response(response.body && fetchBody(response.body, signal), { status: response.status, headers: response.headers });
    Object.defineProperties(fetched, { url: { value: sent.value.url }, redirected: { value: sent.value.redirects > 0 } });
    return fetched;
  };
}

/** The EgressError in an error or its `cause` chain (SDKs wrap fetch's errors), or null. */
export function egressFailureOf(e: unknown): EgressError | null {
  const seen = new Set<unknown>();
  for (let at = e; at != null && !seen.has(at); at = (at as { cause?: unknown }).cause) {
    if (at instanceof EgressError) return at;
    seen.add(at);
  }
  return null;
}
