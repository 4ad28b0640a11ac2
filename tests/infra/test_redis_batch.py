"""Commands queued in one loop turn go out as one pipeline, each caller gets its own reply."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from gateway.infra.breaker import CircuitBreaker, State
from gateway.infra.redis_batch import BatchTimeout, LuaScript, RedisBatcher, pack_commands
from gateway.infra.redis_client import create_redis
from gateway.settings import RedisTarget
from tests.topology import RedisClusterProcs, SentinelProcs

INCR_BY = LuaScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
async def client(redis_server):
    c = aioredis.Redis.from_url(redis_server)
    yield c
    await c.aclose()


@pytest.fixture
def prefix(redis_prefix):
    return f"{redis_prefix}batch:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def batchers():
    """Make batchers; each is closed (its connection handed back) after the test."""
    made: list[RedisBatcher] = []

    def make(client: aioredis.Redis, timeout: float = 2.0) -> RedisBatcher:
        made.append(RedisBatcher(client, timeout=timeout))
        return made[-1]

    yield make
    for batcher in made:
        await batcher.aclose()


async def test_concurrent_commands_share_one_connection_and_one_write(
    client, prefix, batchers
) -> None:
    """Fifty concurrent commands: one connection, one write, fifty right answers in the callers'
    order; a later loop turn's command is a write of its own on the same connection."""
    batcher = batchers(client)
    await client.mset({f"{prefix}{i}": str(i) for i in range(50)})
    assert await batcher.execute("GET", f"{prefix}0") == b"0"  # opens the connection
    assert batcher.batches_sent == 1
    replies = await asyncio.gather(*(batcher.execute("GET", f"{prefix}{i}") for i in range(50)))
    assert replies == [str(i).encode() for i in range(50)]
    assert batcher.batches_sent == 2
    assert await batcher.execute("GET", f"{prefix}7") == b"7"
    assert batcher.batches_sent == 3
    assert batcher.connections_opened == 1
    assert len(client.connection_pool._in_use_connections) == 1  # the batcher's


async def test_a_reply_wakes_its_caller_without_a_task(client, prefix, batchers) -> None:
    """Once the connection is open, a command starts no task: the reply is handed to the
    caller's future from the socket's callback."""
    batcher = batchers(client)
    await client.set(f"{prefix}k", "v")
    assert await batcher.execute("GET", f"{prefix}k") == b"v"  # opens the connection
    before = len(asyncio.all_tasks())
    futures = [batcher.execute("GET", f"{prefix}k") for _ in range(3)]
    assert len(asyncio.all_tasks()) == before
    assert await asyncio.gather(*futures) == [b"v"] * 3


async def test_a_cancelled_callers_reply_is_not_given_to_the_next(client, prefix, batchers) -> None:
    """A caller that gives up leaves its reply to be read and dropped; the others get theirs."""
    batcher = batchers(client)
    await client.mset({f"{prefix}a": "1", f"{prefix}b": "2"})
    assert await batcher.execute("GET", f"{prefix}a") == b"1"
    first = batcher.execute("GET", f"{prefix}a")
    second = batcher.execute("GET", f"{prefix}b")
    first.cancel()
    assert await second == b"2"
    assert await batcher.execute("GET", f"{prefix}a") == b"1"
    assert batcher.connections_opened == 1


async def test_push_messages_are_not_taken_for_replies(client, prefix, batchers) -> None:
    """RESP3 push data (client-side caching invalidations here) arriving between replies is
    skipped: every caller still gets its own reply."""
    batcher = batchers(client)
    await client.set(f"{prefix}k", "v1")
    assert await batcher.execute("CLIENT", "TRACKING", "ON") == b"OK"
    assert await batcher.execute("GET", f"{prefix}k") == b"v1"  # now tracked
    await client.set(f"{prefix}k", "v2")  # Redis pushes an invalidation to the batcher's socket
    await client.set(f"{prefix}other", "x")
    replies = await asyncio.gather(
        batcher.execute("GET", f"{prefix}k"), batcher.execute("GET", f"{prefix}other")
    )
    assert replies == [b"v2", b"x"]
    assert batcher.connections_opened == 1


async def test_a_killed_connection_is_replaced(client, prefix, batchers) -> None:
    """The server closes the batcher's connection (CLIENT KILL): the next command goes out on a
    new one from the pool and is answered."""
    batcher = batchers(client)
    await client.set(f"{prefix}k", "v")
    name = f"{prefix}pipe"
    assert await batcher.execute("CLIENT", "SETNAME", name) == b"OK"
    killed = 0
    for entry in await client.client_list():
        if entry.get("name") == name:
            killed += await client.client_kill_filter(_id=entry["id"])
    assert killed == 1
    await asyncio.sleep(0.05)  # the socket's close reaches the loop
    assert await batcher.execute("GET", f"{prefix}k") == b"v"
    assert batcher.connections_opened == 2


async def test_a_long_idle_connection_is_replaced(redis_server, prefix, batchers) -> None:
    """Idle longer than the pool's health-check interval, the connection is replaced before
    use (redis-py would have pinged it first), not trusted."""
    client = aioredis.Redis.from_url(redis_server, health_check_interval=0.1)
    try:
        batcher = batchers(client)
        await client.set(f"{prefix}k", "v")
        assert await batcher.execute("GET", f"{prefix}k") == b"v"
        assert await batcher.execute("GET", f"{prefix}k") == b"v"
        assert batcher.connections_opened == 1
        await asyncio.sleep(0.2)
        assert await batcher.execute("GET", f"{prefix}k") == b"v"
        assert batcher.connections_opened == 2
        await batcher.aclose()
        assert client.connection_pool._in_use_connections == set()
    finally:
        await client.aclose()


async def test_an_error_reaches_only_its_caller(client, prefix, batchers) -> None:
    """A command Redis refuses fails its own caller; the others sent with it still succeed, and
    the connection stays (its reply was read)."""
    batcher = batchers(client)
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
    assert await batcher.execute("GET", f"{prefix}s") == b"v"
    assert batcher.connections_opened == 1


async def test_scripts_are_loaded_where_missing(client, prefix, batchers) -> None:
    """After SCRIPT FLUSH the batcher runs every call once (sent again with its source), in
    order, and the node has the script again for later calls."""
    batcher = batchers(client)
    assert await batcher.run_script(INCR_BY, [f"{prefix}n"], [0]) == 0
    await client.script_flush()
    replies = await asyncio.gather(
        *(batcher.run_script(INCR_BY, [f"{prefix}n"], [2]) for _ in range(5))
    )
    assert replies == [2, 4, 6, 8, 10]
    assert await client.get(f"{prefix}n") == b"10"
    assert await client.script_exists(INCR_BY.sha) == [True]
    assert await batcher.run_script(INCR_BY, [f"{prefix}n"], [1]) == 11


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
        await batcher.aclose()
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
            # The five waited on one connection's handshake, which never ended: one failure.
            assert batcher.connections_opened == 0
            assert breaker.state is (State.OPEN if batch == 2 else State.CLOSED)
        await batcher.aclose()
    assert len(failures) == 15


async def test_a_demoted_primary_fails_its_caller_and_is_left(prefix) -> None:
    """A write refused with READONLY (the node was a primary before a failover): its caller gets
    a connection error, and the connection is replaced (Sentinel's pool asks for the primary
    again); commands sent after it are still answered."""
    procs = SentinelProcs().start()
    client = aioredis.Redis(port=procs.replica_port)
    try:
        batcher = RedisBatcher(client, timeout=2.0)
        assert await batcher.execute("GET", f"{prefix}k") is None
        with pytest.raises(RedisConnectionError, match="now a replica"):
            await batcher.execute("SET", f"{prefix}k", "v")
        assert await batcher.execute("GET", f"{prefix}k") is None
        assert batcher.connections_opened == 2
        await batcher.aclose()
    finally:
        await client.aclose()
        procs.stop()


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


async def test_a_refused_argument_fails_its_caller_not_the_loop(client, prefix, batchers) -> None:
    """A command that cannot be packed: its caller gets the error, the others their replies."""
    batcher = batchers(client)
    await client.set(f"{prefix}y", "1")
    for _ in range(2):  # through the connection's opening, then on the open connection
        bad, good = await asyncio.gather(
            batcher.execute("SET", f"{prefix}x", True),
            batcher.execute("GET", f"{prefix}y"),
            return_exceptions=True,
        )
        assert isinstance(bad, DataError)
        assert good == b"1"
    assert await client.exists(f"{prefix}x") == 0


async def test_a_late_reply_drops_the_connection_and_close_hands_it_back(client, prefix) -> None:
    """A reply not read in time (BLPOP holds it past the deadline) fails its caller and drops the
    connection, whose late reply could be taken for another's; the next command is answered on a
    new one; at close the kept one goes back to the pool."""
    pool = client.connection_pool
    batcher = RedisBatcher(client, timeout=0.2)
    await client.set(f"{prefix}k", "v")
    assert await batcher.execute("GET", f"{prefix}k") == b"v"
    with pytest.raises(BatchTimeout):
        await batcher.execute("BLPOP", f"{prefix}empty", 1)
    assert await batcher.execute("GET", f"{prefix}k") == b"v"
    assert batcher.connections_opened == 2
    assert len(pool._in_use_connections) == 1
    await batcher.aclose()
    assert pool._in_use_connections == set()
