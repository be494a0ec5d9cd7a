/**
 * The Anthropic Messages adapter, through the official `@anthropic-ai/sdk` with the egress guard
 * as its fetch. Translates the gateway's OpenAI-shaped request into a Messages request (system
 * and developer messages become `system`; `stop` becomes `stop_sequences`), and the answer and
 * its stream events back into chat.completion objects and chunks:
 *
 *   message_start        → the first chunk (role), and the input tokens
 *   content_block_delta  → a chunk per text delta
 *   message_delta        → the finish reason, and the output tokens
 */
import Anthropic from "@anthropic-ai/sdk";
import { egressFetch } from "../egress/fetch.ts";
import type { VendorEndpoint } from "./openai.ts";
import { type ChatCompletion, type ChatCompletionChunk, type FinishReason, openAiUsage, textOf, type Upstream, type UpstreamRequest, type Usage, utf8Bytes } from "./wire.ts";

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
      messages: r.messages
        .filter((m) => m.role === "user" || m.role === "assistant")
        .map((m) => ({ role: m.role as "user" | "assistant", content: textOf(m.content) })),
      ...(system ? { system } : {}),
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
      const completion: ChatCompletion = {
        id: `chatcmpl-${m.id}`,
        object: "chat.completion",
        created: created(),
        model: m.model,
        choices: [{ index: 0, message: { role: "assistant", content: text, refusal: null }, logprobs: null, finish_reason: finishReason(m.stop_reason) }],
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
        for await (const event of events) {
          if (event.type === "message_start") {
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

function finishReason(reason: string | null | undefined): FinishReason {
  if (reason === "max_tokens") return "length";
  if (reason === "tool_use") return "tool_calls";
  if (reason === "refusal") return "content_filter";
  return "stop";
}
