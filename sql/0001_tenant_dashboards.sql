-- Which dashboards a tenant may embed, per workspace; at most one default per tenant and workspace.
CREATE TABLE IF NOT EXISTS tenant_dashboards (
    tenant_id    text        NOT NULL,
    workspace_id text        NOT NULL,
    dashboard_id text        NOT NULL,
    is_default   boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workspace_id, dashboard_id)
);

CREATE UNIQUE INDEX IF NOT EXISTS tenant_dashboards_one_default
    ON tenant_dashboards (tenant_id, workspace_id)
    WHERE is_default;
