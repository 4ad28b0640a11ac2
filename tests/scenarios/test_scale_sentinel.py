"""Redis with Sentinel (primary + replica + sentinel, real processes): a forced failover in the
middle of traffic, with a revoke during it; writes follow the primary, the revocation is not
lost when the old primary resyncs, and no request answers 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import asyncpg
import pytest
import redis

from gateway.tokens.directory import add_mapping
from gateway.tokens.keys import KeyLayout
from tests.helpers import auth
from tests.scenarios.scale import Instances, cli, instances
from tests.topology import SentinelProcs

BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
OTHER = {"tenant_id": "org-999", "workspace_id": "workspace-456"}


@pytest.fixture
def sentinel() -> Iterator[SentinelProcs]:
    procs = SentinelProcs().start()
    yield procs
    procs.stop()


def settled(procs: SentinelProcs) -> bool:
    """The replica is primary now and the old primary follows it, in sync."""
    if procs.primary()[1] != procs.replica_port:
        return False
    with redis.Redis(port=procs.primary_port) as old:
        info = old.info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


async def traffic(gw: Instances, stop: asyncio.Event) -> int:
    sent = 0
    while not stop.is_set():
        for i in range(2):
            await gw.token(i, OTHER, tenant="org-999")
            await gw.token(i, BODY)
            sent += 2
        await asyncio.sleep(0.02)
    return sent


async def test_failover_mid_traffic_with_a_revoke_during_it(
    settings, sentinel: SentinelProcs, db: asyncpg.Connection, tmp_path
) -> None:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    await add_mapping(db, "org-999", "workspace-456", "dashboard-999", is_default=True)
    env = {
        "GATEWAY_REDIS_MODE": "sentinel",
        "GATEWAY_REDIS_SENTINEL_MASTER": SentinelProcs.MASTER,
        "GATEWAY_LOCAL_CACHE_TTL": "0.5",
        "GATEWAY_REDIS_TIMEOUT": "1",
        "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
    }
    on_sentinel = replace(settings, redis_url=sentinel.url)
    async with instances(on_sentinel, 2, tmp_path, **env) as gw:
        status, ready = await gw.ready(0)
        assert (status, ready["checks"]["redis"]) == (200, "ok"), ready
        first = (await gw.token(0, BODY))[1]["token"]
        assert (await gw.token(1, BODY))[1]["token"] == first  # minted once, then reused
        assert await gw.metric(1, "gateway_tokens_minted_total") == 0

        stop = asyncio.Event()
        load = asyncio.create_task(traffic(gw, stop))
        try:
            await asyncio.sleep(0.3)
            sentinel.failover()
            code, out, err = await cli(on_sentinel, "revoke", "--tenant", "org-123", **env)
            assert code == 0, err
            assert "revoked every cached token of org-123" in out
            print(out, err)  # shows whether the revoke had to wait out the failover
            deadline = time.monotonic() + 30
            while not settled(sentinel):
                assert time.monotonic() < deadline, "failover did not settle"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # traffic goes on against the new primary for a moment
        finally:
            stop.set()
            sent = await load
        assert sent > 0

        # The revocation survived the resync: it is on the new primary...
        layout = KeyLayout(on_sentinel.redis_prefix)
        with redis.Redis(port=sentinel.replica_port) as new_primary:
            assert int(new_primary.hget(layout.generations("org-123"), "t") or 0) >= 1
        # ...and no instance hands out the revoked token again.
        await asyncio.sleep(0.6)
        for i in range(2):
            status, answer = await gw.token(i, BODY)
            assert status == 200
            assert answer["token"] != first
        # Both instances follow the new primary: ready, and a new token is shared again.
        for i in range(2):
            status, ready = await gw.ready(i)
            assert status == 200, ready
        tokens = {(await gw.token(i, BODY))[1]["token"] for i in range(2)}
        assert len(tokens) == 1
    assert 500 not in gw.statuses, gw.statuses
    assert set(gw.statuses) <= {200, 503}, gw.statuses


async def test_pointed_at_a_replica_readyz_names_it_and_nothing_is_a_500(
    make_client, settings, sentinel: SentinelProcs, db: asyncpg.Connection
) -> None:
    """Standalone mode aimed at a replica (a failover the configuration missed): /readyz is 503
    naming the role, token requests still answer (READONLY is a Redis error), counted."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(settings, redis_url=f"redis://127.0.0.1:{sentinel.replica_port}/0")
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503
    assert body["checks"]["redis"].startswith("misconfigured (role is slave"), body
    for _ in range(3):
        resp = await client.post("/api/v1/dashboards/iframe-token", json=BODY, headers=auth())
        assert resp.status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_redis_config_errors_total{kind="readonly"}' in metrics
