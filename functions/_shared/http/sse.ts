/**
 * Server-sent events fed from an upstream's chunks (the model gateway's and the widget's streamed
 * answers), and work that must outlive a response.
 *
 * eventStream reads the next chunk only when the client wants the next event, and ends the
 * stream in exactly one of three ways, each settled before the stream closes:
 *   - the chunks end: `end()` settles and answers the closing events;
 *   - the upstream fails: `fail(e)` settles and answers the closing events;
 *   - the client goes away (or the SDK ends an aborted stream quietly, which is the same thing):
 *     `abort` is aborted and `cancel()` settles what was used.
 */

/** Events that are their own SSE frames (an event with a name, say), sent as `frames()` says. */
export interface Frames {
  frames(): string;
}

/** What an event stream is made of. `data` is sent as is when a string, as its frames when Frames, else as JSON. */
export interface EventSource<C> {
  chunks: AsyncIterable<C>;
  /** Aborted when the client goes away; the upstream request listens to it. */
  abort: AbortController;
  /** The event for a chunk, or null to send none for it. */
  event(chunk: C): unknown;
  end(): Promise<unknown[]>;
  fail(e: unknown): Promise<unknown[]>;
  cancel(): Promise<void>;
}

const HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" };
const isFrames = (data: unknown): data is Frames => typeof (data as Frames | null)?.frames === "function";
const format = (data: unknown) => isFrames(data) ? data.frames() : `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
const encoder = new TextEncoder();
const encode = (data: unknown) => encoder.encode(format(data));

/** A 200 event stream of `source`. */
export function eventStream<C>(source: EventSource<C>): Response {
  const chunks = source.chunks[Symbol.asyncIterator]();
  let ended = false;
  const once = async <T>(settle: () => Promise<T>): Promise<T | null> => {
    if (ended) return null;
    ended = true;
    return await settle();
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const next = await chunks.next();
          if (next.done && source.abort.signal.aborted) return void (await once(() => source.cancel()));
          if (next.done) return closeWith(controller, await once(() => source.end()));
          const event = source.event(next.value);
          if (event === null) continue;
          controller.enqueue(encode(event));
          return;
        }
      } catch (e) {
        if (source.abort.signal.aborted) return void (await once(() => source.cancel()));
        closeWith(controller, await once(() => source.fail(e)));
      }
    },
    async cancel() {
      source.abort.abort();
      await once(() => source.cancel());
      await chunks.return?.().catch(() => {});
    },
  });
  return new Response(body, { status: 200, headers: HEADERS });
}

/** A 200 event stream of events known already. */
export function eventList(events: unknown[]): Response {
  return new Response(events.map(format).join(""), { status: 200, headers: HEADERS });
}

function closeWith(controller: ReadableStreamDefaultController<Uint8Array>, events: unknown[] | null): void {
  if (events === null) return;
  for (const event of events) controller.enqueue(encode(event));
  controller.close();
}

/**
 * Keeps `work` alive past the response: on Supabase's Edge Runtime a worker may stop once its
 * response has ended, unless EdgeRuntime.waitUntil holds it (elsewhere this only returns `work`).
 */
export function outliveResponse<T>(work: Promise<T>): Promise<T> {
  (globalThis as { EdgeRuntime?: { waitUntil(p: Promise<unknown>): void } }).EdgeRuntime?.waitUntil(work);
  return work;
}
