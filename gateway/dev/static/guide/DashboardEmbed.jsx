// The vendor guide's React component (docs.papermap.ai, multi-tenant iframe tokens), kept as the
// guide gives it; `export` is added so a module can import it, and the iframe's base URL (the
// vendor's https://papermap.ai) points at the gateway's dev verifier on this origin instead.
import { useEffect, useState } from "react";

export function DashboardEmbed({ tenantId, workspaceId, dashboardId }) {
  const [iframeUrl, setIframeUrl] = useState("");
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);

  useEffect(() => {
    async function fetchToken() {
      try {
        const response = await fetch("/api/dashboards/iframe-token", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ tenantId, workspaceId, dashboardId }),
        });
        const data = await response.json();

        // Changed for `gateway dev`: the guide's base is https://papermap.ai.
        const url = `${window.location.origin}/embedded/dashboard?embedded-token=${data.token}`;
        setIframeUrl(url);
        setLoading(false);
      } catch (err) {
        setError(err.message);
        setLoading(false);
      }
    }

    fetchToken();
  }, [tenantId, workspaceId, dashboardId]);

  if (loading) return <div>Loading dashboard...</div>;
  if (error) return <div>Error: {error}</div>;

  return (
    <iframe
      src={iframeUrl}
      width="100%"
      height="600"
      frameBorder="0"
      allowFullScreen
    />
  );
}
