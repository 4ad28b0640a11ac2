// embed-client.js: the browser client of the embed-token gateway.
//
// A dependency-free ES module (no build step). It gets short-lived dashboard tokens from the
// gateway and keeps an embedded dashboard's iframe on a valid one:
//   - one cache entry per (tenant, workspace, dashboard), never one token for everything;
//   - a token is reused while it has more than `refreshBuffer` seconds left (the gateway's rule),
//     counted on the server's clock: the offset to it is measured from each response's Date;
//   - concurrent callers for one key share one request (single flight);
//   - 429/503 are retried after Retry-After, network errors with capped exponential backoff;
//   - 400/401/403/404 are thrown at once as typed errors, never retried;
//   - mountDashboard() sets the iframe's src and swaps in a new token before the old one lapses.
//
// Cross-origin use: the gateway must expose `Date` and `Retry-After` to scripts
// (Access-Control-Expose-Headers); without them the client trusts the local clock and backs off.

/** Where the vendor serves embedded dashboards; override with `embedBase`. */
export const DEFAULT_EMBED_BASE = "https://papermap.ai";
/** The gateway's token path, relative to the page's origin. */
export const DEFAULT_ENDPOINT = "/api/v1/dashboards/iframe-token";

const SECOND = 1000;
// setTimeout fires at once for delays over 2^31-1 ms; longer waits are taken in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;
// The Date header has one-second resolution: an offset smaller than that is noise, not skew.
const CLOCK_NOISE_MS = 1000;

/** Any failure to get a token; `status` is the HTTP status (0 for a network failure). */
export class EmbedTokenError extends Error {
  constructor(message, { status = 0, code = "error", requestId = null, retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "EmbedTokenError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.retryAfter = retryAfter;
  }

  /** Whether asking again later may succeed (rate limits, outages, the network). */
  get retryable() {
    return false;
  }
}

/** 400: the request was malformed (a bad id); fix the caller. */
export class InvalidRequestError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "InvalidRequestError";
  }
}

/** 401: the caller's JWT is missing, expired or invalid; sign in again. */
export class UnauthenticatedError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "UnauthenticatedError";
  }
}

/** 403: the caller may not act for that tenant. */
export class ForbiddenError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "ForbiddenError";
  }
}

/** 404: no such dashboard for that tenant and workspace. */
export class DashboardNotFoundError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "DashboardNotFoundError";
  }
}

/** 429 after every retry. */
export class RateLimitedError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "RateLimitedError";
  }

  get retryable() {
    return true;
  }
}

/** 503 (or 502/504 from a proxy) after every retry. */
export class UnavailableError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "UnavailableError";
  }

  get retryable() {
    return true;
  }
}

/** The request never got an answer (offline, connection reset, timeout) after every retry. */
export class NetworkError extends EmbedTokenError {
  constructor(message, details) {
    super(message, details);
    this.name = "NetworkError";
  }

  get retryable() {
    return true;
  }
}

const ERROR_BY_STATUS = {
  400: InvalidRequestError,
  401: UnauthenticatedError,
  403: ForbiddenError,
  404: DashboardNotFoundError,
  429: RateLimitedError,
  502: UnavailableError,
  503: UnavailableError,
  504: UnavailableError,
};
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const FINAL_ERRORS = [InvalidRequestError, UnauthenticatedError, ForbiddenError, DashboardNotFoundError];

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value, nowMs = Date.now()) {
  if (value == null || value === "") return null;
  const trimmed = String(value).trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return null;
  return Math.max(0, (at - nowMs) / SECOND);
}

function keyOf({ tenantId, workspaceId, dashboardId }) {
  if (typeof tenantId !== "string" || tenantId === "") {
    throw new TypeError("getToken needs a tenantId");
  }
  if (typeof workspaceId !== "string" || workspaceId === "") {
    throw new TypeError("getToken needs a workspaceId");
  }
  if (dashboardId != null && (typeof dashboardId !== "string" || dashboardId === "")) {
    throw new TypeError("dashboardId must be a non-empty string when given");
  }
  // JSON keeps the three apart whatever they contain; null stands for "the tenant's default".
  return JSON.stringify([tenantId, workspaceId, dashboardId ?? null]);
}

/**
 * Gets and caches embed tokens from the gateway.
 *
 * Options: `endpoint` (URL of the token endpoint, default DEFAULT_ENDPOINT), `getAuthHeader`
 * (returns, or resolves to, the caller's `Authorization` value, e.g. "Bearer <jwt>"; called for
 * every request so it can hand out a fresh JWT; omit it when the gateway reads the caller's JWT
 * from the session cookie, GATEWAY_JWT_COOKIE), `credentials` (fetch's, default "same-origin";
 * "include" sends the cookie to a gateway on another origin), `refreshBuffer` (seconds, default
 * 300: keep it equal to the gateway's GATEWAY_REFRESH_BUFFER), `embedBase` (default
 * DEFAULT_EMBED_BASE), `maxAttempts` (default 5), `retryBaseDelay` / `maxRetryDelay` (seconds,
 * default 0.5 / 30: the backoff and the cap on any wait, Retry-After included),
 * `requestTimeout` (seconds, default 15), and for tests `fetch` and `now` (milliseconds).
 */
export class EmbedTokenClient {
  constructor({
    endpoint = DEFAULT_ENDPOINT,
    getAuthHeader = null,
    credentials = "same-origin",
    refreshBuffer = 300,
    embedBase = DEFAULT_EMBED_BASE,
    maxAttempts = 5,
    retryBaseDelay = 0.5,
    maxRetryDelay = 30,
    requestTimeout = 15,
    fetch: fetchImpl = globalThis.fetch?.bind(globalThis),
    now = Date.now,
  } = {}) {
    if (getAuthHeader !== null && typeof getAuthHeader !== "function") {
      throw new TypeError("getAuthHeader must be a function: () => 'Bearer <jwt>' (or omitted)");
    }
    if (typeof fetchImpl !== "function") throw new TypeError("no fetch available; pass one in");
    if (!(refreshBuffer >= 0)) throw new RangeError("refreshBuffer must be >= 0 seconds");
    if (!(maxAttempts >= 1)) throw new RangeError("maxAttempts must be >= 1");
    this.endpoint = endpoint;
    this.embedBase = embedBase;
    this.refreshBuffer = refreshBuffer;
    this._getAuthHeader = getAuthHeader;
    this._credentials = credentials;
    this._fetch = fetchImpl;
    this._now = now;
    this._maxAttempts = maxAttempts;
    this._baseDelayMs = retryBaseDelay * SECOND;
    this._maxDelayMs = maxRetryDelay * SECOND;
    this._timeoutMs = requestTimeout * SECOND;
    this._cache = new Map(); // key -> token info
    this._inflight = new Map(); // key -> Promise of token info
    /** Server clock minus local clock, in ms, from the last response with a Date header. */
    this.clockOffsetMs = 0;
  }

  /** The current time on the server's clock, in ms, as far as this client can tell. */
  serverNow() {
    return this._now() + this.clockOffsetMs;
  }

  /** Seconds a token has left, on the server's clock. */
  secondsLeft(info) {
    return (info.expiresAt * SECOND - this.serverNow()) / SECOND;
  }

  /** Whether a token may still be handed out: more than the buffer left, as the gateway rules. */
  isFresh(info) {
    return this.secondsLeft(info) > this.refreshBuffer;
  }

  /**
   * A token for (tenantId, workspaceId, dashboardId), from the cache while it is fresh,
   * else from the gateway. Resolves to {token, dashboardId, expiresAt} (expiresAt in Unix
   * seconds, as the gateway sent it). `force: true` skips the cache; `signal` aborts the wait.
   */
  async getToken({ tenantId, workspaceId, dashboardId } = {}, { force = false, signal } = {}) {
    const key = keyOf({ tenantId, workspaceId, dashboardId });
    const cached = this._cache.get(key);
    if (!force && cached && this.isFresh(cached)) return cached;
    let pending = this._inflight.get(key);
    if (!pending) {
      pending = this._request({ tenantId, workspaceId, dashboardId }).then(
        (info) => {
          this._cache.set(key, info);
          return info;
        },
      );
      this._inflight.set(key, pending);
      // Cleared whatever the outcome, so a failure is not served to the next caller.
      const clear = () => {
        if (this._inflight.get(key) === pending) this._inflight.delete(key);
      };
      pending.then(clear, clear);
    }
    if (!signal) return pending;
    // One caller giving up must not cancel the request the others share.
    return Promise.race([
      pending,
      new Promise((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener("abort", () => reject(signal.reason), { once: true });
      }),
    ]);
  }

  /** Forget the cached token of one key (or of every key when none is given). */
  invalidate(key) {
    if (key === undefined) this._cache.clear();
    else this._cache.delete(keyOf(key));
  }

  /** The iframe URL for a token: `<base>/embedded/dashboard?embedded-token=<token>`. */
  embedUrl(token, base = this.embedBase) {
    const url = new URL("embedded/dashboard", base.endsWith("/") ? base : `${base}/`);
    url.searchParams.set("embedded-token", token);
    return url.toString();
  }

  /**
   * Show a dashboard in `iframe` and keep it on a valid token: the src is replaced with a
   * fresh token when the current one reaches the refresh buffer. Options: tenantId,
   * workspaceId, dashboardId, `base` (embed base URL, default the client's), `onToken(info)`
   * after each mount, `onError(err)` when a refresh fails (retried after `errorRetry` seconds,
   * default 30, unless the error is a 400/401/403/404). Returns {ready, refresh(), stop(),
   * current}: `ready` resolves after the first mount (or rejects with its error).
   */
  mountDashboard(iframe, options = {}) {
    return mountDashboard(iframe, { ...options, client: this });
  }

  async _request(body) {
    let lastError;
    for (let attempt = 1; attempt <= this._maxAttempts; attempt += 1) {
      let response;
      const sentAt = this._now();
      try {
        response = await this._send(body);
      } catch (err) {
        lastError = new NetworkError(`token request failed: ${err?.message ?? err}`, { cause: err });
        if (attempt < this._maxAttempts) await sleep(this._backoff(attempt));
        continue;
      }
      const receivedAt = this._now();
      this._measureClock(response.headers.get("Date"), sentAt, receivedAt);
      if (response.ok) return this._parse(response);

      const error = await this._error(response);
      if (!RETRY_STATUSES.has(response.status)) throw error;
      lastError = error;
      if (attempt < this._maxAttempts) {
        const wait = error.retryAfter == null
          ? this._backoff(attempt)
          : Math.min(error.retryAfter * SECOND, this._maxDelayMs);
        await sleep(wait);
      }
    }
    throw lastError;
  }

  async _send({ tenantId, workspaceId, dashboardId }) {
    const headers = { "Content-Type": "application/json" };
    // Without getAuthHeader the browser's cookie carries the caller (GATEWAY_JWT_COOKIE).
    const authorization = this._getAuthHeader ? await this._getAuthHeader() : null;
    if (authorization) headers.Authorization = authorization;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer in ${this._timeoutMs / SECOND} s`)),
      this._timeoutMs,
    );
    const payload = { tenant_id: tenantId, workspace_id: workspaceId };
    if (dashboardId != null) payload.dashboard_id = dashboardId;
    try {
      return await this._fetch(this.endpoint, {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        credentials: this._credentials,
        cache: "no-store",
        signal: controller.signal,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  // Full jitter: a fleet of browsers that failed together does not come back together.
  _backoff(attempt) {
    const ceiling = Math.min(this._maxDelayMs, this._baseDelayMs * 2 ** (attempt - 1));
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }

  _measureClock(dateHeader, sentAt, receivedAt) {
    const serverMs = dateHeader ? Date.parse(dateHeader) : Number.NaN;
    if (Number.isNaN(serverMs)) return;
    // The header is truncated to the second: the server's clock read somewhere in the next one.
    const offset = serverMs + SECOND / 2 - (sentAt + receivedAt) / 2;
    this.clockOffsetMs = Math.abs(offset) < CLOCK_NOISE_MS ? 0 : offset;
  }

  async _parse(response) {
    let data;
    try {
      data = await response.json();
    } catch (err) {
      throw new EmbedTokenError("the gateway's answer is not JSON", {
        status: response.status,
        cause: err,
      });
    }
    if (
      typeof data?.token !== "string" ||
      typeof data?.dashboard_id !== "string" ||
      !Number.isInteger(data?.expires_at)
    ) {
      throw new EmbedTokenError("the gateway's answer lacks token, dashboard_id or expires_at", {
        status: response.status,
      });
    }
    return Object.freeze({
      token: data.token,
      dashboardId: data.dashboard_id,
      expiresAt: data.expires_at,
    });
  }

  async _error(response) {
    let code = "error";
    let message = `token request failed with HTTP ${response.status}`;
    let requestId = response.headers.get("X-Request-ID");
    try {
      const body = await response.json();
      if (typeof body?.error?.code === "string") code = body.error.code;
      if (typeof body?.error?.message === "string") message = body.error.message;
      if (typeof body?.request_id === "string") requestId = body.request_id;
    } catch {
      // A proxy's HTML error page: the status alone tells what happened.
    }
    const retryAfter = parseRetryAfter(response.headers.get("Retry-After"), this.serverNow());
    const ErrorType = ERROR_BY_STATUS[response.status] ?? EmbedTokenError;
    return new ErrorType(message, { status: response.status, code, requestId, retryAfter });
  }
}

/**
 * Mount a dashboard in an iframe with `client` and keep its token fresh (see
 * EmbedTokenClient#mountDashboard for the options and the handle it returns).
 */
export function mountDashboard(iframe, {
  client,
  tenantId,
  workspaceId,
  dashboardId,
  base,
  onToken,
  onError,
  errorRetry = 30,
} = {}) {
  if (!(client instanceof EmbedTokenClient)) throw new TypeError("mountDashboard needs a client");
  if (!iframe || typeof iframe !== "object") throw new TypeError("mountDashboard needs an iframe");
  const key = { tenantId, workspaceId, dashboardId };
  keyOf(key); // fail now, not in the first timer
  let timer = null;
  let stopped = false;
  let refreshing = null;
  const handle = { current: null, ready: null, refresh, stop };

  function schedule(ms) {
    clearTimeout(timer);
    if (stopped) return;
    const step = Math.min(Math.max(ms, 0), MAX_TIMER_MS);
    timer = setTimeout(() => (step < ms ? schedule(ms - step) : refresh().catch(() => {})), step);
  }

  function scheduleNext(info) {
    // Refresh when the token reaches the buffer: that is when the gateway mints a new one.
    const left = client.secondsLeft(info) * SECOND;
    const untilStale = left - client.refreshBuffer * SECOND;
    if (untilStale > 0) {
      schedule(untilStale);
      return;
    }
    // Already within the buffer: the gateway handed back a token it still reuses (its clock or
    // buffer differs a little), or its TTL is shorter than our buffer. Ask again at half the
    // remaining life, never sooner than a second, rather than reloading the iframe in a loop.
    schedule(Math.max(left / 2, SECOND));
  }

  async function refresh({ force = false } = {}) {
    if (stopped) return handle.current;
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const info = await client.getToken(key, { force });
        if (stopped) return info;
        if (info.token !== handle.current?.token) {
          iframe.src = client.embedUrl(info.token, base);
          handle.current = info;
          onToken?.(info);
        }
        scheduleNext(info);
        return info;
      } catch (err) {
        if (!stopped) {
          onError?.(err);
          // 400/401/403/404 will not heal by waiting: the app must sign in again or fix the ids
          // and call refresh(). Anything else (outage, network, a proxy's garbage) is retried.
          if (!FINAL_ERRORS.some((type) => err instanceof type)) schedule(errorRetry * SECOND);
        }
        throw err;
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    globalThis.document?.removeEventListener?.("visibilitychange", onVisible);
  }

  // A sleeping laptop delays timers; check the token as soon as the page is looked at again.
  function onVisible() {
    if (globalThis.document?.visibilityState !== "visible" || !handle.current) return;
    if (!client.isFresh(handle.current)) refresh().catch(() => {});
  }
  globalThis.document?.addEventListener?.("visibilitychange", onVisible);

  handle.ready = refresh();
  handle.ready.catch(() => {}); // the caller may only use onError; no unhandled rejection
  return handle;
}
