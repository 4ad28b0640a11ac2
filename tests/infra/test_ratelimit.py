"""Rate limits: mint limits in Redis per subject and tenant, the per-worker request limit."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import redis.asyncio as aioredis

from gateway.errors import RateLimited
from gateway.infra.ratelimit import RequestLimiter
from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, auth

V1 = "/api/v1/dashboards/iframe-token"


class FakeClock:
    """Time moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_request_limiter_burst_then_rate() -> None:
    """A caller gets `burst` requests at once, then one per 1/rate s; Retry-After is whole seconds
    rounded up; callers do not share buckets."""
    clock = FakeClock()
    limiter = RequestLimiter(rate=2.0, burst=4, clock=clock)
    for _ in range(4):
        limiter.check("a")
    with pytest.raises(RateLimited) as err:
        limiter.check("a")
    assert err.value.retry_after == 1
    limiter.check("b")
    clock.now += 0.5
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_request_limiter_forgets_old_callers() -> None:
    """The table is bounded: past max_callers the least recently seen caller is dropped."""
    limiter = RequestLimiter(rate=1.0, burst=1, max_callers=2, clock=FakeClock())
    limiter.check("a")
    limiter.check("b")
    limiter.check("c")  # evicts "a"
    limiter.check("a")  # a fresh bucket again
    with pytest.raises(RateLimited):
        limiter.check("c")


def test_request_limiter_drops_full_buckets_of_gone_callers() -> None:
    """A stream of new callers does not grow the table: buckets untouched since they filled up
    again are dropped as new ones come, while a caller still short of tokens keeps its bucket."""
    clock = FakeClock()
    limiter = RequestLimiter(rate=10.0, burst=2, clock=clock)
    for i in range(1000):  # one new caller a millisecond; each bucket is full again in 0.1 s
        clock.now += 0.001
        limiter.check(f"caller-{i}")
    assert len(limiter) < 300
    for _ in range(2):
        limiter.check("busy")  # empty: full again only 0.2 s from now
    clock.now += 0.05
    for i in range(10):
        limiter.check(f"late-{i}")
    with pytest.raises(RateLimited):  # still short of tokens: not forgotten
        limiter.check("busy")


@pytest.fixture
async def many(db: asyncpg.Connection) -> asyncpg.Connection:
    """org-123 with 70 dashboards in workspace-456, org-999 with one."""
    for i in range(70):
        await add_mapping(db, "org-123", "workspace-456", f"d-{i}", is_default=(i == 0))
    await add_mapping(db, "org-999", "workspace-456", "d-999", is_default=True)
    return db


def _body(dashboard: str, tenant: str = "org-123") -> dict[str, str]:
    return {"tenant_id": tenant, "workspace_id": "workspace-456", "dashboard_id": dashboard}


async def test_subject_over_its_mint_limit(make_client, settings, many) -> None:
    """10 mints/min for one subject: 10 distinct dashboards mint, the 11th is 429 with a
    Retry-After of at most 6 s and a rate_limited audit row; a cache hit still passes; after
    Retry-After the subject mints again. (One mint frees up every 6 s, so a slow machine taking
    a few seconds over the first ten does not let an eleventh through.)"""
    client = await make_client(
        settings,
        rate_limit_subject_mints=10,
        rate_limit_tenant_mints=10_000,
        rate_limit_requests_per_second=0,
    )
    for i in range(10):
        resp = await client.post(V1, json=_body(f"d-{i}"), headers=auth())
        assert resp.status == 200, await resp.text()
    resp = await client.post(V1, json=_body("d-60"), headers=auth())
    assert resp.status == 429
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= 6
    assert (await resp.json())["error"]["code"] == "rate_limited"
    (row,) = await audit_rows(many, resp.headers["X-Request-ID"])
    assert (row["event"], row["status"], row["subject"]) == ("rate_limited", 429, "user-1")
    hit = await client.post(V1, json=_body("d-5"), headers=auth())
    assert hit.status == 200
    other = await client.post(V1, json=_body("d-60"), headers=auth(sub="user-2"))
    assert other.status == 200
    await asyncio.sleep(retry_after + 0.05)
    again = await client.post(V1, json=_body("d-61"), headers=auth())
    assert again.status == 200


async def test_tenant_over_its_mint_limit(make_client, settings, many) -> None:
    """The tenant's budget is shared by its subjects (2/min here: the third mint waits ~30 s),
    and another tenant is not affected."""
    client = await make_client(
        settings, rate_limit_tenant_mints=2, rate_limit_requests_per_second=0
    )
    assert (await client.post(V1, json=_body("d-1"), headers=auth(sub="a"))).status == 200
    assert (await client.post(V1, json=_body("d-2"), headers=auth(sub="b"))).status == 200
    resp = await client.post(V1, json=_body("d-3"), headers=auth(sub="c"))
    assert resp.status == 429
    assert 1 <= int(resp.headers["Retry-After"]) <= 30
    ok = await client.post(
        V1, json=_body("d-999", "org-999"), headers=auth(tenant="org-999", sub="c")
    )
    assert ok.status == 200


async def _redis_calls(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    # Only what the gateway sends; INFO and the connection set-up of this probe are left out.
    ours = ("cmdstat_get", "cmdstat_set", "cmdstat_evalsha", "cmdstat_eval", "cmdstat_ping")
    return sum(v["calls"] for k, v in stats.items() if k in ours)


async def test_request_limit_refuses_cache_hits_without_redis(
    make_client, settings, many, private_redis
) -> None:
    """A burst of cache hits over the per-worker limit (burst 5): the 6th and later are 429 with
    Retry-After, audited, and Redis receives no command for them."""
    client = await make_client(
        settings,
        redis_url=private_redis.url,
        rate_limit_requests_per_second=0.5,
        rate_limit_request_burst=5,
    )
    for _ in range(5):
        assert (await client.post(V1, json=_body("d-1"), headers=auth())).status == 200
    before = await _redis_calls(private_redis.url)
    assert before > 0  # the counting sees the gateway's commands
    refused = [await client.post(V1, json=_body("d-1"), headers=auth()) for _ in range(20)]
    assert [r.status for r in refused] == [429] * 20
    assert {r.headers["Retry-After"] for r in refused} == {"2"}
    assert await _redis_calls(private_redis.url) == before
    (row,) = await audit_rows(many, refused[0].headers["X-Request-ID"])
    assert row["event"] == "rate_limited"
    assert row["detail"] is not None
    # Another caller is not affected.
    assert (await client.post(V1, json=_body("d-1"), headers=auth(sub="user-2"))).status == 200
