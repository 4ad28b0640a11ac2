"""GATEWAY_DATABASE_READ_URL: lookups read the replica, except right after a mapping change."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.ops.migrate import migrate
from gateway.tokens.directory import add_mapping
from gateway.tokens.keys import KeyLayout
from gateway.tokens.revocation import mark_changed
from tests.helpers import auth

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


@pytest.fixture
async def lagging_replica(pg_server: str) -> AsyncIterator[str]:
    """A migrated database standing in for a replica that has not seen the mapping yet."""
    name = f"gw_replica_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    yield dsn
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def test_reads_go_to_the_replica_but_to_the_primary_after_a_change(
    lagging_replica: str, make_client, settings, db: asyncpg.Connection
) -> None:
    # lagging_replica comes first so that it is dropped after the app (and its pool) closed.
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(settings, database_read_url=lagging_replica)
    stale = await client.post(V1, json=BODY, headers=auth())
    assert stale.status == 404  # the replica has not seen the mapping: it was read there

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        # What `gateway tenants add` does after its change: read the primary for a while.
        await mark_changed(redis, KeyLayout(settings.redis_prefix), "org-123", lag=10)
    finally:
        await redis.aclose()
    fresh = await client.post(V1, json=BODY, headers=auth())
    assert fresh.status == 200
    assert (await fresh.json())["dashboard_id"] == "dashboard-789"
