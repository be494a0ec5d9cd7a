/**
 * The code sandbox (functions/_shared/sandbox; issue 27), run in Deno as the worker runs it: each
 * layer's promise, probed from inside. Each test fails when its layer is removed:
 *   - no socket to 127.0.0.1 (a listener of the test's own, which sees nothing), to the database's
 *     port, to a public address, or over IPv6; no DNS             (network namespace, seccomp)
 *   - no read of the repository, /etc/shadow, another sandbox's scratch, the parent's environment
 *                                                                  (mount namespace, --clearenv)
 *   - a fork bomb contained, a memory hog killed                   (the cgroup)
 *   - an endless loop killed at its budget                         (the deadline, from outside)
 *   - output capped; the scratch gone afterwards; two at once isolated
 *   - JavaScript under Deno's own permissions (the second layer)
 * And the self-test passes on this machine (npm test runs as root, as CI does).
 *
 * Run with the other Deno tests: npm test, or node_modules/.bin/deno test --allow-all tests/deno/ (as root: bubblewrap and cgroups).
 */
import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../functions/_shared/sandbox/backend.ts";
import { runUnchecked } from "../../functions/_shared/sandbox/run.ts";
import { runCode, selfTest } from "../../functions/_shared/sandbox/selftest.ts";

const py = (code: string, limits = {}) => runUnchecked({ runtime: "python", code }, { ...DEFAULT_LIMITS, ...limits });

Deno.test("the self-test finds every layer in force", async () => {
  const result = await selfTest();
  assert.deepEqual(result.layers.filter((l) => !l.ok), [], JSON.stringify(result.layers));
  assert.equal(result.ok, true);
});

Deno.test("no socket reaches 127.0.0.1, the database's port, a public address or IPv6, and there is no DNS", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let reached = false;
  const accepting = (async () => {
    for await (const conn of listener) {
      reached = true;
      conn.close();
    }
  })();
  const port = (listener.addr as Deno.NetAddr).port;
  const result = await py(`
import socket
for host, port, fam in (("127.0.0.1", ${port}, socket.AF_INET), ("127.0.0.1", 54322, socket.AF_INET), ("1.1.1.1", 443, socket.AF_INET), ("::1", ${port}, socket.AF_INET6)):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2); s.connect((host, port)); print("connected", host, port)
    except OSError as e:
        print("refused", host, port, e.errno)
try:
    print("resolved", socket.getaddrinfo("example.com", 443))
except OSError as e:
    print("no dns", e.errno)
`);
  listener.close();
  await accepting.catch(() => {});
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(reached, false, "the test's listener saw a connection");
  assert.doesNotMatch(result.stdout, /connected|resolved/);
  assert.equal(result.stdout.match(/^refused .* 1$/gm)?.length, 4, result.stdout);  // EPERM: seccomp refuses the socket itself
  assert.match(result.stdout, /^no dns/m);
});

Deno.test("it reads no repository file, no /etc/shadow, and none of the parent's environment", async () => {
  Deno.env.set("GATEHOUSE_SANDBOX_PROBE", "the-parent-secret");
  const repo = Deno.cwd();
  const result = await py(`
import os
for path in (${JSON.stringify(`${repo}/package.json`)}, "/etc/shadow", "/etc/passwd", "/root"):
    try:
        open(path).read(); print("read", path)
    except OSError as e:
        print("refused", path)
print("env", sorted(os.environ))
print("probe" if "GATEHOUSE_SANDBOX_PROBE" in os.environ else "clean")
`);
  assert.equal(result.exitCode, 0, result.stderr);
  assert.doesNotMatch(result.stdout, /^read /m);
  assert.match(result.stdout, /^clean$/m);
  assert.doesNotMatch(result.stdout, /the-parent-secret/);
});

Deno.test("two sandboxes at once see neither each other's files nor processes", async () => {
  const before = new Set(await scratchDirs());
  // A writes a secret and waits; B looks for A's scratch, by every path it could have.
  const a = py(`
import time
open("/work/secret.txt", "w").write("sandbox A's secret")
time.sleep(1.5)
print(open("/work/secret.txt").read())
`);
  await new Promise((r) => setTimeout(r, 500));
  const others = (await scratchDirs()).filter((d) => !before.has(d));
  assert.ok(others.length >= 1, "A's scratch exists on the host while it runs");
  const b = await py(`
import os
paths = ${JSON.stringify(others.flatMap((d) => [`${d}/work/secret.txt`, `${d}/secret.txt`]))} + ["/work/secret.txt"]
for p in paths:
    try:
        print("read", p, open(p).read())
    except OSError:
        print("refused", p)
print("pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
`);
  const first = await a;
  assert.equal(first.stdout.trim(), "sandbox A's secret");
  assert.doesNotMatch(b.stdout, /^read /m, b.stdout);
  assert.match(b.stdout, /^pids \[1, 2\]$/m, "B sees only its own init and itself");
});

Deno.test("a fork bomb is contained by the process limit", async () => {
  const result = await py(`
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(3); os._exit(0)
        n += 1
except OSError as e:
    print("stopped after", n, "errno", e.errno)
`, { processes: 32, seconds: 8 });
  const forks = Number(/stopped after (\d+)/.exec(result.stdout)?.[1] ?? NaN);
  assert.ok(forks < 32, `${result.stdout} ${result.stderr}`);
});

Deno.test("a memory hog is killed at the memory limit", async () => {
  const result = await py(`
chunks = []
while True:
    chunks.append(bytearray(16 * 1024 * 1024))
`, { memoryMiB: 64, seconds: 10 });
  assert.notEqual(result.exitCode, 0);
  assert.equal(result.killed === "deadline", false, "killed by memory, not the deadline");
});

Deno.test("an endless loop is killed at its budget, from outside", async () => {
  const result = await py("while True:\n    pass\n", { seconds: 1 });
  assert.equal(result.killed, "deadline");
  assert.equal(result.exitCode, null);
  assert.ok(result.ms < 3_000, `${result.ms} ms`);
});

Deno.test("output is capped, and out/ is returned within its cap", async () => {
  const result = await py(`
import sys
sys.stdout.write("x" * 1_000_000)
open("/work/out/small.txt", "w").write("kept")
open("/work/out/big.bin", "wb").write(b"0" * 200_000)
`, { outputBytes: 1024, outBytes: 100_000 });
  assert.equal(result.exitCode, 0, result.stderr);
  assert.equal(result.stdout.length, 1024);
  assert.equal(result.truncated.stdout, true);
  assert.deepEqual(result.out.map((f) => f.path), ["small.txt"]);
  assert.equal(atob(result.out[0].base64), "kept");
  assert.equal(result.truncated.out, true);
});

Deno.test("a file larger than the file-size limit is cut off", async () => {
  const result = await py(`
try:
    open("/work/big", "wb").write(b"0" * (4 * 1024 * 1024)); print("written")
except OSError as e:
    print("refused", e.errno)
`, { fileMiB: 1 });
  assert.doesNotMatch(result.stdout, /written/);
});

Deno.test("the scratch directory is gone afterwards, even when the run was killed", async () => {
  const before = new Set(await scratchDirs());
  await py("open('/work/left.txt', 'w').write('x')\nwhile True:\n    pass\n", { seconds: 1 });
  const after = (await scratchDirs()).filter((d) => !before.has(d));
  assert.deepEqual(after, []);
});

Deno.test("JavaScript runs in Deno with no permission but its scratch", async () => {
  const result = await runCode({
    runtime: "javascript",
    code: `
console.log("sum", [1, 2, 3].reduce((a, b) => a + b));
await Deno.writeTextFile("/work/out/answer.json", JSON.stringify({ ok: true }));
for (const probe of [() => Deno.readTextFile("/usr/bin/env"), () => Deno.env.get("HOME"), () => fetch("http://127.0.0.1:8080/")]) {
  try { await probe(); console.log("allowed"); } catch (e) { console.log("refused", (e as Error).name); }
}`,
  });
  assert.equal(result.exitCode, 0, result.stderr);
  assert.match(result.stdout, /^sum 6$/m);
  assert.equal(result.stdout.match(/^refused NotCapable$/gm)?.length, 3, result.stdout);
  assert.deepEqual(JSON.parse(atob(result.out[0].base64)), { ok: true });
});

/** The sandboxes' scratch directories on the host now. */
async function scratchDirs(): Promise<string[]> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const found: string[] = [];
  for await (const e of Deno.readDir(tmp)) if (e.isDirectory && e.name.startsWith("gatehouse-sandbox-")) found.push(`${tmp}/${e.name}`);
  return found;
}

Deno.test("input files land under /work and can't replace the code or escape", async () => {
  const result = await runUnchecked({ runtime: "python", code: "print(open('/work/data/in.csv').read())", files: { "data/in.csv": "a,b\n1,2" } });
  assert.equal(result.stdout.trim(), "a,b\n1,2");
  for (const path of ["../escape.txt", "/etc/passwd", "main.py", "out/x", "a/../../b"]) {
    await assert.rejects(runUnchecked({ runtime: "python", code: "pass", files: { [path]: "x" } }), /input file's path/);
  }
});
