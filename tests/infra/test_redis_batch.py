"""Commands queued in one loop turn go out as one pipeline, each caller gets its own reply."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import DataError, ResponseError

from gateway.infra.breaker import CircuitBreaker, State
from gateway.infra.redis_batch import BatchTimeout, LuaScript, RedisBatcher, pack_commands
from gateway.infra.redis_client import create_redis
from gateway.settings import RedisTarget
from tests.topology import RedisClusterProcs

INCR_BY = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def client(redis_server):
    c = aioredis.Redis.from_url(redis_server)
    yield c
    await c.aclose()


@pytest.fixture
def prefix(redis_prefix):
    return f"{redis_prefix}batch:{uuid.uuid4().hex[:8]}:"


async def test_one_pipeline_per_loop_turn(client, prefix) -> None:
    """Fifty concurrent commands: one pipeline, fifty right answers in the callers' order."""
    batcher = RedisBatcher(client, timeout=2.0)
    await client.mset({f"{prefix}{i}": str(i) for i in range(50)})
    replies = await asyncio.gather(*(batcher.execute("GET", f"{prefix}{i}") for i in range(50)))
    assert replies == [str(i).encode() for i in range(50)]
    assert batcher.batches_sent == 1
    # A later turn is a new batch.
    assert await batcher.execute("GET", f"{prefix}7") == b"7"
    assert batcher.batches_sent == 2


async def test_an_error_reaches_only_its_caller(client, prefix) -> None:
    """A command Redis refuses fails its own caller; the others in the batch still succeed."""
    batcher = RedisBatcher(client, timeout=2.0)
    await client.rpush(f"{prefix}list", "x")
    await client.set(f"{prefix}s", "v")
    good, bad = await asyncio.gather(
        batcher.execute("GET", f"{prefix}s"),
        batcher.execute("GET", f"{prefix}list"),
        return_exceptions=True,
    )
    assert good == b"v"
    assert isinstance(bad, ResponseError)
    assert "WRONGTYPE" in str(bad)


async def test_scripts_are_loaded_where_missing(client, prefix) -> None:
    """After SCRIPT FLUSH the batcher loads the script and runs every queued call once."""
    batcher = RedisBatcher(client, timeout=2.0)
    await client.script_flush()
    replies = await asyncio.gather(
        *(batcher.run_script(INCR_BY, [f"{prefix}n"], [2]) for _ in range(5))
    )
    assert sorted(replies) == [2, 4, 6, 8, 10]
    assert await client.get(f"{prefix}n") == b"10"


@contextlib.asynccontextmanager
async def silent_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a server that accepts and never answers (a Redis that hangs)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # read everything, answer nothing
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()
        server.close()


async def test_a_batch_past_its_deadline_fails_every_caller() -> None:
    """A server that accepts and never answers: every caller in the batch gets BatchTimeout."""
    async with silent_redis() as client:
        batcher = RedisBatcher(client, timeout=0.2)
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(batcher.execute("GET", f"k{i}") for i in range(3)), return_exceptions=True
        )
    assert [type(r) for r in results] == [BatchTimeout] * 3
    assert asyncio.get_running_loop().time() - started < 1.0


async def test_a_late_batch_is_one_failure_for_the_breaker() -> None:
    """Five requests in one batch that times out are one failure of Redis, not five: the breaker
    (3 in a row) stays closed until the third late batch; the metric hears of every request."""
    failures: list[str] = []
    breaker = CircuitBreaker("redis", threshold=3, on_failure=failures.append)
    async with silent_redis() as client:
        batcher = RedisBatcher(client, timeout=0.1)

        async def request() -> str:  # each in a task of its own, as each HTTP request is
            try:
                await breaker.call(lambda: batcher.execute("GET", "k"), timeout=None, errors=())
            except BatchTimeout:
                return "timeout"
            return "answered"

        for batch in range(3):
            outcomes = await asyncio.gather(*(request() for _ in range(5)))
            assert outcomes == ["timeout"] * 5
            assert batcher.batches_sent == batch + 1  # the five went out together
            assert breaker.state is (State.OPEN if batch == 2 else State.CLOSED)
    assert len(failures) == 15


async def test_cluster_batches_route_scripts_by_slot_and_load_them() -> None:
    """On a 3-primary Redis Cluster: scripts on keys of 30 hash tags (every primary's slots) go
    out in one batch, each EVALSHA reaches its key's node, and after SCRIPT FLUSH on every node
    the scripts are loaded again where missing."""
    nodes = RedisClusterProcs().start()
    client = create_redis(RedisTarget(nodes.url, "t:", "cluster", None), timeout=2.0)
    try:
        batcher = RedisBatcher(client, timeout=5.0)
        await client.script_flush()  # a cluster client sends it to every primary
        keys = [f"t:{{tenant-{i}}}:n" for i in range(30)]
        replies = await asyncio.gather(*(batcher.run_script(INCR_BY, [k], [3]) for k in keys))
        assert replies == [3] * 30
        assert [int(v) for v in [await client.get(k) for k in keys]] == [3] * 30
        slots = {await client.cluster_keyslot(k) for k in keys}
        assert len({client.nodes_manager.get_node_from_slot(s).name for s in slots}) == 3
        before = batcher.batches_sent
        assert (
            await asyncio.gather(*(batcher.run_script(INCR_BY, [k], [1]) for k in keys)) == [4] * 30
        )
        assert batcher.batches_sent == before + 1  # scripts loaded: one pipeline, no retry
    finally:
        await client.aclose()
        nodes.stop()


PACKED = [
    ("EVALSHA", "a" * 40, 3, "gw:{t:org-123}:tok", "gw:{t:org-123}:gen", "", "1", 0, -7),
    ("SET", "clé-ünïcode-✓", b"\x00\xffraw", 1.5, 1e-07, 12345678901234567890, 0.1),
    ("GET", ""),
]


def test_the_batchers_packing_is_redis_pys_byte_for_byte() -> None:
    """What the batcher writes is what redis-py would write for the same commands."""
    expected = b"".join(aioredis.Connection().pack_commands(PACKED))
    assert pack_commands(PACKED) == expected


@pytest.mark.parametrize("bad", [True, None, [1], {"a": 1}])
def test_the_batcher_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(DataError):
        aioredis.Connection().pack_commands([("SET", "k", bad)])
    with pytest.raises(DataError, match="cannot send"):
        pack_commands([("SET", "k", bad)])


async def test_a_refused_argument_fails_its_batch_not_the_loop(client, prefix) -> None:
    """A command that cannot be packed: its batch's callers get the error, later batches work."""
    batcher = RedisBatcher(client, timeout=2.0)
    with pytest.raises(DataError):
        await batcher.execute("SET", f"{prefix}x", True)
    await client.set(f"{prefix}y", "1")
    assert await batcher.execute("GET", f"{prefix}y") == b"1"


async def test_a_connection_is_kept_between_batches_and_dropped_after_a_failure(
    client, prefix
) -> None:
    """Sequential batches reuse the one connection the batcher keeps (no pool round per batch);
    a batch that fails mid-way drops its connection, which the pool gets back and reconnects,
    and the next batch still answers right; at close the kept one goes back to the pool."""
    pool = client.connection_pool
    batcher = RedisBatcher(client, timeout=0.2)
    await client.set(f"{prefix}k", "v")
    for _ in range(5):
        assert await batcher.execute("GET", f"{prefix}k") == b"v"
    assert len(pool._in_use_connections) == 1  # the batcher's, held between batches
    (kept,) = pool._in_use_connections
    # A command Redis answers with an error keeps the connection: its reply was read.
    with pytest.raises(ResponseError):
        await batcher.execute("HGET", f"{prefix}k", "f")
    assert pool._in_use_connections == {kept}
    # A reply not read in time (BLPOP holds it past the deadline) drops it.
    with pytest.raises(BatchTimeout):
        await batcher.execute("BLPOP", f"{prefix}empty", 1)
    assert kept not in pool._in_use_connections
    assert not kept.is_connected
    assert await batcher.execute("GET", f"{prefix}k") == b"v"
    await batcher.aclose()
    assert pool._in_use_connections == set()
