// End to end in headless Chromium: the dev demo page signs in, mounts the demo dashboard with
// the embed client, counts down, and swaps in a new token when the short-lived one goes stale.
// Run with `node --test tests/browser/` after `npm ci --prefix tests/browser`.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import { startGateway } from "../js/support.mjs";
import { CHROMIUM, CHROMIUM_FLAGS, chromiumMissing, saveScreenshot } from "./chromium.mjs";

const TTL = 10;
const BUFFER = 5;

const skip = chromiumMissing();

// What the iframe shows, read from the demo page (same origin, so the frame's DOM is readable).
function frameState() {
  const frame = document.getElementById("dashboard-frame");
  const main = frame.contentDocument?.querySelector("main");
  return {
    src: frame.src,
    verified: main?.dataset.verified ?? null,
    tenant: main?.dataset.tenant ?? null,
    dashboard: main?.dataset.dashboard ?? null,
    tokenSha: main?.dataset.tokenSha ?? null,
    secondsLeft: Number(frame.contentDocument?.getElementById("seconds-left")?.textContent ?? "NaN"),
    countdown: Number(document.getElementById("countdown").textContent),
    mounts: Number(document.getElementById("mounts").textContent),
    shownSha: document.getElementById("token-sha").textContent,
    subject: document.getElementById("subject").textContent,
    error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
  };
}

// Polled from here: Playwright's waitForFunction evaluates strings, which the demo's CSP forbids.
async function waitForState(page, accept, { timeout = 30_000, problems = [] } = {}) {
  const deadline = Date.now() + timeout;
  let state;
  while (Date.now() < deadline) {
    state = await page.evaluate(frameState);
    if (accept(state)) return state;
    await sleep(100);
  }
  throw new Error(
    `the demo did not reach the expected state in ${timeout} ms: ${JSON.stringify(state)}; ` +
      `browser errors: ${JSON.stringify(problems)}`,
  );
}

test("the demo mounts a verified dashboard, counts down and refreshes its token", { skip, timeout: 120_000 }, async (t) => {
  const { chromium } = await import("playwright-core");
  const workDir = await mkdtemp(join(tmpdir(), "gateway-browser-"));
  const gateway = await startGateway({ dev: true, ttl: TTL, buffer: BUFFER });
  const context = await chromium.launchPersistentContext(join(workDir, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1100, height: 440 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      // Chromium asks for /favicon.ico on its own; the gateway has none.
      if (msg.type() === "error" && !msg.location().url.endsWith("/favicon.ico")) {
        problems.push(`console: ${msg.text()}`);
      }
    });

    await page.goto(`${gateway.url}/demo`);
    const first = await waitForState(
      page,
      (state) => state.verified === "true" && state.mounts === 1 && state.shownSha !== "-",
      { problems },
    );
    assert.equal(first.tenant, "org-123");
    assert.equal(first.dashboard, "dashboard-789");
    assert.equal(first.subject, "demo-user");
    assert.equal(first.error, null);
    assert.match(first.src, new RegExp(`^${gateway.url}/embedded/dashboard\\?embedded-token=[A-Za-z0-9_%-]+$`));
    assert.equal(first.shownSha, first.tokenSha, "the page and the verifier saw the same token");
    assert.ok(first.secondsLeft > 0 && first.secondsLeft <= TTL, `verifier: ${first.secondsLeft} s left`);
    assert.ok(first.countdown > 0 && first.countdown <= TTL, `countdown: ${first.countdown}`);

    // The countdown moves with the clock.
    await sleep(1500);
    const later = await page.evaluate(frameState);
    assert.ok(later.countdown < first.countdown, `countdown ${first.countdown} -> ${later.countdown}`);

    // TTL 10 s with a 5 s buffer: the client swaps the token about 5 s in, before it lapses.
    const second = await waitForState(
      page,
      (state) =>
        state.verified === "true" && state.tokenSha !== first.tokenSha && state.shownSha === state.tokenSha,
      { problems },
    );
    assert.equal(second.mounts, 2);
    assert.notEqual(second.src, first.src);
    assert.equal(second.dashboard, "dashboard-789");
    assert.ok(second.secondsLeft > BUFFER, `a new token has more than the buffer: ${second.secondsLeft}`);
    // The countdown follows the new token.
    const counting = await waitForState(page, (state) => state.countdown > BUFFER, {
      timeout: 5_000,
      problems,
    });
    assert.ok(counting.countdown <= TTL, `countdown: ${counting.countdown}`);
    assert.deepEqual(problems, []);

    await saveScreenshot(t, page, join(workDir, "demo.png"), process.env.DEMO_SCREENSHOT);
  } finally {
    await context.close();
    await gateway.stop();
    if (!process.env.KEEP_BROWSER_ARTIFACTS) await rm(join(workDir, "profile"), { recursive: true, force: true });
  }
});
