// The embed client (gateway/http/static/embed-client.js) against a real gateway on real PostgreSQL
// and Redis: per-key cache, single flight, the refresh threshold, clock-offset correction,
// retry rules, typed errors and mountDashboard. Run with `node --test tests/js/`.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";

import {
  CLIENT_MODULE,
  claimsOf,
  countingFetch,
  errorAnswer,
  makeJwt,
  proxy,
  scriptedServer,
  startGateway,
} from "./support.mjs";

const {
  DashboardNotFoundError,
  DEFAULT_EMBED_BASE,
  EmbedTokenClient,
  EmbedTokenError,
  ForbiddenError,
  InvalidRequestError,
  NetworkError,
  RateLimitedError,
  UnauthenticatedError,
  UnavailableError,
  parseRetryAfter,
} = await import(CLIENT_MODULE);

const DEMO = { tenantId: "org-123", workspaceId: "workspace-456", dashboardId: "dashboard-789" };
const HOUR_MS = 3600 * 1000;

let gw; // TTL 3600 s, buffer 300 s: the defaults
let short; // TTL 4 s, buffer 2 s: tokens that go stale while a test watches

before(async () => {
  [gw, short] = await Promise.all([startGateway(), startGateway({ ttl: 4, buffer: 2 })]);
});

after(async () => {
  await Promise.all([gw?.stop(), short?.stop()]);
});

function clientFor(gateway, options = {}) {
  const fetch = options.fetch ?? countingFetch();
  const jwt = options.jwt ?? makeJwt(gateway.jwtSecret);
  const client = new EmbedTokenClient({
    endpoint: gateway.endpoint,
    getAuthHeader: () => `Bearer ${jwt}`,
    refreshBuffer: gateway.buffer,
    ...options,
    fetch,
  });
  return { client, fetch };
}

describe("cache per key", () => {
  test("each (tenant, workspace, dashboard) has its own token; a repeat makes no request", async () => {
    const { client, fetch } = clientFor(gw);
    const a = await client.getToken(DEMO);
    const b = await client.getToken({ ...DEMO, dashboardId: "dashboard-other" });
    assert.equal(a.dashboardId, "dashboard-789");
    assert.equal(b.dashboardId, "dashboard-other");
    // The vendor's manager returned A's token when asked for B; here B's token names B.
    assert.notEqual(a.token, b.token);
    assert.equal(claimsOf(a.token).dashboard_id, "dashboard-789");
    assert.equal(claimsOf(b.token).dashboard_id, "dashboard-other");
    assert.equal(fetch.calls.length, 2);

    assert.equal(await client.getToken(DEMO), a);
    assert.equal(await client.getToken({ ...DEMO, dashboardId: "dashboard-other" }), b);
    assert.equal(fetch.calls.length, 2, "cached tokens are reused without a request");

    const byDefault = await client.getToken({ tenantId: "org-123", workspaceId: "workspace-456" });
    assert.equal(byDefault.dashboardId, "dashboard-789");
    assert.equal(fetch.calls.length, 3, "the tenant's default dashboard is a key of its own");
    assert.deepEqual(fetch.calls[2].body, { tenant_id: "org-123", workspace_id: "workspace-456" });
    assert.deepEqual(fetch.calls[0].body, {
      tenant_id: "org-123",
      workspace_id: "workspace-456",
      dashboard_id: "dashboard-789",
    });
  });

  test("tenants do not share entries", async () => {
    const jwt = makeJwt(gw.jwtSecret, { organization_id: ["org-123", "org-999"] });
    const { client, fetch } = clientFor(gw, { jwt });
    const mine = await client.getToken({ tenantId: "org-123", workspaceId: "workspace-456" });
    const theirs = await client.getToken({ tenantId: "org-999", workspaceId: "workspace-456" });
    assert.equal(claimsOf(mine.token).tenant_id, "org-123");
    assert.equal(claimsOf(theirs.token).tenant_id, "org-999");
    assert.equal(theirs.dashboardId, "dashboard-999");
    assert.equal(fetch.calls.length, 2);
  });

  test("invalidate() and force make the next call ask the gateway", async () => {
    const { client, fetch } = clientFor(gw);
    await client.getToken(DEMO);
    client.invalidate(DEMO);
    await client.getToken(DEMO);
    await client.getToken(DEMO, { force: true });
    assert.equal(fetch.calls.length, 3);
  });
});

describe("single flight", () => {
  test("concurrent callers of one key share one request", async () => {
    const { client, fetch } = clientFor(gw);
    const results = await Promise.all(Array.from({ length: 20 }, () => client.getToken(DEMO)));
    assert.equal(fetch.calls.length, 1);
    for (const r of results) assert.equal(r, results[0]);
  });

  test("concurrent callers of two keys make one request per key", async () => {
    const { client, fetch } = clientFor(gw);
    const other = { ...DEMO, dashboardId: "dashboard-other" };
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => client.getToken(i % 2 ? other : DEMO)),
    );
    assert.equal(fetch.calls.length, 2);
    assert.deepEqual(new Set(results.map((r) => r.dashboardId)), new Set(["dashboard-789", "dashboard-other"]));
  });

  test("a failed flight is shared by its callers but not remembered", async () => {
    const expired = makeJwt(gw.jwtSecret, { exp: Math.floor(Date.now() / 1000) - 3600 });
    let jwt = expired;
    const fetch = countingFetch();
    const client = new EmbedTokenClient({
      endpoint: gw.endpoint,
      getAuthHeader: () => `Bearer ${jwt}`,
      fetch,
    });
    const outcomes = await Promise.allSettled([client.getToken(DEMO), client.getToken(DEMO)]);
    assert.equal(fetch.calls.length, 1);
    for (const o of outcomes) assert.ok(o.reason instanceof UnauthenticatedError);
    jwt = makeJwt(gw.jwtSecret);
    const info = await client.getToken(DEMO);
    assert.equal(info.dashboardId, "dashboard-789");
    assert.equal(fetch.calls.length, 2);
  });

  test("one caller's abort does not cancel the others' request", async () => {
    const { client, fetch } = clientFor(gw);
    const controller = new AbortController();
    const aborted = client.getToken(DEMO, { signal: controller.signal });
    const kept = client.getToken(DEMO);
    controller.abort(new Error("user left"));
    await assert.rejects(aborted, /user left/);
    assert.equal((await kept).dashboardId, "dashboard-789");
    assert.equal(fetch.calls.length, 1);
  });
});

describe("refresh threshold", () => {
  test("a token is reused while it has more than the buffer left, and only then", async () => {
    let shift = 0;
    const { client, fetch } = clientFor(gw, { now: () => Date.now() + shift });
    const first = await client.getToken(DEMO);
    const left = client.secondsLeft(first);
    assert.ok(left > 3590 && left <= 3601, `a fresh token has about an hour left, not ${left}`);

    // Jump the local clock to one second before the token reaches the buffer: still reused.
    shift = (left - gw.buffer - 1) * 1000;
    assert.equal(await client.getToken(DEMO), first);
    assert.equal(fetch.calls.length, 1);

    // Exactly at the buffer: "more than" no longer holds, so the client asks again.
    shift = (left - gw.buffer) * 1000;
    const second = await client.getToken(DEMO);
    assert.equal(fetch.calls.length, 2);
    // The gateway's clock did not jump: it hands back the same token with its own expires_at,
    // and the response's Date tells the client its clock is off, so it trusts the token again.
    assert.equal(second.token, first.token);
    assert.equal(second.expiresAt, first.expiresAt);
    assert.ok(Math.abs(client.clockOffsetMs + shift) < 2000, `offset ${client.clockOffsetMs}`);
    await client.getToken(DEMO);
    assert.equal(fetch.calls.length, 2);
  });

  test("with a short TTL a stale token is replaced by a new one from the gateway", async () => {
    const { client, fetch } = clientFor(short);
    const first = await client.getToken(DEMO);
    const deadline = Date.now() + 20_000;
    let latest = first;
    let requestsWhileFresh = 0;
    while (latest.token === first.token && Date.now() < deadline) {
      const freshBefore = client.secondsLeft(first) > short.buffer + 0.5;
      const before = fetch.calls.length;
      latest = await client.getToken(DEMO);
      if (freshBefore) requestsWhileFresh += fetch.calls.length - before;
      await sleep(100);
    }
    assert.notEqual(latest.token, first.token, "no new token within 20 s");
    assert.equal(requestsWhileFresh, 0, "no request while the token had more than the buffer left");
    assert.ok(latest.expiresAt > first.expiresAt);
    assert.ok(client.secondsLeft(first) <= short.buffer, "replaced only once within the buffer");
    assert.ok(fetch.calls.length <= 4, `a few requests around the threshold, not ${fetch.calls.length}`);
  });
});

describe("clock offset", () => {
  for (const skewHours of [2, -2]) {
    test(`a browser clock ${skewHours > 0 ? "ahead" : "behind"} by 2 h is corrected from Date`, async () => {
      let shift = skewHours * HOUR_MS;
      const { client, fetch } = clientFor(gw, { now: () => Date.now() + shift });
      const first = await client.getToken(DEMO);
      assert.ok(
        Math.abs(client.clockOffsetMs + skewHours * HOUR_MS) < 2000,
        `offset ${client.clockOffsetMs} ms`,
      );
      const left = client.secondsLeft(first);
      assert.ok(left > 3590 && left <= 3601, `seconds left on the server's clock: ${left}`);
      // Uncorrected, a clock 2 h ahead sees an expired token and asks on every call.
      assert.equal(await client.getToken(DEMO), first);
      assert.equal(fetch.calls.length, 1);
      // Uncorrected, a clock 2 h behind would keep a stale token 2 h too long.
      shift += (left - gw.buffer) * 1000;
      await client.getToken(DEMO);
      assert.equal(fetch.calls.length, 2);
    });
  }

  test("without a Date header the local clock is trusted", async () => {
    const scripted = await scriptedServer((req, res) => proxy(req, res, gw.endpoint, { date: false }));
    try {
      const { client, fetch } = clientFor(gw, {
        endpoint: scripted.url,
        now: () => Date.now() + 2 * HOUR_MS,
      });
      await client.getToken(DEMO);
      assert.equal(client.clockOffsetMs, 0);
      await client.getToken(DEMO);
      assert.equal(fetch.calls.length, 2, "the token looks expired to a clock 2 h ahead");
    } finally {
      await scripted.close();
    }
  });
});

describe("retries", () => {
  test("429 is retried after Retry-After, then the token arrives", async () => {
    const scripted = await scriptedServer((req, res, n) =>
      n === 1 ? errorAnswer(res, 429, "rate_limited", { "Retry-After": "1" }) : proxy(req, res, gw.endpoint),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url });
      const started = Date.now();
      const info = await client.getToken(DEMO);
      const elapsed = Date.now() - started;
      assert.equal(info.dashboardId, "dashboard-789");
      assert.equal(scripted.count, 2);
      assert.ok(elapsed >= 950, `waited the Retry-After second, not ${elapsed} ms`);
    } finally {
      await scripted.close();
    }
  });

  test("503 is retried after Retry-After, as often as it takes within maxAttempts", async () => {
    const scripted = await scriptedServer((req, res, n) =>
      n <= 2 ? errorAnswer(res, 503, "unavailable", { "Retry-After": "1" }) : proxy(req, res, gw.endpoint),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url });
      const started = Date.now();
      const info = await client.getToken(DEMO);
      assert.equal(info.dashboardId, "dashboard-789");
      assert.equal(scripted.count, 3);
      assert.ok(Date.now() - started >= 1900);
    } finally {
      await scripted.close();
    }
  });

  test("a network error is retried with backoff", async () => {
    const scripted = await scriptedServer((req, res, n) =>
      n === 1 ? req.socket.destroy() : proxy(req, res, gw.endpoint),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url, retryBaseDelay: 0.05 });
      const info = await client.getToken(DEMO);
      assert.equal(info.dashboardId, "dashboard-789");
      assert.equal(scripted.count, 2);
    } finally {
      await scripted.close();
    }
  });

  test("retries stop after maxAttempts and every wait is capped by maxRetryDelay", async () => {
    const scripted = await scriptedServer((req, res) =>
      errorAnswer(res, 503, "unavailable", { "Retry-After": "120" }),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url, maxAttempts: 3, maxRetryDelay: 0.1 });
      const started = Date.now();
      const err = await client.getToken(DEMO).catch((e) => e);
      assert.ok(err instanceof UnavailableError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.retryAfter, 120);
      assert.equal(err.retryable, true);
      assert.equal(scripted.count, 3);
      assert.ok(Date.now() - started < 5000, "a 120 s Retry-After was capped");
    } finally {
      await scripted.close();
    }
  });

  test("429 that never clears ends in a RateLimitedError", async () => {
    const scripted = await scriptedServer((req, res) =>
      errorAnswer(res, 429, "rate_limited", { "Retry-After": "1" }),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url, maxAttempts: 2, maxRetryDelay: 0.05 });
      await assert.rejects(client.getToken(DEMO), RateLimitedError);
      assert.equal(scripted.count, 2);
    } finally {
      await scripted.close();
    }
  });

  test("network errors back off exponentially up to the cap, then fail", async () => {
    const scripted = await scriptedServer((req) => req.socket.destroy());
    try {
      const { client } = clientFor(gw, {
        endpoint: scripted.url,
        maxAttempts: 4,
        retryBaseDelay: 0.1,
        maxRetryDelay: 0.2,
      });
      const started = Date.now();
      await assert.rejects(client.getToken(DEMO), NetworkError);
      const elapsed = Date.now() - started;
      assert.equal(scripted.count, 4);
      // Waits of 0.05-0.1, 0.1-0.2 and then capped at 0.1-0.2 s: between 0.25 and 0.5 s in all.
      assert.ok(elapsed >= 240 && elapsed < 3000, `elapsed ${elapsed} ms`);
    } finally {
      await scripted.close();
    }
  });

  test("a 500 is not retried", async () => {
    const scripted = await scriptedServer((req, res) => errorAnswer(res, 500, "internal_error"));
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url });
      const err = await client.getToken(DEMO).catch((e) => e);
      assert.ok(err instanceof EmbedTokenError);
      assert.equal(err.status, 500);
      assert.equal(scripted.count, 1);
    } finally {
      await scripted.close();
    }
  });

  test("Retry-After is read as seconds or as an HTTP date", () => {
    assert.equal(parseRetryAfter("7"), 7);
    assert.equal(parseRetryAfter(new Date(61_000).toUTCString(), 1_000), 60);
    assert.equal(parseRetryAfter("soon"), null);
    assert.equal(parseRetryAfter(null), null);
  });
});

describe("typed errors from the real gateway, never retried", () => {
  const cases = [
    ["401 for an expired JWT", { jwt: "expired" }, DEMO, UnauthenticatedError, 401, "unauthenticated"],
    ["403 for another tenant", { tenant: "org-999" }, DEMO, ForbiddenError, 403, "forbidden"],
    [
      "404 for a dashboard that is not the tenant's",
      {},
      { ...DEMO, dashboardId: "dashboard-999" },
      DashboardNotFoundError,
      404,
      "dashboard_not_found",
    ],
    ["400 for a malformed id", {}, { ...DEMO, tenantId: "org 123!" }, InvalidRequestError, 400, "invalid_request"],
  ];
  for (const [name, who, key, ErrorType, status, code] of cases) {
    test(name, async () => {
      const claims = {};
      if (who.jwt === "expired") claims.exp = Math.floor(Date.now() / 1000) - 3600;
      if (who.tenant) claims.organization_id = who.tenant;
      const { client, fetch } = clientFor(gw, { jwt: makeJwt(gw.jwtSecret, claims) });
      const err = await client.getToken(key).catch((e) => e);
      assert.ok(err instanceof ErrorType, `${err?.name}: ${err?.message}`);
      assert.ok(err instanceof EmbedTokenError);
      assert.equal(err.status, status);
      assert.equal(err.code, code);
      assert.equal(err.retryable, false);
      assert.match(err.requestId, /^[0-9a-f]{32}$/);
      assert.equal(fetch.calls.length, 1);
    });
  }
});

describe("embed URL and mountDashboard", () => {
  test("the embed URL is <base>/embedded/dashboard?embedded-token=<url-encoded token>", () => {
    const client = new EmbedTokenClient({ getAuthHeader: () => "Bearer x", fetch: () => {} });
    const token = "eyJhIjogMX0=";
    assert.equal(client.embedUrl(token), `${DEFAULT_EMBED_BASE}/embedded/dashboard?embedded-token=eyJhIjogMX0%3D`);
    assert.equal(
      client.embedUrl(token, "http://localhost:8080/"),
      "http://localhost:8080/embedded/dashboard?embedded-token=eyJhIjogMX0%3D",
    );
    const other = new EmbedTokenClient({
      getAuthHeader: () => "Bearer x",
      fetch: () => {},
      embedBase: "https://dash.example.test/tenant-a",
    });
    assert.equal(
      other.embedUrl(token),
      "https://dash.example.test/tenant-a/embedded/dashboard?embedded-token=eyJhIjogMX0%3D",
    );
  });

  test("a mounted iframe gets a new token once the old one reaches the buffer, before it expires", async () => {
    const { client } = clientFor(short);
    const iframe = { src: "" };
    const mounted = [];
    const handle = client.mountDashboard(iframe, {
      ...DEMO,
      base: short.url,
      onToken: (info) => mounted.push({ info, at: Date.now() }),
    });
    try {
      const first = await handle.ready;
      assert.equal(iframe.src, `${short.url}/embedded/dashboard?embedded-token=${encodeURIComponent(first.token)}`);
      const deadline = Date.now() + 20_000;
      while (mounted.length < 2 && Date.now() < deadline) await sleep(50);
      assert.equal(mounted.length, 2, "the iframe was not refreshed within 20 s");
      const second = mounted[1].info;
      assert.notEqual(second.token, first.token);
      assert.equal(iframe.src, `${short.url}/embedded/dashboard?embedded-token=${encodeURIComponent(second.token)}`);
      // The swap happened while the old token was still valid, at most about a second past the buffer.
      const oldLeftAtSwap = first.expiresAt - (mounted[1].at + client.clockOffsetMs) / 1000;
      assert.ok(oldLeftAtSwap > 0, `old token had ${oldLeftAtSwap} s left at the swap`);
    } finally {
      handle.stop();
    }
    const src = iframe.src;
    await sleep(3500);
    assert.equal(iframe.src, src, "a stopped mount changes nothing");
  });

  test("a buffer longer than the TTL refreshes at half the remaining life, not in a loop", async () => {
    // The client's buffer (300 s) exceeds the gateway's TTL (4 s): every token is "stale" on arrival.
    const { client, fetch } = clientFor(short, { refreshBuffer: 300 });
    const iframe = { src: "" };
    const handle = client.mountDashboard(iframe, { ...DEMO, base: short.url });
    try {
      await handle.ready;
      await sleep(2500);
    } finally {
      handle.stop();
    }
    assert.match(iframe.src, /embedded-token=/);
    assert.ok(fetch.calls.length >= 2 && fetch.calls.length <= 4, `${fetch.calls.length} requests in 2.5 s`);
  });

  test("a mount that hits 403 reports it and does not retry", async () => {
    const { client, fetch } = clientFor(gw, { jwt: makeJwt(gw.jwtSecret, { organization_id: "org-999" }) });
    const errors = [];
    const iframe = { src: "about:blank" };
    const handle = client.mountDashboard(iframe, { ...DEMO, onError: (e) => errors.push(e), errorRetry: 0.1 });
    await assert.rejects(handle.ready, ForbiddenError);
    await sleep(400);
    handle.stop();
    assert.equal(errors.length, 1);
    assert.equal(fetch.calls.length, 1);
    assert.equal(iframe.src, "about:blank");
  });

  test("a mount that fails for an outage tries again after errorRetry", async () => {
    const scripted = await scriptedServer((req, res, n) =>
      n === 1 ? errorAnswer(res, 503, "unavailable", { "Retry-After": "1" }) : proxy(req, res, gw.endpoint),
    );
    try {
      const { client } = clientFor(gw, { endpoint: scripted.url, maxAttempts: 1 });
      const errors = [];
      const iframe = { src: "" };
      const handle = client.mountDashboard(iframe, { ...DEMO, onError: (e) => errors.push(e), errorRetry: 0.2 });
      await assert.rejects(handle.ready, UnavailableError);
      const deadline = Date.now() + 10_000;
      while (!iframe.src && Date.now() < deadline) await sleep(50);
      handle.stop();
      assert.equal(errors.length, 1);
      assert.match(iframe.src, /embedded-token=/);
    } finally {
      await scripted.close();
    }
  });
});
