"""TokenIssuer without HTTP: the cache rule, single flight, and expiry of the Redis entry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.errors import RateLimited
from gateway.settings import Settings
from gateway.tokens.directory import add_mapping
from gateway.tokens.issuer import TokenIssuer
from gateway.tokens.request import TokenRequest
from tests.helpers import SIGNING_SECRET
from tests.tokens import build


class Clock:
    """A settable clock: the issuer takes `clock` so the reuse rule can be tested exactly."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def parts(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[tuple]:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
    client = aioredis.Redis.from_url(settings.redis_url)
    await add_mapping(db, "org-1", "ws-1", "dash-1", is_default=True)
    yield pool, client, settings
    await client.aclose()
    await pool.close()


def make_issuer(
    parts: tuple, clock: Clock, ttl: int = 3600, buffer: int = 300, **kw
) -> TokenIssuer:
    pool, client, settings = parts
    return build.make_issuer(
        pool, client, settings.redis_prefix, clock=clock, token_ttl=ttl, buffer=buffer, **kw
    )


REQ = TokenRequest(tenant_id="org-1", workspace_id="ws-1", dashboard_id="dash-1")


async def test_reuse_until_the_buffer_then_mint(parts) -> None:
    """Reused while more than the buffer is left; at exactly the buffer a new one is minted."""
    clock = Clock(1_000_000.0)
    issuer = make_issuer(parts, clock)
    first = await issuer.issue(REQ)
    assert not first.cache_hit
    assert first.token.valid_until == 1_000_000 + 3600
    clock.now += 3600 - 301
    second = await issuer.issue(REQ)
    assert second.cache_hit
    assert second.token == first.token
    clock.now += 1  # now exactly 300 s left
    third = await issuer.issue(REQ)
    assert not third.cache_hit
    assert third.token.valid_until == int(clock.now) + 3600


async def test_redis_entry_expires_when_reuse_ends(parts) -> None:
    """The Redis key's TTL is the reuse window, so it disappears by itself."""
    _, client, _ = parts
    issuer = make_issuer(parts, Clock(__import__("time").time()), ttl=400, buffer=300)
    await issuer.issue(REQ)
    key = issuer.key("ws-1", "org-1", "dash-1")
    pttl = await client.pttl(key)
    assert 98_000 < pttl <= 100_000
    assert SIGNING_SECRET.decode() not in key


async def test_single_flight_one_lookup_for_concurrent_misses(parts) -> None:
    """100 concurrent misses for one key make one database lookup and hand out one token."""
    issuer = make_issuer(parts, Clock(__import__("time").time()))
    results = await asyncio.gather(*(issuer.issue(REQ) for _ in range(100)))
    assert issuer.lookups == 1
    assert len({r.token.token for r in results}) == 1


async def test_nx_race_returns_the_winners_token(parts) -> None:
    """Two issuers (think: two instances) both mint and reach SET NX; the loser hands out the
    winner's token, so both agree on one."""
    now = Clock(__import__("time").time())
    arrived = 0
    both_minted = asyncio.Event()

    async def before_mint(_subject: str | None, _tenant: str) -> None:
        # Hold each contender just before its mint until the other is there too, so both miss
        # in Redis and both reach SET NX: the race happens on every run, not by luck.
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_minted.set()
        await asyncio.wait_for(both_minted.wait(), 10)

    minters: list = []
    a = make_issuer(parts, now, before_mint=before_mint, minter=minters)
    b = make_issuer(parts, now, before_mint=before_mint, minter=minters)
    ra, rb = await asyncio.gather(a.issue(REQ), b.issue(REQ))
    assert ra.token.token == rb.token.token
    assert [m.mints for m in minters] == [1, 1]  # both contenders minted and reached SET NX
    assert sum(m.races_lost for m in minters) == 1  # exactly one lost the race
    assert sorted([ra.minted, rb.minted]) == [False, True]  # the loser serves the winner's


async def test_rotated_signing_secret_never_serves_the_old_token(parts) -> None:
    """The cache key carries a fingerprint of the signing key, so a new key mints afresh."""
    clock = Clock(__import__("time").time())
    old = await make_issuer(parts, clock).issue(REQ)
    rotated = make_issuer(parts, clock, signing_secret=b"a-completely-different-signing-secret!!")
    new = await rotated.issue(REQ)
    assert not new.cache_hit
    assert new.token.token != old.token.token


async def test_a_refused_shared_mint_does_not_refuse_other_subjects(parts) -> None:
    """Two callers share one mint; when the subject that started it is over its mint limit, the
    other caller mints under its own budget instead of inheriting the 429."""
    pool, client, settings = parts
    entered, release = asyncio.Event(), asyncio.Event()
    asked: list[str | None] = []

    async def before_mint(subject: str | None, _tenant: str) -> None:
        asked.append(subject)
        if subject == "over-limit":
            entered.set()
            await release.wait()
            raise RateLimited("mint limit", retry_after=7)

    issuer = build.make_issuer(pool, client, settings.redis_prefix, before_mint=before_mint)
    first = asyncio.create_task(issuer.issue(REQ, "over-limit"))
    await entered.wait()  # the shared mint is under way, held at the limiter
    second = asyncio.create_task(issuer.issue(REQ, "fine"))
    await asyncio.sleep(0.3)  # ample time for the second caller's cache miss to join the flight
    release.set()
    with pytest.raises(RateLimited) as refused:
        await first
    assert refused.value.retry_after == 7
    issued = await second
    assert not issued.cache_hit
    assert asked == ["over-limit", "fine"]
