// The React demos in headless Chromium, signed in by the session cookie only:
//   /demo/react       the vendor guide's DashboardEmbed and DashboardTokenManager as written;
//   /demo/react-ours  the gateway's own binding (/static/embed-react.js).
// The gateway runs with TTL 303 s and buffer 300 s: a token is reused for 3 s of server time, the
// guide's manager (five minutes before expiry) and the gateway agree, and the page's clock is
// moved with Playwright's clock rather than waited for.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { startGateway } from "../js/support.mjs";
import { CHROMIUM, CHROMIUM_FLAGS, chromiumMissing, saveScreenshot } from "./chromium.mjs";

const TTL = 303;
const BUFFER = 300;
const VENDOR_PATH = "/api/dashboards/iframe-token";

async function launch(workDir) {
  const { chromium } = await import("playwright-core");
  return chromium.launchPersistentContext(join(workDir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1100, height: 820 },
  });
}

/** Every token request the page makes, with its headers, body and (once known) answer. */
function recordTokenRequests(page) {
  const seen = [];
  page.on("request", (request) => {
    if (new URL(request.url()).pathname !== VENDOR_PATH) return;
    const entry = { headers: request.headers(), body: JSON.parse(request.postData()), answer: null };
    seen.push(entry);
    request
      .response()
      .then(async (response) => {
        entry.status = response.status();
        entry.answer = await response.json();
      })
      .catch(() => {});
  });
  return seen;
}

function problemsOf(page) {
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !msg.location().url.endsWith("/favicon.ico")) {
      problems.push(`console: ${msg.text()}`);
    }
  });
  return problems;
}

// Polled from here: Playwright's waitForFunction evaluates strings, which the page's CSP forbids.
async function until(read, accept, what, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  let value;
  while (Date.now() < deadline) {
    value = await read();
    if (accept(value)) return value;
    await sleep(100);
  }
  throw new Error(`${what}: not reached in ${timeout} ms; last seen ${JSON.stringify(value)}`);
}

// What every iframe on the page shows (same origin: the frames' documents are readable).
function frames() {
  return [...document.querySelectorAll("iframe")].map((frame) => {
    const main = frame.contentDocument?.querySelector("main");
    return {
      src: frame.getAttribute("src"),
      verified: main?.dataset.verified ?? null,
      dashboard: main?.dataset.dashboard ?? null,
      tokenSha: main?.dataset.tokenSha ?? null,
    };
  });
}

function managerState() {
  const panel = document.getElementById("manager");
  return { calls: Number(panel.dataset.calls), token: panel.dataset.token };
}

/** A dev gateway (TTL, BUFFER) and a Chromium page on it for `run`; both gone afterwards. */
async function withDemo(prefix, run) {
  const workDir = await mkdtemp(join(tmpdir(), prefix));
  const gateway = await startGateway({ dev: true, ttl: TTL, buffer: BUFFER });
  const context = await launch(workDir);
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = problemsOf(page);
    const requests = recordTokenRequests(page);
    await run({ page, context, gateway, workDir, problems, requests });
  } finally {
    await context.close();
    await gateway.stop();
    await rm(workDir, { recursive: true, force: true });
  }
}

const skip = chromiumMissing();
// The fingerprint the dev verifier shows: the first 12 hex digits of the token's SHA-256.
const shaOf = (token) => createHash("sha256").update(token).digest("hex").slice(0, 12);

test("the guide's React code, unchanged, works on the session cookie", { skip, timeout: 120_000 }, async (t) => {
  await withDemo("gateway-react-", async ({ page, context, gateway, workDir, problems, requests }) => {
    // The page's Date stands still at the start (timers still run): its clock moves only when
    // the test says so, so "within the buffer" and "past it" do not depend on the machine's speed.
    const start = Date.now();
    await page.clock.setFixedTime(start);

    // Not signed in: the React page sends the browser to the dev login, which sets the cookie.
    const landed = await page.goto(`${gateway.url}/demo/react`);
    assert.equal(new URL(landed.url()).pathname, "/demo/react");
    const cookies = await context.cookies();
    const [session] = cookies.filter((c) => c.name === "demo_session");
    t.diagnostic(JSON.stringify(cookies.map(({ name, httpOnly, sameSite }) => ({ name, httpOnly, sameSite }))));
    assert.ok(session, "the login route set the session cookie");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Lax");

    // The guide's DashboardEmbed: one POST, camelCase body, no Authorization, verified iframe.
    const [shown] = await until(() => page.evaluate(frames), (f) => f[0]?.verified === "true", "verified dashboard");
    assert.equal(shown.dashboard, "dashboard-789");
    assert.ok(shown.src.startsWith(`${gateway.url}/embedded/dashboard?embedded-token=`), shown.src);
    assert.equal(requests.length, 1);
    assert.deepEqual(requests[0].body, { tenantId: "org-123", workspaceId: "workspace-456", dashboardId: "dashboard-789" });
    assert.equal(requests[0].headers.authorization, undefined);
    assert.equal(requests[0].headers["content-type"], "application/json");

    // The guide's DashboardTokenManager: the first call fetches...
    await page.click("#get-token");
    const first = await until(() => page.evaluate(managerState), (s) => s.calls === 1 && s.token, "first token");
    assert.equal(requests.length, 2);
    const firstAnswer = await until(() => requests[1].answer, Boolean, "first answer");
    assert.equal(firstAnswer.token, first.token);

    // ...a second call within the buffer reuses its token without a request...
    await page.click("#get-token");
    const reused = await until(() => page.evaluate(managerState), (s) => s.calls === 2, "second call");
    assert.equal(reused.token, first.token);
    assert.equal(requests.length, 2, "no request within the buffer");

    // ...and past the buffer (page clock one second past expires_at - 5 min) it fetches again.
    // The gateway's own clock must also be past its buffer to mint anew: at most TTL - BUFFER s.
    const stale = (firstAnswer.expires_at - BUFFER + 1) * 1000;
    await sleep(Math.max(0, stale - Date.now()));
    await page.clock.setFixedTime(stale);
    await page.click("#get-token");
    const renewed = await until(() => page.evaluate(managerState), (s) => s.calls === 3, "third call");
    assert.equal(requests.length, 3, "one request past the buffer");
    assert.notEqual(renewed.token, first.token, "a new token past the buffer");
    assert.deepEqual(problems, []);

    await page.clock.setFixedTime(start);
    await saveScreenshot(t, page, join(workDir, "react-demo.png"), process.env.REACT_SCREENSHOT);
  });
});

test("our React binding: shared cache, single flight, per dashboard, refresh, quiet after unmount", { skip, timeout: 120_000 }, async () => {
  await withDemo("gateway-react-ours-", async ({ page, gateway, problems, requests }) => {
    const forDashboard = (id) => requests.filter((r) => r.body.dashboard_id === id);

    await page.goto(`${gateway.url}/demo/login?next=/demo/react-ours`);
    await page.goto(`${gateway.url}/demo/react-ours?other=dashboard-other`);
    const mounted = await until(
      () => page.evaluate(frames),
      (f) => f.length === 3 && f.every((x) => x.verified === "true"),
      "three verified dashboards",
    );
    // Two components on one dashboard share one token from one request; the other has its own.
    assert.equal(mounted[0].tokenSha, mounted[1].tokenSha);
    assert.equal(mounted[2].dashboard, "dashboard-other");
    assert.notEqual(mounted[2].tokenSha, mounted[0].tokenSha);
    const answered = (sha) => requests.filter((r) => r.answer && shaOf(r.answer.token) === sha);
    await until(() => answered(mounted[0].tokenSha).length, (n) => n >= 1, "first answer");
    assert.equal(answered(mounted[0].tokenSha).length, 1, "both components, one request");
    assert.equal(answered(mounted[2].tokenSha).length, 1);
    assert.equal(requests[0].headers.authorization, undefined, "the cookie carries the caller");

    // With 3 s of reuse, the binding swaps in a new token (one request for both components).
    const refreshed = await until(
      () => page.evaluate(frames),
      (f) =>
        f.length === 3 &&
        f.every((x) => x.verified === "true") &&
        ![mounted[0].tokenSha, null].includes(f[0].tokenSha) &&
        f[1].tokenSha === f[0].tokenSha,
      "both components on a refreshed token",
    );
    await until(() => answered(refreshed[0].tokenSha).length, (n) => n >= 1, "refresh answer");
    assert.equal(answered(refreshed[0].tokenSha).length, 1, "both components, one refresh request");

    // Unmounted: nothing more is fetched, even past the next refresh point.
    await page.click("#toggle");
    await until(() => page.evaluate(frames), (f) => f.length === 0, "unmounted");
    const before = requests.length;
    await sleep((TTL - BUFFER + 1.5) * 1000);
    assert.equal(requests.length, before, "no request after unmount");
    assert.deepEqual(problems, []);
  });
});
