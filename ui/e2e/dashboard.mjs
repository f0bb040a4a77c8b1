// End-to-end test of the dashboard in headless Chromium (the system's browser, driven by
// playwright-core), against a real `skein server` that the caller started:
//
//   SKEIN_URL=http://127.0.0.1:PORT SKEIN_TOKEN=… RENDER_SERVICE=http://127.0.0.1:PORT \
//   RENDER_WORKFLOW=examples/render/render.yaml node ui/e2e/dashboard.mjs
//
// Optional: CHROMIUM (the browser's path, default /usr/bin/chromium), SCREENSHOTS (a
// directory for the pages' screenshots; default none), SKEIN_READ_TOKEN (a token with
// the read role, whose session must see and not steer). `cargo test -p cli --test it
// dashboard` runs it with a server, a render service and a token of its own.
//
// Any console error or uncaught exception on any page fails the run.

import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const axe = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const base = need("SKEIN_URL");
const token = need("SKEIN_TOKEN");
const renderService = need("RENDER_SERVICE");
const renderWorkflow = readFileSync(need("RENDER_WORKFLOW"), "utf8");
const readToken = process.env.SKEIN_READ_TOKEN || null;
const shots = process.env.SCREENSHOTS || null;
if (shots) mkdirSync(shots, { recursive: true });

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard e2e: set ${name}`);
    process.exit(2);
  }
  return v;
}

async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const errors = [];
function watch(page) {
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${page.url()}: console error: ${m.text()}`);
    // A stream that had to reconnect on loopback is a bug too (such as following the
    // stream of an execution that has ended, over and over).
    else if (m.type() === "warning" && m.text().includes("reconnecting"))
      errors.push(`${page.url()}: console warning: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  return page;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Fails on axe-core's serious and critical WCAG 2 A/AA violations on the page. */
async function accessible(page, name) {
  await page.addScriptTag({ path: axe });
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
  check(found.length === 0, `accessibility of ${name}:\n  ${found.join("\n  ")}`);
}

async function shot(page, name, options = {}) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), ...options });
}

// Records every value a progress bar shows, from the moment the page loads, so that the
// test can tell a bar that moved live from one that appeared full.
const recorder = () => {
  window.__progress = [];
  new MutationObserver(() => {
    for (const bar of document.querySelectorAll('[role="progressbar"]')) {
      const v = Number(bar.getAttribute("aria-valuenow"));
      const seen = window.__progress;
      if (seen[seen.length - 1] !== v) seen.push(v);
    }
  }).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["aria-valuenow"],
  });
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Root in a container has no user namespaces for the sandbox.
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "light" });
await context.addInitScript(recorder);
const page = watch(await context.newPage());
page.setDefaultTimeout(30_000);
const figures = {};
let step = "start";

try {
  step = "log in with a token";
  await page.goto(`${base}/`);
  await page.waitForSelector("#token");
  check(page.url().endsWith("/ui/"), `/ should lead to /ui/, not ${page.url()}`);
  await shot(page, "login");
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await page.waitForSelector(".login .error");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("h1:text-is('Executions')");

  step = "set up executions";
  await api("POST", "/v1/workflows", { name: "render", workflow: renderWorkflow });
  const fails = await api("POST", "/v1/executions?wait=10s", {
    id: "e2e-out-of-stock",
    labels: { kind: "fails" },
    input: { item: "blue-widget" },
    workflow: [
      "document: {dsl: '1.0.3', namespace: e2e, name: stock-check, version: '1.0.0'}",
      "do:",
      "  - check:",
      "      raise:",
      "        error:",
      "          type: https://example.com/errors/out-of-stock",
      "          status: 409",
      "          title: The item is out of stock",
      '          detail: ${ "item \\(.item) is out of stock" }',
    ].join("\n"),
  });
  check(fails.status === "faulted", `the failing workflow ${fails.status}`);
  const waits = await api("POST", "/v1/executions", {
    id: "e2e-approval",
    labels: { kind: "waits" },
    workflow: [
      "document: {dsl: '1.0.3', namespace: e2e, name: approval, version: '1.0.0'}",
      "do:",
      "  - hold:",
      "      wait: { minutes: 30 }",
    ].join("\n"),
  });

  step = "start the render example from its workflow page and watch its fan-out bar";
  await page.click("nav >> text=Workflows");
  await page.click("a:text-is('render')");
  await page.waitForSelector(".source .src-line");
  await page.waitForSelector(".graph .g-task");
  // The fields come from the workflow's input schema; what has none goes in as JSON.
  await page.fill("#in-service", renderService);
  await page.fill("#in-jobId", "e2e-render");
  await page.fill("#in-framesPerChunk", "2");
  await page.fill("#in-concurrency", "2");
  await page.fill("#in-json", JSON.stringify({
    params: { frames: 24, width: 192, height: 108, maxIterations: 600 },
  }));
  await page.fill("#in-labels", "kind:render");
  await shot(page, "workflow", { fullPage: true });
  await page.click("form.start button[type=submit]");
  await page.waitForURL(/\/ui\/executions\/[^?]+$/);
  const renderId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
  await page.waitForSelector('[role="progressbar"]', { timeout: 60_000 });
  await page.waitForSelector('[role="progressbar"][aria-valuenow="100"]', { timeout: 120_000 });
  const seen = await page.evaluate(() => window.__progress);
  check(
    seen.some((v) => v > 0 && v < 100) && seen[seen.length - 1] === 100,
    `the fan-out bar should move live to 100%, it showed ${JSON.stringify(seen)}`,
  );
  figures.renderProgressSteps = seen.length;
  await page.waitForSelector(".page-head .status-completed", { timeout: 60_000 });
  check((await page.locator(".g-task.g-completed").count()) > 0, "no task drawn as completed");
  await shot(page, "execution", { fullPage: true });
  await page.click("a.tab:text-is('Timeline')");
  await page.waitForSelector(".timeline canvas");
  await shot(page, "timeline");
  await page.click("a.tab:text-is('Events')");
  await page.waitForSelector(".event-log tbody tr");
  await shot(page, "events");
  await page.selectOption("#event-type", "dev.skein.task.progress.v1");
  const types = await page.locator(".event-log tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.type));
  check(types.length > 0 && types.every((t) => t === "dev.skein.task.progress.v1"), `the type filter left ${types}`);
  // Replay: at the tenth event no chunk has been rendered, so no bar is full.
  await page.fill("#replay-at", "10");
  await page.waitForSelector("text=Replaying");
  check(
    (await page.locator('[role="progressbar"][aria-valuenow="100"]').count()) === 0,
    "the replay at event 10 still shows a full fan-out bar",
  );
  await page.click("text=Back to live");
  await page.waitForSelector('[role="progressbar"][aria-valuenow="100"]');

  step = "open the failing execution from the filtered list and see its error";
  await page.goto(`${base}/ui/executions`);
  await page.selectOption("select[name=status]", "faulted");
  await page.waitForURL(/status=faulted/);
  await page.waitForSelector(`a:text-is('${fails.id}')`);
  const statuses = await page.locator("tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.status));
  check(statuses.every((s) => s === "faulted"), `status=faulted listed ${statuses}`);
  await page.click(`a:text-is('${fails.id}')`);
  await page.waitForSelector(".problem");
  const problem = await page.textContent(".problem");
  check(
    problem.includes("The item is out of stock") && problem.includes("item blue-widget is out of stock"),
    `the error shown: ${problem}`,
  );
  await shot(page, "failed", { fullPage: true });

  step = "pause and resume from the execution page";
  await page.goto(`${base}/ui/executions/${waits.id}`);
  await page.waitForSelector(".page-head .status");
  await page.click("button:text-is('Pause')");
  await page.waitForSelector(".page-head .status-suspended");
  await page.click("button:text-is('Resume')");
  await page.waitForSelector(".page-head .status-waiting, .page-head .status-running");
  check((await api("GET", `/v1/executions/${waits.id}`)).status !== "suspended", "the server still says suspended");

  step = "filter the list by label, name and time, and cancel in bulk";
  await page.goto(`${base}/ui/executions`);
  await page.fill("input[name=label]", "kind:waits");
  await page.press("input[name=label]", "Enter");
  await page.waitForURL(/label=kind%3Awaits|label=kind:waits/);
  await page.waitForSelector(`a:text-is('${waits.id}')`);
  check((await page.locator("tbody tr").count()) === 1, "label filter shows more than the one");
  await page.check(`input[aria-label="Select ${waits.id}"]`);
  await page.click("button:has-text('Cancel selected')");
  await page.waitForSelector('tbody tr[data-status="cancelled"]', { timeout: 20_000 });
  await page.goto(`${base}/ui/executions?name=render`);
  await page.waitForSelector(`a:text-is('${renderId}')`);
  const names = await page.locator("tbody tr td:nth-child(3)").allTextContents();
  check(names.every((n) => n === "render"), `name=render listed ${names}`);
  await page.goto(`${base}/ui/executions?until=2000-01-01T00:00:00.000Z`);
  await page.waitForSelector("text=No executions match.");
  await page.goto(`${base}/ui/executions`);
  await page.waitForSelector(`a:text-is('${renderId}')`);
  await shot(page, "executions");

  step = "keyboard: j, Enter, g s";
  await page.keyboard.press("j");
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/ui\/executions\/.+/);
  await page.keyboard.press("g");
  await page.keyboard.press("s");
  await page.waitForSelector("h2:text-is('Journal commits')");
  await page.waitForSelector("table[aria-label='Commit latency histogram']");
  await shot(page, "server", { fullPage: true });

  step = "a deep link in a new tab asks for the token and lands on its page";
  const deep = watch(await context.newPage());
  await deep.goto(`${base}/ui/executions/${fails.id}?tab=data`);
  await deep.waitForSelector("#token");
  await deep.fill("#token", token);
  await deep.click("button[type=submit]");
  await deep.waitForSelector("figure[aria-label='Error']");
  check((await deep.textContent("figure[aria-label='Error']")).includes("out-of-stock"), "the error JSON");
  await deep.close();

  step = "a phone and the dark theme";
  for (const [name, options] of [
    ["phone", { viewport: { width: 390, height: 844 }, colorScheme: "light", isMobile: true }],
    ["dark", { viewport: { width: 1280, height: 860 }, colorScheme: "dark" }],
  ]) {
    const other = await browser.newContext(options);
    await other.addInitScript((t) => sessionStorage.setItem("skein.token", t), token);
    const p = watch(await other.newPage());
    await p.goto(`${base}/ui/executions/${renderId}`);
    await p.waitForSelector(".graph .g-task");
    await p.waitForSelector('[role="progressbar"][aria-valuenow="100"]');
    await shot(p, name, { fullPage: name === "phone" });
    await other.close();
  }

  step = "accessibility (axe-core, WCAG 2 A and AA) of every page, in both themes";
  // A context of its own, where axe may be injected past the pages' CSP; the others
  // keep the CSP, so that the app is tested under it.
  for (const scheme of ["light", "dark"]) {
    const audit = await browser.newContext({ bypassCSP: true, colorScheme: scheme, viewport: { width: 1280, height: 860 } });
    const p = watch(await audit.newPage());
    await p.goto(`${base}/ui/`);
    await p.waitForSelector("#token");
    await accessible(p, `login (${scheme})`);
    await p.fill("#token", token);
    await p.click("button[type=submit]");
    for (const [path, ready] of [
      ["/ui/executions", "tbody tr"],
      [`/ui/executions/${renderId}`, ".graph .g-task"],
      [`/ui/executions/${renderId}?tab=events`, ".event-log tbody tr"],
      [`/ui/executions/${fails.id}?tab=data`, "figure[aria-label='Error']"],
      ["/ui/workflows", "tbody tr"],
      ["/ui/workflows/render", ".source .src-line"],
      ["/ui/workflows/new", "#wf-source"],
      ["/ui/server", "table[aria-label='Commit latency histogram']"],
    ]) {
      await p.goto(base + path);
      await p.waitForSelector(ready);
      await accessible(p, `${path} (${scheme})`);
    }
    await audit.close();
  }

  if (readToken) {
    step = "a read-only session sees, cannot steer, and asks for nothing it may not read";
    const reading = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    await reading.addInitScript((t) => sessionStorage.setItem("skein.token", t), readToken);
    const p = watch(await reading.newPage());
    await p.goto(`${base}/ui/executions/${renderId}`);
    await p.waitForSelector(".graph .g-task");
    check(await p.isDisabled("button:text-is('Cancel')"), "a read session may cancel");
    await p.waitForSelector("text=may read, not steer");
    await p.goto(`${base}/ui/server`);
    await p.waitForSelector("text=need a token with the admin role");
    await reading.close();
  }

  step = "a fan-out of 10,000 tasks on screen";
  const wide = await api("POST", "/v1/executions", {
    id: "e2e-ten-thousand",
    labels: { kind: "wide" },
    input: { n: 10000 },
    workflow: [
      "# uses: skein extension (for.concurrency)",
      "document: {dsl: '1.0.3', namespace: e2e, name: wide, version: '1.0.0'}",
      "do:",
      "  - items:",
      "      set: { items: '${ [range(.n)] }' }",
      "  - each:",
      "      for: { each: item, in: .items, concurrency: 200 }",
      "      do:",
      "        - square:",
      "            set: { value: '${ $item * $item }' }",
    ].join("\n"),
  });
  await page.goto(`${base}/ui/executions/${wide.id}`);
  await page.evaluate(() => {
    window.__longest = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: "longtask", buffered: true });
  });
  await page.waitForSelector('[role="progressbar"][aria-valuenow="100"]', { timeout: 180_000 });
  await page.waitForSelector(".page-head .status-completed", { timeout: 60_000 });
  // Responsive: a click is answered while (or just after) the events pour in.
  const began = Date.now();
  await page.click("a.tab:text-is('Timeline')");
  await page.waitForSelector(".timeline canvas");
  figures.wideFanOutClickMs = Date.now() - began;
  figures.wideFanOutLongestTaskMs = Math.round(await page.evaluate(() => window.__longest));
  check(figures.wideFanOutClickMs < 5000, `a click took ${figures.wideFanOutClickMs} ms beside a fan-out of 10,000`);
  await shot(page, "wide-fan-out");
} catch (e) {
  console.error(`dashboard e2e: failed at "${step}": ${e.message}`);
  if (shots) await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  await browser.close();
  for (const error of errors) console.error(error);
  process.exit(1);
}
await browser.close();
if (errors.length) {
  console.error(`dashboard e2e: ${errors.length} console error(s):`);
  for (const error of errors) console.error(`  ${error}`);
  process.exit(1);
}
console.log(`dashboard e2e: passed ${JSON.stringify(figures)}`);
