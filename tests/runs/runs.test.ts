/**
 * Agent runs end to end through the run worker (functions/_worker/main.ts) on the job engine:
 * model → tool → model, approvals that pause a run and the decisions that resume it, the limits
 * that end one, a forged tenant in a job's payload, and a worker killed in the middle of a step.
 *
 * npm test runs this folder alone, after the other suites: its workers take every queued run of
 * the stack, so no other file's run may be queued meanwhile. Its vendor fake answers on the model
 * port and its provider fake on the connectors' port (both free by then), over TLS with the run's
 * CA. The workers here are the real worker process, with a 3-second lease and a 1-second sweep so
 * that a killed worker's step is taken over quickly.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ManagedChild } from "../../scripts/stack/processes.ts";
import { stopChild } from "../../scripts/stack/processes.ts";
import { startWorker } from "../../scripts/stack/worker.ts";
import { ACME, ACME_AGENT, ACME_PROJECT } from "../helpers/fixtures.ts";
import { type ModelVendors, startModelVendors } from "../helpers/models.ts";
import { type FakeProviders, startProviders } from "../helpers/providers.ts";
import { createRunOrg, type RunOrg } from "../helpers/run_org.ts";
import { stack } from "../helpers/stack.ts";

let sql: postgres.Sql;
let vendors: ModelVendors;
let providers: FakeProviders;
let org: RunOrg;
let worker: ManagedChild;
const logDir = mkdtempSync(join(tmpdir(), "gatehouse-runs-"));
const vendorKey = `sk-runs-${Date.now()}`;

async function newWorker(name: string): Promise<ManagedChild> {
  return await startWorker({
    root: process.cwd(),
    name,
    env: { ...stack().workerEnv, GATEHOUSE_RUN_LEASE_SECONDS: "3", GATEHOUSE_RUN_SWEEP_SECONDS: "1" },
    logFile: join(logDir, `${name}.log`),
  });
}

interface RunRow {
  status: string;
  end_code: string | null;
  result: { output?: string } | null;
  steps: number;
}

/** Polls the run until its status is one of `statuses` (20 s at most). */
async function until(runId: string, statuses: string[], timeoutMs = 20_000): Promise<RunRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [run] = await sql`select status, end_code, result, steps from public.agent_runs where id = ${runId}`;
    if (run && statuses.includes(run.status)) return run as unknown as RunRow;
    if (Date.now() > deadline) throw new Error(`run ${runId} is ${run?.status} (${run?.end_code}), not ${statuses.join("|")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function transcript(runId: string): Promise<{ role: string; content: Record<string, unknown> }[]> {
  return await sql`select role, content from public.agent_run_messages where run_id = ${runId} order by seq` as never;
}

/** What reached the tool's webhook. */
const deliveries = () => providers.requests.filter((r) => r.path === org.hookPath);

beforeAll(async () => {
  sql = postgres(stack().dbUrl, { max: 4, onnotice: () => {} });
  vendors = await startModelVendors("gateway");
  vendors.keys.add(vendorKey);
  providers = await startProviders();
  org = await createRunOrg(sql, {
    name: "Runs", vendorBaseUrl: vendors.openaiBaseUrl, vendorKey, providerBase: providers.base, slackHooks: providers.slackHooks,
  });
  worker = await newWorker("worker-1");
}, 90_000);

afterAll(async () => {
  if (worker) await stopChild(worker);
  await vendors?.close();
  await providers?.close();
  await sql?.end();
  rmSync(logDir, { recursive: true, force: true });
});

describe("a run through the worker", () => {
  it("runs model → allowed tool → model, each step through the controls, and ends with the model's answer", async () => {
    await org.allowTool();
    const before = deliveries().length;
    const runId = await org.start('use notify with {"text": "Order 1042 shipped", "channel": "#ops"}');
    const run = await until(runId, ["succeeded", "failed", "budget_exhausted"]);
    expect(run).toMatchObject({ status: "succeeded", steps: 2 });
    expect(run.result?.output).toContain("The tool answered");

    // The transcript: instructions, input, the tool call, its result, the answer.
    const messages = await transcript(runId);
    expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "assistant"]);
    const call = (messages[2].content.tool_calls as { id: string; function: { name: string; arguments: string } }[])[0];
    expect(call.function.name).toBe("notify");
    expect(messages[3].content).toMatchObject({ tool_call_id: call.id });
    expect(JSON.parse(messages[3].content.content as string)).toMatchObject({ delivered: true });

    // The provider got the approved canonical bytes, once.
    expect(deliveries().length - before).toBe(1);
    expect(deliveries().at(-1)!.body).toBe('{"channel":"#ops","text":"Order 1042 shipped"}');

    // The action went through the approval gate (allowed by policy, executed once, delivered).
    const actions = await sql`select status, outcome, requested_via from public.action_requests where run_id = ${runId}`;
    expect(actions).toEqual([{ status: "executed", outcome: "delivered", requested_via: "agent_runtime" }]);
    // Both model calls were metered to the run's organization, through the run's token.
    const calls = await sql`select org_id, outcome from public.model_calls where run_id = ${runId}`;
    expect(calls).toHaveLength(2);
    expect(calls.every((c) => c.org_id === org.org && c.outcome === "succeeded")).toBe(true);
    // Telemetry: a model turn per step and the tool call, as {tool_name, ms, code, iter} only.
    const events = await sql`select meta from public.agent_run_events where run_id = ${runId} order by created_at`;
    expect(events.map((e) => [e.meta.tool_name, e.meta.code, e.meta.iter])).toEqual([[null, null, 1], ["notify", "delivered", 1], [null, null, 2]]);
    // The audit chain has the start and the moves, never the input or the result.
    const audit = await sql`select action, payload from audit.records where org_id = ${org.org} and target_id = ${runId} order by id`;
    expect(audit.map((a) => a.action)).toEqual(["agent_run.insert", "agent_run.update", "agent_run.update"]);
    expect(JSON.stringify(audit.map((a) => a.payload))).not.toContain("Order 1042");
  });

  it("pauses for an approval, keeps its state in the database, and resumes once the decision commits", async () => {
    await sql`delete from public.approval_policies where org_id = ${org.org}`;
    const before = deliveries().length;
    const runId = await org.start('use notify with {"text": "Refund 42 EUR"}');
    await until(runId, ["waiting_approval"]);
    const [request] = await sql`select id, approval_sha256, status from public.action_requests where run_id = ${runId}`;
    expect(request.status).toBe("pending");
    expect(deliveries().length).toBe(before);
    // Nothing is held in a process: the run's open step waits for this request, leased to nobody.
    const [open] = await sql`select waiting_for, lease_until <= now() as released from private.run_steps where run_id = ${runId} and finished_at is null`;
    expect(open).toEqual({ waiting_for: request.id, released: true });

    await org.asAdmin((tx) => tx`select public.decide_action(${request.id}, ${request.approval_sha256}, true)`);
    const run = await until(runId, ["succeeded", "failed"]);
    expect(run.status).toBe("succeeded");
    expect(deliveries().length - before).toBe(1);
    const [after] = await sql`select status, outcome from public.action_requests where id = ${request.id}`;
    expect(after).toEqual({ status: "executed", outcome: "delivered" });
  });

  it("tells the model about a rejection as the tool's result, and sends nothing", async () => {
    const before = deliveries().length;
    const runId = await org.start('use notify with {"text": "Delete everything"}');
    await until(runId, ["waiting_approval"]);
    const [request] = await sql`select id, approval_sha256 from public.action_requests where run_id = ${runId}`;
    await org.asAdmin((tx) => tx`select public.decide_action(${request.id}, ${request.approval_sha256}, false, 'no')`);
    const run = await until(runId, ["succeeded", "failed"]);
    expect(run.status).toBe("succeeded");
    const tool = (await transcript(runId)).find((m) => m.role === "tool")!;
    expect(JSON.parse(tool.content.content as string)).toMatchObject({ error: "rejected" });
    expect(run.result?.output).toContain("rejected");
    expect(deliveries().length).toBe(before);
  });

  it("stays cancelled when a person cancels it while it waits, whatever is decided after", async () => {
    const runId = await org.start('use notify with {"text": "cancel me"}');
    await until(runId, ["waiting_approval"]);
    await org.asAdmin((tx) => tx`update public.agent_runs set status = 'cancelled' where id = ${runId}`);
    const [request] = await sql`select id, approval_sha256 from public.action_requests where run_id = ${runId}`;
    const before = deliveries().length;
    await org.asAdmin((tx) => tx`select public.decide_action(${request.id}, ${request.approval_sha256}, true)`);
    await new Promise((r) => setTimeout(r, 1500));
    const [run] = await sql`select status from public.agent_runs where id = ${runId}`;
    expect(run.status).toBe("cancelled");
    expect(deliveries().length).toBe(before);
  });

  it("ignores a tenant forged into a job's payload: the organization, project and agent come from the run row", async () => {
    await org.allowTool();
    const [version] = await sql`select id from public.agent_versions where agent_id = ${org.agent} and published_at is not null`;
    // A run without a job of its own, then a job for it that claims to be Acme's.
    const [run] = await sql`insert into public.agent_runs (org_id, project_id, agent_id, agent_version_id, status, input, deadline_at)
                            values (${org.org}, ${org.project}, ${org.agent}, ${version.id}, 'queued', ${sql.json({ prompt: "hello from nowhere" })},
                                    now() + interval '10 minutes') returning id`;
    const acmeCalls = async () => (await sql`select count(*)::int as n from public.model_calls where org_id = ${ACME}`)[0].n;
    const acmeBefore = await acmeCalls();
    await sql`select graphile_worker.add_job('run_step', ${sql.json({ run_id: run.id, org_id: ACME, project_id: ACME_PROJECT, agent_id: ACME_AGENT })}::json)`;
    const ended = await until(run.id, ["succeeded", "failed"]);
    expect(ended.status).toBe("succeeded");
    const calls = await sql`select org_id, agent_id from public.model_calls where run_id = ${run.id}`;
    expect(calls).toEqual([{ org_id: org.org, agent_id: org.agent }]);
    const messages = await sql`select distinct org_id, agent_id from public.agent_run_messages where run_id = ${run.id}`;
    expect(messages).toEqual([{ org_id: org.org, agent_id: org.agent }]);
    expect(await acmeCalls()).toBe(acmeBefore);
  });
});

describe("a schedule", () => {
  it("starts its agent's run through pg_cron, as the runtime, and the worker runs it", async () => {
    const [schedule] = await org.asAdmin((tx) => tx`
      insert into public.agent_schedules (project_id, agent_id, name, cron, input)
      values (${org.project}, ${org.agent}, 'Every minute', '* * * * *', ${tx.json({ prompt: "scheduled hello" })}) returning id`);
    try {
      // pg_cron fires at the top of the next minute.
      const deadline = Date.now() + 75_000;
      let run: { id: string; started_by: string | null } | undefined;
      while (!run) {
        [run] = await sql<{ id: string; started_by: string | null }[]>`select id, started_by from public.agent_runs where schedule_id = ${schedule.id}`;
        if (!run && Date.now() > deadline) throw new Error("pg_cron started no run within 75 s");
        if (!run) await new Promise((r) => setTimeout(r, 500));
      }
      // It counts as started by who wrote the schedule, so they don't approve what it proposes.
      expect(run.started_by).toBe(org.admin);
      const ended = await until(run.id, ["succeeded", "failed"]);
      expect(ended.result?.output).toContain("scheduled hello");
    } finally {
      await org.asAdmin((tx) => tx`delete from public.agent_schedules where id = ${schedule.id}`);
    }
  }, 100_000);
});

describe("limits end a run with their own status", () => {
  it("steps: the organization's step limit ends a run that needs more as steps_exhausted", async () => {
    await sql`insert into private.run_limits (org_id, max_concurrent_runs, max_steps, max_seconds) values (${org.org}, 100, 1, 900)
              on conflict (org_id) do update set max_steps = 1`;
    try {
      const runId = await org.start('use notify with {"text": "one step too many"}');
      const run = await until(runId, ["steps_exhausted", "succeeded", "failed"]);
      expect(run).toMatchObject({ status: "steps_exhausted", end_code: "run_step_limit", steps: 1 });
    } finally {
      await sql`delete from private.run_limits where org_id = ${org.org}`;
    }
  });

  it("budget: a run budget of zero ends the run as budget_exhausted before any model call", async () => {
    await sql`insert into public.model_caps (org_id, project_id, agent_id, run_budget_micro) values (${org.org}, ${org.project}, ${org.agent}, 0)`;
    try {
      const runId = await org.start("hello");
      const run = await until(runId, ["budget_exhausted", "succeeded", "failed"]);
      expect(run).toMatchObject({ status: "budget_exhausted", end_code: "model_budget_exhausted" });
      expect(await sql`select 1 from public.model_calls where run_id = ${runId}`).toHaveLength(0);
    } finally {
      await sql`delete from public.model_caps where org_id = ${org.org}`;
    }
  });

  it("time: a run past its deadline ends as timed_out, even while it waits", async () => {
    await sql`delete from public.approval_policies where org_id = ${org.org}`;
    const runId = await org.start('use notify with {"text": "too slow"}');
    await until(runId, ["waiting_approval"]);
    await sql`update public.agent_runs set deadline_at = now() where id = ${runId}`;
    const run = await until(runId, ["timed_out"], 5_000);
    expect(run.end_code).toBe("run_deadline_passed");
  });

  it("approval: a run whose approval expires while it waits ends as approval_expired", async () => {
    const runId = await org.start('use notify with {"text": "nobody answers"}');
    await until(runId, ["waiting_approval"]);
    await sql`update public.action_requests set expires_at = now() where run_id = ${runId}`;
    const run = await until(runId, ["approval_expired"], 5_000);
    expect(run.end_code).toBe("approval_expired");
  });
});

describe("code.run: an agent's code, approved and run in the sandbox", () => {
  let sandbox: string;
  const codeRun = (args: unknown) => `use code_run with ${JSON.stringify(args)}`;
  const toolResult = async (runId: string) => JSON.parse((await transcript(runId)).find((m) => m.role === "tool")!.content.content as string);

  beforeAll(async () => {
    // Code execution turned on as a tenant admin would: a sandbox connection, and a tool bound to it.
    const s = stack();
    const res = await fetch(`${s.functionsUrl}/connectors/connections`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.serviceRoleKey}`, "content-type": "application/json" },
      body: JSON.stringify({ org_id: org.org, provider: "sandbox", display_name: "Code sandbox", config: { backend: "bubblewrap", limits: { seconds: 2 } } }),
    });
    expect(res.status).toBe(201);
    sandbox = ((await res.json()) as { connection: { id: string } }).connection.id;
    await sql`insert into public.agent_tools (org_id, project_id, agent_id, tool, provider, connection_id)
              values (${org.org}, ${org.project}, ${org.agent}, 'code.run', 'sandbox', ${sandbox})`;
    await sql`delete from public.approval_policies where org_id = ${org.org}`;
  });

  it("waits for a person to approve the exact code, then runs that code, and audits the execution without its code or output", async () => {
    const program = { runtime: "python", code: "print(6 * 7)\nopen('out/answer.txt', 'w').write('forty-two')\n" };
    const runId = await org.start(codeRun(program));
    await until(runId, ["waiting_approval"]);
    const [request] = await sql`select id, approval_sha256, canonical_payload, payload_sha256, tool, provider, destination, status
                                  from public.action_requests where run_id = ${runId}`;
    // What the approver sees and decides on is the code itself, pinned by its hash with the sandbox it runs on.
    expect(request).toMatchObject({ tool: "code.run", provider: "sandbox", destination: "sandbox:bubblewrap", status: "pending" });
    expect(JSON.parse(request.canonical_payload)).toEqual(program);
    expect(request.payload_sha256).toBe(createHash("sha256").update(request.canonical_payload).digest("hex"));
    const executions = async () => await sql`select payload from audit.records where org_id = ${org.org} and action = 'connector.call'
                                                and payload->>'run_id' = ${runId}`;
    expect(await executions()).toHaveLength(0);

    await org.asAdmin((tx) => tx`select public.decide_action(${request.id}, ${request.approval_sha256}, true)`);
    const run = await until(runId, ["succeeded", "failed"]);
    expect(run.status).toBe("succeeded");
    const result = await toolResult(runId);
    expect(result).toMatchObject({ exit_code: 0, killed: null, stdout: "42\n", stderr: "", files: [{ path: "out/answer.txt", bytes: 9, base64: btoa("forty-two") }] });
    expect(run.result?.output).toContain("42");
    const [after] = await sql`select status, outcome, outcome_detail from public.action_requests where id = ${request.id}`;
    expect(after).toEqual({ status: "executed", outcome: "delivered", outcome_detail: "exit_0" });

    // A run event {tool_name, ms, code, iter} and one audit entry with the limits and the outcome.
    const events = await sql`select meta from public.agent_run_events where run_id = ${runId} and meta->>'tool_name' is not null`;
    expect(events.map((e) => [e.meta.tool_name, e.meta.code, e.meta.iter])).toEqual([["code.run", "exit_0", 1]]);
    expect(Object.keys(events[0].meta).sort()).toEqual(["code", "iter", "ms", "tool_name"]);
    const audited = await executions();
    expect(audited).toHaveLength(1);
    expect(audited[0].payload).toMatchObject({
      kind: "deliver", provider: "sandbox", tool: "code.run", outcome: "exit_0", action_request_id: request.id,
      sandbox: {
        backend: "bubblewrap", runtime: "python", exit_code: 0, killed: null, stdout_bytes: 3, stderr_bytes: 0, out_files: 1, out_bytes: 9,
        limits: { seconds: 2, memory_mib: 256, processes: 64, file_mib: 8, output_bytes: 32768, out_bytes: 65536 },
      },
    });
    expect(audited[0].payload.sandbox.ms).toBeGreaterThan(0);
    const everything = JSON.stringify(await sql`select payload from audit.records where org_id = ${org.org}`);
    expect(everything).not.toContain("6 * 7");
    expect(everything).not.toContain("forty-two");
    expect(everything).not.toContain(btoa("forty-two"));
  });

  it("kills code at its wall-clock budget and tells the model so", async () => {
    await sql`insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
              values (${org.org}, ${org.project}, ${org.agent}, 'code.run', 'allow', ${sandbox})`;
    try {
      const runId = await org.start(codeRun({ runtime: "javascript", code: "while (true) {}" }));
      const run = await until(runId, ["succeeded", "failed"]);
      expect(run.status).toBe("succeeded");
      expect(await toolResult(runId)).toMatchObject({ exit_code: null, killed: "deadline" });
      const [event] = await sql`select meta from public.agent_run_events where run_id = ${runId} and meta->>'tool_name' = 'code.run'`;
      expect(event.meta.code).toBe("killed_deadline");
      expect(event.meta.ms).toBeGreaterThanOrEqual(2000);
      const [audit] = await sql`select payload from audit.records where org_id = ${org.org} and action = 'connector.call' and payload->>'run_id' = ${runId}`;
      expect(audit.payload.sandbox).toMatchObject({ runtime: "javascript", killed: "deadline", exit_code: null });
    } finally {
      await sql`delete from public.approval_policies where org_id = ${org.org}`;
    }
  });

  it("holds code back, its approval unused, when the connection's settings were loosened behind the connectors function's back", async () => {
    await sql`insert into public.approval_policies (org_id, project_id, agent_id, tool, mode, connection_id)
              values (${org.org}, ${org.project}, ${org.agent}, 'code.run', 'allow', ${sandbox})`;
    await sql`update public.connections set config = ${sql.json({ backend: "bubblewrap", limits: { seconds: 3600 } })} where id = ${sandbox}`;
    try {
      const runId = await org.start(codeRun({ runtime: "python", code: "print('slow')" }));
      const run = await until(runId, ["succeeded", "failed"]);
      expect(run.status).toBe("succeeded");
      expect(await toolResult(runId)).toEqual({ error: "sandbox_unavailable" });
      const [request] = await sql`select status, executed_at from public.action_requests where run_id = ${runId}`;
      expect(request).toEqual({ status: "approved", executed_at: null });
    } finally {
      await sql`update public.connections set config = ${sql.json({ backend: "bubblewrap", limits: { seconds: 2 } })} where id = ${sandbox}`;
      await sql`delete from public.approval_policies where org_id = ${org.org}`;
    }
  });

  it("never asks anyone to approve arguments the sandbox would refuse: the model is told what to fix", async () => {
    const runId = await org.start(codeRun({ runtime: "cobol", code: "DISPLAY 'HI'" }));
    const run = await until(runId, ["succeeded", "failed"]);
    expect(run.status).toBe("succeeded");
    expect(await toolResult(runId)).toMatchObject({ error: "invalid_arguments" });
    expect(await sql`select 1 from public.action_requests where run_id = ${runId}`).toHaveLength(0);
  });
});

describe("a worker killed in the middle of a step", () => {
  it("leaves the step to another worker, which never delivers the action twice", async () => {
    await org.allowTool();
    // The provider holds the delivery until the worker delivering it is killed.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    let arrived: () => void = () => {};
    const delivering = new Promise<void>((r) => (arrived = r));
    providers.gate = async (path) => {
      if (path !== org.hookPath) return;
      arrived();
      await held;
    };
    const before = deliveries().length;
    try {
      const runId = await org.start('use notify with {"text": "exactly once"}');
      await delivering;
      await stopChild(worker, "SIGKILL");
      worker = await newWorker("worker-2");
      release();
      const run = await until(runId, ["succeeded", "failed"], 30_000);
      expect(run.status).toBe("succeeded");
      // The gate let the action through once, before the kill; the takeover did not send it again.
      expect(deliveries().length - before).toBe(1);
      const [step] = await sql`select attempt from private.run_steps where run_id = ${runId} and step = 1`;
      expect(step.attempt).toBe(2);
      const tool = (await transcript(runId)).find((m) => m.role === "tool")!;
      expect(JSON.parse(tool.content.content as string)).toMatchObject({ error: "delivery_outcome_unknown" });
      // One model answer per step, however many attempts.
      expect((await transcript(runId)).filter((m) => m.role === "assistant")).toHaveLength(2);
    } finally {
      providers.gate = null;
      release();
    }
  }, 60_000);

  it("re-runs a model turn whose worker was killed before its answer was kept", async () => {
    vendors.upstream.behave({ kind: "hang" });
    const runId = await org.start("think slowly");
    try {
      const deadline = Date.now() + 10_000;
      while (!vendors.upstream.requests.some((r) => JSON.stringify(r.body).includes("think slowly"))) {
        if (Date.now() > deadline) throw new Error("the model call never arrived");
        await new Promise((r) => setTimeout(r, 50));
      }
      await stopChild(worker, "SIGKILL");
      vendors.upstream.behave({ kind: "reply" });
      worker = await newWorker("worker-3");
      const run = await until(runId, ["succeeded", "failed"], 30_000);
      expect(run.status).toBe("succeeded");
      expect((await transcript(runId)).filter((m) => m.role === "assistant")).toHaveLength(1);
    } finally {
      vendors.upstream.behave({ kind: "reply" });
    }
  }, 60_000);
});
