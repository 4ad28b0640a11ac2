"""Single flight: concurrent callers with the same key share one running computation."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    """One computation under way: its task and the futures of the callers waiting for it."""

    __slots__ = ("task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
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

        The work runs in a task of its own, so a caller hanging up (cancelled) cancels only its
        own wait, never the work the others wait for.
        """
        flight = self._running.get(key)
        if flight is None:
            flight = self._running[key] = _Flight()
            flight.task = asyncio.get_running_loop().create_task(self._fly(key, flight, work))
            flight.task.add_done_callback(functools.partial(self._ended, key, flight))
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        flight.waiters.append(waiter)
        return await waiter

    async def _fly(self, key: str, flight: _Flight[T], work: Callable[[], Awaitable[T]]) -> None:
        # The task hands its outcome to each caller's future itself: awaiting the task through
        # asyncio.shield would cost every caller two more event-loop turns (the task's done
        # callback, then shield's), each a long one on a busy worker.
        try:
            result = await work()
        except asyncio.CancelledError:
            del self._running[key]
            for waiter in flight.waiters:
                waiter.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - every caller gets the same error object
            del self._running[key]
            for waiter in flight.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        del self._running[key]
        for waiter in flight.waiters:
            if not waiter.done():  # its caller gave up (cancelled)
                waiter.set_result(result)

    def _ended(self, key: str, flight: _Flight[T], _task: asyncio.Task[None]) -> None:
        # For a task cancelled before its first step, which never reached _fly's own hand-over
        # (a no-op otherwise: its callers' futures are done, another flight may own the key).
        if self._running.get(key) is flight:
            del self._running[key]
        for waiter in flight.waiters:
            waiter.cancel()

    async def cancel_all(self) -> None:
        """Cancel every computation under way and wait for them to end (at shutdown)."""
        tasks = [f.task for f in self._running.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
