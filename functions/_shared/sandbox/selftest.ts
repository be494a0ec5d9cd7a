/**
 * The sandbox's self-test (issue 27; docs/sandbox.md): before any code runs, the sandbox proves each
 * of its layers in force, with probes run through the sandbox itself. If one is missing (a host
 * without user namespaces, without cgroups, without bubblewrap), runCode refuses to run code and
 * says which, and never falls back to running it unprotected.
 */
import { DEFAULT_LIMITS, type LayerCheck, SandboxError, type SandboxLimits, type SandboxRequest, type SandboxResult, type SelfTest } from "./backend.ts";
import { runUnchecked } from "./run.ts";

/** What the probe sees from inside, as JSON on stdout. */
const PROBE = String.raw`
import json, os, socket
seen = {"uid": os.getuid(), "gid": os.getgid(), "env": sorted(os.environ), "root": sorted(os.listdir("/"))}
refused = {}
for name, fam in (("inet", socket.AF_INET), ("inet6", socket.AF_INET6), ("netlink", socket.AF_NETLINK), ("packet", socket.AF_PACKET)):
    try:
        socket.socket(fam, socket.SOCK_DGRAM if fam == socket.AF_NETLINK else socket.SOCK_STREAM).close()
        refused[name] = False
    except OSError:
        refused[name] = True
seen["sockets_refused"] = refused
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close(); seen["unix"] = True
except OSError:
    seen["unix"] = False
seen["interfaces"] = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:])
seen["processes"] = len([p for p in os.listdir("/proc") if p.isdigit()])
try:
    open("/etc/shadow").read(); seen["shadow"] = True
except OSError:
    seen["shadow"] = False
forks = 0
try:
    kids = []
    for _ in range(64):
        pid = os.fork()
        if pid == 0:
            import time; time.sleep(2); os._exit(0)
        kids.append(pid); forks += 1
except OSError:
    pass
seen["forks"] = forks
print(json.dumps(seen))
`;

const PROBE_LIMITS: SandboxLimits = { ...DEFAULT_LIMITS, seconds: 10, processes: 16 };

async function probe(req: SandboxRequest, limits: SandboxLimits): Promise<SandboxResult | string> {
  try {
    return await runUnchecked(req, limits);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

/** Runs the probes and says, per layer, whether it is in force. */
export async function selfTest(): Promise<SelfTest> {
  const layers: LayerCheck[] = [];
  const check = (layer: LayerCheck["layer"], ok: boolean, detail: string) => layers.push({ layer, ok, detail });
  const seen = await probe({ runtime: "python", code: PROBE }, PROBE_LIMITS);
  if (typeof seen === "string" || seen.exitCode !== 0) {
    const why = typeof seen === "string" ? seen : `the probe exited ${seen.exitCode}: ${seen.stderr.slice(0, 300)}`;
    check("bubblewrap", false, why);
    return { ok: false, layers };
  }
  check("bubblewrap", true, "a probe ran in bubblewrap with the seccomp filter, in its own cgroup");
  let s: {
    uid: number; gid: number; env: string[]; root: string[]; sockets_refused: Record<string, boolean>; unix: boolean;
    interfaces: string[]; processes: number; shadow: boolean; forks: number;
  };
  try {
    s = JSON.parse(seen.stdout);
  } catch {
    check("bubblewrap", false, "the probe's answer did not parse");
    return { ok: false, layers };
  }
  const refusedAll = Object.values(s.sockets_refused).every(Boolean);
  check("network", refusedAll && s.unix && s.interfaces.every((i) => i === "lo"),
    `sockets refused: ${JSON.stringify(s.sockets_refused)}; AF_UNIX ${s.unix ? "allowed" : "refused"}; interfaces: ${s.interfaces.join(", ")}`);
  const expectedRoot = ["bin", "dev", "lib", "lib64", "proc", "tmp", "usr", "work"];
  check("filesystem", !s.shadow && s.root.every((e) => expectedRoot.includes(e)), `root holds ${s.root.join(", ")}; /etc/shadow ${s.shadow ? "readable" : "unreadable"}`);
  check("processes", s.processes <= 4, `${s.processes} processes visible in /proc`);
  // HOME and PATH are the sandbox's own; bubblewrap sets PWD, and Python its LC_CTYPE.
  check("identity", s.uid === 65534 && s.gid === 65534 && s.env.every((e) => ["HOME", "PATH", "PWD", "LC_CTYPE"].includes(e)),
    `uid ${s.uid}, gid ${s.gid}, environment: ${s.env.join(", ")}`);
  check("limits", s.forks < PROBE_LIMITS.processes, `${s.forks} of 64 forks succeeded under a limit of ${PROBE_LIMITS.processes} processes`);

  const loop = await probe({ runtime: "python", code: "while True:\n    pass\n" }, { ...DEFAULT_LIMITS, seconds: 1 });
  check("deadline", typeof loop !== "string" && loop.killed === "deadline" && loop.ms < 5_000,
    typeof loop === "string" ? loop : `an endless loop ${loop.killed === "deadline" ? "was killed" : "was not killed"} after ${loop.ms} ms (budget 1 s)`);
  return { ok: layers.every((l) => l.ok), layers };
}

let checked: Promise<SelfTest> | null = null;

/** The self-test's result, run once per process. */
export function sandboxReady(): Promise<SelfTest> {
  checked ??= selfTest();
  return checked;
}

/** Runs `req` in a fresh sandbox, once the self-test has passed; refuses (sandbox_unavailable) otherwise. */
export async function runCode(req: SandboxRequest, limits: SandboxLimits = DEFAULT_LIMITS): Promise<SandboxResult> {
  const ready = await sandboxReady();
  if (!ready.ok) {
    const missing = ready.layers.filter((l) => !l.ok).map((l) => `${l.layer}: ${l.detail}`).join("; ");
    throw new SandboxError("sandbox_unavailable", `the sandbox refuses to run code: a layer is missing (${missing})`);
  }
  return await runUnchecked(req, limits);
}
