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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = []
            self._tasks.start(self._take(pool))  # sends what this loop turn queues
        queue.append(((request.tenant_id, request.workspace_id, request.dashboard_id), future))
        return await future

    async def _take(self, pool: asyncpg.Pool) -> None:
        batch = self._queues.pop(pool, [])
        for start in range(MAX_BATCH, len(batch), MAX_BATCH):
            self._tasks.start(self._lookup(pool, batch[start : start + MAX_BATCH]))
        await self._lookup(pool, batch[:MAX_BATCH])

    async def _lookup(self, pool: asyncpg.Pool, batch: list[Pending]) -> None:
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
                # After the answers: asyncpg's release awaits a task of its own (asyncio.shield),
                # three loop turns every caller would wait, each a long one on a busy worker.
                await pool.release(conn, timeout=self._acquire_timeout)
        except REQUEST_DATABASE_ERRORS as exc:
            # Any PostgreSQL failure, a pooler's included, is "unavailable" (503), never a 500
            # (callers already answered, should only the release fail, keep their answers).
            log.warning("dashboard lookup failed: %s", type(exc).__name__)
            _fail(
                live,
                lambda: Unavailable("the dashboard directory is unavailable", reason="database"),
            )
            return
        except asyncio.CancelledError:  # shutting down: the callers are cancelled with it
            for _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a bug: every caller gets it (a 500), none hangs
            _fail(live, lambda bug=exc: bug)


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
