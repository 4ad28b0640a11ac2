"""The issuer with PostgreSQL stopped: cache hits still answer, misses are 503, all recovers."""

from __future__ import annotations

import time
from dataclasses import replace

import asyncpg

from gateway.app import create_app
from gateway.dev.embedded import free_port
from gateway.ops.migrate import migrate
from gateway.tokens.directory import add_mapping
from tests.helpers import auth

V1 = "/api/v1/dashboards/iframe-token"
HIT = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
MISS = {"tenant_id": "org-123", "workspace_id": "workspace-456", "dashboard_id": "dashboard-2"}


async def test_postgres_stopped_hits_200_misses_503_then_recovers(
    aiohttp_client, settings, private_postgres
) -> None:
    """PostgreSQL down: a cached token is still served (200), a miss is 503 unavailable with
    Retry-After within the deadlines, /readyz is 503 naming postgresql; once it is back, misses
    are 200 and /readyz 200 again, without restarting the gateway."""
    conn = await asyncpg.connect(private_postgres.url)
    try:
        await migrate(conn)
        await add_mapping(conn, "org-123", "workspace-456", "dashboard-1", is_default=True)
        await add_mapping(conn, "org-123", "workspace-456", "dashboard-2", is_default=False)
    finally:
        await conn.close()
    client = await aiohttp_client(
        create_app(
            replace(
                settings, database_url=private_postgres.url, db_timeout=1.0, db_acquire_timeout=1.0
            )
        )
    )
    first = await client.post(V1, json=HIT, headers=auth())
    assert first.status == 200
    token = (await first.json())["token"]

    private_postgres.stop()
    try:
        hit = await client.post(V1, json=HIT, headers=auth())
        assert hit.status == 200
        assert (await hit.json())["token"] == token
        started = time.perf_counter()
        miss = await client.post(V1, json=MISS, headers=auth())
        took = time.perf_counter() - started
        assert miss.status == 503
        assert miss.headers["Retry-After"] == "1"
        assert (await miss.json())["error"]["code"] == "unavailable"
        assert took < 2.5  # acquire (1 s) + query (1 s) deadlines, never a hang
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["failing"] == ["postgresql"]
    finally:
        private_postgres.start()

    miss = await client.post(V1, json=MISS, headers=auth())
    assert miss.status == 200
    assert (await miss.json())["dashboard_id"] == "dashboard-2"
    assert (await client.get("/readyz")).status == 200


async def test_starts_while_postgres_is_down(aiohttp_client, settings) -> None:
    """PostgreSQL unreachable at start: the gateway still starts; /healthz is 200, /readyz 503
    naming postgresql, and a token request that needs the database is 503 with Retry-After."""
    down = replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    client = await aiohttp_client(create_app(down))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["failing"] == ["postgresql"]
    miss = await client.post(V1, json=HIT, headers=auth())
    assert miss.status == 503
    assert miss.headers["Retry-After"] == "1"
    assert (await miss.json())["error"]["code"] == "unavailable"
