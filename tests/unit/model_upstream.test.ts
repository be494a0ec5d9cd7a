/**
 * scripts/stack/model_upstream.ts against the official SDKs (`openai`, `@anthropic-ai/sdk`) used
 * unchanged as clients: replies, streams, usage, model lists and errors must come out of the SDKs
 * as they do from the real vendors, and the test behaviours (status, hang, reset, slow, usage)
 * must surface as the SDKs' own error classes. A raw fetch checks the exact JSON shapes where the
 * SDKs would hide them.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { standInReply, startModelUpstream, type ModelUpstream } from "../../scripts/stack/model_upstream.ts";

const LABEL = "local stand-in model";
const KEY = "sk-test";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it holds (or fails the test after `ms`). */
async function eventually(probe: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await sleep(10);
  }
}

/** What the SDK call rejected with (fails the test when it resolved). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected the call to fail");
}

let up: ModelUpstream;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  up = await startModelUpstream({ keys: new Set([KEY]) });
  openai = new OpenAI({ apiKey: KEY, baseURL: up.openaiBaseUrl, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: KEY, baseURL: up.anthropicBaseUrl, maxRetries: 0 });
});
afterAll(async () => {
  await up.close();
});
beforeEach(() => {
  up.behave({ kind: "reply" });
});

describe("standInReply", () => {
  it("quotes the last user text after the label, word by word, and counts tokens deterministically", () => {
    const r = standInReply({ texts: ["Be brief.", "Hello there"], maxTokens: 1024, label: LABEL });
    expect(r.words).toEqual(["[local", " stand-in", " model]", " You", " said:", " Hello", " there"]);
    expect(r.words.join("")).toBe(`[${LABEL}] You said: Hello there`);
    expect(r.outputTokens).toBe(7);
    expect(r.inputTokens).toBe(Math.ceil(9 / 4) + 3 + Math.ceil(11 / 4) + 3);
    expect(standInReply({ texts: ["Hello there"], maxTokens: 2, label: LABEL }).words).toEqual(["[local", " stand-in"]);
    // The quote is cut at 200 characters, and the input count stays within the messages' JSON size.
    const long = "é".repeat(500);
    const cut = standInReply({ texts: [long], maxTokens: 1024, label: LABEL });
    expect(cut.words.join("")).toBe(`[${LABEL}] You said: ${"é".repeat(200)}`);
    expect(cut.inputTokens).toBeLessThanOrEqual(Buffer.byteLength(JSON.stringify({ role: "user", content: long })) + 16);
  });
});

describe("OpenAI Chat Completions wire", () => {
  const messages = [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "Hello there, stand-in" },
  ];
  const expected = standInReply({ texts: ["Be brief.", "Hello there, stand-in"], maxTokens: 1024, label: LABEL });

  it("answers a non-stream completion with the reply, the model echoed and the usage", async () => {
    const before = up.requests.length;
    const c = await openai.chat.completions.create({ model: "gpt-4o-mini", messages });
    expect(c.object).toBe("chat.completion");
    expect(c.id).toMatch(/^chatcmpl-/);
    expect(c.model).toBe("gpt-4o-mini");
    expect(c.choices).toHaveLength(1);
    expect(c.choices[0].message).toEqual({ role: "assistant", content: expected.words.join(""), refusal: null });
    expect(c.choices[0].message.content).toBe(`[${LABEL}] You said: Hello there, stand-in`);
    expect(c.choices[0].finish_reason).toBe("stop");
    expect(c.usage).toEqual({
      prompt_tokens: expected.inputTokens,
      completion_tokens: expected.outputTokens,
      total_tokens: expected.inputTokens + expected.outputTokens,
    });
    expect(c._request_id).toMatch(/^req_/);
    expect(up.requests.slice(before)).toEqual([
      expect.objectContaining({ wire: "openai", method: "POST", path: "/openai/v1/chat/completions", apiKey: KEY, body: expect.objectContaining({ model: "gpt-4o-mini", messages }) }),
    ]);
  });

  it("cuts the reply at max_completion_tokens with finish_reason length, and joins content parts", async () => {
    const c = await openai.chat.completions.create({
      model: "any-model-id",
      max_completion_tokens: 3,
      messages: [{ role: "user", content: [{ type: "text", text: "Hello " }, { type: "text", text: "parts" }] }],
    });
    const r = standInReply({ texts: ["Hello parts"], maxTokens: 3, label: LABEL });
    expect(c.model).toBe("any-model-id");
    expect(c.choices[0].message.content).toBe(r.words.join(""));
    expect(c.choices[0].message.content).toBe("[local stand-in model]");
    expect(c.choices[0].finish_reason).toBe("length");
    expect(c.usage?.completion_tokens).toBe(3);
  });

  it("streams one delta per word, then the finish reason, then usage when include_usage is set", async () => {
    const stream = await openai.chat.completions.create({ model: "gpt-4.1", messages, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.model === "gpt-4.1")).toBe(true);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[0].choices[0].delta).toMatchObject({ role: "assistant", content: "" });
    const deltas = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? ""));
    expect(deltas.join("")).toBe(expected.words.join(""));
    expect(chunks.length).toBe(1 + expected.words.length + 2);
    const finish = chunks[chunks.length - 2];
    expect(finish.choices[0]).toMatchObject({ delta: {}, finish_reason: "stop" });
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({
      prompt_tokens: expected.inputTokens,
      completion_tokens: expected.outputTokens,
      total_tokens: expected.inputTokens + expected.outputTokens,
    });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it("sends no usage chunk without include_usage", async () => {
    const stream = await openai.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBe(1 + expected.words.length + 1);
    expect(chunks.every((c) => c.choices.length === 1 && c.usage == null)).toBe(true);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe("stop");
  });

  it("works with the SDK's stream helper (finalChatCompletion)", async () => {
    const texts: string[] = [];
    const runner = openai.chat.completions.stream({ model: "gpt-4o-mini", messages, stream_options: { include_usage: true } });
    runner.on("content", (delta) => texts.push(delta));
    const final = await runner.finalChatCompletion();
    expect(final.choices[0].message.content).toBe(expected.words.join(""));
    expect(final.choices[0].finish_reason).toBe("stop");
    expect(final.usage?.completion_tokens).toBe(expected.outputTokens);
    expect(texts.join("")).toBe(expected.words.join(""));
  });

  it("lists models", async () => {
    const ids: string[] = [];
    for await (const m of openai.models.list()) {
      expect(m).toMatchObject({ object: "model", owned_by: "gatehouse-stand-in", created: expect.any(Number) });
      ids.push(m.id);
    }
    expect(ids).toEqual(["gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"]);
  });

  it("rejects a wrong key as the SDK's AuthenticationError, with OpenAI's error shape", async () => {
    const before = up.requests.length;
    const bad = new OpenAI({ apiKey: "sk-wrong", baseURL: up.openaiBaseUrl, maxRetries: 0 });
    const e = await rejection(bad.chat.completions.create({ model: "gpt-4o-mini", messages }));
    expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((e as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401);
    expect((e as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe("invalid_api_key");
    expect(up.requests[before].apiKey).toBe("sk-wrong");

    const res = await fetch(`${up.openaiBaseUrl}/models`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({
      error: { message: "Incorrect API key provided.", type: "invalid_request_error", param: null, code: "invalid_api_key" },
    });
    expect(up.requests[up.requests.length - 1].apiKey).toBeNull();
  });

  it("answers bad JSON, missing messages and unknown paths with OpenAI-shaped errors", async () => {
    const post = (body: string) =>
      fetch(`${up.openaiBaseUrl}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body });
    const badJson = await post("{not json");
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    const e = await rejection(openai.chat.completions.create({ model: "gpt-4o-mini" } as unknown as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming));
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    const missing = await fetch(`${up.openaiBaseUrl}/nope`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { type: "invalid_request_error", param: null, code: null } });
  });
});

describe("Anthropic Messages wire", () => {
  const messages = [{ role: "user" as const, content: "Hello there, stand-in" }];
  const system = [{ type: "text" as const, text: "Be " }, { type: "text" as const, text: "brief." }];
  const expected = standInReply({ texts: ["Be brief.", "Hello there, stand-in"], maxTokens: 256, label: LABEL });

  it("answers a non-stream message with the reply and usage", async () => {
    const before = up.requests.length;
    const m = await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 256, system, messages });
    expect(m).toMatchObject({ type: "message", role: "assistant", model: "claude-sonnet-4-5", stop_reason: "end_turn", stop_sequence: null });
    expect(m.id).toMatch(/^msg_/);
    expect(m.content).toEqual([{ type: "text", text: expected.words.join("") }]);
    expect(m.usage).toEqual({ input_tokens: expected.inputTokens, output_tokens: expected.outputTokens });
    expect(m._request_id).toMatch(/^req_/);
    const seen = up.requests[before];
    expect(seen).toMatchObject({ wire: "anthropic", method: "POST", path: "/anthropic/v1/messages", apiKey: KEY });
    expect(seen.body).toMatchObject({ model: "claude-sonnet-4-5", max_tokens: 256, messages });
  });

  it("stops at max_tokens with stop_reason max_tokens", async () => {
    const m = await anthropic.messages.create({ model: "claude-haiku-4-5", max_tokens: 2, messages });
    expect(m.content).toEqual([{ type: "text", text: "[local stand-in" }]);
    expect(m.stop_reason).toBe("max_tokens");
    expect(m.usage.output_tokens).toBe(2);
  });

  it("streams the raw events in Anthropic's order", async () => {
    const stream = await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 256, system, messages, stream: true });
    const events: Anthropic.Messages.RawMessageStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    const types = events.map((e) => e.type);
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      ...expected.words.map(() => "content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    const start = events[0] as Anthropic.Messages.RawMessageStartEvent;
    expect(start.message).toMatchObject({ role: "assistant", content: [], stop_reason: null, usage: { input_tokens: expected.inputTokens, output_tokens: 1 } });
    const text = events
      .filter((e): e is Anthropic.Messages.RawContentBlockDeltaEvent => e.type === "content_block_delta")
      .map((e) => (e.delta.type === "text_delta" ? e.delta.text : ""))
      .join("");
    expect(text).toBe(expected.words.join(""));
    const delta = events[events.length - 2] as Anthropic.Messages.RawMessageDeltaEvent;
    expect(delta.delta).toEqual({ stop_reason: "end_turn", stop_sequence: null });
    expect(delta.usage.output_tokens).toBe(expected.outputTokens);
  });

  it("works with the SDK's stream helper (finalMessage)", async () => {
    const texts: string[] = [];
    const stream = anthropic.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 256, system, messages });
    stream.on("text", (t) => texts.push(t));
    const final = await stream.finalMessage();
    expect(final.content).toEqual([{ type: "text", text: expected.words.join("") }]);
    expect(final.stop_reason).toBe("end_turn");
    expect(final.usage).toMatchObject({ input_tokens: expected.inputTokens, output_tokens: expected.outputTokens });
    expect(texts.join("")).toBe(expected.words.join(""));
  });

  it("lists models", async () => {
    const ids: string[] = [];
    for await (const m of anthropic.models.list()) {
      expect(m).toMatchObject({ type: "model", display_name: expect.any(String), created_at: expect.any(String) });
      ids.push(m.id);
    }
    expect(ids).toEqual(["claude-sonnet-4-5", "claude-haiku-4-5"]);
  });

  it("rejects a wrong key as the SDK's AuthenticationError, with Anthropic's error shape", async () => {
    const bad = new Anthropic({ apiKey: "sk-wrong", baseURL: up.anthropicBaseUrl, maxRetries: 0 });
    const e = await rejection(bad.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages }));
    expect(e).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((e as InstanceType<typeof Anthropic.AuthenticationError>).status).toBe(401);
    expect(up.requests[up.requests.length - 1].apiKey).toBe("sk-wrong");

    const res = await fetch(`${up.anthropicBaseUrl}/v1/models`, { headers: { "x-api-key": "sk-wrong", "anthropic-version": "2023-06-01" } });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } });
  });

  it("requires max_tokens and the anthropic-version header", async () => {
    const e = await rejection(anthropic.messages.create({ model: "claude-sonnet-4-5", messages } as unknown as Anthropic.Messages.MessageCreateParamsNonStreaming));
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
    expect((e as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    const res = await fetch(`${up.anthropicBaseUrl}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": KEY, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 16, messages }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    const missing = await fetch(`${up.anthropicBaseUrl}/v1/nope`, { headers: { "x-api-key": KEY, "anthropic-version": "2023-06-01" } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } });
  });
});

describe("behaviours", () => {
  const oaMessages = [{ role: "user" as const, content: "ping" }];
  const anMessages = [{ role: "user" as const, content: "ping" }];

  it("status 500 surfaces as the SDKs' InternalServerError", async () => {
    up.behave({ kind: "status", status: 500 });
    const a = await rejection(openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages }));
    expect(a).toBeInstanceOf(OpenAI.InternalServerError);
    expect((a as InstanceType<typeof OpenAI.InternalServerError>).type).toBe("server_error");
    const b = await rejection(anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages }));
    expect(b).toBeInstanceOf(Anthropic.InternalServerError);
    expect((b as InstanceType<typeof Anthropic.InternalServerError>).error).toMatchObject({ type: "error", error: { type: "api_error" } });
  });

  it("status 429 surfaces as RateLimitError with retry-after: 1, and 529 as Anthropic's OverloadedError", async () => {
    up.behave({ kind: "status", status: 429, message: "slow down" });
    const a = await rejection(openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages }));
    expect(a).toBeInstanceOf(OpenAI.RateLimitError);
    expect((a as InstanceType<typeof OpenAI.RateLimitError>).headers?.get("retry-after")).toBe("1");
    expect((a as InstanceType<typeof OpenAI.RateLimitError>).message).toContain("slow down");
    const b = await rejection(anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages }));
    expect(b).toBeInstanceOf(Anthropic.RateLimitError);
    expect((b as InstanceType<typeof Anthropic.RateLimitError>).error).toEqual({ type: "error", error: { type: "rate_limit_error", message: "slow down" } });
    up.behave({ kind: "status", status: 529 });
    const c = await rejection(anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages }));
    expect(c).toBeInstanceOf(Anthropic.InternalServerError);
    expect((c as InstanceType<typeof Anthropic.InternalServerError>).status).toBe(529);
    expect((c as InstanceType<typeof Anthropic.InternalServerError>).error).toMatchObject({ error: { type: "overloaded_error" } });
  });

  it("hang surfaces as APIConnectionTimeoutError with a short SDK timeout", async () => {
    up.behave({ kind: "hang" });
    const oa = new OpenAI({ apiKey: KEY, baseURL: up.openaiBaseUrl, maxRetries: 0, timeout: 300 });
    const an = new Anthropic({ apiKey: KEY, baseURL: up.anthropicBaseUrl, maxRetries: 0, timeout: 300 });
    const [a, b] = await Promise.all([
      rejection(oa.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages })),
      rejection(an.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages })),
    ]);
    expect(a).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(b).toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
  });

  it("reset surfaces as APIConnectionError (not a timeout)", async () => {
    up.behave({ kind: "reset" });
    const before = up.requests.length;
    const a = await rejection(openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages }));
    expect(a).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(a).not.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    const b = await rejection(anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages }));
    expect(b).toBeInstanceOf(Anthropic.APIConnectionError);
    expect(b).not.toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
    expect(up.requests.length - before).toBe(2); // recorded, then reset
  });

  it("usage reports the given usage on both wires, streaming and not", async () => {
    up.behave({ kind: "usage", input: 1234, output: 56 });
    const c = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages });
    expect(c.usage).toEqual({ prompt_tokens: 1234, completion_tokens: 56, total_tokens: 1290 });
    let last: OpenAI.Chat.Completions.ChatCompletionChunk | undefined;
    for await (const chunk of await openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages, stream: true, stream_options: { include_usage: true } }))
      last = chunk;
    expect(last?.usage).toEqual({ prompt_tokens: 1234, completion_tokens: 56, total_tokens: 1290 });
    const m = await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages });
    expect(m.usage).toEqual({ input_tokens: 1234, output_tokens: 56 });
    const final = await anthropic.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 16, messages: anMessages }).finalMessage();
    expect(final.usage).toMatchObject({ input_tokens: 1234, output_tokens: 56 });
  });

  it("slow streams arrive progressively", async () => {
    up.behave({ kind: "slow", chunkDelayMs: 40 });
    const t0 = Date.now();
    const arrivals: number[] = [];
    for await (const _ of await openai.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages, stream: true })) arrivals.push(Date.now() - t0);
    // 1 role chunk + 6 words + 1 finish chunk, each after its delay: spread out, not in one burst.
    expect(arrivals.length).toBe(8);
    expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThanOrEqual(200);
  });

  it("a slow stream the client aborts stops being written", async () => {
    const own = await startModelUpstream({ keys: new Set([KEY]) });
    try {
      own.behave({ kind: "slow", chunkDelayMs: 50 });
      const client = new OpenAI({ apiKey: KEY, baseURL: own.openaiBaseUrl, maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages, stream: true });
      let seen = 0;
      for await (const _ of stream) {
        expect(own.stats.streamsOpen).toBe(1);
        if (++seen === 2) break; // the SDK aborts the request
      }
      await eventually(() => own.stats.streamsAborted === 1 && own.stats.streamsOpen === 0);
      const sent = own.stats.chunksSent;
      expect(sent).toBeLessThan(1 + 6 + 1 + 1); // fewer than the whole stream (role, 6 words, finish, [DONE])
      await sleep(300);
      expect(own.stats.chunksSent).toBe(sent);
      expect(own.stats.streamsAborted).toBe(1);

      // Same for Anthropic's stream helper, aborted after its first text delta.
      const an = new Anthropic({ apiKey: KEY, baseURL: own.anthropicBaseUrl, maxRetries: 0 });
      const s = an.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 64, messages: anMessages });
      s.on("text", () => s.abort());
      await rejection(s.finalMessage());
      await eventually(() => own.stats.streamsAborted === 2 && own.stats.streamsOpen === 0);
      const sentAfter = own.stats.chunksSent;
      await sleep(300);
      expect(own.stats.chunksSent).toBe(sentAfter);
    } finally {
      await own.close();
    }
  });

  it("a finished stream is not counted as aborted", async () => {
    const own = await startModelUpstream();
    try {
      const client = new OpenAI({ apiKey: "any-key", baseURL: own.openaiBaseUrl, maxRetries: 0 });
      for await (const _ of await client.chat.completions.create({ model: "gpt-4o-mini", messages: oaMessages, stream: true }));
      await eventually(() => own.stats.streamsOpen === 0);
      expect(own.stats.streamsAborted).toBe(0);
      expect(own.stats.chunksSent).toBe(1 + 6 + 1 + 1); // role, words, finish, [DONE]
    } finally {
      await own.close();
    }
  });

  it("close() ends hanging requests", async () => {
    const own = await startModelUpstream();
    own.behave({ kind: "hang" });
    const pending = fetch(`${own.openaiBaseUrl}/models`, { headers: { authorization: "Bearer k" } }).then(
      () => "answered",
      () => "failed",
    );
    await eventually(() => own.requests.length === 1);
    await own.close();
    expect(await pending).toBe("failed");
  });
});

/** A self-signed certificate for 127.0.0.1 made with openssl, or null when openssl is missing. */
function selfSignedCert(): { cert: string; key: string } | null {
  const dir = mkdtempSync(join(tmpdir(), "model-upstream-tls-"));
  try {
    const r = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    if (r.status !== 0) return null;
    return { cert: readFileSync(join(dir, "cert.pem"), "utf8"), key: readFileSync(join(dir, "key.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tls = spawnSync("openssl", ["version"]).status === 0 ? selfSignedCert() : null;

describe.skipIf(tls === null)("HTTPS", () => {
  it("serves both wires over TLS with the given certificate", async () => {
    const own = await startModelUpstream({ tls: tls!, keys: new Set([KEY]) });
    try {
      expect(own.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const get = (url: string, headers: Record<string, string>, body?: string) =>
        new Promise<{ status: number; text: string }>((resolve, reject) => {
          const req = httpsRequest(url, { ca: tls!.cert, method: body ? "POST" : "GET", headers }, (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (c: string) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
          });
          req.on("error", reject);
          req.end(body);
        });
      const models = await get(`${own.openaiBaseUrl}/models`, { authorization: `Bearer ${KEY}` });
      expect(models.status).toBe(200);
      expect(JSON.parse(models.text).data.map((m: { id: string }) => m.id)).toContain("gpt-4o-mini");
      const sse = await get(
        `${own.anthropicBaseUrl}/v1/messages`,
        { "x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json" },
        JSON.stringify({ model: "claude-haiku-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "over tls" }] }),
      );
      expect(sse.status).toBe(200);
      expect(sse.text.startsWith("event: message_start\ndata: ")).toBe(true);
      expect(sse.text.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n')).toBe(true);
    } finally {
      await own.close();
    }
  });
});
