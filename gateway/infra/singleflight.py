"""Single flight: concurrent callers with the same key share one running computation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Concurrent callers with the same key share one running computation."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}

    def running(self, key: str) -> bool:
        """Whether a computation for `key` is under way."""
        return key in self._running

    async def run(self, key: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` unless it already runs for `key`; either way return its result."""
        task = self._running.get(key)
        if task is None:

            async def wrapped() -> T:
                try:
                    return await work()
                finally:
                    del self._running[key]

            task = asyncio.ensure_future(wrapped())
            self._running[key] = task
        # shield: one caller hanging up must not cancel the work the others wait for.
        return await asyncio.shield(task)

    async def cancel_all(self) -> None:
        """Cancel every computation under way and wait for them to end (at shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
