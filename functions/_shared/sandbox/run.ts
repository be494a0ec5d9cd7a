/**
 * A code sandbox for one execution (issue 27; docs/sandbox.md). Layers, each of which the
 * self-test (selfTest) proves in force before any code runs:
 *
 *   namespaces  bubblewrap with every namespace unshared (user, pid, net, ipc, uts, cgroup): no
 *               network but a loopback of its own, no view of the host's processes
 *   identity    uid and gid 65534 inside, no capabilities, a new session, an empty environment
 *   filesystem  /usr read-only (and the runtime's binary), an empty /tmp, /proc and /dev of its
 *               own, and its own scratch at /work, the only writable path
 *   seccomp     seccomp.ts: no socket but AF_UNIX, no ptrace, mount, bpf, keyctl, unshare, ...
 *   limits      a cgroup per execution (v1 or v2, whichever the host has): memory and processes;
 *               rlimits (prlimit): file size, open files, no core dumps
 *   deadline    enforced from outside: at the deadline every process of the cgroup is killed
 *   lifecycle   a fresh sandbox per call; its scratch and cgroup are removed in `finally`
 *
 * JavaScript and TypeScript run in Deno, itself with no permission but reading /work and writing
 * /work/out (a second layer); Python 3 runs isolated (-I). Output is capped while it is read.
 */
import { seccompFilter, type SeccompArch } from "./seccomp.ts";
import { type SandboxLimits, type SandboxRequest, type SandboxResult, DEFAULT_LIMITS, FILE_PATH, SandboxError } from "./backend.ts";

const NOBODY = 65534;

/** The host's cgroup layout: v1 (pids and memory controllers) or v2 (one tree), or none usable. */
async function cgroupLayout(): Promise<"v1" | "v2" | null> {
  const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
  if (await exists("/sys/fs/cgroup/pids/cgroup.procs") && await exists("/sys/fs/cgroup/memory/cgroup.procs")) return "v1";
  if (await exists("/sys/fs/cgroup/cgroup.controllers")) {
    const controllers = await Deno.readTextFile("/sys/fs/cgroup/cgroup.subtree_control").catch(() => "");
    if (controllers.includes("memory") && controllers.includes("pids")) return "v2";
  }
  return null;
}

/** One execution's cgroup: made with its limits, joined by the wrapper, killed and removed after. */
class Cgroup {
  private constructor(readonly dirs: string[], readonly layout: "v1" | "v2") {}

  static async make(limits: SandboxLimits): Promise<Cgroup> {
    const layout = await cgroupLayout();
    if (!layout) throw new SandboxError("sandbox_unavailable", "no writable cgroup with the memory and pids controllers: the limits layer is missing");
    const name = `gatehouse-sandbox-${crypto.randomUUID()}`;
    const memory = limits.memoryMiB * 1024 * 1024;
    if (layout === "v1") {
      const pids = `/sys/fs/cgroup/pids/${name}`;
      const mem = `/sys/fs/cgroup/memory/${name}`;
      await Deno.mkdir(pids);
      await Deno.mkdir(mem);
      await Deno.writeTextFile(`${pids}/pids.max`, String(limits.processes));
      await Deno.writeTextFile(`${mem}/memory.limit_in_bytes`, String(memory));
      // No swap beyond the limit, where the host accounts for it.
      await Deno.writeTextFile(`${mem}/memory.memsw.limit_in_bytes`, String(memory)).catch(() => {});
      return new Cgroup([pids, mem], layout);
    }
    const dir = `/sys/fs/cgroup/${name}`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/pids.max`, String(limits.processes));
    await Deno.writeTextFile(`${dir}/memory.max`, String(memory));
    await Deno.writeTextFile(`${dir}/memory.swap.max`, "0").catch(() => {});
    return new Cgroup([dir], layout);
  }

  /** The processes in it now. */
  async pids(): Promise<number[]> {
    const text = await Deno.readTextFile(`${this.dirs[0]}/cgroup.procs`).catch(() => "");
    return text.split("\n").filter(Boolean).map(Number);
  }

  /** Whether the memory limit stopped something. */
  async hitMemoryLimit(): Promise<boolean> {
    if (this.layout === "v1") {
      const failures = await Deno.readTextFile(`${this.dirs[1]}/memory.failcnt`).catch(() => "0");
      return Number(failures.trim()) > 0;
    }
    const events = await Deno.readTextFile(`${this.dirs[0]}/memory.events`).catch(() => "");
    return /^oom_kill [1-9]/m.test(events);
  }

  /** Kills every process in it, until none is left. */
  async killAll(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const pids = await this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async remove(): Promise<void> {
    await this.killAll();
    for (const dir of this.dirs) {
      for (let i = 0; i < 50; i++) {
        try {
          await Deno.remove(dir);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
}

/** Reads a stream to its end, keeping at most `cap` bytes. */
async function capped(stream: ReadableStream<Uint8Array>, cap: number): Promise<{ text: string; truncated: boolean }> {
  const kept: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of stream) {
    if (size >= cap) {
      truncated = true;
      continue;
    }
    const room = cap - size;
    kept.push(chunk.byteLength > room ? chunk.subarray(0, room) : chunk);
    if (chunk.byteLength > room) truncated = true;
    size += Math.min(chunk.byteLength, room);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of kept) {
    all.set(c, at);
    at += c.byteLength;
  }
  return { text: new TextDecoder().decode(all), truncated };
}

/** The files under `dir` (relative paths), depth first. */
async function walk(dir: string, prefix = ""): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) found.push(...await walk(`${dir}/${entry.name}`, rel));
    else if (entry.isFile) found.push(rel);
  }
  return found;
}

function arch(): SeccompArch {
  if (Deno.build.arch === "x86_64") return "x86_64";
  if (Deno.build.arch === "aarch64") return "aarch64";
  throw new SandboxError("sandbox_unavailable", `no seccomp filter for ${Deno.build.arch}`);
}

/**
 * Runs `req` in a fresh sandbox with `limits`, without the self-test: runCode (below) is the
 * entry point; this is what the self-test's probes run through.
 */
export async function runUnchecked(req: SandboxRequest, limits: SandboxLimits = DEFAULT_LIMITS): Promise<SandboxResult> {
  if (req.runtime !== "javascript" && req.runtime !== "python") throw new SandboxError("sandbox_invalid_request", "runtime is javascript or python");
  const main = req.runtime === "python" ? "main.py" : "main.ts";
  for (const path of Object.keys(req.files ?? {})) {
    if (!FILE_PATH.test(path) || path === "out" || path.startsWith("out/") || path === main) {
      throw new SandboxError("sandbox_invalid_request", `an input file's path is relative, without .. (and neither ${main} nor under out/): ${path.slice(0, 80)}`);
    }
  }
  const started = performance.now();
  const scratch = await Deno.makeTempDir({ prefix: "gatehouse-sandbox-" });
  let cgroup: Cgroup | null = null;
  try {
    const work = `${scratch}/work`;
    await Deno.mkdir(`${work}/out`, { recursive: true });
    await Deno.writeTextFile(`${work}/${main}`, req.code);
    for (const [path, content] of Object.entries(req.files ?? {})) {
      await Deno.mkdir(`${work}/${path}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${work}/${path}`, content);
    }
    await Deno.writeFile(`${scratch}/seccomp.bpf`, seccompFilter(arch()));
    cgroup = await Cgroup.make(limits);

    const runtime = req.runtime === "python"
      ? ["/usr/bin/python3", "-I", "-B", main]
      : ["--ro-bind", Deno.execPath(), "/opt/deno", "--setenv", "DENO_DIR", "/tmp/deno", "--setenv", "NO_COLOR", "1",
        "/opt/deno", "run", "--no-prompt", "--no-remote", "--no-npm", "--no-config", "--no-lock", "--allow-read=/work", "--allow-write=/work/out", main];
    // The runtime's own binary is the only thing bound in besides /usr (read-only, like /usr).
    const [runtimeBinds, command] = req.runtime === "python" ? [[], runtime] : [runtime.slice(0, 9), runtime.slice(9)];
    const bwrap = [
      "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
      "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
      "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", work, "/work", "--chdir", "/work",
      "--uid", String(NOBODY), "--gid", String(NOBODY), "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin",
      "--seccomp", "3",
      ...runtimeBinds,
      ...command,
    ];
    // The wrapper joins the cgroup, then becomes prlimit, which becomes bubblewrap with the filter on
    // descriptor 3 (a Deno child gets no extra descriptors otherwise).
    const join = cgroup.dirs.map((_, i) => `echo $$ > "$CG${i}/cgroup.procs"`).join(" && ");
    const script = `${join} || exit 97; exec prlimit --fsize=${limits.fileMiB * 1024 * 1024} --nofile=256 --core=0 -- bwrap "$@" 3< "$FILTER"`;
    const env: Record<string, string> = { PATH: "/usr/bin:/bin", FILTER: `${scratch}/seccomp.bpf` };
    cgroup.dirs.forEach((d, i) => (env[`CG${i}`] = d));
    const child = new Deno.Command("sh", {
      args: ["-c", script, "sandbox", ...bwrap], clearEnv: true, env, stdin: "null", stdout: "piped", stderr: "piped",
    }).spawn();

    let killed: SandboxResult["killed"] = null;
    const group = cgroup;
    const deadline = setTimeout(() => {
      killed = "deadline";
      try {
        child.kill("SIGKILL");
      } catch {
        // ended already
      }
      void group.killAll();
    }, limits.seconds * 1000);
    const [stdout, stderr, status] = await Promise.all([capped(child.stdout, limits.outputBytes), capped(child.stderr, limits.outputBytes), child.status]);
    clearTimeout(deadline);
    await cgroup.killAll();
    if (!killed && await cgroup.hitMemoryLimit()) killed = "memory";

    const out: SandboxResult["out"] = [];
    let outBytes = 0;
    let outTruncated = false;
    for (const path of (await walk(`${work}/out`)).sort()) {
      const info = await Deno.lstat(`${work}/out/${path}`);
      if (!info.isFile || outBytes + info.size > limits.outBytes) {
        outTruncated = true;
        continue;
      }
      const bytes = await Deno.readFile(`${work}/out/${path}`);
      outBytes += bytes.byteLength;
      out.push({ path, bytes: bytes.byteLength, base64: btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join("")) });
    }
    return {
      exitCode: killed ? null : status.code,
      killed,
      ms: Math.round(performance.now() - started),
      stdout: stdout.text,
      stderr: stderr.text,
      truncated: { stdout: stdout.truncated, stderr: stderr.truncated, out: outTruncated },
      out,
    };
  } finally {
    await cgroup?.remove();
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}
