"""Redis commands from concurrent requests, sent as one pipeline per event-loop turn.

Each redis-py call costs ~60 µs of client CPU and one round trip; under load many requests ask
for something within the same loop iteration. Here callers queue a command and await its reply;
one `call_soon` callback sends everything queued as a non-transactional pipeline under one
deadline for the whole batch: on one node (standalone, Sentinel's primary) written at once to one
pooled redis-py connection and its replies read in order; in a cluster through redis-py's cluster
pipeline, which groups it by node.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Awaitable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError, NoScriptError, ResponseError

from gateway.infra.tasks import OwnedTasks

Command = tuple[Any, ...]
Waiter = tuple[Command, "asyncio.Future[Any]"]


class BatchTimeout(TimeoutError):
    """The batch a command went out in got no reply within the deadline."""


class LuaScript:
    """A Lua script known by its SHA1, loaded on demand (a fresh or failed-over node lacks it)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA1


class RedisBatcher:
    """Queue commands; send each loop turn's queue as one pipeline; route replies back."""

    def __init__(self, client: aioredis.Redis | RedisCluster, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        # One node: the batch goes straight to one connection. A cluster needs its pipeline.
        self._one_node = not isinstance(client, RedisCluster)
        self._queue: list[Waiter] = []
        self._scripts: dict[str, str] = {}
        self._tasks = OwnedTasks()
        # One node: pooled connections this batcher keeps between batches. The pool's get and
        # release (a lock, its bookkeeping, a check for stray data) cost ~16 us of CPU a batch,
        # a third of a lone command's round trip; a connection is kept only after a whole batch
        # went through it, so it holds no unread reply.
        self._idle: list[Any] = []
        self._closing = False
        self.batches_sent = 0  # pipelines sent, for tests and benchmarks

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command (`"GET", key`); the future gets its reply or its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            self._tasks.start(self._send_queued())  # sends what this loop turn queues
        self._queue.append((command, future))
        return future

    def run_script(
        self, script: LuaScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Queue a Lua script call (EVALSHA; SCRIPT LOAD and once more where it is missing)."""
        self._scripts[script.sha] = script.source
        return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _send_queued(self) -> None:
        batch, self._queue = self._queue, []
        await self._send(batch)

    async def _send(self, batch: list[Waiter]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._pipeline(batch)
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:
                    await self._load_scripts({batch[i][0][1] for i in missing})
                    again = await self._pipeline([batch[i] for i in missing])
                    for i, reply in zip(missing, again, strict=True):
                        replies[i] = reply
        except TimeoutError:
            _fail(batch, BatchTimeout(f"no Redis reply within {self._timeout:g} s"))
            return
        except Exception as exc:  # noqa: BLE001 - every waiter gets the error, whatever it is
            _fail(batch, exc)
            return
        except BaseException as exc:  # cancelled: the waiters must not hang, then re-raise
            _fail(batch, exc)
            raise
        for (_command, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: Sequence[Waiter]) -> list[Any]:
        self.batches_sent += 1
        if self._one_node:
            return await self._on_held_connection([command for command, _ in batch])
        if len(batch) == 1:
            # A lone command skips the pipeline's own bookkeeping (measured: ~40% of its CPU).
            try:
                return [await self._client.execute_command(*batch[0][0])]
            except (ResponseError, NoScriptError) as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for command, _future in batch:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _load_scripts(self, shas: set[str]) -> None:
        for sha in shas:
            # A cluster client sends SCRIPT LOAD to every primary.
            await self._client.script_load(self._scripts[sha])

    async def _on_held_connection(self, commands: list[Command]) -> list[Any]:
        """`_exchange` on a connection kept from an earlier batch, else a new one from the pool.

        Any failure, cancellation included, may leave replies unread: the connection is dropped
        and goes back to the pool, which reconnects it when next used (to Sentinel's current
        primary, for a Sentinel pool).
        """
        client = self._client
        assert isinstance(client, aioredis.Redis)
        pool = client.connection_pool
        conn = self._idle.pop() if self._idle else await pool.get_connection()
        try:
            replies = await _exchange(conn, commands, client.response_callbacks)
        except BaseException:
            await conn.disconnect(nowait=True)
            await pool.release(conn)
            raise
        # A connection the server asked to move (redis-py's maintenance notices) goes back too.
        moving = getattr(conn, "should_reconnect", None)
        if self._closing or (moving is not None and moving()):
            await pool.release(conn)
        else:
            self._idle.append(conn)
        return replies

    async def aclose(self) -> None:
        """Wait for batches in flight, then hand the kept connections back to the pool (at
        shutdown, before the client closes)."""
        self._closing = True
        await self._tasks.wait()
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._client.connection_pool.release(conn)


async def _exchange(conn: Any, commands: list[Command], callbacks: dict[Any, Any]) -> list[Any]:
    """Write every command to one connection at once and read the replies in order; a command
    Redis refuses gets its error as its reply.

    The same wire traffic as redis-py's pipeline, without its per-batch object and bookkeeping
    or a timer per write or reply: the batch's own deadline bounds both. (With a socket timeout
    redis-py writes through asyncio.wait_for, on Python 3.11 a task and a timer per write; the
    connection's timeout is lifted for the write only, as other users of the pool rely on it.)
    """
    replies: list[Any] = []
    socket_timeout = conn.socket_timeout
    conn.socket_timeout = None
    try:
        await conn.send_packed_command(pack_commands(commands))
    finally:
        conn.socket_timeout = socket_timeout
    for command in commands:
        try:
            reply = await conn.read_response(timeout=math.inf)
        except ResponseError as exc:  # NoScriptError included
            replies.append(exc)
            continue
        callback = callbacks.get(command[0])
        replies.append(reply if callback is None else callback(reply))
    return replies


def pack_commands(commands: Sequence[Command]) -> bytes:
    """The commands in RESP, byte for byte what redis-py's `Connection.pack_commands` writes.

    Written here rather than taken from redis-py: its packer sends every argument through an
    encoder method and several isinstance checks, about three times this loop's cost (6.6 against
    2.1 us for a token read's EVALSHA), and the batcher's commands carry only str (UTF-8, as the
    client's encoder), bytes and numbers; anything else is refused as redis-py refuses it.
    """
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode()
            elif kind is bytes:
                data = arg
            elif kind is int or kind is float:
                data = repr(arg).encode()
            else:
                raise DataError(f"cannot send a {kind.__name__} to Redis: {command[0]!r}")
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _fail(batch: Sequence[Waiter], exc: BaseException) -> None:
    for _command, future in batch:
        if not future.done():
            future.set_exception(exc)


class ScriptCall:
    """One Lua script, called through a batcher (the batch's one deadline) or on its own.

    `deadline` is what the caller's breaker should put around a call: None through a batcher,
    whose batch timer already bounds it (no timer per command), else the per-call timeout.
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        source: str,
        *,
        timeout: float,
        batcher: RedisBatcher | None = None,
    ) -> None:
        self._batcher = batcher
        self._script = LuaScript(source)
        self._registered = client.register_script(source)
        self.deadline: float | None = None if batcher is not None else timeout

    def __call__(self, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """The script's reply (raises what Redis or the batch raised)."""
        if self._batcher is not None:
            return self._batcher.run_script(self._script, keys, args)
        return self._registered(keys=keys, args=args)
