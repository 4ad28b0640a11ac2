// /demo/react: the vendor guide's DashboardEmbed and DashboardTokenManager, as the guide gives
// them (guide/guide.js, compiled from guide/*.jsx), signed in by the session cookie alone.
import { createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";

import { DashboardEmbed, DashboardTokenManager } from "/demo/guide/guide.js";

const config = document.getElementById("root").dataset;
const tokenManager = new DashboardTokenManager();

// What a product page would do with the guide's manager: ask it for a token on demand.
function TokenManagerPanel() {
  const [state, setState] = useState({ calls: 0, token: null, error: null });
  async function ask() {
    try {
      const token = await tokenManager.getToken(config.tenant, config.workspace, config.dashboard);
      setState((s) => ({ calls: s.calls + 1, token, error: null }));
    } catch (err) {
      setState((s) => ({ calls: s.calls + 1, token: s.token, error: String(err) }));
    }
  }
  return h(
    "section",
    { id: "manager", "data-calls": state.calls, "data-token": state.token ?? "" },
    h("button", { id: "get-token", type: "button", onClick: ask }, "tokenManager.getToken()"),
    h("span", null, ` calls: ${state.calls} · token …${state.token ? state.token.slice(-16) : "-"}`),
    state.error ? h("p", { role: "alert" }, state.error) : null,
  );
}

function App() {
  return h(
    "main",
    null,
    h("h2", null, "The vendor guide's React code, unchanged, against gateway dev"),
    h(TokenManagerPanel),
    h(DashboardEmbed, {
      tenantId: config.tenant,
      workspaceId: config.workspace,
      dashboardId: config.dashboard,
    }),
  );
}

createRoot(document.getElementById("root")).render(h(App));
