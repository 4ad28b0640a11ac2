"""The request path's dashboard lookup: batched per loop turn, deadlines, an optional read
replica, and 503s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from gateway.errors import DashboardNotFound, Unavailable
from gateway.infra.dependency_errors import REQUEST_DATABASE_ERRORS
from gateway.infra.tasks import OwnedTasks
from gateway.tokens.directory import Wanted, lookup_dashboards
from gateway.tokens.request import TokenRequest

log = logging.getLogger(__name__)

# Lookups one statement answers at most; more in one loop turn go out as several statements.
MAX_BATCH = 64
Pending = tuple[Wanted, "asyncio.Future[str]"]


class DashboardResolver:
    """Looks dashboards up under two deadlines (a pooled connection, then the query).

    The lookups that concurrent requests ask for in one event-loop turn share one pooled
    connection and one statement (`lookup_dashboards`): under load a lookup's own cost is
    mostly the socket write that wakes PostgreSQL and the pool's acquire and release, which a
    batch pays once.

    With a read pool (GATEWAY_DATABASE_READ_URL) lookups go to the replica, except right after a
    mapping change (`fresh`), when they go to the primary so the change is seen at once.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        read_pool: asyncpg.Pool | None = None,
        timeout: float = 1.0,
        acquire_timeout: float | None = None,
    ) -> None:
        self._pool = pool
        self._read_pool = read_pool
        self._timeout = timeout
        self._acquire_timeout = timeout if acquire_timeout is None else acquire_timeout
        self._queues: dict[asyncpg.Pool, list[Pending]] = {}
        self._tasks = OwnedTasks()
        self.lookups = 0  # lookups asked for; tests pin single flight with it
        self.statements = 0  # statements sent for them (batches)

    async def resolve(self, request: TokenRequest, *, fresh: bool = False) -> str:
        """The dashboard id to embed; DashboardNotFound, or Unavailable when PostgreSQL fails."""
        self.lookups += 1
        pool = self._pool if fresh or self._read_pool is None else self._read_pool
        wanted = (request.tenant_id, request.workspace_id, request.dashboard_id)
        queue = self._queues.get(pool)
        if queue is not None:  # this loop turn's batch has a leader: join it
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            queue.append((wanted, future))
            return await future
        return await self._lead(pool, wanted)

    async def _lead(self, pool: asyncpg.Pool, wanted: Wanted) -> str:
        """The loop turn's first lookup leads its batch in its own task: one turn for the others
        of this turn to join, then the statement. Its own answer needs no wake-up, a loop turn
        sooner than a batch task's; should it be cancelled, a task takes the others over."""
        own: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        queue = self._queues[pool] = [(wanted, own)]
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._hand_over(pool, queue[1:])
            raise
        finally:
            del self._queues[pool]
        for start in range(MAX_BATCH, len(queue), MAX_BATCH):
            self._tasks.start(self._lookup(pool, queue[start : start + MAX_BATCH]))
        await self._lookup(pool, queue[:MAX_BATCH], lead=True)
        return own.result()  # its dashboard id, or the DashboardNotFound / Unavailable it got

    def _hand_over(self, pool: asyncpg.Pool, batch: list[Pending]) -> None:
        """A cancelled leader's followers still waiting: looked up in a task of their own."""
        waiting = [(wanted, future) for wanted, future in batch if not future.done()]
        if waiting:
            self._tasks.start(self._lookup(pool, waiting))

    async def _lookup(
        self, pool: asyncpg.Pool, batch: list[Pending], *, lead: bool = False
    ) -> None:
        live = [(wanted, future) for wanted, future in batch if not future.done()]
        if not live:
            return  # every caller gave up (cancelled)
        self.statements += 1
        try:
            # One timer per deadline: ours around the acquire (asyncpg's own acquire timeout
            # wraps it in a second coroutine and timer), asyncpg's protocol timer for the query
            # (it replaces the pool's command_timeout timer, so it costs nothing extra), and the
            # release bounded by the acquire's budget as asyncpg would bound it.
            async with asyncio.timeout(self._acquire_timeout):
                conn = await pool.acquire()
            try:
                asked = [wanted for wanted, _ in live]
                _answer(live, await lookup_dashboards(conn, asked, timeout=self._timeout))
            finally:
                # After the answers, and for a leader in a task of its own: asyncpg's release
                # awaits a task of its own (asyncio.shield), three loop turns nobody should wait.
                if lead:
                    self._tasks.start(self._release(pool, conn))
                else:
                    await self._release(pool, conn)
        except REQUEST_DATABASE_ERRORS as exc:
            # Any PostgreSQL failure, a pooler's included, is "unavailable" (503), never a 500.
            log.warning("dashboard lookup failed: %s", type(exc).__name__)
            _fail(
                live,
                lambda: Unavailable("the dashboard directory is unavailable", reason="database"),
            )
        except asyncio.CancelledError:
            if not lead:  # shutting down: the callers are cancelled with it
                for _, future in live:
                    future.cancel()
                raise
            live[0][1].cancel()  # the leader's own
            self._hand_over(pool, live[1:])
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: every caller gets it (a 500), none hangs
            _fail(live, lambda bug=exc: bug)

    async def _release(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        try:
            await pool.release(conn, timeout=self._acquire_timeout)
        except Exception as exc:  # noqa: BLE001 - the callers have their answers; logged, not raised
            log.warning("dashboard lookup connection not released cleanly: %s", type(exc).__name__)


def _answer(batch: list[Pending], results: list[str | DashboardNotFound]) -> None:
    """Each caller still waiting gets its dashboard id or its DashboardNotFound."""
    for (_, future), result in zip(batch, results, strict=True):
        if future.done():
            continue
        if isinstance(result, DashboardNotFound):
            future.set_exception(result)
        else:
            future.set_result(result)


def _fail(batch: list[Pending], error: Callable[[], Exception]) -> None:
    """Each caller still waiting gets an exception of its own (a traceback each)."""
    for _, future in batch:
        if not future.done():
            future.set_exception(error())
