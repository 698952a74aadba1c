// The dashboard in a real browser (headless Chromium via playwright-core) against the
// real gateway: Envoy + filter + control plane + local provider, started by
// stack_server.py on free ports and always stopped afterwards.
//
//   cd tests/browser && npm ci && npm test       (scripts/test.sh runs this as a stage)
//
// Needs the release builds, the filter .wasm, the built dashboard (dashboard/dist) and
// Chromium (`chromium` on PATH, or CHROMIUM_BIN). Screenshots of every screen go to
// tests/browser/screenshots/ (git-ignored).

import { execSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const SHOTS = process.env.ALFRED_SCREENSHOTS ?? join(HERE, "screenshots");
const TIMEOUT = 15_000;

let stack; // { url, admin: { id, api_key }, backend }
let harness; // the stack_server.py child process
let browser;

function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      return execSync(`command -v ${name}`, { shell: "/bin/sh" }).toString().trim();
    } catch {
      // try the next name
    }
  }
  throw new Error("no Chromium found: install it (apt-get install chromium) or set CHROMIUM_BIN");
}

function startStack() {
  const venv = join(ROOT, ".venv/bin/python");
  const python = existsSync(venv) ? venv : "python3";
  harness = spawn(python, [join(HERE, "stack_server.py")], { stdio: ["pipe", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: harness.stdout });
    const timer = setTimeout(() => reject(new Error("the stack did not start within 180 s")), 180_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch (e) {
        reject(new Error(`unexpected harness output: ${line}`));
      }
    });
    harness.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the stack harness exited with ${code} before it was ready`));
    });
  });
}

async function stopStack() {
  if (!harness || harness.exitCode !== null) return;
  const exited = new Promise((resolve) => harness.once("exit", resolve));
  harness.stdin.end(); // the harness stops every process when its stdin closes
  const timer = setTimeout(() => harness.kill("SIGTERM"), 20_000);
  await exited;
  clearTimeout(timer);
}
process.on("exit", () => harness?.exitCode === null && harness.kill("SIGTERM"));

/** A JSON API call with a key, as a script or SDK would make it. */
async function call(method, path, key, body) {
  const response = await fetch(`${stack.url}${path}`, {
    method,
    headers: { "x-api-key": key, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Real traffic through Envoy and the filter to the local provider; returns the
 * usage the provider reported, per model. */
async function generateUsage(key) {
  const plan = [
    ["gpt-4o-mini", "project-alpha", "Summarise the quarterly report in two lines"],
    ["gpt-4o-mini", "project-alpha", "Hello there"],
    ["gpt-4o-mini", null, "What is the capital of France"],
    ["gpt-4o", "project-beta", "Write a haiku about credit pools"],
    ["gpt-4o", null, "Explain leases"],
  ];
  const byModel = {};
  for (const [model, project, text] of plan) {
    const response = await fetch(`${stack.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        "content-type": "application/json",
        ...(project ? { "x-project-id": project } : {}),
      },
      body: JSON.stringify({ model, max_tokens: 20, messages: [{ role: "user", content: text }] }),
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    byModel[model] = (byModel[model] ?? 0) + body.usage.total_tokens;
  }
  return { requests: plan.length, byModel, total: Object.values(byModel).reduce((a, b) => a + b, 0) };
}

async function waitFor(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last.done) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Whether a canvas has drawn pixels (a chart rendered, not an empty box). */
async function canvasHasInk(page, testId) {
  return page.locator(`[data-testid="${testId}"]`).evaluate((canvas) => {
    const { width, height } = canvas;
    if (!width || !height) return false;
    const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    let painted = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
    return painted > 500;
  });
}

async function login(page, key) {
  await page.goto(`${stack.url}/static/`);
  await page.getByTestId("api-key-input").fill(key);
  await page.getByTestId("login-submit").click();
  await page.getByTestId("logout").waitFor({ timeout: TIMEOUT });
}

const fmt = (n) => n.toLocaleString("en-US");

let usage; // what generateUsage sent
let dana; // the user created in the browser: { email, key, id }
const erin = { email: "erin@company.com" }; // a plain user, created through the API
let team; // the team created in the browser

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack();
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu"],
  });
});

after(async () => {
  await browser?.close();
  await stopStack();
});

test("the dashboard end to end", async (t) => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.url });
  const page = await context.newPage();
  // A second browser profile for the plain user, so the admin's session stays open.
  const userContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e));

  await t.test("usage generated through Envoy reaches the analytics", async () => {
    const created = await call("POST", "/v1/admin/users", stack.admin.api_key, {
      email: "traffic@company.com",
      name: "Traffic Bot",
      personal_quota: 100_000,
    });
    assert.equal(created.status, 201);
    usage = await generateUsage(created.body.api_key);
    await waitFor("usage ingestion", async () => {
      const { body } = await call("GET", "/v1/admin/analytics/summary", stack.admin.api_key);
      return { done: body.requests === usage.requests, body };
    });
  });

  await t.test("a bad key is refused with a visible message", async () => {
    await page.goto(`${stack.url}/static/`);
    await page.getByTestId("api-key-input").fill("not-a-key");
    await page.getByTestId("login-submit").click();
    await page.getByRole("alert").filter({ hasText: "starts with tp-" }).waitFor({ timeout: TIMEOUT });
    await page.getByTestId("api-key-input").fill("tp-0000000000000000000000000000000000000000000");
    await page.getByTestId("login-submit").click();
    await page.getByRole("alert").filter({ hasText: "invalid API key (HTTP 401)" }).waitFor({ timeout: TIMEOUT });
    await shot(page, "01-login");
  });

  await t.test("an admin logs in and the overview charts show the usage", async () => {
    await login(page, stack.admin.api_key);
    await page.getByTestId("page-overview").waitFor();
    await page.getByTestId("chart-cost-trend").waitFor({ timeout: TIMEOUT });
    await page.getByTestId("chart-models").waitFor();
    assert.equal(await page.getByTestId("stat-users").locator(".stat-value").textContent(), "2");
    assert.equal(await page.getByTestId("stat-requests").locator(".stat-value").textContent(), String(usage.requests));
    assert.equal(await page.getByTestId("stat-tokens").locator(".stat-hint").textContent(), `${fmt(usage.total)} tokens`);
    const modelRows = await page.getByTestId("model-table").locator("tbody tr").allTextContents();
    const expected = Object.entries(usage.byModel).sort((a, b) => b[1] - a[1]);
    assert.equal(modelRows.length, expected.length);
    expected.forEach(([model, tokens], i) => {
      assert.ok(modelRows[i].startsWith(model), modelRows[i]);
      assert.ok(modelRows[i].includes(fmt(tokens)), `${modelRows[i]} lacks ${tokens}`);
    });
    const projects = await page.getByTestId("top-projects").locator("tbody tr").allTextContents();
    assert.equal(projects.length, 3); // project-alpha, project-beta, none
    assert.ok(await canvasHasInk(page, "chart-cost-trend"), "the cost trend chart drew nothing");
    assert.ok(await canvasHasInk(page, "chart-models"), "the model chart drew nothing");
    assert.equal(await page.getByTestId("stat-teams").locator(".stat-value").textContent(), "0");
    await page.getByTestId("efficiency-table").waitFor();
    await shot(page, "02-overview");
  });

  await t.test("an admin creates a user, with validation, and sees the key once", async () => {
    await page.getByTestId("nav-users").click();
    await page.getByTestId("users-table").waitFor();
    await page.getByTestId("add-user").click();
    const form = page.getByTestId("user-form");
    await form.locator('input[name="quota"]').fill("lots");
    await page.getByTestId("user-form-submit").click();
    await page.getByTestId("error-name").waitFor();
    await page.getByTestId("error-email").waitFor();
    await page.getByTestId("error-quota").waitFor();
    await shot(page, "03-user-form-errors");

    dana = { email: "dana@company.com" };
    await form.locator('input[name="name"]').fill("Dana Scully");
    await form.locator('input[name="email"]').fill(dana.email);
    await form.locator('input[name="quota"]').fill("5000");
    await page.getByTestId("user-form-submit").click();
    const keyBox = page.getByTestId("new-api-key");
    await keyBox.waitFor({ timeout: TIMEOUT });
    dana.key = (await keyBox.textContent()).trim();
    assert.match(dana.key, /^tp-[A-Za-z0-9_-]{43}$/);
    await page.getByTestId("copy-key").click();
    await page.getByTestId("copy-key").filter({ hasText: "Copied" }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), dana.key);
    await shot(page, "04-user-key-once");
    await page.getByRole("button", { name: "I have saved the key" }).click();
    await keyBox.waitFor({ state: "detached" });
    // Shown once: nowhere on the page any more.
    assert.equal(await page.getByText(dana.key).count(), 0);
    const row = page.getByTestId(`user-row-${dana.email}`);
    await row.waitFor();
    assert.ok((await row.textContent()).includes("5,000"));
    assert.equal((await call("GET", "/v1/users/me/quota", dana.key)).status, 200);
  });

  await t.test("an admin edits the user, sets vacation, and sees API errors", async () => {
    const row = page.getByTestId(`user-row-${dana.email}`);
    await row.getByTestId("edit").click();
    const form = page.getByTestId("user-form");
    await form.locator('input[name="email"]').fill("admin@company.com");
    await page.getByTestId("user-form-submit").click();
    await form.getByRole("alert").filter({ hasText: "already exists (HTTP 409)" }).first().waitFor({ timeout: TIMEOUT });
    await shot(page, "05-user-edit-error");
    await form.locator('input[name="email"]').fill(dana.email);
    await form.locator('input[name="name"]').fill("Dana K. Scully");
    await form.locator('input[name="quota"]').fill("7500");
    await form.locator('select[name="status"]').selectOption("on_vacation");
    await page.getByTestId("user-form-submit").click();
    await form.waitFor({ state: "detached", timeout: TIMEOUT });
    await row.filter({ hasText: "Dana K. Scully" }).waitFor({ timeout: TIMEOUT });
    const text = await row.textContent();
    assert.ok(text.includes("7,500"), text);
    assert.ok(text.includes("On vacation"), text);
    await shot(page, "06-users");
  });

  await t.test("an admin rotates the key: the new one works, the old one stops", async () => {
    await page.getByTestId(`user-row-${dana.email}`).getByTestId("rotate").click();
    await page.getByTestId("confirm").click();
    const keyBox = page.getByTestId("new-api-key");
    await keyBox.waitFor({ timeout: TIMEOUT });
    const rotated = (await keyBox.textContent()).trim();
    assert.notEqual(rotated, dana.key);
    await page.getByRole("button", { name: "I have saved the key" }).click();
    assert.equal((await call("GET", "/v1/users/me/quota", dana.key)).status, 401);
    assert.equal((await call("GET", "/v1/users/me/quota", rotated)).status, 200);
    dana.key = rotated;
  });

  await t.test("an admin sets a user's status from the row and toggles the overdraft", async () => {
    const row = page.getByTestId(`user-row-${dana.email}`);
    await row.getByTestId("status-select").selectOption("active");
    await row.locator("select.status-active").waitFor({ timeout: TIMEOUT });
    const stored = async () => (await call("GET", "/v1/admin/users", stack.admin.api_key)).body.find((u) => u.email === dana.email);
    assert.equal((await stored()).status, "active");
    // Overdraft is on by default: turn it off in the edit form.
    assert.equal(await row.getByTestId("overdraft").textContent(), "On");
    await row.getByTestId("edit").click();
    const form = page.getByTestId("user-form");
    await form.locator('input[name="overdraft_enabled"]').uncheck();
    await page.getByTestId("user-form-submit").click();
    await form.waitFor({ state: "detached", timeout: TIMEOUT });
    await row.getByTestId("overdraft").filter({ hasText: "Off" }).waitFor({ timeout: TIMEOUT });
    const after = await stored();
    assert.equal(after.overdraft_enabled, false);
    assert.equal(after.status, "active");
    dana.id = after.id;
  });

  await t.test("an admin creates a team, with validation, and manages its members", async () => {
    const created = await call("POST", "/v1/admin/users", stack.admin.api_key, { email: erin.email, name: "Erin Brockovich", personal_quota: 3000 });
    assert.equal(created.status, 201);
    erin.id = created.body.id;
    erin.key = created.body.api_key;

    await page.getByTestId("nav-teams").click();
    await page.getByTestId("teams-table").waitFor({ timeout: TIMEOUT });
    await page.getByTestId("add-team").click();
    const form = page.getByTestId("team-form");
    await form.locator('input[name="pool"]').fill("lots");
    await page.getByTestId("team-form-submit").click();
    await page.getByTestId("error-team-name").waitFor();
    await page.getByTestId("error-team-pool").waitFor();
    await shot(page, "11-team-form-errors");
    await form.locator('input[name="name"]').fill("Research");
    await form.locator('textarea[name="description"]').fill("Model evaluation");
    await form.locator('input[name="pool"]').fill("20000");
    await page.getByTestId("team-form-submit").click();
    await page.getByTestId("page-team").waitFor({ timeout: TIMEOUT });
    assert.equal(await page.getByTestId("team-name").textContent(), "Research");
    assert.equal(await page.getByTestId("team-pool").locator(".stat-value").textContent(), "20,000");

    const addMember = async (email) => {
      await page.getByTestId("add-member-form").locator('input[name="member"]').fill(email);
      await page.getByTestId("add-member").click();
      await page.getByTestId(`member-row-${email}`).waitFor({ timeout: TIMEOUT });
    };
    // An unknown email is refused before any call.
    await page.getByTestId("add-member-form").locator('input[name="member"]').fill("nobody@company.com");
    await page.getByTestId("add-member").click();
    await page.getByTestId("error-member").filter({ hasText: "No user has the email" }).waitFor();
    await addMember(dana.email);
    await addMember(erin.email);
    const danaRow = page.getByTestId(`member-row-${dana.email}`);
    assert.ok((await danaRow.textContent()).includes("Active"));
    await danaRow.getByTestId("toggle-team-admin").click();
    await danaRow.getByTestId("team-admin-badge").waitFor({ timeout: TIMEOUT });
    await shot(page, "12-team-detail");

    const { body: teams } = await call("GET", "/v1/admin/teams", stack.admin.api_key);
    assert.equal(teams.length, 1);
    team = teams[0];
    const { body: detail } = await call("GET", `/v1/admin/teams/${team.id}`, stack.admin.api_key);
    assert.deepEqual(
      detail.members.map((m) => [m.email, m.is_admin]).sort(),
      [[dana.email, true], [erin.email, false]],
    );

    await page.getByRole("link", { name: "← All teams" }).click();
    const listRow = page.getByTestId("team-row-Research");
    await listRow.waitFor({ timeout: TIMEOUT });
    assert.ok((await listRow.getByTestId("members").textContent()).startsWith("2"));
    assert.equal(await listRow.getByTestId("pool-used").textContent(), `${fmt(detail.pool_used)} / ${fmt(detail.pool_size)}`);
    await shot(page, "13-teams");
  });

  await t.test("a user transfers credits; the admin filters the history, exports the CSV and approves a pending one", async () => {
    const userPage = await userContext.newPage();
    userPage.on("pageerror", (e) => pageErrors.push(e));
    await login(userPage, erin.key);
    await userPage.getByTestId("nav-transfers").click();
    await userPage.getByTestId("transferable").filter({ hasText: "3,000" }).waitFor({ timeout: TIMEOUT });
    const form = userPage.getByTestId("transfer-form");
    await form.locator('input[name="recipient_email"]').fill(dana.email);
    await form.locator('input[name="amount"]').fill("5000");
    await form.locator('input[name="reason"]').fill("Too much");
    await userPage.getByTestId("transfer-submit").click();
    // The API's refusal (422 insufficient_quota) is shown at the amount.
    await userPage.getByTestId("error-amount").filter({ hasText: "exceeds your transferable personal credit of 3000 tokens" }).waitFor({ timeout: TIMEOUT });
    await shot(userPage, "14-transfer-error");

    await form.locator('input[name="amount"]').fill("700");
    await form.locator('input[name="reason"]').fill("Deadline support");
    await userPage.getByTestId("transfer-submit").click();
    await userPage.getByTestId("transfer-done").filter({ hasText: "Sent 700 tokens to dana@company.com" }).waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("transferable").filter({ hasText: "2,300" }).waitFor({ timeout: TIMEOUT });
    await form.locator('input[name="recipient_email"]').fill(dana.email);
    await form.locator('input[name="amount"]').fill("1500");
    await form.locator('input[name="reason"]').fill("Launch week");
    await userPage.getByTestId("transfer-submit").click();
    await userPage.getByTestId("transfer-done").filter({ hasText: "wait for approval" }).waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("transferable").filter({ hasText: "800" }).waitFor({ timeout: TIMEOUT });
    const mine = await userPage.getByTestId("my-transfers-table").locator("tbody tr").allTextContents();
    assert.equal(mine.length, 2);
    await shot(userPage, "15-transfers-user");
    await userPage.close();

    const { body: all } = await call("GET", "/v1/admin/transfers", stack.admin.api_key);
    const completed = all.find((x) => x.amount === 700);
    const pending = all.find((x) => x.amount === 1500);
    assert.equal(completed.status, "completed");
    assert.equal(pending.status, "pending");

    await page.getByTestId("nav-transfers").click();
    const history = page.getByTestId("history-table");
    await history.locator(`[data-testid="history-row-${completed.id}"]`).waitFor({ timeout: TIMEOUT });
    await history.locator(`[data-testid="history-row-${pending.id}"]`).waitFor();

    const filters = page.getByTestId("transfer-filters");
    await filters.locator('input[name="min_amount"]').fill("800");
    await filters.locator('input[name="max_amount"]').fill("600");
    await page.getByTestId("apply-filters").click();
    await page.getByTestId("error-filter-max").waitFor();
    const today = new Date().toISOString().slice(0, 10);
    await filters.locator('input[name="from"]').fill(today);
    await filters.locator('input[name="to"]').fill(today);
    await filters.locator('select[name="user_id"]').selectOption({ label: erin.email });
    await filters.locator('input[name="min_amount"]').fill("600");
    await filters.locator('input[name="max_amount"]').fill("800");
    await filters.locator('select[name="status"]').selectOption("completed");
    await page.getByTestId("apply-filters").click();
    await history.locator(`[data-testid="history-row-${pending.id}"]`).waitFor({ state: "detached", timeout: TIMEOUT });
    // The table is re-rendered once the filtered page arrives: wait for it, not for the
    // moment the old rows are gone.
    const { rows: shown } = await waitFor("the filtered history", async () => {
      const rows = await history.locator("tbody tr").allTextContents();
      return { done: rows.length === 1, rows };
    });
    assert.ok(shown[0].includes("700") && shown[0].includes("Deadline support"), shown[0]);
    await shot(page, "16-transfer-history-filtered");

    const [download] = await Promise.all([page.waitForEvent("download", { timeout: TIMEOUT }), page.getByTestId("export-csv").click()]);
    assert.equal(download.suggestedFilename(), `transfers-${today}-to-${today}.csv`);
    const csv = readFileSync(await download.path(), "utf8");
    const lines = csv.split("\r\n").filter(Boolean);
    assert.deepEqual(lines, [
      "id,created_at,sender_email,recipient_email,amount,reason,status,decided_at,decided_by",
      `${completed.id},${completed.created_at},erin@company.com,dana@company.com,700,Deadline support,completed,${completed.decided_at ?? ""},${completed.decided_by ?? ""}`,
    ]);

    // Approve the pending one from the (reset) history.
    const before = (await call("GET", "/v1/users/me/quota", dana.key)).body.available_quota;
    await page.getByTestId("reset-filters").click();
    const pendingRow = history.locator(`[data-testid="history-row-${pending.id}"]`);
    await pendingRow.getByTestId("approve-transfer").click();
    await page.getByTestId("decision-form").locator('textarea[name="note"]').fill("Approved for launch");
    await page.getByTestId("decision-submit").click();
    await page.getByTestId("decision-form").waitFor({ state: "detached", timeout: TIMEOUT });
    await pendingRow.filter({ hasText: "Completed" }).waitFor({ timeout: TIMEOUT });
    assert.ok((await pendingRow.textContent()).includes("Approved for launch"));
    const after = (await call("GET", "/v1/users/me/quota", dana.key)).body.available_quota;
    assert.equal(after - before, 1500);
    await shot(page, "17-transfer-history");
  });

  await t.test("a user asks for quota; the admin approves it in the inbox and the quota rises by exactly that", async () => {
    const userPage = await userContext.newPage();
    userPage.on("pageerror", (e) => pageErrors.push(e));
    await userPage.goto(`${stack.url}/static/requests`);
    const form = userPage.getByTestId("request-form");
    await form.waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("request-submit").click();
    await userPage.getByTestId("error-request-amount").waitFor();
    await userPage.getByTestId("error-request-reason").waitFor();
    await form.locator('input[name="amount"]').fill("2500");
    await form.locator('input[name="reason"]').fill("Quarter close");
    await userPage.getByTestId("request-submit").click();
    await userPage.getByTestId("request-done").waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("my-requests-table").locator("tbody tr").filter({ hasText: "Pending" }).waitFor({ timeout: TIMEOUT });
    await shot(userPage, "18-request-quota");

    const before = (await call("GET", "/v1/users/me/quota", erin.key)).body.available_quota;
    await page.getByTestId("nav-approvals").click();
    const requests = page.getByTestId("requests-table");
    const row = requests.locator("tbody tr").filter({ hasText: "Quarter close" });
    // The requester by name and email (the API gives only the id).
    await row.filter({ hasText: `Erin Brockovich <${erin.email}>` }).waitFor({ timeout: TIMEOUT });
    assert.ok((await row.textContent()).includes("2,500"));
    await shot(page, "19-approvals");
    await row.getByTestId("approve-request").click();
    await page.getByTestId("decision-form").locator('textarea[name="note"]').fill("Granted");
    await page.getByTestId("decision-submit").click();
    await page.getByTestId("decision-done").filter({ hasText: "Approved: 2,500 tokens" }).waitFor({ timeout: TIMEOUT });
    await page.getByText("No pending quota requests.").waitFor({ timeout: TIMEOUT });
    const after = (await call("GET", "/v1/users/me/quota", erin.key)).body.available_quota;
    assert.equal(after - before, 2500);

    await userPage.reload();
    await userPage.getByTestId("request-available").filter({ hasText: fmt(after) }).waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("my-requests-table").locator("tbody tr").filter({ hasText: "Approved" }).filter({ hasText: "Granted" }).waitFor({ timeout: TIMEOUT });
    await userPage.close();
  });

  await t.test("the bell counts unread notifications; the list marks them read", async () => {
    const userPage = await userContext.newPage();
    userPage.on("pageerror", (e) => pageErrors.push(e));
    await userPage.goto(`${stack.url}/static/me`);
    const { body: unread } = await call("GET", "/v1/users/me/notifications?unread=true", erin.key);
    assert.ok(unread.length >= 1, "the decision notified the user");
    await userPage.getByTestId("bell-count").filter({ hasText: String(unread.length) }).waitFor({ timeout: TIMEOUT });
    await userPage.getByTestId("bell").click();
    const list = userPage.getByTestId("notification-list");
    await waitFor("every unread notification listed", async () => {
      const count = await list.locator("li.unread").count();
      return { done: count === unread.length, count, expected: unread.length };
    });
    await shot(userPage, "20-notifications");
    await userPage.getByTestId("mark-all-read").click();
    await userPage.getByTestId("bell-count").waitFor({ state: "detached", timeout: TIMEOUT });
    await waitFor("the list shown as read", async () => {
      const count = await list.locator("li.unread").count();
      return { done: count === 0, count };
    });
    assert.equal((await call("GET", "/v1/users/me/notifications?unread=true", erin.key)).body.length, 0);
  });

  await t.test("a plain user cannot reach admin or team-admin screens", async () => {
    const userPage = await userContext.newPage();
    userPage.on("pageerror", (e) => pageErrors.push(e));
    await userPage.goto(`${stack.url}/static/`);
    await userPage.getByTestId("page-me").waitFor({ timeout: TIMEOUT });
    for (const nav of ["overview", "users", "teams", "approvals"]) assert.equal(await userPage.getByTestId(`nav-${nav}`).count(), 0, nav);
    for (const nav of ["me", "transfers", "requests", "notifications", "guide"]) assert.equal(await userPage.getByTestId(`nav-${nav}`).count(), 1, nav);
    await shot(userPage, "21-user-my-usage");
    for (const path of ["teams", `teams/${team.id}`, "approvals", "users"]) {
      await userPage.goto(`${stack.url}/static/${path}`);
      await userPage.getByTestId("forbidden").waitFor({ timeout: TIMEOUT });
    }
    await shot(userPage, "22-user-forbidden-teams");
    // The user's own transfer screen has no history (an approver's tool).
    await userPage.goto(`${stack.url}/static/transfers`);
    await userPage.getByTestId("transfer-form").waitFor({ timeout: TIMEOUT });
    assert.equal(await userPage.getByTestId("transfer-history").count(), 0);
    const statuses = await userPage.evaluate(() =>
      Promise.all(["/v1/admin/teams", "/v1/admin/transfers", "/v1/admin/quota-requests"].map((p) => fetch(p).then((r) => r.status))),
    );
    assert.deepEqual(statuses, [403, 403, 403]);
    await userPage.close();
  });

  await t.test("a team admin sees their own team and approvals, not the admin screens", async () => {
    const tPage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    tPage.on("pageerror", (e) => pageErrors.push(e));
    await login(tPage, dana.key);
    await tPage.getByTestId("nav-teams").waitFor({ timeout: TIMEOUT });
    assert.equal(await tPage.getByTestId("nav-approvals").count(), 1);
    assert.equal(await tPage.getByTestId("nav-users").count(), 0);
    await tPage.getByTestId("nav-teams").click();
    await tPage.getByTestId("team-row-Research").waitFor({ timeout: TIMEOUT });
    assert.equal(await tPage.getByTestId("add-team").count(), 0);
    await tPage.getByTestId("team-row-Research").getByTestId("open-team").click();
    await tPage.getByTestId(`member-row-${erin.email}`).waitFor({ timeout: TIMEOUT });
    assert.equal(await tPage.getByTestId("delete-team").count(), 0);
    assert.equal(await tPage.getByTestId("toggle-team-admin").count(), 0);
    assert.equal(await tPage.getByTestId("add-member-form").count(), 0); // adding is for admins
    assert.equal(await tPage.getByTestId(`member-row-${erin.email}`).getByTestId("remove-member").count(), 1);
    assert.equal(await tPage.getByTestId(`member-row-${dana.email}`).getByTestId("remove-member").count(), 0);
    await shot(tPage, "23-team-admin-team");
    await tPage.goto(`${stack.url}/static/users`);
    await tPage.getByTestId("forbidden").waitFor({ timeout: TIMEOUT });
    await tPage.close();
  });

  await t.test("dark mode persists across a reload", async () => {
    await page.getByTestId("nav-overview").click();
    await page.getByTestId("chart-cost-trend").waitFor({ timeout: TIMEOUT });
    // The choice is saved by the click itself: a reload or closed tab right after it
    // (before the next paint) keeps it.
    const savedAtClick = await page.evaluate(() => {
      document.querySelector('[data-testid="theme-toggle"]').click();
      return localStorage.getItem("alfred-theme");
    });
    assert.equal(savedAtClick, "dark");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    await page.reload();
    await page.getByTestId("chart-cost-trend").waitFor({ timeout: TIMEOUT });
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    assert.equal(await page.evaluate(() => localStorage.getItem("alfred-theme")), "dark");
    assert.equal(await page.getByTestId("stat-teams").locator(".stat-value").textContent(), "1");
    const traffic = page.getByTestId("efficiency-row-traffic@company.com");
    await traffic.waitFor({ timeout: TIMEOUT });
    assert.equal((await traffic.locator("td").first().textContent()).trim(), "1");
    assert.ok((await traffic.textContent()).includes(fmt(Math.round(usage.total / usage.requests))));
    assert.ok(await canvasHasInk(page, "chart-cost-trend"), "the cost trend chart drew nothing in dark mode");
    await shot(page, "07-overview-dark");
    await page.getByTestId("theme-toggle").click();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), undefined);
  });

  await t.test("the user guide is built in", async () => {
    await page.getByTestId("nav-guide").click();
    await page.getByTestId("page-guide").getByRole("heading", { name: "Quick start" }).waitFor();
    await shot(page, "08-user-guide");
  });

  await t.test("an ended session sends the app back to the log-in", async () => {
    await context.addCookies([{ name: "alfred_session", value: "forged.token.value", url: stack.url }]);
    await page.getByTestId("nav-me").click();
    await page.getByTestId("login-form").waitFor({ timeout: TIMEOUT });
    await page.getByText("Your session has ended").waitFor();
  });

  await t.test("log out ends the session", async () => {
    await login(page, stack.admin.api_key);
    await page.getByTestId("logout").click();
    await page.getByTestId("login-form").waitFor({ timeout: TIMEOUT });
    const status = await page.evaluate(() => fetch("/v1/auth/session").then((r) => r.status));
    assert.equal(status, 401);
    assert.equal((await context.cookies()).filter((c) => c.name === "alfred_session").length, 0);
  });

  await t.test("a user sees their own view and cannot reach admin screens", async () => {
    await login(page, dana.key);
    await page.getByTestId("page-me").waitFor({ timeout: TIMEOUT });
    assert.equal(await page.getByTestId("quota-personal").locator(".stat-value").textContent(), "7,500");
    assert.equal(await page.getByTestId("nav-users").count(), 0);
    assert.equal(await page.getByTestId("nav-overview").count(), 0);
    await shot(page, "09-my-usage");
    await page.goto(`${stack.url}/static/users`);
    await page.getByTestId("forbidden").waitFor({ timeout: TIMEOUT });
    await shot(page, "10-user-forbidden");
    const statuses = await page.evaluate(() =>
      Promise.all(["/v1/admin/users", "/v1/admin/analytics/summary"].map((p) => fetch(p).then((r) => r.status))),
    );
    assert.deepEqual(statuses, [403, 403]);
  });

  await t.test("an admin deletes the team after confirming", async () => {
    await page.getByTestId("logout").click();
    await login(page, stack.admin.api_key);
    await page.goto(`${stack.url}/static/teams/${team.id}`);
    await page.getByTestId("delete-team").click();
    await page.getByRole("dialog").getByText("Delete Research?").waitFor();
    await page.getByTestId("confirm").click();
    await page.getByTestId("teams-table").getByText("No teams yet.").waitFor({ timeout: TIMEOUT });
    assert.deepEqual((await call("GET", "/v1/admin/teams", stack.admin.api_key)).body, []);
  });

  await t.test("an admin deletes the user", async () => {
    await page.getByTestId("nav-users").click();
    await page.getByTestId(`user-row-${dana.email}`).getByTestId("delete").click();
    await page.getByTestId("confirm").click();
    await page.getByTestId(`user-row-${dana.email}`).waitFor({ state: "detached", timeout: TIMEOUT });
    assert.equal((await call("GET", "/v1/users/me/quota", dana.key)).status, 401);
  });

  assert.deepEqual(pageErrors, [], "uncaught errors in the page");
  await userContext.close();
  await context.close();
});
