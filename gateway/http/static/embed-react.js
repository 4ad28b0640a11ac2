// embed-react.js: a small React binding of embed-client.js (an ES module, no JSX, no build step).
//
//   import { EmbedTokenProvider, DashboardEmbed, useEmbedToken } from "/static/embed-react.js";
//
// "react" is imported by name: a bundler resolves it, or the page maps it with an import map.
// Everything that matters comes from EmbedTokenClient, shared by every component under one
// provider: a cache per (tenant, workspace, dashboard), one request per key however many
// components ask at once, the refresh buffer counted on the server's clock (from `Date`), and
// typed errors. The hook adds the React part: it refreshes before the buffer is reached, and once
// a component unmounts it schedules nothing and fetches nothing more.
import { createContext, createElement, Fragment, useContext, useEffect, useState } from "react";

import { EmbedTokenClient } from "./embed-client.js";

const SECOND = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;
// 400/401/403/404 do not heal by waiting; anything else is tried again after this long.
const ERROR_RETRY_MS = 30 * SECOND;

/** The client the hooks below use; `<EmbedTokenProvider client={...}>` sets it. */
export const EmbedTokenContext = createContext(null);

let pageClient = null;
/** Without a provider: one cookie-authenticated client for the whole page, made on first use. */
function defaultClient() {
  // One per page, not per component, or two components would not share a cache or a request.
  pageClient ??= new EmbedTokenClient({ endpoint: "/api/dashboards/iframe-token" });
  return pageClient;
}

/** Provide `client` (an EmbedTokenClient) to every useEmbedToken / DashboardEmbed below. */
export function EmbedTokenProvider({ client, children }) {
  if (!(client instanceof EmbedTokenClient)) {
    throw new TypeError("EmbedTokenProvider needs an EmbedTokenClient");
  }
  return createElement(EmbedTokenContext.Provider, { value: client }, children);
}

function delayUntilRefresh(client, info) {
  const left = client.secondsLeft(info) * SECOND;
  const untilStale = left - client.refreshBuffer * SECOND;
  // Already within the buffer (a TTL shorter than the buffer, or a reused token): ask again at
  // half the remaining life, never sooner than a second, instead of refetching in a loop.
  return Math.min(untilStale > 0 ? untilStale : Math.max(left / 2, SECOND), MAX_TIMER_MS);
}

/**
 * The embed token for one dashboard, kept fresh while the component is mounted.
 * Returns {token, expiresAt, embedUrl, error, loading}; `error` is an EmbedTokenError subclass.
 */
export function useEmbedToken(tenantId, workspaceId, dashboardId) {
  const client = useContext(EmbedTokenContext) ?? defaultClient();
  const [state, setState] = useState({ info: null, error: null });

  useEffect(() => {
    const key = { tenantId, workspaceId, dashboardId };
    const controller = new AbortController();
    let timer = null;
    setState({ info: null, error: null });

    async function load() {
      try {
        const info = await client.getToken(key, { signal: controller.signal });
        if (controller.signal.aborted) return;
        setState((s) => (s.info?.token === info.token && !s.error ? s : { info, error: null }));
        timer = setTimeout(load, delayUntilRefresh(client, info));
      } catch (error) {
        if (controller.signal.aborted) return;
        // A failed refresh keeps the current token on screen while it is still valid.
        setState((s) => ({ info: s.info, error }));
        if (error.retryable) timer = setTimeout(load, ERROR_RETRY_MS);
      }
    }
    load();
    return () => {
      // Unmounted: stop waiting and schedule nothing (a request shared with others still ends).
      controller.abort();
      clearTimeout(timer);
    };
  }, [client, tenantId, workspaceId, dashboardId]);

  const { info, error } = state;
  return {
    token: info?.token ?? null,
    expiresAt: info?.expiresAt ?? null,
    embedUrl: info ? client.embedUrl(info.token) : null,
    error,
    loading: !info && !error,
  };
}

/** An iframe showing the dashboard on a token that is refreshed before it expires. */
export function DashboardEmbed({ tenantId, workspaceId, dashboardId, title = "Dashboard", ...rest }) {
  const { embedUrl, error, loading } = useEmbedToken(tenantId, workspaceId, dashboardId);
  return createElement(
    Fragment,
    null,
    loading ? createElement("div", { role: "status" }, "Loading dashboard...") : null,
    error
      ? createElement(
          "div",
          { role: "alert" },
          error.status === 401 ? "Please sign in again." : `Error: ${error.message}`,
        )
      : null,
    embedUrl
      ? createElement("iframe", {
          src: embedUrl,
          title,
          width: "100%",
          height: "600",
          style: { border: 0 },
          allowFullScreen: true,
          ...rest,
        })
      : null,
  );
}
