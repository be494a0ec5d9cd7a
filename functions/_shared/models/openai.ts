/**
 * The OpenAI-compatible adapter: OpenAI itself, Azure OpenAI's v1 endpoint or a self-hosted
 * server, through the official `openai` SDK with the egress guard as its fetch. The gateway
 * already speaks this wire, so requests pass through nearly as they are (tools, tool_choice,
 * parallel_tool_calls, assistant tool_calls and tool messages as the caller sent them; answers'
 * tool_calls and streams' delta.tool_calls as the vendor sent them); what the adapter adds is
 * usage on every stream (stream_options.include_usage upstream, whatever the caller asked).
 */
import OpenAI from "openai";
import type { EgressOptions } from "../egress/check.ts";
import { egressFetch } from "../egress/fetch.ts";
import {
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatMessage,
  type FinishReason,
  openAiUsage,
  textOf,
  type ToolCall,
  type ToolCallDelta,
  toolDeltaBytes,
  type Upstream,
  type UpstreamRequest,
  type Usage,
  utf8Bytes,
} from "./wire.ts";

/** Where and how an adapter calls its vendor. */
export interface VendorEndpoint {
  apiKey: string;
  baseUrl: string;
  egress: EgressOptions;
  /** Time to the response's headers (a non-streamed call's whole answer), in ms. */
  timeoutMs: number;
}

export function openAiUpstream(endpoint: VendorEndpoint): Upstream {
  const client = new OpenAI({
    apiKey: endpoint.apiKey,
    baseURL: endpoint.baseUrl,
    fetch: egressFetch(endpoint.egress),
    maxRetries: 0,
    timeout: endpoint.timeoutMs,
    // Never the operator's OPENAI_ORG_ID or OPENAI_PROJECT_ID from the environment: they would go
    // to an organization's own endpoint too.
    organization: null,
    project: null,
  });
  const body = (r: UpstreamRequest) => ({
    model: r.model,
    messages: r.messages.map(messageParam),
    [r.maxTokensField]: r.maxTokens,
    ...(r.temperature !== undefined ? { temperature: r.temperature } : {}),
    ...(r.topP !== undefined ? { top_p: r.topP } : {}),
    ...(r.stop ? { stop: r.stop } : {}),
    ...(r.seed !== undefined ? { seed: r.seed } : {}),
    ...(r.user !== undefined ? { user: r.user } : {}),
    ...(r.tools ? { tools: r.tools } : {}),
    ...(r.toolChoice !== undefined ? { tool_choice: r.toolChoice } : {}),
    ...(r.parallelToolCalls !== undefined ? { parallel_tool_calls: r.parallelToolCalls } : {}),
  });

  return {
    async complete(request, signal) {
      const c = await client.chat.completions.create({ ...body(request), stream: false }, { signal });
      const choice = c.choices[0];
      const toolCalls = functionCalls(choice?.message?.tool_calls);
      const content = choice?.message?.content ?? (toolCalls ? null : "");
      // A server that reports no usage (some OpenAI-compatible ones) is charged the prompt's bound
      // and the answer's bytes.
      const usage = c.usage
        ? { input: c.usage.prompt_tokens, output: c.usage.completion_tokens, estimated: false }
        : { input: null, output: utf8Bytes(content ?? "") + toolDeltaBytes(toolCalls?.map((t, index) => ({ index, function: t.function }))), estimated: true };
      const completion: ChatCompletion = {
        id: c.id,
        object: "chat.completion",
        created: c.created,
        model: c.model,
        choices: [{
          index: 0,
          message: { role: "assistant", content, refusal: null, ...(toolCalls ? { tool_calls: toolCalls } : {}) },
          logprobs: null,
          finish_reason: finishReason(choice?.finish_reason),
        }],
        usage: openAiUsage(usage.input ?? 0, usage.output),
      };
      return { completion, usage };
    },

    async stream(request, signal) {
      const stream = await client.chat.completions.create(
        { ...body(request), stream: true, stream_options: { include_usage: true } },
        { signal },
      );
      let reported: Usage | null = null;
      let contentBytes = 0;
      async function* chunks(): AsyncGenerator<ChatCompletionChunk> {
        for await (const chunk of stream) {
          if (chunk.usage) reported = { input: chunk.usage.prompt_tokens, output: chunk.usage.completion_tokens, estimated: false };
          const choice = chunk.choices[0];
          if (choice?.delta?.content) contentBytes += utf8Bytes(choice.delta.content);
          const toolCalls = toolCallDeltas(choice?.delta?.tool_calls);
          contentBytes += toolDeltaBytes(toolCalls);
          yield {
            id: chunk.id,
            object: "chat.completion.chunk",
            created: chunk.created,
            model: chunk.model,
            choices: choice
              ? [{
                index: 0,
                delta: {
                  ...(choice.delta?.role === "assistant" ? { role: "assistant" as const } : {}),
                  ...(typeof choice.delta?.content === "string" ? { content: choice.delta.content } : {}),
                  ...(toolCalls ? { tool_calls: toolCalls } : {}),
                },
                logprobs: null,
                finish_reason: choice.finish_reason ? finishReason(choice.finish_reason) : null,
              }]
              : [],
            ...(chunk.usage ? { usage: openAiUsage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens) } : {}),
          };
        }
      }
      // Cut off before the usage chunk: the output is bounded by its UTF-8 bytes (no tokenizer
      // makes more tokens than bytes; the gateway caps it at max_tokens), the input is unknown.
      return { chunks: chunks(), usage: () => reported ?? { input: null, output: contentBytes, estimated: true } };
    },

    async listModels(signal) {
      const ids: string[] = [];
      for await (const model of client.models.list({ signal })) ids.push(model.id);
      return ids;
    },
  };
}

/** A message as the OpenAI wire takes it: only the fields of its role. */
function messageParam(m: ChatMessage): OpenAI.ChatCompletionMessageParam {
  switch (m.role) {
    case "assistant":
      return {
        role: "assistant",
        content: m.content === null || m.content === undefined ? null : textOf(m.content),
        ...(m.name ? { name: m.name } : {}),
        ...(m.tool_calls ? { tool_calls: m.tool_calls } : {}),
      };
    case "tool":
      return { role: "tool", content: textOf(m.content), tool_call_id: m.tool_call_id };
    default:
      return { role: m.role, content: textOf(m.content), ...(m.name ? { name: m.name } : {}) };
  }
}

/** An answer's function calls (other kinds of tool call are not offered, so not expected), or undefined for none. */
function functionCalls(calls: OpenAI.ChatCompletionMessageToolCall[] | undefined): ToolCall[] | undefined {
  const out = (calls ?? []).flatMap((t) =>
    t.type === "function" ? [{ id: t.id, type: "function" as const, function: { name: t.function.name, arguments: t.function.arguments } }] : []
  );
  return out.length > 0 ? out : undefined;
}

/** A chunk's tool call deltas, field by field as the vendor sent them, or undefined for none. */
function toolCallDeltas(deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] | undefined): ToolCallDelta[] | undefined {
  if (!deltas || deltas.length === 0) return undefined;
  return deltas.map((d) => ({
    index: d.index,
    ...(d.id ? { id: d.id } : {}),
    ...(d.type === "function" ? { type: "function" as const } : {}),
    ...(d.function
      ? {
        function: {
          ...(d.function.name !== undefined ? { name: d.function.name } : {}),
          ...(d.function.arguments !== undefined ? { arguments: d.function.arguments } : {}),
        },
      }
      : {}),
  }));
}

function finishReason(reason: string | null | undefined): FinishReason {
  return reason === "length" || reason === "content_filter" || reason === "tool_calls" ? reason : "stop";
}
