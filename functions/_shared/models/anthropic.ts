/**
 * The Anthropic Messages adapter, through the official `@anthropic-ai/sdk` with the egress guard
 * as its fetch. Translates the gateway's OpenAI-shaped request into a Messages request (system
 * and developer messages become `system`; `stop` becomes `stop_sequences`; tools become tools
 * with an `input_schema`; tool_choice none/auto/required/a function becomes none/auto/any/tool,
 * and parallel_tool_calls: false `disable_parallel_tool_use`; an assistant's tool_calls become
 * `tool_use` blocks, and consecutive tool messages one user message of `tool_result` blocks), and
 * the answer and its stream events back into chat.completion objects and chunks:
 *
 *   message_start                  → the first chunk (role), and the input tokens
 *   content_block_start (tool_use) → a chunk opening a tool call (index, id, name, arguments "")
 *   content_block_delta            → a chunk per text delta, or per input_json_delta (arguments)
 *   message_delta                  → the finish reason, and the output tokens
 *
 * An answer's `tool_use` blocks become tool_calls whose arguments are their input as JSON.
 */
import Anthropic from "@anthropic-ai/sdk";
import { egressFetch } from "../egress/fetch.ts";
import type { VendorEndpoint } from "./openai.ts";
import {
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatMessage,
  type FinishReason,
  openAiUsage,
  textOf,
  type ToolCall,
  toolDeltaBytes,
  type Upstream,
  type UpstreamRequest,
  type Usage,
  utf8Bytes,
} from "./wire.ts";

export function anthropicUpstream(endpoint: VendorEndpoint): Upstream {
  const client = new Anthropic({
    apiKey: endpoint.apiKey,
    baseURL: endpoint.baseUrl,
    fetch: egressFetch(endpoint.egress),
    maxRetries: 0,
    timeout: endpoint.timeoutMs,
  });
  const body = (r: UpstreamRequest) => {
    const system = r.messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => textOf(m.content)).join("\n\n");
    return {
      model: r.model,
      max_tokens: r.maxTokens,
      messages: messageParams(r.messages),
      ...(system ? { system } : {}),
      ...(r.tools
        ? {
          tools: r.tools.map((t): Anthropic.Tool => ({
            name: t.function.name,
            ...(t.function.description !== undefined ? { description: t.function.description } : {}),
            input_schema: (t.function.parameters ?? { type: "object", properties: {} }) as Anthropic.Tool.InputSchema,
          })),
        }
        : {}),
      ...(toolChoice(r) ? { tool_choice: toolChoice(r) } : {}),
      // Anthropic's temperature runs from 0 to 1, and its current models take temperature or
      // top_p, not both: temperature wins.
      ...(r.temperature !== undefined ? { temperature: Math.min(r.temperature, 1) } : {}),
      ...(r.topP !== undefined && r.temperature === undefined ? { top_p: r.topP } : {}),
      ...(r.stop ? { stop_sequences: r.stop } : {}),
      ...(r.user !== undefined ? { metadata: { user_id: r.user } } : {}),
    };
  };
  const created = () => Math.floor(Date.now() / 1000);

  return {
    async complete(request, signal) {
      const m = await client.messages.create({ ...body(request), stream: false }, { signal });
      const usage = { input: m.usage.input_tokens, output: m.usage.output_tokens, estimated: false };
      const text = m.content.map((block) => (block.type === "text" ? block.text : "")).join("");
      const toolCalls: ToolCall[] = m.content.flatMap((block) =>
        block.type === "tool_use" ? [{ id: block.id, type: "function" as const, function: { name: block.name, arguments: JSON.stringify(block.input) } }] : []
      );
      const message = toolCalls.length > 0
        ? { role: "assistant" as const, content: text === "" ? null : text, refusal: null, tool_calls: toolCalls }
        : { role: "assistant" as const, content: text, refusal: null };
      const completion: ChatCompletion = {
        id: `chatcmpl-${m.id}`,
        object: "chat.completion",
        created: created(),
        model: m.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finishReason(m.stop_reason) }],
        usage: openAiUsage(usage.input, usage.output),
      };
      return { completion, usage };
    },

    async stream(request, signal) {
      const events = await client.messages.create({ ...body(request), stream: true }, { signal });
      let input: number | null = null;
      let output: number | null = null;
      let deltaBytes = 0;
      async function* chunks(): AsyncGenerator<ChatCompletionChunk> {
        let id = "chatcmpl-anthropic";
        let model = request.model;
        const chunk = (delta: ChatCompletionChunk["choices"][0]["delta"], finish: FinishReason | null): ChatCompletionChunk => ({
          id, object: "chat.completion.chunk", created: created(), model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
        });
        // Anthropic numbers content blocks; OpenAI numbers tool calls: the block index of each call.
        const toolIndex = new Map<number, number>();
        for await (const event of events) {
          if (event.type === "content_block_start" && event.content_block.type === "tool_use") {
            const index = toolIndex.size;
            toolIndex.set(event.index, index);
            deltaBytes += utf8Bytes(event.content_block.name);
            yield chunk({ tool_calls: [{ index, id: event.content_block.id, type: "function", function: { name: event.content_block.name, arguments: "" } }] }, null);
          } else if (event.type === "content_block_delta" && event.delta.type === "input_json_delta" && toolIndex.has(event.index)) {
            const deltas = [{ index: toolIndex.get(event.index)!, function: { arguments: event.delta.partial_json } }];
            deltaBytes += toolDeltaBytes(deltas);
            if (event.delta.partial_json !== "") yield chunk({ tool_calls: deltas }, null);
          } else if (event.type === "message_start") {
            id = `chatcmpl-${event.message.id}`;
            model = event.message.model;
            input = event.message.usage.input_tokens;
            yield chunk({ role: "assistant", content: "" }, null);
          } else if (event.type === "content_block_delta" && event.delta.type === "text_delta") {
            deltaBytes += utf8Bytes(event.delta.text);
            yield chunk({ content: event.delta.text }, null);
          } else if (event.type === "message_delta") {
            output = event.usage.output_tokens;
            yield chunk({}, finishReason(event.delta.stop_reason));
          }
        }
        if (input !== null && output !== null) yield { ...chunk({}, null), choices: [], usage: openAiUsage(input, output) };
      }
      // Cut off before message_delta: the output is bounded by the UTF-8 bytes of the text received.
      const usage = (): Usage => (output !== null ? { input, output, estimated: false } : { input, output: deltaBytes, estimated: true });
      return { chunks: chunks(), usage };
    },

    async listModels(signal) {
      const ids: string[] = [];
      for await (const model of client.models.list({}, { signal })) ids.push(model.id);
      return ids;
    },
  };
}

/**
 * The conversation as Anthropic's messages: user and assistant turns (a text-only turn keeps its
 * text as a string), an assistant's tool calls as tool_use blocks after its text, and consecutive
 * tool messages as one user turn of tool_result blocks (a user message right after them joins
 * that turn as a text block, since Anthropic wants tool results first in the turn that follows).
 */
function messageParams(messages: ChatMessage[]): Anthropic.MessageParam[] {
  const out: Anthropic.MessageParam[] = [];
  let results: Anthropic.ContentBlockParam[] | null = null;
  for (const m of messages) {
    if (m.role === "tool") {
      const block: Anthropic.ToolResultBlockParam = { type: "tool_result", tool_use_id: m.tool_call_id, content: textOf(m.content) };
      if (results) results.push(block);
      else out.push({ role: "user", content: (results = [block]) });
      continue;
    }
    if (m.role === "user" && results) {
      results.push({ type: "text", text: textOf(m.content) });
      results = null;
      continue;
    }
    results = null;
    if (m.role === "user") out.push({ role: "user", content: textOf(m.content) });
    else if (m.role === "assistant" && !m.tool_calls) out.push({ role: "assistant", content: textOf(m.content) });
    else if (m.role === "assistant") {
      const text = textOf(m.content);
      out.push({
        role: "assistant",
        content: [
          ...(text !== "" ? [{ type: "text" as const, text }] : []),
          ...m.tool_calls!.map((c): Anthropic.ToolUseBlockParam => ({ type: "tool_use", id: c.id, name: c.function.name, input: JSON.parse(c.function.arguments) })),
        ],
      });
    }
  }
  return out;
}

/** OpenAI's tool_choice and parallel_tool_calls as Anthropic's tool_choice, or undefined for the vendor's default. */
function toolChoice(r: UpstreamRequest): Anthropic.ToolChoice | undefined {
  const single = r.parallelToolCalls === false ? { disable_parallel_tool_use: true } : {};
  const choice = r.toolChoice;
  if (choice === "none") return { type: "none" };
  if (choice === "required") return { type: "any", ...single };
  if (typeof choice === "object") return { type: "tool", name: choice.function.name, ...single };
  if (choice === "auto") return { type: "auto", ...single };
  return r.parallelToolCalls === false ? { type: "auto", ...single } : undefined;
}

function finishReason(reason: string | null | undefined): FinishReason {
  if (reason === "max_tokens") return "length";
  if (reason === "tool_use") return "tool_calls";
  if (reason === "refusal") return "content_filter";
  return "stop";
}
