/**
 * npm test: everything, against a throwaway stack on free ports (never the npm start data).
 *   0. the packages scripts/setup.sh installs, checked first (and installed where npm test may)
 *   1. typecheck (Node and Deno), the web build, and the supply-chain checks (scripts/supply_chain.ts:
 *      npm audit, npm audit signatures, the secret scan of the repository and web/dist, the SBOM; an
 *      audit the registry can't answer is reported unavailable, and fails only with
 *      GATEHOUSE_SUPPLY_CHAIN_STRICT=1, as the GitHub workflow sets)
 *   2. start a fresh stack in a temporary folder (migrations + seed through the Supabase CLI)
 *   3. supabase db advisors --type all --level info (target: zero findings outside the job engine's own schema), the
 *      bundle lint (scripts/bundle_lint.ts: no service-role key, secret or client pattern in web/dist), and the
 *      committed supabase/database.types.ts and docs/api.md's RPC reference must be what `npm run types`
 *      generates
 *   4. vitest: unit and integration tests, which reach the stack over HTTP and SQL; the connector
 *      and model gateway tests run local provider and model-vendor servers on loopback ports that
 *      only this throwaway stack's edge functions may reach (testProviders below), over TLS with a
 *      CA made for this run; then the fuzz suite (tests/fuzz) alone
 *   5. pgTAP suites in supabase/tests/database through pg_prove
 *   6. Deno tests (tests/deno/*.test.mts): code that must run in the functions' runtime, such as
 *      the egress guard's sockets, against local servers they start
 * Ends with one line `total: N passed, M failed`, and exits non-zero if anything failed.
 *
 * Arguments after `--` are passed to vitest (e.g. `npm test -- tests/integration/vault.test.ts`).
 */
import { spawn, spawnSync } from "node:child_process";
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { buildWeb } from "./build_web.ts";
import { lintBundle } from "./bundle_lint.ts";
import { StackError } from "./stack/errors.ts";
import { startOnFreePorts, type Stack } from "./stack/index.ts";
import { supplyChain } from "./supply_chain.ts";
import { loadClaims, missingChecks, writePosture } from "./posture.ts";
import { freePort } from "./stack/ports.ts";
import { typecheck } from "./typecheck.ts";
import { typesAreCurrent } from "./types.ts";
import { COSIGNATURE_V1, verifierKeyText } from "../functions/_shared/audit/note.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** This run's results, which npm run posture reads (the posture page is made from them). */
const RESULTS = join(root, ".artifacts", "test-results");

interface StepResult {
  step: string;
  passed: number;
  failed: number;
}

function runLive(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; output: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const tee = (stream: NodeJS.WriteStream) => (b: Buffer) => {
      output += b.toString();
      stream.write(b);
    };
    child.stdout.on("data", tee(process.stdout));
    child.stderr.on("data", tee(process.stderr));
    child.on("close", (code) => resolvePromise({ code: code ?? 1, output }));
  });
}

/**
 * The job engine's own schema: graphile-worker's tables and functions, which it installs and
 * migrates itself (RLS on with no policies, functions without a fixed search_path). No API role
 * may use the schema (supabase/tests/database/091-run-worker.test.sql), so the advisors' findings
 * there are listed but are not ours to fix; any finding anywhere else fails.
 */
const THIRD_PARTY_SCHEMAS = new Set(["graphile_worker"]);

async function advisors(dbUrl: string): Promise<StepResult> {
  console.log("\n== supabase db advisors");
  const { code, output } = await runLive(
    process.execPath,
    [join(root, "node_modules/supabase/dist/supabase.js"), "db", "advisors", `--remote=${dbUrl}`, "--type", "all", "--level", "info"],
    { ...process.env, PGSSLMODE: "disable", SUPABASE_TELEMETRY_DISABLED: "1", DO_NOT_TRACK: "1" },
  );
  if (code !== 0) return { step: "advisors", passed: 0, failed: 1 };
  if (/No issues found/.test(output)) return { step: "advisors", passed: 1, failed: 0 };
  let findings: { name: string; detail: string; metadata?: { schema?: string } }[];
  try {
    findings = JSON.parse(output.slice(output.indexOf("[")));
  } catch {
    return { step: "advisors", passed: 0, failed: 1 };
  }
  const ours = findings.filter((f) => !THIRD_PARTY_SCHEMAS.has(f.metadata?.schema ?? ""));
  console.log(`advisors: ${findings.length - ours.length} finding(s) in the job engine's own schema (not exposed; listed above), ${ours.length} in ours`);
  return { step: "advisors", passed: ours.length === 0 ? 1 : 0, failed: ours.length === 0 ? 0 : 1 };
}

/**
 * The settings of the local servers the tests run: the connector providers
 * (tests/helpers/providers.ts) on `port` (and `consoleProviderPort` for the console's), and the model vendors (tests/helpers/models.ts) on
 * `modelPort`, with the platform keys the functions send them.
 */
export interface TestProviders {
  port: number;
  modelPort: number;
  /** Model vendors for the widget tests and the embed's browser tests (an organization's own endpoint), so that no two files share one. */
  widgetModelPort: number;
  embedModelPort: number;
  /** Connector providers for the console's browser tests, so that they don't share the connector tests' server. */
  consoleProviderPort: number;
  /** Connector providers for the MCP endpoint's tests, so that they share no server either. */
  mcpProviderPort: number;
  platformKeys: { openai: string; anthropic: string };
  /** The DNS server of the domain verifier's tests (dns2, UDP and TCP on loopback), the only resolver the functions ask. */
  dnsPort: number;
  /** The Stripe API fake of the billing tests (tests/helpers/stripe_fake.ts), and the secret key the functions send it. */
  stripePort: number;
  stripeSecretKey: string;
  /** The Stripe webhook's signing secrets, the current one first and the previous one (a rotation's overlap). */
  stripeWebhookSecrets: [string, string];
  /** A transparency-log witness (tests/helpers/witness.ts) on a port of its own: its name, Ed25519 seed and verifier key. */
  witnessPort: number;
  witness: { name: string; seed: string; vkey: string };
  /** A secret scanner's signing key (ECDSA P-256), as GitHub's partner program signs leak reports: the tokens function trusts its public half. */
  leakReporter: { keyId: string; privateKey: string; publicKey: string };
  ca: string;
  cert: string;
  key: string;
}

/**
 * A port and a TLS certificate for 127.0.0.1, signed by a CA made for this run with openssl (no
 * private key lives in the repository; the CA's key is deleted once the leaf is signed).
 */
async function testProviders(dir: string): Promise<TestProviders> {
  const openssl = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    if (r.status !== 0) throw new StackError(`openssl ${args[0]} failed (run npm run setup): ${r.stderr?.toString() ?? r.error?.message}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    "-subj", "/CN=Gatehouse test providers CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
  openssl("req", ...ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1");
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
  openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf");
  rmSync(join(dir, "ca.key"));
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  const platformKey = (vendor: string) => `sk-test-platform-${vendor}-${randomBytes(12).toString("hex")}`;
  return {
    port: await freePort(),
    modelPort: await freePort(),
    widgetModelPort: await freePort(),
    embedModelPort: await freePort(),
    consoleProviderPort: await freePort(),
    mcpProviderPort: await freePort(),
    dnsPort: await freePort(),
    platformKeys: { openai: platformKey("openai"), anthropic: platformKey("anthropic") },
    stripePort: await freePort(),
    stripeSecretKey: `sk_test_${randomBytes(24).toString("hex")}`,
    stripeWebhookSecrets: [`whsec_test${randomBytes(24).toString("hex")}`, `whsec_test${randomBytes(24).toString("hex")}`],
    leakReporter: leakReporterKey(),
    witnessPort: await freePort(),
    witness: witnessKey(),
    ca: read("ca.pem"),
    cert: read("leaf.pem"),
    key: read("leaf.key"),
  };
}

/** A local secret scanner's key pair (made for this run; never in the repository). */
function leakReporterKey(): TestProviders["leakReporter"] {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    keyId: randomBytes(32).toString("hex"),
    privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKey: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

/** A local witness's Ed25519 key (made for this run), and its cosignature/v1 verifier key. */
function witnessKey(): TestProviders["witness"] {
  const name = "witness.test/w1";
  const seed = randomBytes(32);
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const publicKey = (createPublicKey(privateKey).export({ format: "der", type: "spki" }) as Buffer).subarray(-32);
  return { name, seed: seed.toString("base64"), vkey: verifierKeyText({ name, type: COSIGNATURE_V1, publicKey }) };
}

/** The edge functions' environment that lets them reach the local provider and model servers, and only those. */
function providersEnv(p: TestProviders): Record<string, string> {
  const base = `https://127.0.0.1:${p.port}`;
  const models = `https://127.0.0.1:${p.modelPort}`;
  return {
    GATEHOUSE_EGRESS_TEST_ALLOWANCE: JSON.stringify({
      endpoints: [p.port, p.modelPort, p.widgetModelPort, p.embedModelPort, p.consoleProviderPort, p.mcpProviderPort, p.stripePort, p.witnessPort]
        .map((port) => `127.0.0.1:${port}`),
      caCerts: [p.ca],
    }),
    OPENAI_API_KEY: p.platformKeys.openai,
    OPENAI_BASE_URL: `${models}/openai/v1`,
    ANTHROPIC_API_KEY: p.platformKeys.anthropic,
    ANTHROPIC_BASE_URL: `${models}/anthropic`,
    // Short, so that the test of an upstream that never answers ends quickly.
    GATEHOUSE_MODEL_TIMEOUT_MS: "3000",
    // Short, so that a workspace purge a test's worker held when it was killed is taken up at once.
    GATEHOUSE_PURGE_LEASE_SECONDS: "3",
    GATEHOUSE_DNS_SERVERS: `127.0.0.1:${p.dnsPort}`,
    GATEHOUSE_DNS_TIMEOUT_MS: "1000",
    STRIPE_WEBHOOK_SECRETS: p.stripeWebhookSecrets.join(","),
    STRIPE_SECRET_KEY: p.stripeSecretKey,
    STRIPE_API_BASE: `https://127.0.0.1:${p.stripePort}`,
    GATEHOUSE_AUDIT_WITNESSES: JSON.stringify([{ url: `https://127.0.0.1:${p.witnessPort}`, vkey: p.witness.vkey }]),
    // GitHub's /meta/public_keys/secret_scanning shape, with the local scanner's key.
    GATEHOUSE_LEAK_REPORT_KEYS: JSON.stringify({ public_keys: [{ key_identifier: p.leakReporter.keyId, key: p.leakReporter.publicKey, is_current: true }] }),
    GATEHOUSE_PROVIDER_URLS: JSON.stringify({
      slack_webhook: `${base}/slack/services/`,
      discord_webhook: `${base}/discord/api/webhooks/`,
      github: `${base}/github`,
      notion: `${base}/notion`,
    }),
  };
}

/**
 * The vitest suites: everything but tests/runs and tests/fuzz first, then the runs suite alone (its
 * workers take every queued run of the stack), then the fuzz suite alone (it fingerprints the
 * whole database around each request, so nothing else may write meanwhile). Arguments after
 * `--` replace both with one run of exactly what they name.
 */
async function vitest(stackFile: string, extra: string[]): Promise<StepResult> {
  console.log("\n== vitest");
  const runs = extra.length > 0 ? [extra] : [["--exclude", "tests/fuzz/**", "--exclude", "tests/runs/**"], ["tests/runs/"], ["tests/fuzz/"]];
  const total: StepResult = { step: "vitest", passed: 0, failed: 0 };
  for (const [i, args] of runs.entries()) {
    const report = join(RESULTS, `vitest-${i}.json`);
    const { code } = await runLive(
      process.execPath,
      [join(root, "node_modules/vitest/vitest.mjs"), "run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...args],
      { ...process.env, GATEHOUSE_STACK_FILE: stackFile, GATEHOUSE_TEST_PROVIDERS_FILE: join(dirname(stackFile), "providers.json") },
    );
    try {
      const r = JSON.parse(readFileSync(report, "utf8")) as { numPassedTests: number; numFailedTests: number };
      total.passed += r.numPassedTests;
      total.failed += r.numFailedTests + (code !== 0 && r.numFailedTests === 0 ? 1 : 0);
    } catch {
      total.failed += 1;
    }
  }
  return total;
}

async function pgTap(stack: Stack): Promise<StepResult> {
  console.log("\n== pgTAP (pg_prove)");
  const sql = postgres(stack.info.dbUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`create extension if not exists pgtap with schema extensions`;
    await sql`create extension if not exists plpgsql_check with schema extensions`;
  } catch (e) {
    console.error(`cannot install pgtap/plpgsql_check (run npm run setup): ${(e as Error).message}`);
    return { step: "pgtap", passed: 0, failed: 1 };
  } finally {
    await sql.end();
  }
  const dir = join(root, "supabase/tests/database");
  const files = readdirSync(dir).filter((f) => f.endsWith(".test.sql")).sort().map((f) => join(dir, f));
  if (files.length === 0) return { step: "pgtap", passed: 0, failed: 1 };
  const url = new URL(stack.info.dbUrl);
  const probe = spawnSync("pg_prove", ["--version"]);
  if (probe.error) {
    console.error("pg_prove not found: run npm run setup");
    return { step: "pgtap", passed: 0, failed: 1 };
  }
  const { code, output } = await runLive(
    "pg_prove",
    ["--host", url.hostname, "--port", url.port, "--username", "postgres", "--dbname", "postgres", "--failures", ...files],
    { ...process.env, PGPASSWORD: decodeURIComponent(url.password), PGSSLMODE: "disable" },
  );
  writeFileSync(join(RESULTS, "pgtap.txt"), output);
  const tests = Number(/Tests=(\d+)/.exec(output)?.[1] ?? 0);
  const failedLine = /Failed (\d+)\/(\d+) subtests/g;
  let failed = 0;
  for (const m of output.matchAll(failedLine)) failed += Number(m[1]);
  if (code !== 0 && failed === 0) failed = 1;
  return { step: "pgtap", passed: tests - failed, failed };
}

async function denoTests(): Promise<StepResult> {
  console.log("\n== deno test");
  const { code, output } = await runLive(
    join(root, "node_modules/.bin/deno"),
    // --allow-all: the sandbox's tests manage cgroups under /sys, which Deno opens to no narrower permission.
    ["test", "--allow-all", "tests/deno/"],
    { ...process.env, NO_COLOR: "1" },
  );
  writeFileSync(join(RESULTS, "deno.txt"), output);
  const summary = /^(?:ok|FAILED) \| (\d+) passed.*?\| (\d+) failed/m.exec(output);
  if (!summary) return { step: "deno", passed: 0, failed: 1 };
  const failed = Number(summary[2]) + (code !== 0 && summary[2] === "0" ? 1 : 0);
  return { step: "deno", passed: Number(summary[1]), failed };
}

/**
 * What the suites need beyond npm (pgTAP, pg_prove, plpgsql_check, pg_cron, Chromium, openssl:
 * scripts/setup.sh): checked before anything else. Where something is missing, npm test runs the
 * idempotent setup itself when it may (root, or passwordless sudo, with apt-get), and otherwise
 * stops at once with the one command to run, never halfway with a missing binary.
 */
function ensureSetup(): boolean {
  const check = spawnSync("bash", [join(root, "scripts/setup.sh"), "--check"], { encoding: "utf8" });
  if (check.status === 0) return true;
  console.log(check.stdout.trim() || "setup: something the tests need is missing");
  const root_ = process.getuid?.() === 0;
  const sudo = !root_ && spawnSync("sudo", ["-n", "true"]).status === 0;
  const apt = spawnSync("bash", ["-c", "command -v apt-get"]).status === 0;
  if (!(root_ || sudo) || !apt) {
    console.error("npm test needs the packages above: run `npm run setup` (Debian or Ubuntu, as root or with sudo), then npm test again");
    return false;
  }
  console.log("== setup (npm run setup: the packages above)");
  const setup = spawnSync("bash", [join(root, "scripts/setup.sh")], { stdio: "inherit" });
  if (setup.status !== 0) console.error("npm run setup failed (see above); npm test stops here");
  return setup.status === 0;
}

async function main(): Promise<number> {
  const extra = process.argv.slice(2);
  const results: StepResult[] = [];
  if (!ensureSetup()) return 1;
  rmSync(RESULTS, { recursive: true, force: true });
  mkdirSync(RESULTS, { recursive: true });
  console.log("== typecheck");
  const typesOk = typecheck();
  results.push({ step: "typecheck", passed: typesOk ? 1 : 0, failed: typesOk ? 0 : 1 });

  console.log("\n== building the web app and the widget embed");
  const web = buildWeb(root);
  results.push({ step: "web build", passed: web ? 1 : 0, failed: web ? 0 : 1 });

  console.log("\n== supply chain (npm run supply-chain)");
  const chain = await supplyChain({ strict: process.env.GATEHOUSE_SUPPLY_CHAIN_STRICT === "1" });
  for (const c of chain.checks) console.log(`  ${c.check.padEnd(22)} ${c.status.toUpperCase().padEnd(12)} ${c.detail}`);
  results.push({ step: "supply chain", passed: chain.ok ? 1 : 0, failed: chain.ok ? 0 : 1 });

  console.log("\n== starting a throwaway stack");
  const stateDir = mkdtempSync(join(tmpdir(), "gatehouse-test-"));
  let stack: Stack | null = null;
  const cleanup = async () => {
    await stack?.stop().catch(() => {});
    rmSync(stateDir, { recursive: true, force: true });
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const started = Date.now();
    const providers = await testProviders(stateDir);
    writeFileSync(join(stateDir, "providers.json"), JSON.stringify(providers), { mode: 0o600 });
    stack = await startOnFreePorts({ root, stateDir, log: (l) => console.log(l), functionsEnv: providersEnv(providers), modelStandIn: false, worker: false });
    console.log(`stack up in ${((Date.now() - started) / 1000).toFixed(1)} s at ${stack.info.apiUrl}`);
    results.push(await advisors(stack.info.dbUrl));
    console.log("\n== bundle lint");
    const findings = lintBundle(join(root, "web", "dist"), { "service-role key": stack.info.serviceRoleKey, "JWT secret": stack.info.jwtSecret });
    for (const f of findings) console.error(`bundle lint: ${f.file}: ${f.what}`);
    console.log(findings.length === 0 ? "web/dist holds no service-role key, secret or client pattern" : `${findings.length} finding(s)`);
    results.push({ step: "bundle lint", passed: findings.length === 0 ? 1 : 0, failed: findings.length === 0 ? 0 : 1 });
    console.log("\n== generated types (npm run types)");
    const current = await typesAreCurrent(stack.info.dbUrl);
    console.log(current ? "supabase/database.types.ts and docs/api.md's RPC reference are current" : "generated files are stale");
    results.push({ step: "types", passed: current ? 1 : 0, failed: current ? 0 : 1 });
    results.push(await vitest(join(stateDir, "stack.json"), extra));
    results.push(await pgTap(stack));
    results.push(await denoTests());
  } catch (e) {
    console.error(e instanceof StackError ? `gatehouse: ${e.message}` : e);
    results.push({ step: "stack", passed: 0, failed: 1 });
  } finally {
    await cleanup();
  }

  console.log("\n== posture (npm run posture: posture/claims.json against this run's results)");
  const missing = missingChecks(loadClaims());
  for (const m of missing) console.error(`posture: ${m}`);
  const page = writePosture(root, { markdown: join(root, ".artifacts", "posture.md"), html: join(root, ".artifacts", "security.html") });
  console.log(`${page.inPlace.length} claims in place, ${page.gaps.length} with a check that did not pass; .artifacts/posture.md`);
  results.push({ step: "posture", passed: missing.length === 0 ? 1 : 0, failed: missing.length === 0 ? 0 : 1 });

  console.log("\n== summary");
  for (const r of results) console.log(`  ${r.step.padEnd(12)} ${r.passed} passed, ${r.failed} failed`);
  const passed = results.reduce((n, r) => n + r.passed, 0);
  const failed = results.reduce((n, r) => n + r.failed, 0);
  console.log(`total: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

main().then((code) => process.exit(code));
