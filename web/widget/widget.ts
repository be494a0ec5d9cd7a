/**
 * The embed: `<script src="https://<api>/widget.js" defer></script>` and
 * `<gatehouse-chat data-key="ghw_…"></gatehouse-chat>` on a customer's page. A custom element in a
 * Shadow DOM, no framework, built to one small file (web/widget/vite.config.ts). It works under a
 * strict Content-Security-Policy: no inline script or style, no eval, styles through a
 * constructed stylesheet, text only through textContent (an answer can never become markup).
 *
 * It opens a session with the key (answering a proof-of-work challenge when the key asks for
 * one), then sends messages and streams the answers into a live region. A refusal (the key is off,
 * or this origin is not allowed) shows "Chat is not available here."; a failure upstream arrives as
 * the polite notice the function sends.
 *
 * A conversation survives a reload of the page: the embed keeps, in the tab's sessionStorage (so
 * per tab, and gone when the tab closes), under `gatehouse-chat:<key>`, its session token (valid
 * ten minutes, renewable for a day), the conversation's id and the last 50 lines shown. On load it
 * shows those lines and renews the session, which keeps the visitor and so the conversation. A
 * rotated or disabled key ends it: the renewal is refused and the stored state is dropped.
 */

const STYLES = `
:host { all: initial; display: block; font: 14px/1.4 system-ui, sans-serif; color: #1d1d1f; max-width: 380px; }
section { border: 1px solid #c7c7cc; border-radius: 10px; overflow: hidden; background: #fff; }
h2 { margin: 0; padding: 10px 12px; font-size: 15px; background: #1d4ed8; color: #fff; }
ol { list-style: none; margin: 0; padding: 10px 12px; min-height: 120px; max-height: 320px; overflow-y: auto; }
li { margin: 6px 0; padding: 6px 10px; border-radius: 8px; white-space: pre-wrap; }
li.visitor { background: #e0e7ff; margin-left: 40px; }
li.assistant { background: #f2f2f7; margin-right: 40px; }
li.notice { background: #fff7ed; border: 1px solid #fdba74; }
form { display: flex; gap: 6px; padding: 10px 12px; border-top: 1px solid #e5e5ea; }
label { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
textarea { flex: 1; resize: none; font: inherit; padding: 6px; border: 1px solid #c7c7cc; border-radius: 6px; }
button { font: inherit; padding: 6px 12px; border: 0; border-radius: 6px; background: #1d4ed8; color: #fff; cursor: pointer; }
button:disabled { background: #8e8e93; cursor: default; }
:focus-visible { outline: 2px solid #f59e0b; outline-offset: 2px; }
`;

const UNAVAILABLE = "Chat is not available here.";
/** How many lines of a conversation a reload shows again. */
const KEPT_LINES = 50;

interface Saved {
  session?: string;
  conversation?: string | null;
  lines?: { role: "visitor" | "assistant" | "notice"; text: string }[];
}

// Where the script was loaded from: the API lives at the same origin.
const SCRIPT_ORIGIN = (() => {
  const current = document.currentScript as HTMLScriptElement | null;
  return current?.src ? new URL(current.src).origin : location.origin;
})();

interface Reply {
  conversation_id: string | null;
  reply?: { role: "assistant" | "notice"; content: string };
  degraded?: string;
  error?: { code: string; challenge?: string; bits?: number };
}

class GatehouseChat extends HTMLElement {
  #log!: HTMLOListElement;
  #input!: HTMLTextAreaElement;
  #send!: HTMLButtonElement;
  #session: Promise<string | null> | null = null;
  #previous: string | null = null;
  #conversation: string | null = null;

  connectedCallback(): void {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: "open" });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLES);
    root.adoptedStyleSheets = [sheet];

    const section = el("section", { "aria-label": this.dataset.title ?? "Chat with us" });
    const heading = el("h2");
    heading.textContent = this.dataset.title ?? "Chat with us";
    this.#log = el("ol", { role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    const form = el("form");
    const id = "gatehouse-chat-input";
    const label = el("label", { for: id });
    label.textContent = "Your message";
    this.#input = el("textarea", { id, rows: "2", maxlength: "4000" });
    this.#send = el("button", { type: "submit" });
    this.#send.textContent = "Send";
    form.append(label, this.#input, this.#send);
    section.append(heading, this.#log, form);
    root.append(section);

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#submit();
    });
    this.#input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        void this.#submit();
      }
    });
    // What this tab showed before a reload, and its session to renew.
    const saved = this.#load();
    if (saved.session) this.#previous = saved.session;
    this.#conversation = saved.conversation ?? null;
    for (const line of saved.lines ?? []) this.#say(line.role, line.text);
    // A session at once: a page where the key may not run says so before anyone types.
    void this.#opened().then((session) => {
      if (session) return this.#save(session);
      // Refused (a rotated or disabled key, an origin not allowed): what was stored ends here.
      this.#forget();
      this.#log.replaceChildren();
      this.#say("notice", UNAVAILABLE);
      this.#input.disabled = true;
      this.#send.disabled = true;
    });
  }

  #opened(): Promise<string | null> {
    this.#session ??= this.#open().catch(() => null);
    return this.#session;
  }

  get #storageKey(): string {
    return `gatehouse-chat:${this.dataset.key ?? ""}`;
  }

  /** This tab's saved conversation (nothing when storage is unavailable or holds something else). */
  #load(): Saved {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.#storageKey) ?? "{}") as Saved;
      return typeof saved === "object" && saved !== null ? saved : {};
    } catch {
      return {};
    }
  }

  /** Saves the session, the conversation and the last lines shown, for a reload. */
  #save(session: string | null): void {
    const lines = [...this.#log.children].slice(-KEPT_LINES).map((li) => ({ role: li.className as "visitor" | "assistant" | "notice", text: li.textContent ?? "" }));
    try {
      sessionStorage.setItem(this.#storageKey, JSON.stringify({ session: session ?? undefined, conversation: this.#conversation, lines } satisfies Saved));
    } catch {
      // No storage (a sandboxed frame, say): the chat still works, a reload starts afresh.
    }
  }

  #forget(): void {
    try {
      sessionStorage.removeItem(this.#storageKey);
    } catch {
      // nothing to forget
    }
  }

  get #api(): string {
    return `${(this.dataset.api ?? SCRIPT_ORIGIN).replace(/\/$/, "")}/functions/v1/widget/v1`;
  }

  #say(role: "visitor" | "assistant" | "notice", text: string): HTMLLIElement {
    const item = el("li", { class: role });
    item.textContent = text;
    this.#log.append(item);
    this.#log.scrollTop = this.#log.scrollHeight;
    return item;
  }

  async #submit(): Promise<void> {
    const content = this.#input.value.trim();
    if (!content || this.#send.disabled) return;
    this.#input.value = "";
    this.#send.disabled = true;
    this.#say("visitor", content);
    try {
      await this.#message(content, true);
    } catch {
      this.#say("notice", UNAVAILABLE);
    } finally {
      this.#save(await this.#opened());
      this.#send.disabled = false;
      this.#input.focus();
    }
  }

  /** Sends a message and streams the answer in; opens (or reopens, once) the session. */
  async #message(content: string, retry: boolean): Promise<void> {
    const session = await this.#opened();
    if (!session) return void this.#say("notice", UNAVAILABLE);
    const res = await fetch(`${this.#api}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${session}` },
      body: JSON.stringify({ content, stream: true, ...(this.#conversation ? { conversation_id: this.#conversation } : {}) }),
    });
    if (res.status === 401 && retry) {
      // Expired: renew, keeping this visitor (and so this conversation).
      this.#previous = session;
      this.#session = null;
      return await this.#message(content, false);
    }
    if (res.status === 404 && retry) {
      // The conversation is gone (purged, or another visitor's): start a new one.
      this.#conversation = null;
      return await this.#message(content, false);
    }
    if (!res.ok || !res.body) return void this.#say("notice", UNAVAILABLE);
    if (!(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      // A notice (busy, unavailable) comes as one JSON answer.
      return this.#reply((await res.json()) as Reply);
    }
    let answer: HTMLLIElement | null = null;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += value;
      let end: number;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const data = buffered.slice(0, end).replace(/^data: /, "");
        buffered = buffered.slice(end + 2);
        const event = JSON.parse(data) as Reply & { delta?: string; done?: boolean };
        if (event.delta !== undefined) {
          answer ??= this.#say("assistant", "");
          answer.textContent += event.delta;
        } else {
          if (event.reply) this.#say(event.reply.role, event.reply.content);
          if (event.conversation_id) {
            // Saved at once: a reload right after the answer shows still finds the conversation.
            this.#conversation = event.conversation_id;
            this.#save(session);
          }
        }
      }
    }
  }

  #reply(reply: Reply): void {
    if (reply.conversation_id) this.#conversation = reply.conversation_id;
    if (reply.reply) this.#say(reply.reply.role, reply.reply.content);
  }

  /** A session for this page, answering a proof-of-work challenge if the key asks; null if refused. */
  async #open(pow?: { challenge: string; nonce: string }): Promise<string | null> {
    const res = await fetch(`${this.#api}/sessions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: this.dataset.key ?? "", ...(pow ? { pow } : {}), ...(this.#previous ? { renew: this.#previous } : {}) }),
    });
    const body = (await res.json()) as { session?: string } & Reply;
    if (res.status === 401 && body.error?.code === "widget_renewal_refused" && this.#previous) {
      // The key was rotated since: its conversation ended with it, so start afresh.
      this.#previous = null;
      this.#conversation = null;
      this.#forget();
      this.#log.replaceChildren();
      return await this.#open(pow);
    }
    if (res.status === 428 && body.error?.challenge && !pow) {
      return await this.#open({ challenge: body.error.challenge, nonce: await solve(body.error.challenge, body.error.bits ?? 0) });
    }
    return res.status === 201 && body.session ? body.session : null;
  }
}

/** A nonce such that SHA-256(challenge + ":" + nonce) starts with `bits` zero bits. */
async function solve(challenge: string, bits: number): Promise<string> {
  const encoder = new TextEncoder();
  for (let n = 0; ; n++) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(`${challenge}:${n}`)));
    let zeros = 0;
    for (const byte of digest) {
      if (byte === 0) {
        zeros += 8;
        continue;
      }
      zeros += Math.clz32(byte) - 24;
      break;
    }
    if (zeros >= bits) return String(n);
  }
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

if (!customElements.get("gatehouse-chat")) customElements.define("gatehouse-chat", GatehouseChat);
export {};
