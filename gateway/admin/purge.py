"""Revoke cached tokens for an admin command and record the action in the audit trail."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from gateway.admin.connect import connect_redis
from gateway.audit.admin import operator_event, record_event
from gateway.infra.redis_client import AnyRedis
from gateway.settings import redis_target_from_env
from gateway.tokens.keys import KeyLayout
from gateway.tokens.revocation import mark_changed

# How long after a mapping change the service reads the directory from the primary, not the
# replica (GATEWAY_DATABASE_READ_LAG; set it for the CLI as for the service).
DEFAULT_READ_LAG = 10.0

Revoke = Callable[[AnyRedis, KeyLayout], Awaitable[int]]


def read_lag() -> float:
    """GATEWAY_DATABASE_READ_LAG in seconds (README, Deploying at scale)."""
    try:
        return max(0.0, float(os.environ.get("GATEWAY_DATABASE_READ_LAG", DEFAULT_READ_LAG)))
    except ValueError:
        return DEFAULT_READ_LAG


async def with_redis(
    tenant_id: str, revoke: Revoke | None, *, mark: bool = True
) -> tuple[int | None, bool]:
    """Run `revoke` (a generation bump) and mark the tenant changed; (generation, redis set).

    Without GATEWAY_REDIS_URL nothing runs and a note says cached tokens stay in use.
    """
    target = redis_target_from_env()
    if target is None:
        print(
            "note: GATEWAY_REDIS_URL is not set, so cached tokens were not revoked;"
            " they stay in use until they expire",
            file=sys.stderr,
        )
        return None, False
    layout = KeyLayout(target.prefix)
    client = connect_redis(target)
    try:
        generation = None if revoke is None else await revoke(client, layout)
        if mark:
            await mark_changed(client, layout, tenant_id, lag=read_lag())
    finally:
        await client.aclose()
    return generation, True


async def record_mapping_change(
    conn: asyncpg.Connection,
    tenant_id: str,
    workspace_id: str,
    dashboard_id: str,
    *,
    detail: dict[str, object],
) -> None:
    """One `mapping_changed` row: an operator's action, not a token request."""
    await record_event(
        conn,
        operator_event(
            "mapping_changed",
            tenant_id,
            workspace_id=workspace_id,
            dashboard_id=dashboard_id,
            detail=detail,
        ),
    )
