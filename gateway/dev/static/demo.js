// The dev demo (served by `gateway dev` only): sign in as the demo caller, mount the demo
// dashboard with the embed client, and show the token's countdown as it refreshes.
import { EmbedTokenClient } from "/static/embed-client.js";

const status = document.getElementById("status");
const frame = document.getElementById("dashboard-frame");
const show = (id, text) => {
  document.getElementById(id).textContent = text;
};
const config = status.dataset;

// The app's own sign-in, standing in for a real one: a caller JWT valid for ten minutes.
let session = null;
async function getAuthHeader() {
  if (!session || session.expires_at * 1000 - Date.now() < 60_000) {
    const response = await fetch("/demo/session", { cache: "no-store" });
    if (!response.ok) throw new Error(`demo sign-in failed: HTTP ${response.status}`);
    session = await response.json();
    show("subject", session.subject);
  }
  return `Bearer ${session.jwt}`;
}

async function fingerprint(token) {
  if (!globalThis.crypto?.subtle) return token.slice(-12);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 12);
}

const client = new EmbedTokenClient({
  endpoint: config.endpoint,
  getAuthHeader,
  refreshBuffer: Number(config.buffer),
  // The gateway's dev verifier stands in for the vendor's embed page.
  embedBase: window.location.origin,
});

let mounts = 0;
const handle = client.mountDashboard(frame, {
  tenantId: config.tenant,
  workspaceId: config.workspace,
  dashboardId: config.dashboard,
  async onToken(info) {
    mounts += 1;
    show("mounts", String(mounts));
    tick();
    show("token-sha", await fingerprint(info.token));
    document.getElementById("error").hidden = true;
  },
  onError(err) {
    const box = document.getElementById("error");
    box.textContent = `${err.name}: ${err.message}`;
    box.hidden = false;
  },
});

function tick() {
  const current = handle.current;
  if (current) {
    const left = Math.max(0, Math.floor(client.secondsLeft(current)));
    show("countdown", String(left));
    show("next-refresh", String(Math.max(0, left - client.refreshBuffer)));
  }
}
setInterval(tick, 250);
handle.ready.then(tick, () => {});
