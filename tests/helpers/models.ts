/**
 * The model vendors of the model gateway and widget tests: scripts/stack/model_upstream.ts
 * (wire-accurate OpenAI and Anthropic fakes) on a loopback port scripts/test.ts reserved and
 * allowed for the throwaway stack's edge functions, over TLS with the certificate its
 * run-specific CA signed. The gateway tests take the port the functions' platform keys point at;
 * the widget tests and the embed's browser tests each take one more, which their organization names
 * as its own endpoint, so that no two files (vitest runs them side by side) share a fake. `keys`
 * may be added to (a tenant's own key, before it is saved).
 */
import { readFileSync } from "node:fs";
import { type ModelUpstream, startModelUpstream } from "../../scripts/stack/model_upstream.ts";
import type { TestProviders } from "../../scripts/test.ts";

export interface ModelVendors {
  upstream: ModelUpstream;
  /** The keys the fakes accept: the platform's, and whatever a test adds. */
  keys: Set<string>;
  platformKeys: TestProviders["platformKeys"];
  /** The fakes' base URLs, as the functions reach them. */
  openaiBaseUrl: string;
  close(): Promise<void>;
}

export async function startModelVendors(which: "gateway" | "widget" | "embed" = "gateway"): Promise<ModelVendors> {
  const file = process.env.GATEHOUSE_TEST_PROVIDERS_FILE;
  if (!file) throw new Error("the model gateway tests run under npm test, which allows their local vendor servers (GATEHOUSE_TEST_PROVIDERS_FILE is unset)");
  const settings = JSON.parse(readFileSync(file, "utf8")) as TestProviders;
  const keys = new Set([settings.platformKeys.openai, settings.platformKeys.anthropic]);
  const port = { gateway: settings.modelPort, widget: settings.widgetModelPort, embed: settings.embedModelPort }[which];
  const upstream = await startModelUpstream({ port, tls: { cert: settings.cert, key: settings.key }, keys });
  return {
    upstream,
    keys,
    platformKeys: settings.platformKeys,
    openaiBaseUrl: upstream.openaiBaseUrl,
    close: () => upstream.close(),
  };
}
