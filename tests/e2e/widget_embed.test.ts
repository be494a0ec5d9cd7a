/**
 * The widget embed in Chromium, on a customer's page: a local host server serves a page with a
 * strict Content-Security-Policy that loads /widget.js from the stack and puts
 * `<gatehouse-chat data-key>` on it. From an allowed origin it chats; from another origin, and
 * with the key disabled, it says chat is not available; with the model down it shows the polite
 * notice. Each state is saved as a screenshot in .local/screenshots/ to look at.
 *
 * And the widget from the console to a live page at another origin, using only what the console
 * shows (issue 25, section 2): a tenant admin turns the widget on, copies the two lines it shows
 * onto a customer's page (/shop on the same host server), and a visitor chats there. The
 * conversation survives a reload of the page. A site the key doesn't allow is refused, and the
 * Widgets screen shows that refusal with the origin that tried; after a rotation the page's old
 * key stops, and the screen says why.
 */
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { answerDialog, checkScreen, screenshot, signedInPage } from "../helpers/browser.ts";
import { createMember } from "../helpers/console.ts";
import { type ModelVendors, startModelVendors } from "../helpers/models.ts";
import { stack, superuser } from "../helpers/stack.ts";
import { createWidgetOrg, type WidgetOrg } from "../helpers/widget_org.ts";

const s = stack();
const sql = superuser();
const shots = join(process.cwd(), ".local", "screenshots");
let browser: Browser;
let host: Server;
let port = 0;
let vendors: ModelVendors;
let hooli: WidgetOrg;
let shop: WidgetOrg;
let shopAdmin: { email: string; password: string };
/** What the shop's owner pasted into /shop: the console's two lines. */
let pasted = "";
const vendorKey = `sk-hooli-${randomUUID()}`;

/** The customer's page: nothing but the embed, under a CSP that allows only the stack's script and API. */
function page(key: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hooli shop</title></head>
<body><h1>Hooli shop</h1><gatehouse-chat data-key="${key}" data-title="Hooli help"></gatehouse-chat>
<script src="${s.apiUrl}/widget.js" defer></script></body></html>`;
}

beforeAll(async () => {
  mkdirSync(shots, { recursive: true });
  vendors = await startModelVendors("embed");
  vendors.keys.add(vendorKey);
  host = createServer((req, res) => {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": `default-src 'none'; script-src ${s.apiUrl}; connect-src ${s.apiUrl}; style-src 'none'; img-src 'none'; base-uri 'none'; form-action 'none'`,
    });
    res.end(req.url === "/shop"
      ? `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body><h1>Shop</h1>\n${pasted}\n</body></html>`
      : page(hooli.key));
  });
  await new Promise<void>((done) => host.listen(0, "127.0.0.1", () => done()));
  port = (host.address() as AddressInfo).port;
  // The page's origin is http://127.0.0.1:<port>; http://localhost:<port> is another origin.
  hooli = await createWidgetOrg(sql, { name: "Hooli", origins: [`http://127.0.0.1:${port}`], vendorBaseUrl: vendors.openaiBaseUrl, vendorKey });
  shop = await createWidgetOrg(sql, { name: "Shopfront", origins: null, vendorBaseUrl: vendors.openaiBaseUrl, vendorKey });
  shopAdmin = await createMember(sql, shop.org, "tenant_admin", "shop-admin");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
afterAll(async () => {
  await browser?.close();
  await new Promise((done) => host?.close(done));
  await vendors?.close();
  await sql.end();
});

/** Opens the customer's page at `origin`, collecting CSP violations and page errors. */
async function open(origin: string): Promise<{ page: Page; problems: string[] }> {
  const p = await browser.newPage({ viewport: { width: 520, height: 560 } });
  const problems: string[] = [];
  p.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) problems.push(m.text());
  });
  p.on("pageerror", (e) => problems.push(e.message));
  await p.goto(`${origin}/`);
  return { page: p, problems };
}

describe("the widget embed (Chromium)", () => {
  it("chats on an allowed origin, under a strict CSP, with a labelled input and a live log", async () => {
    const { page: p, problems } = await open(`http://127.0.0.1:${port}`);
    const log = p.getByRole("log", { name: "Conversation" });
    expect(await log.getAttribute("aria-live")).toBe("polite");
    await p.getByLabel("Your message").fill("Do you ship to Norway?");
    await p.keyboard.press("Enter");
    await log.getByText("[local stand-in model] You said: Do you ship to Norway?").waitFor();
    // Styled by its own sheet (the page's CSP forbids inline styles, not constructed sheets).
    const heading = await p.getByRole("heading", { name: "Hooli help" }).evaluate((h) => getComputedStyle(h).backgroundColor);
    expect(heading).toBe("rgb(29, 78, 216)");
    await p.screenshot({ path: join(shots, "widget-allowed-origin.png") });
    expect(problems).toEqual([]);
    await p.close();
  });

  it("says chat is not available on another origin", async () => {
    const { page: p } = await open(`http://localhost:${port}`);
    await p.getByRole("log").getByText("Chat is not available here.").waitFor();
    expect(await p.getByLabel("Your message").isDisabled()).toBe(true);
    await p.screenshot({ path: join(shots, "widget-disallowed-origin.png") });
    await p.close();
  });

  it("shows the polite notice when the model is down", async () => {
    vendors.upstream.behave({ kind: "status", status: 503 });
    try {
      const { page: p } = await open(`http://127.0.0.1:${port}`);
      await p.getByLabel("Your message").fill("Where is my order?");
      await p.getByRole("button", { name: "Send" }).click();
      await p.getByRole("log").getByText("Sorry, I can't answer right now.", { exact: false }).waitFor();
      expect(await p.getByRole("log").textContent()).not.toMatch(/503|error/i);
      await p.screenshot({ path: join(shots, "widget-model-down.png") });
      await p.close();
    } finally {
      vendors.upstream.behave({ kind: "reply" });
    }
  });

  it("says chat is not available when the key is disabled", async () => {
    await hooli.asAdmin((tx) => tx`select public.disable_widget_key(${hooli.keyId})`);
    const { page: p } = await open(`http://127.0.0.1:${port}`);
    await p.getByRole("log").getByText("Chat is not available here.").waitFor();
    await p.screenshot({ path: join(shots, "widget-key-disabled.png") });
    await p.close();
  });
});

/** The console's Widgets screen of the shop, signed in as its admin. */
async function widgetsScreen(): Promise<Page> {
  return await signedInPage(browser, shopAdmin.email, `/o/${shop.org}/widgets`, shopAdmin.password);
}

describe("a widget from the console to a live page", () => {
  it("turns on, is previewed, is pasted from the console's two lines, chats at another origin and survives a reload", { timeout: 60_000 }, async () => {
    const console_ = await widgetsScreen();
    const form = console_.getByRole("form", { name: "Turn on a widget" });
    await form.getByLabel("Agent").selectOption({ label: "Shop assistant" });
    await form.getByLabel("Allowed origins").fill(`http://127.0.0.1:${port}`);
    await form.getByRole("button", { name: "Turn on widget" }).click();
    const shown = console_.getByLabel("Embed snippet with the new key");
    await shown.waitFor();
    pasted = (await shown.textContent()) ?? "";
    expect(pasted).toMatch(/^<script src="http:\/\/127\.0\.0\.1:\d+\/widget\.js" defer><\/script>\n<gatehouse-chat data-key="ghw_[^"]+" data-api="[^"]+"><\/gatehouse-chat>$/);
    await console_.getByRole("button", { name: "Copy the snippet", exact: true }).waitFor();
    // Before it goes on a site: the console's preview, through the widget's own path.
    await console_.getByRole("button", { name: "Preview the chat" }).click();
    const preview = console_.getByRole("region", { name: /^Preview of ghw_/ });
    await preview.getByLabel("Message to the widget").fill("Hello from the console");
    await preview.getByRole("button", { name: "Send" }).click();
    await preview.getByRole("log", { name: "Preview conversation" }).getByText(/^(Agent|Notice|Refused):/).waitFor();
    expect(await preview.getByRole("log", { name: "Preview conversation" }).textContent()).toContain("Agent: [local stand-in model] You said: Hello from the console");
    await checkScreen(console_, "widgets-turned-on");

    const page = await browser.newPage({ viewport: { width: 520, height: 640 } });
    await page.goto(`http://127.0.0.1:${port}/shop`);
    const log = page.getByRole("log", { name: "Conversation" });
    await page.getByLabel("Your message").fill("Do you ship to Norway?");
    await page.keyboard.press("Enter");
    await log.getByText("You said: Do you ship to Norway?", { exact: false }).waitFor();
    // The answer is over when Send is back (the stream has ended, and the conversation is kept).
    await page.locator("gatehouse-chat button:enabled", { hasText: "Send" }).waitFor();

    // A reload shows the conversation and goes on with it.
    await page.reload();
    await log.getByText("Do you ship to Norway?", { exact: true }).waitFor();
    await page.getByLabel("Your message").fill("And to Iceland?");
    await page.keyboard.press("Enter");
    await log.getByText("You said: And to Iceland?", { exact: false }).waitFor();
    // The page's conversation (4 messages), beside the console's preview (2), on the console's origin.
    // The answer is stored when its stream ends, which may be just after the page shows its last word.
    await expect.poll(async () => {
      const conversations = await sql`select c.id, (select count(*)::int from public.widget_messages m where m.conversation_id = c.id) as messages
                                        from public.widget_conversations c where c.org_id = ${shop.org}`;
      return conversations.map((c) => c.messages).sort();
    }, { timeout: 5_000 }).toEqual([2, 4]);
    await screenshot(page, "widget-after-reload");
    await page.close();
    await console_.context().close();
  });

  it("shows the owner a refused origin, and after a rotation why the old page stopped", { timeout: 60_000 }, async () => {
    const stranger = await browser.newPage();
    await stranger.goto(`http://localhost:${port}/shop`);
    await stranger.getByRole("log").getByText("Chat is not available here.").waitFor();
    await stranger.close();

    const console_ = await widgetsScreen();
    const refusals = console_.getByRole("table", { name: /^Recent refusals of ghw_/ });
    await refusals.getByRole("row", { name: new RegExp(`doesn't allow.*http://localhost:${port}`) }).waitFor();

    // The visitor's tab, open before the rotation, then reloaded after it.
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/shop`);
    await page.getByLabel("Your message").fill("Hello");
    await page.keyboard.press("Enter");
    await page.getByRole("log").getByText("You said: Hello", { exact: false }).waitFor();

    await console_.getByRole("button", { name: "Rotate key" }).click();
    await answerDialog(console_, "Rotate the widget key?", { confirm: "Rotate the key", typed: "Shop assistant" });
    await console_.getByLabel("Embed snippet with the new key").waitFor();

    await page.reload();
    await page.getByRole("log").getByText("Chat is not available here.").waitFor();
    expect(await page.getByRole("log").textContent()).not.toContain("Hello");
    expect(await page.getByLabel("Your message").isDisabled()).toBe(true);
    await page.close();

    await console_.reload();
    await console_.getByRole("table", { name: /^Recent refusals of ghw_/ })
      .getByRole("row", { name: /still uses the key from before its rotation/ }).waitFor();
    await checkScreen(console_, "widgets-refusals");
    await console_.context().close();
  });
});
