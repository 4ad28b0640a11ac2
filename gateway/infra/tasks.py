"""Tasks a component starts and owns until they end (the batchers' per-turn sends)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class OwnedTasks:
    """Tasks started by one component, each held until it ends: the event loop keeps only a weak
    reference to a task, and one nobody holds may be collected before it finishes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task. It takes its first step next loop turn, after whatever the
        caller queues in this one: a turn sooner than a call_soon callback that starts a task."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Wait for the tasks under way to end (their errors are theirs to handle)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
