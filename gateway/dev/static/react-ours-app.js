// /demo/react-ours: the gateway's own React binding (/static/embed-react.js) on the session
// cookie: two components share one token and one request, another dashboard gets its own, and
// the token is swapped before it expires.
import { createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";

import { EmbedTokenClient } from "/static/embed-client.js";
import { DashboardEmbed, EmbedTokenProvider } from "/static/embed-react.js";

const config = document.getElementById("root").dataset;
const client = new EmbedTokenClient({
  endpoint: "/api/dashboards/iframe-token", // the vendor's path; the cookie carries the caller
  refreshBuffer: Number(config.buffer),
  embedBase: window.location.origin, // the dev verifier stands in for the vendor's embed page
});
const dashboards = [config.dashboard, config.dashboard, ...(config.other ? [config.other] : [])];

function App() {
  const [mounted, setMounted] = useState(true);
  return h(
    EmbedTokenProvider,
    { client },
    h("h2", null, "The gateway's React binding (useEmbedToken, DashboardEmbed)"),
    h(
      "button",
      { id: "toggle", type: "button", onClick: () => setMounted((m) => !m) },
      mounted ? "unmount all" : "mount again",
    ),
    mounted
      ? h(
          "div",
          { className: "grid" },
          dashboards.map((dashboardId, i) =>
            h(DashboardEmbed, {
              key: i,
              className: "embed",
              title: `Dashboard ${dashboardId}`,
              tenantId: config.tenant,
              workspaceId: config.workspace,
              dashboardId,
              height: "300",
            }),
          ),
        )
      : null,
  );
}

createRoot(document.getElementById("root")).render(h(App));
