/**
 * Local stand-in for Supabase's Edge Runtime main service (Deno 2). It serves every function folder
 * under functions/ (except `_shared` and other `_`-prefixed folders) at `/<name>/...`, the path a
 * hosted function sees after the gateway strips `/functions/v1`.
 *
 * Each function is written for hosted Supabase: `functions/<name>/index.ts` calls `Deno.serve(handler)`.
 * Here all functions share one Deno process, so while a function module is first imported,
 * `Deno.serve` is swapped for a recorder that keeps its handler instead of opening a port. The
 * gateway in front has already verified the JWT where config.toml asks for it.
 *
 * Usage: deno run --allow-net --allow-env --allow-read scripts/stack/edge_router.ts <port> <functions dir>
 */

type Handler = (request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Response | Promise<Response>;

const [portArg, functionsDir] = Deno.args;
const port = Number(portArg);
if (!Number.isInteger(port) || !functionsDir) {
  console.error("usage: edge_router.ts <port> <functions dir>");
  Deno.exit(2);
}

function handlerFromServeArgs(args: unknown[]): Handler | null {
  for (const arg of args) {
    if (typeof arg === "function") return arg as Handler;
    if (arg && typeof arg === "object" && typeof (arg as { handler?: unknown }).handler === "function") {
      return (arg as { handler: Handler }).handler;
    }
  }
  return null;
}

async function loadFunction(dir: string, name: string): Promise<Handler> {
  const realServe = Deno.serve;
  let captured: Handler | null = null;
  Object.defineProperty(Deno, "serve", {
    configurable: true,
    writable: true,
    value: (...args: unknown[]) => {
      captured = handlerFromServeArgs(args);
      return { finished: Promise.resolve(), shutdown: () => Promise.resolve(), ref() {}, unref() {}, addr: { hostname: "127.0.0.1", port, transport: "tcp" } };
    },
  });
  try {
    await import(new URL(`file://${dir}/${name}/index.ts`).href);
  } finally {
    Object.defineProperty(Deno, "serve", { configurable: true, writable: true, value: realServe });
  }
  if (!captured) throw new Error(`function ${name} did not call Deno.serve(handler)`);
  return captured;
}

const handlers = new Map<string, Handler>();
for await (const entry of Deno.readDir(functionsDir)) {
  if (!entry.isDirectory || entry.name.startsWith("_") || entry.name.startsWith(".")) continue;
  try {
    await Deno.stat(`${functionsDir}/${entry.name}/index.ts`);
  } catch {
    continue;
  }
  handlers.set(entry.name, await loadFunction(functionsDir, entry.name));
}

function jsonError(status: number, code: string, message: string): Response {
  return Response.json({ error: { code, message } }, { status });
}

Deno.serve({ hostname: "127.0.0.1", port, onListen: () => console.log(`edge-router ready: ${[...handlers.keys()].join(",")}`) }, async (request, info) => {
  const name = new URL(request.url).pathname.split("/")[1] ?? "";
  const handler = handlers.get(name);
  if (!handler) return jsonError(404, "function_not_found", `no function named ${JSON.stringify(name)}`);
  try {
    return await handler(request, info);
  } catch (e) {
    // A function's unexpected failure: log its type only (the message may carry request data).
    console.error(`function ${name} threw ${(e as Error)?.name ?? "error"}`);
    return jsonError(500, "internal_error", "the function failed unexpectedly");
  }
});
