"""Audit rows of operators' actions (revocations, mapping changes), written directly by the CLI."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime

import asyncpg

from gateway.audit.event import COLUMNS, AuditEvent

# Not an HTTP answer: the audit row of an operator's action carries status 0.
ADMIN_STATUS = 0


def operator_event(
    event: str,
    tenant_id: str,
    *,
    workspace_id: str | None = None,
    dashboard_id: str | None = None,
    detail: dict[str, object],
) -> AuditEvent:
    """The audit row of one operator action (status 0, the operator as subject)."""
    try:
        operator = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        operator = "unknown"
    return AuditEvent(
        event=event,
        status=ADMIN_STATUS,
        request_id=f"cli-{uuid.uuid4().hex}",
        occurred_at=datetime.now(UTC),
        subject=f"cli:{operator}",
        tenant_id=tenant_id,
        workspace_id=workspace_id,
        dashboard_id=dashboard_id,
        detail=detail,
    )


async def record_event(conn: asyncpg.Connection, event: AuditEvent) -> None:
    """Insert one audit row directly (the CLI has no audit writer running)."""
    placeholders = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
    await conn.execute(
        f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({placeholders})",  # noqa: S608 - fixed column names
        *event.record(),
    )
