"""The per-worker token tier: never past the reuse rule, never past its bound after a purge."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.tokens.directory import add_mapping
from gateway.tokens.format import EmbedToken
from gateway.tokens.keys import KeyLayout
from gateway.tokens.local import LocalTokenCache
from gateway.tokens.request import TokenRequest
from gateway.tokens.revocation import revoke_tenant
from tests.helpers import API_KEY_ID
from tests.tokens import build

REQUEST = TokenRequest(tenant_id="org-123", workspace_id="workspace-456", dashboard_id=None)


def token(valid_until: int) -> EmbedToken:
    return EmbedToken(token=f"tok-{valid_until}", dashboard_id="d", valid_until=valid_until)


def test_held_no_longer_than_its_bound() -> None:
    """A copy read at t is served before t + ttl and not from then on."""
    local = LocalTokenCache(ttl=5, max_size=10, refresh_buffer=300)
    local.put("k", token(10_000), now=1_000.0)
    assert local.get("k", 1_004.99) == token(10_000)
    assert local.get("k", 1_005.0) is None


def test_never_served_past_the_reuse_rule() -> None:
    """With less than the refresh buffer left, the copy is gone even inside its bound."""
    local = LocalTokenCache(ttl=60, max_size=10, refresh_buffer=300)
    local.put("k", token(1_310), now=1_000.0)  # reusable until 1_010
    assert local.get("k", 1_009.9) is not None
    assert local.get("k", 1_010.0) is None
    local.put("k", token(1_300), now=1_000.0)  # not reusable at all: never held
    assert local.get("k", 1_000.0) is None


def test_zero_ttl_disables_it() -> None:
    """GATEWAY_LOCAL_CACHE_TTL=0 keeps nothing."""
    local = LocalTokenCache(ttl=0, max_size=10, refresh_buffer=300)
    local.put("k", token(10_000), now=1_000.0)
    assert not local.enabled
    assert local.get("k", 1_000.0) is None


@dataclass
class Clock:
    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def redis_client(settings) -> aioredis.Redis:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def pool(database_url: str, db: asyncpg.Connection) -> asyncpg.Pool:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield pool
    await pool.close()


def issuer(pool, redis_client, settings, clock, *, ttl: float, token_ttl: int = 3600, buffer=300):
    return build.make_issuer(
        pool,
        redis_client,
        settings.redis_prefix,
        clock=clock,
        token_ttl=token_ttl,
        buffer=buffer,
        local_ttl=ttl,
        api_key_id=API_KEY_ID,
    )


async def test_a_revocation_reaches_the_worker_within_the_bound(
    pool, redis_client, settings
) -> None:
    """After a revocation in Redis the local copy serves at most ttl more, then a new mint."""
    clock = Clock()
    gw = issuer(pool, redis_client, settings, clock, ttl=5)
    first = await gw.issue(REQUEST)
    assert not first.cache_hit
    assert await revoke_tenant(redis_client, KeyLayout(settings.redis_prefix), "org-123") == 1
    again = await gw.issue(REQUEST)  # no Redis round trip: the local copy, within its bound
    assert again.cache_hit
    assert again.token == first.token
    clock.offset = 5.01
    after = await gw.issue(REQUEST)
    assert not after.cache_hit
    assert after.token != first.token
    assert gw.lookups == 2


async def test_a_local_copy_is_not_served_past_the_reuse_rule(pool, redis_client, settings) -> None:
    """A token with no more than the buffer left is replaced, even with a long local bound."""
    clock = Clock()
    gw = issuer(pool, redis_client, settings, clock, ttl=300, token_ttl=20, buffer=10)
    first = await gw.issue(REQUEST)
    clock.offset = 8.9  # valid_until - buffer is at least 9 s ahead (valid_until = int(now) + 20)
    assert (await gw.issue(REQUEST)).token == first.token
    clock.offset = 10.5  # past valid_until - buffer, whatever int(now) rounded
    later = await gw.issue(REQUEST)
    assert later.token != first.token
    assert later.token.valid_until > first.token.valid_until
