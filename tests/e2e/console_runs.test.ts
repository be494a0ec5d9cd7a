/**
 * The console's Runs screens in Chromium (issue 24): a contributor starts a run with an input,
 * opens its timeline and cancels it in a confirmation dialog (whose Cancel changes nothing); a
 * viewer reads a run's telemetry and transcript with no controls. Each screen is checked with axe-core and photographed into
 * .local/screenshots/.
 */
import { afterAll, describe, expect, it } from "vitest";
import { checkScreen, signedInPage, suiteBrowser } from "../helpers/browser.ts";
import { ACME, ACME_RUN } from "../helpers/fixtures.ts";
import { superuser } from "../helpers/stack.ts";

const db = superuser();
const browser = suiteBrowser();
afterAll(() => db.end());

describe("runs", () => {
  it("lets a contributor run an agent now with an input, follow it and cancel it", async () => {
    const page = await signedInPage(browser(), "casey@both.test", `/o/${ACME}/runs`);
    await page.getByRole("table", { name: "Runs" }).waitFor();
    await checkScreen(page, "runs");

    const form = page.getByRole("form", { name: "Run an agent now" });
    await form.getByLabel("Input (a JSON object)").fill('{"order": 1042}');
    await form.getByRole("button", { name: "Run now" }).click();
    const started = await page.getByRole("status").getByText(/^Run [0-9a-f]{8} started\.$/).textContent();
    const prefix = /Run ([0-9a-f]{8})/.exec(started ?? "")![1];
    const [run] = await db`select id, status, input from public.agent_runs where id::text like ${prefix + "%"} and org_id = ${ACME}`;
    // Queued for the worker (this suite runs without one, so it stays queued until cancelled).
    expect(run).toMatchObject({ status: "queued", input: { order: 1042 } });

    await page.getByRole("table", { name: "Runs" }).getByRole("link", { name: prefix }).click();
    await page.getByRole("heading", { name: new RegExp(`Run ${prefix}`) }).waitFor();
    // The dialog says what happens; its Cancel changes nothing.
    await page.getByRole("button", { name: "Cancel this run" }).click();
    const dialog = page.getByRole("dialog", { name: "Cancel this run?" });
    await dialog.getByText("The run stops at its next step", { exact: false }).waitFor();
    await checkScreen(page, "run-cancel-dialog");
    await dialog.getByRole("button", { name: "Cancel", exact: true }).click();
    await dialog.waitFor({ state: "detached" });
    expect((await db`select status from public.agent_runs where id = ${run.id}`)[0].status).toBe("queued");
    await page.getByRole("button", { name: "Cancel this run" }).click();
    await page.getByRole("dialog", { name: "Cancel this run?" }).getByRole("button", { name: "Yes, cancel the run" }).click();
    await page.getByRole("status").getByText("The run was cancelled.").waitFor();
    const [after] = await db`select status, ended_at is not null as ended from public.agent_runs where id = ${run.id}`;
    expect(after).toEqual({ status: "cancelled", ended: true });
    // The timeline reloads as ended: no cancel any more.
    await page.getByText("The run stops at its next step", { exact: false }).waitFor({ state: "detached" });
    await page.getByRole("button", { name: "Cancel this run" }).waitFor({ state: "detached" });
    await page.context().close();
  });

  it("shows a viewer a run's telemetry and transcript, and no controls", async () => {
    const page = await signedInPage(browser(), "victor@acme.test", `/o/${ACME}/runs/${ACME_RUN}`);
    await page.getByRole("table", { name: "Telemetry" }).getByText("slack.post_message").waitFor();
    await page.getByText("Summarise today's refunds.", { exact: false }).waitFor();
    expect(await page.getByRole("button", { name: "Cancel this run" }).count()).toBe(0);
    await checkScreen(page, "run-viewer");
    await page.goto(page.url().replace(/\/runs\/.*$/, "/runs"));
    await page.getByRole("table", { name: "Runs" }).waitFor();
    expect(await page.getByRole("button", { name: "Run now" }).count()).toBe(0);
    await page.context().close();
  });
});
