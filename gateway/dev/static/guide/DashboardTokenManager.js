// The vendor guide's token manager (docs.papermap.ai, multi-tenant iframe tokens), kept as the
// guide gives it; only `export` is added so a module can import it. It calls the product's own
// backend path with the session cookie (no Authorization header) and a camelCase body, and keeps
// ONE token for every tenant and dashboard, refreshed five minutes before it expires on the
// browser's clock. See README "The vendor's React example" for what it gets wrong.
export class DashboardTokenManager {
  constructor() {
    this.token = null;
    this.expiresAt = null;
  }

  async getToken(tenantId, workspaceId, dashboardId) {
    // Refresh token 5 minutes before expiry
    if (this.token && this.expiresAt > Date.now() + 5 * 60 * 1000) {
      return this.token;
    }

    const response = await fetch("/api/dashboards/iframe-token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tenantId, workspaceId, dashboardId }),
    });

    const data = await response.json();
    this.token = data.token;
    this.expiresAt = data.expires_at * 1000;

    return this.token;
  }
}
