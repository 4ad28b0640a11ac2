"""The tenant-to-dashboard mapping in PostgreSQL: the request path's lookup, the CLI's edits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from gateway.errors import DashboardNotFound


@dataclass(frozen=True, slots=True)
class Mapping:
    """One row of tenant_dashboards."""

    tenant_id: str
    workspace_id: str
    dashboard_id: str
    is_default: bool
    created_at: datetime


# The lookups of one statement (a lone request's, or a batch of the resolver's), each tagged with
# its position: a named dashboard must belong to the tenant in that workspace; without one, the
# default wins, else the only one (two candidates and no default is ambiguous: LIMIT 2 tells).
LOOKUP_SQL = """
SELECT q.i, d.dashboard_id, d.is_default
FROM unnest($1::text[], $2::text[], $3::text[])
    WITH ORDINALITY AS q(tenant_id, workspace_id, dashboard_id, i)
CROSS JOIN LATERAL (
    SELECT t.dashboard_id, t.is_default
    FROM tenant_dashboards t
    WHERE t.tenant_id = q.tenant_id AND t.workspace_id = q.workspace_id
      AND (q.dashboard_id IS NULL OR t.dashboard_id = q.dashboard_id)
    ORDER BY t.is_default DESC, t.dashboard_id
    LIMIT 2
) d
ORDER BY q.i, d.is_default DESC, d.dashboard_id
"""

# One lookup: tenant, workspace, and the dashboard named (None: the tenant's default).
Wanted = tuple[str, str, str | None]


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
    (found,) = await lookup_dashboards(
        conn, [(tenant_id, workspace_id, dashboard_id)], timeout=timeout
    )
    if isinstance(found, DashboardNotFound):
        raise found
    return found


async def lookup_dashboards(
    conn: asyncpg.Connection | asyncpg.Pool,
    wanted: Sequence[Wanted],
    *,
    timeout: float | None = None,
) -> list[str | DashboardNotFound]:
    """Each of `wanted` looked up, in one statement: the dashboard id, or the DashboardNotFound
    that says why none applies, in the same order."""
    rows = await conn.fetch(
        LOOKUP_SQL,
        [w[0] for w in wanted],
        [w[1] for w in wanted],
        [w[2] for w in wanted],
        timeout=timeout,
    )
    candidates: list[list[tuple[str, bool]]] = [[] for _ in wanted]
    for row in rows:
        candidates[row[0] - 1].append((row[1], row[2]))
    results: list[str | DashboardNotFound] = []
    for found, one in zip(candidates, wanted, strict=True):
        try:
            results.append(choose_dashboard(found, one))
        except DashboardNotFound as exc:
            results.append(exc)
    return results


def choose_dashboard(candidates: Sequence[tuple[str, bool]], wanted: Wanted) -> str:
    """The dashboard among a lookup's (at most two) candidates, default first: the named one,
    the default, else the only one; DashboardNotFound when none applies."""
    tenant_id, workspace_id, dashboard_id = wanted
    if not candidates:
        if dashboard_id is None:
            raise DashboardNotFound(
                f"no dashboard for tenant {tenant_id} in workspace {workspace_id}"
            )
        raise DashboardNotFound(
            f"dashboard {dashboard_id} not found for tenant {tenant_id} in workspace {workspace_id}"
        )
    first_id, first_is_default = candidates[0]
    if dashboard_id is None and len(candidates) > 1 and not first_is_default:
        raise DashboardNotFound(
            f"tenant {tenant_id} has several dashboards in workspace {workspace_id} and no default;"
            " name one with dashboard_id",
            reason="no_default_dashboard",
        )
    return str(first_id)


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
