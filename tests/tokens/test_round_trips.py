"""Redis round trips per token request, counted on the wire: a round trip that creeps back fails.

Each round trip is one write of packed commands to a connection (a pipeline is one), counted by
wrapping redis-py's `send_packed_command` for the test; the Redis is real: the tests' server, and
a 3-primary Redis Cluster, where the subject's mint budget is in a slot of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection

from gateway.infra.breaker import CircuitBreaker
from gateway.infra.ratelimit import MintLimiter, Rate
from gateway.infra.redis_client import create_redis
from gateway.settings import RedisTarget, Settings
from gateway.tokens.directory import add_mapping
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.keys import KeyLayout
from gateway.tokens.request import TokenRequest
from tests.tokens import build
from tests.topology import RedisClusterProcs


class Wire:
    """Round trips since the last reset."""

    def __init__(self) -> None:
        self.trips = 0

    def reset(self) -> int:
        trips, self.trips = self.trips, 0
        return trips


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    counter = Wire()
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: object, **kwargs: object) -> None:
        counter.trips += 1
        await send(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return counter


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterProcs]:
    nodes = RedisClusterProcs().start()
    yield nodes
    nodes.stop()


@pytest.fixture(params=["standalone", "cluster"])
async def deps(
    request: pytest.FixtureRequest, settings: Settings, db: asyncpg.Connection
) -> AsyncIterator[tuple]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    if request.param == "cluster":
        nodes = request.getfixturevalue("cluster")
        client = create_redis(RedisTarget(nodes.url, settings.redis_prefix, "cluster"), timeout=2.0)
    else:
        client = aioredis.Redis.from_url(settings.redis_url)
    for tenant in ("org-1", "org-warm"):
        await add_mapping(db, tenant, "ws-1", "dash-1", is_default=True)
    yield pool, client, settings
    await client.aclose()
    await pool.close()


def _issuer(deps: tuple, *, subject_limit: bool) -> TokenIssuer:
    pool, client, settings = deps
    layout = KeyLayout(settings.redis_prefix)
    limiter = MintLimiter(
        client,
        tenant_key=layout.tenant_budget,
        subject_key=layout.subject_budget,
        per_subject=Rate(1000, 60.0) if subject_limit else None,
        per_tenant=Rate(1000, 60.0),
        timeout=2.0,
        breaker=CircuitBreaker("redis"),
    )
    return build.make_issuer(
        pool,
        client,
        settings.redis_prefix,
        before_mint=limiter.spend_subject,
        budgets=limiter,
    )


def _req(tenant: str, dashboard: str | None) -> TokenRequest:
    return TokenRequest(tenant_id=tenant, workspace_id="ws-1", dashboard_id=dashboard)


@pytest.mark.parametrize("subject_limit", [False, True])
async def test_round_trips_per_hit_miss_and_alias_miss(deps, wire, subject_limit) -> None:
    """A Redis hit is 1 round trip; a miss 2 (the read, then one script: subject budget,
    canonical check, tenant budget, store, alias), an alias miss 2 as well, with or without the
    canonical entry. In a cluster a subject mint limit is its own single-key call (another
    slot): 3."""
    issuer = _issuer(deps, subject_limit=subject_limit)
    # Scripts are loaded once per server (NOSCRIPT, SCRIPT LOAD): not what is counted here.
    await issuer.issue(_req("org-warm", None), "warm")
    wire.reset()
    in_cluster = isinstance(deps[1], RedisCluster)
    budget = 1 if subject_limit and in_cluster else 0

    minted = await issuer.issue(_req("org-1", "dash-1"), "user-1")
    assert minted.minted
    assert wire.reset() == 2 + budget  # miss

    hit = await issuer.issue(_req("org-1", "dash-1"), "user-1")
    assert hit.cache_hit
    assert hit.token == minted.token
    assert wire.reset() == 1  # Redis hit

    alias = await issuer.issue(_req("org-1", None), "user-1")
    assert alias.cache_hit  # the canonical entry, shared
    assert alias.token == minted.token
    assert wire.reset() == 2 + budget  # alias miss, canonical present

    assert (await issuer.issue(_req("org-1", None), "user-1")).token == minted.token
    assert wire.reset() == 1  # the alias now points at it: a hit

    fresh = await issuer.issue(_req("org-warm", "dash-1"), "user-1")
    assert fresh.cache_hit  # the warm-up's alias miss stored the canonical entry too
    wire.reset()
    await deps[1].delete(issuer.key("ws-1", "org-1", "*"), issuer.key("ws-1", "org-1", "dash-1"))
    wire.reset()
    again = await issuer.issue(_req("org-1", None), "user-1")
    assert again.minted
    assert wire.reset() == 2 + budget  # alias miss, canonical absent: minted and both stored
    assert (await issuer.issue(_req("org-1", "dash-1"), "user-1")).token == again.token
    assert wire.reset() == 1
