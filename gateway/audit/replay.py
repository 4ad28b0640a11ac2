"""Shipping journal files to PostgreSQL: segments of gone processes, and rows that only the
journal holds (the queue was full). Idempotent: a row already committed is skipped by its key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from gateway.audit.journal import Journal, Segment, read_lines
from gateway.audit.quarantine import write_isolating_poison

log = logging.getLogger(__name__)

# Replayed rows go in bigger COPY batches than live ones: there is a backlog to clear.
REPLAY_CHUNK = 5000

WriteLines = Callable[[Sequence[bytes]], Awaitable[None]]


async def replay_segment(
    journal: Journal, seg: Segment, write: WriteLines, *, on_done: Callable[[int, int], None]
) -> None:
    """Write every row of `seg`'s file, then delete it; raises (keeping the file) on failure.

    `on_done(written, quarantined)` is called per chunk, for the metrics.
    """
    journal.seal(seg)
    lines = await asyncio.to_thread(read_lines, seg.path)
    for start in range(0, len(lines), REPLAY_CHUNK):
        chunk = lines[start : start + REPLAY_CHUNK]
        written, quarantined = await write_isolating_poison(write, chunk, journal.directory)
        on_done(written, quarantined)
    journal.delete(seg)
    if lines:
        log.info("replayed %d audit events from journal %s", len(lines), seg.path.name)


async def replay_orphans(
    journal: Journal, write: WriteLines, *, on_done: Callable[[int, int], None]
) -> None:
    """Adopt the segments of processes that are gone and replay them, oldest first."""
    orphans = await asyncio.to_thread(journal.adopt_orphans)
    for index, seg in enumerate(orphans):
        try:
            await replay_segment(journal, seg, write, on_done=on_done)
        except BaseException:
            # Release what is not replayed yet: another worker (or we, later) adopts it again.
            for rest in orphans[index:]:
                journal.release(rest)
            raise
