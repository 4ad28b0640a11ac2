"""The request path's dashboard lookup: deadlines, an optional read replica, and 503s."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from gateway.errors import Unavailable
from gateway.infra.dependency_errors import REQUEST_DATABASE_ERRORS
from gateway.tokens.directory import lookup_dashboard
from gateway.tokens.request import TokenRequest

log = logging.getLogger(__name__)


class DashboardResolver:
    """Looks the dashboard up under two deadlines (a pooled connection, then the query).

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
        self.lookups = 0  # database lookups made; tests pin single flight with it

    async def resolve(self, request: TokenRequest, *, fresh: bool = False) -> str:
        """The dashboard id to embed; DashboardNotFound, or Unavailable when PostgreSQL fails."""
        self.lookups += 1
        pool = self._pool if fresh or self._read_pool is None else self._read_pool
        try:
            # One timer per deadline: ours around the acquire (asyncpg's own acquire timeout
            # wraps it in a second coroutine and timer), asyncpg's protocol timer for the query
            # (it replaces the pool's command_timeout timer, so it costs nothing extra), and the
            # release bounded by the acquire's budget as asyncpg would bound it.
            async with asyncio.timeout(self._acquire_timeout):
                conn = await pool.acquire()
            try:
                return await lookup_dashboard(
                    conn,
                    request.tenant_id,
                    request.workspace_id,
                    request.dashboard_id,
                    timeout=self._timeout,
                )
            finally:
                await pool.release(conn, timeout=self._acquire_timeout)
        except REQUEST_DATABASE_ERRORS as exc:
            # Any PostgreSQL failure, a pooler's included, is "unavailable" (503), never a 500.
            log.warning("dashboard lookup failed: %s", type(exc).__name__)
            raise Unavailable("the dashboard directory is unavailable", reason="database") from None
