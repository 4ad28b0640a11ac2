"""The Redis circuit breaker: its states, and the gateway with its Redis stopped or slowed down."""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import pytest

from gateway.http.state import METRICS, REDIS_BREAKER
from gateway.infra.breaker import CircuitBreaker, CircuitOpen, State
from gateway.tokens.directory import add_mapping
from gateway.tokens.format import verify_v1
from tests.helpers import SIGNING_SECRET, auth
from tests.proxy import TcpProxy
from tests.servers import eventually

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


class FakeClock:
    """A clock the test moves by hand (time only; the dependency is real in the HTTP tests)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _call(breaker: CircuitBreaker, ok: bool) -> str:
    async def work() -> str:
        if not ok:
            raise OSError("down")
        return "ok"

    # Each call in a task of its own, as each request is: a failure only skips the rest of its task.
    async def one() -> str:
        try:
            return await breaker.call(work, timeout=1.0, errors=(OSError,))
        except CircuitOpen:
            return "skipped"
        except OSError:
            return "failed"

    return await asyncio.create_task(one())


async def test_breaker_opens_probes_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    """Three failures open it; while open nothing is called; one probe after the cooldown closes
    it; every state change is one log line and one listener call."""
    clock = FakeClock()
    changes: list[tuple[State, State]] = []
    breaker = CircuitBreaker(
        "redis",
        threshold=3,
        cooldown=2.0,
        clock=clock,
        on_change=lambda _n, a, b: changes.append((a, b)),
    )
    caplog.set_level(logging.INFO, logger="gateway.infra.breaker")
    assert [await _call(breaker, ok=False) for _ in range(3)] == ["failed"] * 3
    assert breaker.state is State.OPEN
    assert [await _call(breaker, ok=True) for _ in range(5)] == ["skipped"] * 5
    clock.now += 2.0
    assert breaker.allow() is True  # the probe
    assert breaker.allow() is False  # only one at a time
    breaker.failure()
    assert breaker.state is State.OPEN
    clock.now += 2.0
    assert await _call(breaker, ok=True) == "ok"
    assert breaker.state is State.CLOSED
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    lines = [r for r in caplog.records if r.name == "gateway.infra.breaker"]
    assert len(lines) == len(changes)


async def test_one_failure_skips_the_rest_of_the_request() -> None:
    """After a failed call, later calls in the same task skip at once (one deadline per request)."""
    breaker = CircuitBreaker("redis", threshold=100)
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1)

    async def request() -> list[str]:
        outcomes = []
        for _ in range(3):
            try:
                await breaker.call(slow, timeout=0.02, errors=(OSError,))
            except TimeoutError:
                outcomes.append("timeout")
            except CircuitOpen:
                outcomes.append("skipped")
        return outcomes

    assert await asyncio.create_task(request()) == ["timeout", "skipped", "skipped"]
    assert calls == 1
    assert breaker.state is State.CLOSED


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def _timed_post(client, body=BODY, **kw):
    started = time.perf_counter()
    resp = await client.post(V1, json=body, headers=auth(**kw))
    return resp, time.perf_counter() - started


async def _wait_for(predicate, client, timeout: float = 10.0) -> None:
    """Keep sending requests until predicate() holds (the breaker probes on requests)."""

    async def holds() -> bool:
        if predicate():
            return True
        await client.post(V1, json=BODY, headers=auth())
        return False

    await eventually(holds, timeout=timeout)


def _sample(client, name: str, **labels: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_redis_stopped_keeps_serving_fresh_tokens(
    make_client, settings, mapped, private_redis
) -> None:
    """With Redis stopped: every request still gets a valid fresh token in under 100 ms, the
    breaker opens, the mint limiter fails open (counted); when Redis returns the breaker closes
    and tokens are shared again, all without a restart."""
    client = await make_client(
        settings,
        redis_url=private_redis.url,
        redis_timeout=0.05,
        redis_breaker_threshold=3,
        redis_breaker_cooldown=0.3,
    )
    resp, _ = await _timed_post(client)
    assert resp.status == 200
    private_redis.stop()
    try:
        latencies = []
        for _ in range(20):
            resp, took = await _timed_post(client)
            assert resp.status == 200
            body = await resp.json()
            verify_v1(SIGNING_SECRET, body["token"], now=body["expires_at"] - 1)
            latencies.append(took)
        assert max(latencies) < 0.1, latencies
        assert client.app[REDIS_BREAKER].state in (State.OPEN, State.HALF_OPEN)
        assert (
            _sample(client, "gateway_breaker_transitions_total", dependency="redis", state="open")
            >= 1
        )
        assert (
            _sample(
                client, "gateway_rate_limit_decisions_total", limiter="mint", decision="failed_open"
            )
            >= 1
        )
        assert _sample(client, "gateway_dependency_errors_total", dependency="redis") >= 3
    finally:
        private_redis.start()
    await _wait_for(lambda: client.app[REDIS_BREAKER].state is State.CLOSED, client)
    assert _sample(client, "gateway_breaker_state", dependency="redis") == 0
    # Shared again: two callers get the same token.
    a = await (await client.post(V1, json=BODY, headers=auth())).json()
    b = await (await client.post(V1, json=BODY, headers=auth(sub="user-2"))).json()
    assert a == b


async def test_redis_stopped_fail_closed_answers_503(
    make_client, settings, mapped, private_redis
) -> None:
    """With GATEWAY_RATE_LIMIT_FAIL_CLOSED a mint that cannot be rate limited is refused: 503
    unavailable with Retry-After, counted as failed_closed."""
    client = await make_client(
        settings,
        redis_url=private_redis.url,
        redis_timeout=0.05,
        rate_limit_fail_closed=True,
    )
    private_redis.stop()
    try:
        resp = await client.post(V1, json=BODY, headers=auth())
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == "unavailable"
        assert (
            _sample(
                client,
                "gateway_rate_limit_decisions_total",
                limiter="mint",
                decision="failed_closed",
            )
            == 1
        )
    finally:
        private_redis.start()


async def test_slow_redis_deadline_is_respected(
    make_client, settings, mapped, private_redis
) -> None:
    """Redis answering 300 ms late (a delaying proxy): no request waits more than one 50 ms
    deadline, the breaker opens, and once Redis is quick again it closes."""
    proxy = TcpProxy("127.0.0.1", private_redis.port)
    try:
        client = await make_client(
            settings,
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_timeout=0.05,
            redis_breaker_threshold=3,
            redis_breaker_cooldown=0.3,
        )
        resp, _ = await _timed_post(client)
        assert resp.status == 200
        proxy.delay = 0.3
        latencies = []
        for _ in range(6):
            resp, took = await _timed_post(client)
            assert resp.status == 200
            latencies.append(took)
        # One 50 ms deadline at most, plus the request's own work; never 3 x 50 ms stacked.
        assert max(latencies) < 0.1, latencies
        assert client.app[REDIS_BREAKER].state is not State.CLOSED
        proxy.delay = 0.0
        await _wait_for(lambda: client.app[REDIS_BREAKER].state is State.CLOSED, client)
    finally:
        proxy.close()
