import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stack } from "../helpers/stack.ts";

const s = stack();
let browser: Browser;

beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
afterAll(async () => {
  await browser?.close();
});

/** A new page with the demo user `email` signed in through the form. */
async function signedInPage(email: string): Promise<Page> {
  const user = s.demoUsers.find((u) => u.email === email)!;
  const page = await browser.newPage();
  await page.goto(s.apiUrl);
  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill(user.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in as").waitFor();
  return page;
}

describe("admin web app (Chromium)", () => {
  it("signs a member in and lists only their organizations", async () => {
    const page = await signedInPage("ada@acme.test");
    await page.getByText("Acme Robotics").waitFor();
    expect(await page.getByText("Globex Support").count()).toBe(0);
    await page.close();
  });

  it("shows the agents of the organization a member of two picks, and only those", async () => {
    const page = await signedInPage("casey@both.test");
    const agents = page.getByRole("list", { name: "Agents" });

    await page.getByRole("button", { name: "Acme Robotics" }).click();
    await agents.getByText("Returns assistant").waitFor();
    expect(await agents.getByText("Ticket triage").count()).toBe(0);

    await page.getByRole("button", { name: "Globex Support" }).click();
    await agents.getByText("Ticket triage").waitFor();
    expect(await agents.getByText("Returns assistant").count()).toBe(0);
    await page.close();
  });

  it("shows the auth error for a wrong password", async () => {
    const page = await browser.newPage();
    await page.goto(s.apiUrl);
    await page.getByLabel("Email").fill("ada@acme.test");
    await page.getByLabel("Password").fill("not-the-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    expect(await page.getByRole("alert").textContent()).toMatch(/Invalid login credentials/);
    await page.close();
  });
});

describe("web bundle", () => {
  it("contains no privileged key or secret", () => {
    const assets = join(process.cwd(), "web", "dist", "assets");
    const text = readdirSync(assets).map((f) => readFileSync(join(assets, f), "utf8")).join("\n");
    expect(text.length).toBeGreaterThan(1000);
    // Booleans, so that a failure never prints the bundle (or the secret) into the CI log.
    const leaks = { serviceRoleKey: s.serviceRoleKey, jwtSecret: s.jwtSecret, dbUrl: s.dbUrl };
    for (const [name, secret] of Object.entries(leaks)) expect(text.includes(secret), `${name} is in the web bundle`).toBe(false);
  });
});
