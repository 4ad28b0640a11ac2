"""Single flight: concurrent callers with the same key share one running computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _LeaderGone(Exception):
    """The caller running the work was cancelled before it ended: a waiting caller runs it."""


class _Flight(Generic[T]):
    """One computation under way: the task running it and the futures of the callers waiting."""

    __slots__ = ("leader", "waiters")

    def __init__(self, leader: asyncio.Task[object] | None) -> None:
        self.leader = leader
        self.waiters: list[asyncio.Future[T]] = []


class SingleFlight(Generic[T]):
    """Concurrent callers with the same key share one running computation."""

    def __init__(self) -> None:
        self._running: dict[str, _Flight[T]] = {}

    def running(self, key: str) -> bool:
        """Whether a computation for `key` is under way."""
        return key in self._running

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` unless it already runs for `key`; either way return its result.

        The first caller runs the work itself and hands the outcome to the callers that joined:
        a task of its own would cost every caller two event-loop turns (its first step, then
        the hand-over), each a long one on a busy worker. Should that caller be cancelled, the
        work stops with it and the first caller still waiting runs it again (the others join).
        """
        flight = self._running.get(key)
        if flight is not None:
            waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            flight.waiters.append(waiter)
            try:
                return await waiter
            except _LeaderGone:
                return await self.run(key, work)
        flight = self._running[key] = _Flight(asyncio.current_task())
        try:
            result = await work()
        except asyncio.CancelledError:
            for waiter in self._land(key, flight):
                waiter.set_exception(_LeaderGone())
            raise
        except BaseException as exc:
            # Every caller gets the same error object: callers read attributes set on it.
            for waiter in self._land(key, flight):
                waiter.set_exception(exc)
            raise
        for waiter in self._land(key, flight):
            waiter.set_result(result)
        return result

    def _land(self, key: str, flight: _Flight[T]) -> list[asyncio.Future[T]]:
        """End the flight; the futures of its callers still waiting (others gave up)."""
        if self._running.get(key) is flight:
            del self._running[key]
        return [waiter for waiter in flight.waiters if not waiter.done()]

    async def cancel_all(self) -> None:
        """Cancel every computation under way, the callers waiting for it first (so none runs
        it again), then the task running it, and wait for those to end (at shutdown)."""
        flights = list(self._running.values())
        for flight in flights:
            for waiter in flight.waiters:
                waiter.cancel()
        leaders = [f.leader for f in flights if f.leader is not None]
        for task in leaders:
            task.cancel()
        await asyncio.gather(*leaders, return_exceptions=True)
