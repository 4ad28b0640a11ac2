"""TokenIssuer's tiers: the per-worker local copy in front of Redis, and single flight."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.tokens.directory import add_mapping
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.request import TokenRequest
from tests.helpers import API_KEY_ID
from tests.tokens import build


@pytest.fixture
async def deps(settings, database_url: str, db: asyncpg.Connection):
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    client = aioredis.Redis.from_url(settings.redis_url)
    yield pool, client
    await client.aclose()
    await pool.close()


def make_issuer(deps, settings, *, local_ttl: float) -> TokenIssuer:
    pool, client = deps
    return build.make_issuer(
        pool, client, settings.redis_prefix, local_ttl=local_ttl, api_key_id=API_KEY_ID
    )


@pytest.mark.parametrize("local_ttl", [0, 5])
async def test_one_lookup_for_a_hundred_concurrent_misses(deps, settings, local_ttl) -> None:
    """100 concurrent requests for one uncached key make one lookup and get one token."""
    gw = make_issuer(deps, settings, local_ttl=local_ttl)
    request = TokenRequest(tenant_id="org-123", workspace_id="workspace-456", dashboard_id=None)
    results = await asyncio.gather(*(gw.issue(request) for _ in range(100)))
    assert gw.lookups == 1
    assert len({r.token.token for r in results}) == 1
    assert sum(not r.cache_hit for r in results) >= 1


async def test_a_local_hit_needs_neither_redis_nor_postgresql(deps, settings) -> None:
    """Once a worker holds the token, it answers with both dependencies' clients closed."""
    pool, client = deps
    gw = make_issuer(deps, settings, local_ttl=5)
    request = TokenRequest(tenant_id="org-123", workspace_id="workspace-456", dashboard_id=None)
    first = await gw.issue(request)
    await pool.close()
    await client.aclose()
    again = await gw.issue(request)
    assert again.cache_hit
    assert again.token == first.token
