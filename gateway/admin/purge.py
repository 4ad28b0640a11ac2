"""Purge cached tokens for an admin command and record the purge in the audit trail."""

from __future__ import annotations

import sys

import asyncpg
import redis.asyncio as aioredis

from gateway.audit.admin import record_event, revocation_event
from gateway.settings import redis_from_env
from gateway.tokens.purge import purge_tokens


async def purge_and_record(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    workspace_id: str | None = None,
    dashboard_id: str | None = None,
    default_only: bool = False,
    source: str,
) -> int | None:
    """Purge cached tokens and audit it; None (with a note) when GATEWAY_REDIS_URL is unset."""
    target = redis_from_env()
    if target is None:
        print(
            "note: GATEWAY_REDIS_URL is not set, so cached tokens were not purged;"
            " they stay in use until they expire",
            file=sys.stderr,
        )
        return None
    url, prefix = target
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        purged = await purge_tokens(
            client,
            prefix,
            tenant_id,
            workspace_id=workspace_id,
            dashboard_id=dashboard_id,
            default_only=default_only,
        )
    finally:
        await client.aclose()
    await record_event(
        conn,
        revocation_event(
            tenant_id,
            purged=purged,
            workspace_id=workspace_id,
            dashboard_id=dashboard_id,
            source=source,
        ),
    )
    return purged
