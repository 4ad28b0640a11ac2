"""Dashboard lookups batched per loop turn: one statement for concurrent requests, each caller
its own answer (as the one-row lookup gives it), and every caller a 503 when PostgreSQL fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.errors import DashboardNotFound, Unavailable
from gateway.tokens.directory import add_mapping, lookup_dashboard, lookup_dashboards
from gateway.tokens.request import TokenRequest
from gateway.tokens.resolver import MAX_BATCH, DashboardResolver
from tests.proxy import TcpProxy

W = "ws-1"
# (tenant, dashboard asked for): the default, a named one, a named one of another tenant, an
# unknown tenant, two dashboards without a default, and the only one.
ASKED = [
    ("t-default", None),
    ("t-default", "d-other"),
    ("t-default", "d-of-t-only"),
    ("t-unknown", None),
    ("t-ambiguous", None),
    ("t-ambiguous", "d-b"),
    ("t-only", None),
]


@pytest.fixture
async def mappings(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "t-default", W, "d-main", is_default=True)
    await add_mapping(db, "t-default", W, "d-other", is_default=False)
    await add_mapping(db, "t-ambiguous", W, "d-a", is_default=False)
    await add_mapping(db, "t-ambiguous", W, "d-b", is_default=False)
    await add_mapping(db, "t-only", W, "d-of-t-only", is_default=False)
    return db


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=4)
    yield pool
    await pool.close()


async def _one(db: asyncpg.Connection, tenant: str, dashboard: str | None) -> str | tuple[str, str]:
    try:
        return await lookup_dashboard(db, tenant, W, dashboard)
    except DashboardNotFound as exc:
        return (exc.reason, str(exc))


def _outcome(result: object) -> str | tuple[str, str]:
    if isinstance(result, DashboardNotFound):
        return (result.reason, str(result))
    assert isinstance(result, str)
    return result


async def test_many_lookups_in_one_statement_answer_as_one_lookup_each(mappings) -> None:
    expected = [await _one(mappings, tenant, dashboard) for tenant, dashboard in ASKED]
    assert expected[:2] == ["d-main", "d-other"]
    assert expected[6] == "d-of-t-only"
    assert [e[0] for e in expected if isinstance(e, tuple)] == [
        "dashboard_not_found",
        "dashboard_not_found",
        "no_default_dashboard",
    ]
    got = await lookup_dashboards(mappings, [(t, W, d) for t, d in ASKED])
    assert [_outcome(r) for r in got] == expected


async def test_concurrent_resolves_share_one_statement(mappings, pool) -> None:
    resolver = DashboardResolver(pool, timeout=2.0)
    expected = [await _one(mappings, tenant, dashboard) for tenant, dashboard in ASKED]
    results = await asyncio.gather(
        *(resolver.resolve(TokenRequest(t, W, d)) for t, d in ASKED), return_exceptions=True
    )
    assert [_outcome(r) for r in results] == expected
    assert (resolver.lookups, resolver.statements) == (len(ASKED), 1)


async def test_a_lone_resolve_and_a_full_batch(mappings, pool) -> None:
    resolver = DashboardResolver(pool, timeout=2.0)
    assert await resolver.resolve(TokenRequest("t-default", W, None)) == "d-main"
    assert resolver.statements == 1
    many = [TokenRequest("t-default", W, None)] * (MAX_BATCH + 1)
    assert await asyncio.gather(*map(resolver.resolve, many)) == ["d-main"] * (MAX_BATCH + 1)
    assert resolver.statements == 1 + 2  # at most MAX_BATCH lookups per statement


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(mappings, pool) -> None:
    resolver = DashboardResolver(pool, timeout=2.0)
    gone = asyncio.ensure_future(resolver.resolve(TokenRequest("t-default", W, "d-other")))
    kept = asyncio.ensure_future(resolver.resolve(TokenRequest("t-only", W, None)))
    await asyncio.sleep(0)  # both queued
    gone.cancel()
    assert await kept == "d-of-t-only"
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_every_caller_of_a_failed_batch_gets_a_503(mappings, database_url: str) -> None:
    proxy, dsn = TcpProxy.for_dsn(database_url)
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=2)
    try:
        resolver = DashboardResolver(pool, timeout=1.0)
        assert await resolver.resolve(TokenRequest("t-default", W, None)) == "d-main"
        proxy.cut()
        results = await asyncio.gather(
            *(resolver.resolve(TokenRequest(t, W, d)) for t, d in ASKED), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) and r.reason == "database" for r in results)
        assert len({id(r) for r in results}) == len(ASKED)  # an exception (traceback) each
        proxy.restore()
        assert await resolver.resolve(TokenRequest("t-only", W, None)) == "d-of-t-only"
    finally:
        pool.terminate()
        proxy.close()


async def test_callers_are_answered_before_the_connection_goes_back(
    mappings: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """A slow release (asyncpg's takes loop turns of its own) delays no caller's answer, and the
    connection still goes back to the pool."""
    released = asyncio.Event()

    class SlowRelease:
        """The real pool, its release half a second late (asyncpg's Pool takes no patching)."""

        def acquire(self) -> object:
            return pool.acquire()

        async def release(self, conn: asyncpg.Connection, *, timeout: float | None = None) -> None:
            await asyncio.sleep(0.5)
            await pool.release(conn, timeout=timeout)
            released.set()

    resolver = DashboardResolver(SlowRelease(), timeout=5.0)  # type: ignore[arg-type]
    answer = await resolver.resolve(TokenRequest("t-default", W, None))
    assert answer == "d-main"
    assert not released.is_set()  # answered while the release was still under way
    await asyncio.wait_for(released.wait(), 5)
    assert pool.get_idle_size() == pool.get_size()


async def test_a_cancelled_leader_hands_its_batch_over(mappings, pool) -> None:
    """The loop turn's first lookup leads the batch in its own task. Cancelled while its
    statement waits (a lock holds the table), the others of its batch are still answered, by a
    statement of their own."""
    resolver = DashboardResolver(pool, timeout=5.0)
    lock = mappings.transaction()
    await lock.start()
    await mappings.execute("LOCK TABLE tenant_dashboards IN ACCESS EXCLUSIVE MODE")
    try:
        leader = asyncio.ensure_future(resolver.resolve(TokenRequest("t-default", W, None)))
        followers = [
            asyncio.ensure_future(resolver.resolve(TokenRequest(t, W, d)))
            for t, d in (("t-only", None), ("t-default", "d-other"))
        ]
        await asyncio.sleep(0.2)  # the batch's statement waits for the lock
        assert resolver.statements == 1
        leader.cancel()
        await asyncio.sleep(0.1)
        assert not any(f.done() for f in followers)
    finally:
        await lock.rollback()
    assert await asyncio.gather(*followers) == ["d-of-t-only", "d-other"]
    assert resolver.statements == 2
    with pytest.raises(asyncio.CancelledError):
        await leader
