"""Revoke cached tokens for an admin command and record the action in the audit trail."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg

from gateway.admin.connect import connect_redis
from gateway.audit.admin import operator_event, record_event
from gateway.infra.dependency_errors import REDIS_ERRORS
from gateway.infra.redis_client import AnyRedis
from gateway.settings import RedisTarget, redis_target_from_env
from gateway.tokens.keys import KeyLayout

# How long after a mapping change the service reads the directory from the primary, not the
# replica (GATEWAY_DATABASE_READ_LAG; set it for the CLI as for the service).
DEFAULT_READ_LAG = 10.0
# A Sentinel failover takes seconds; a revocation keeps trying through it for this long.
FAILOVER_PATIENCE = 30.0

# (client, layout, replicas that must acknowledge) -> the new generation.
Work = Callable[[AnyRedis, KeyLayout, int], Awaitable[int]]


def read_lag() -> float:
    """GATEWAY_DATABASE_READ_LAG in seconds (README, Deploying at scale)."""
    try:
        return max(0.0, float(os.environ.get("GATEWAY_DATABASE_READ_LAG", DEFAULT_READ_LAG)))
    except ValueError:
        return DEFAULT_READ_LAG


def redis_or_note() -> RedisTarget | None:
    """The CLI's Redis, or None with a note that cached tokens stay in use."""
    target = redis_target_from_env()
    if target is None:
        print(
            "note: GATEWAY_REDIS_URL is not set, so cached tokens were not revoked;"
            " they stay in use until they expire",
            file=sys.stderr,
        )
    return target


async def run_revocation(target: RedisTarget, work: Work) -> int:
    """Run `work` until it is durable: in sentinel mode a replica must acknowledge it.

    A revocation written to a primary that a failover is demoting would be lost when it
    resyncs; so it is repeated on the new primary (a generation only has to move).
    """
    replicas = 1 if target.mode == "sentinel" else 0
    deadline = time.monotonic() + FAILOVER_PATIENCE
    layout = KeyLayout(target.prefix)
    while True:
        client = connect_redis(target)
        try:
            return await work(client, layout, replicas)
        except REDIS_ERRORS as exc:
            if replicas == 0 or time.monotonic() > deadline:
                raise
            print(
                f"note: {type(exc).__name__}: {exc}; a failover may be under way, trying again",
                file=sys.stderr,
            )
        finally:
            await client.aclose()
        await asyncio.sleep(0.5)


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
