"""The tenant-to-dashboard mapping in PostgreSQL: the request path's lookup, the CLI's edits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.errors import DashboardNotFound

# One statement answers both cases: a named dashboard must belong to the tenant in that workspace;
# without one, the default wins, else the only one (two candidates and no default is ambiguous).
LOOKUP_SQL = """
SELECT dashboard_id, is_default
FROM tenant_dashboards
WHERE tenant_id = $1 AND workspace_id = $2 AND ($3::text IS NULL OR dashboard_id = $3)
ORDER BY is_default DESC, dashboard_id
LIMIT 2
"""


@dataclass(frozen=True, slots=True)
class Mapping:
    """One row of tenant_dashboards."""

    tenant_id: str
    workspace_id: str
    dashboard_id: str
    is_default: bool
    created_at: datetime


async def lookup_dashboard(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant_id: str,
    workspace_id: str,
    dashboard_id: str | None,
    *,
    timeout: float | None = None,
) -> str:
    """The dashboard to embed for this tenant and workspace; DashboardNotFound if none applies.

    `timeout`: seconds for the query (asyncpg's own timer; None: the connection's default)."""
    rows = await conn.fetch(LOOKUP_SQL, tenant_id, workspace_id, dashboard_id, timeout=timeout)
    if not rows:
        if dashboard_id is None:
            raise DashboardNotFound(
                f"no dashboard for tenant {tenant_id} in workspace {workspace_id}"
            )
        raise DashboardNotFound(
            f"dashboard {dashboard_id} not found for tenant {tenant_id} in workspace {workspace_id}"
        )
    first = rows[0]
    if dashboard_id is None and len(rows) > 1 and not first["is_default"]:
        raise DashboardNotFound(
            f"tenant {tenant_id} has several dashboards in workspace {workspace_id} and no default;"
            " name one with dashboard_id",
            reason="no_default_dashboard",
        )
    return str(first["dashboard_id"])


async def default_dashboard(
    conn: asyncpg.Connection, tenant_id: str, workspace_id: str
) -> str | None:
    """The dashboard a request without dashboard_id gets now; None when it gets a 404."""
    try:
        return await lookup_dashboard(conn, tenant_id, workspace_id, None)
    except DashboardNotFound:
        return None


async def add_mapping(
    conn: asyncpg.Connection,
    tenant_id: str,
    workspace_id: str,
    dashboard_id: str,
    *,
    is_default: bool,
) -> None:
    """Insert or update one mapping; making it the default demotes the previous one atomically."""
    async with conn.transaction():
        if is_default:
            await conn.execute(
                "UPDATE tenant_dashboards SET is_default = false"
                " WHERE tenant_id = $1 AND workspace_id = $2 AND is_default AND dashboard_id <> $3",
                tenant_id,
                workspace_id,
                dashboard_id,
            )
        await conn.execute(
            "INSERT INTO tenant_dashboards (tenant_id, workspace_id, dashboard_id, is_default)"
            " VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (tenant_id, workspace_id, dashboard_id)"
            " DO UPDATE SET is_default = tenant_dashboards.is_default OR EXCLUDED.is_default",
            tenant_id,
            workspace_id,
            dashboard_id,
            is_default,
        )


async def list_mappings(conn: asyncpg.Connection, tenant_id: str | None = None) -> list[Mapping]:
    """Every mapping, or one tenant's, in a stable order."""
    rows = await conn.fetch(
        "SELECT tenant_id, workspace_id, dashboard_id, is_default, created_at"
        " FROM tenant_dashboards WHERE $1::text IS NULL OR tenant_id = $1"
        " ORDER BY tenant_id, workspace_id, dashboard_id",
        tenant_id,
    )
    return [Mapping(**dict(row)) for row in rows]


async def remove_mapping(
    conn: asyncpg.Connection, tenant_id: str, workspace_id: str, dashboard_id: str
) -> bool:
    """Delete one mapping; False if it did not exist."""
    status = await conn.execute(
        "DELETE FROM tenant_dashboards"
        " WHERE tenant_id = $1 AND workspace_id = $2 AND dashboard_id = $3",
        tenant_id,
        workspace_id,
        dashboard_id,
    )
    return status != "DELETE 0"
