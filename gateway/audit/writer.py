"""The audit trail's writer: every event journaled on the request's path, shipped from memory.

`emit` appends the event's text-COPY line to the worker's journal (journal.py) and queues the same
bytes in memory; one background task COPYs them to PostgreSQL in batches and frees the journal
once they are committed. What the queue cannot hold stays in the journal only and is replayed
from the file; what the journal cannot hold (a full disk) stays in memory only and is counted.
Only an event neither can hold is dropped, counted and logged, and in fail-closed mode no token
leaves without a journaled event (see `can_record` and `emit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice

import asyncpg

from gateway.audit.copy import POISON_ERRORS, WriteFn, write_batch, write_lines
from gateway.audit.event import COLUMNS, AuditEvent, Row, clean_text, row_line
from gateway.audit.health import Health, oldest_age
from gateway.audit.journal import Fsync, Journal, Segment
from gateway.audit.quarantine import write_isolating_poison
from gateway.audit.replay import REPLAY_CHUNK, replay_orphans, replay_segment
from gateway.infra.dependency_errors import DATABASE_ERRORS
from gateway.infra.ids import uuid7
from gateway.ops.metrics import Metrics

__all__ = ["COLUMNS", "AuditEvent", "AuditWriter", "clean_text", "uuid7", "write_batch"]

log = logging.getLogger(__name__)

# What a write to an unreachable, restarting or too slow PostgreSQL raises (poison aside).
WRITE_ERRORS = DATABASE_ERRORS
# How often segments of gone processes are looked for, besides at start and after an outage.
ORPHAN_SCAN_INTERVAL = 30.0
UNAVAILABLE_DETAIL = {"reason": "audit", "code": "unavailable"}


class AuditWriter:
    """Journals each event and COPYs them to PostgreSQL in batches from one background task.
    States: writing; degraded (PostgreSQL failing, retried every `probe_interval`); journal
    failing (the disk refuses: events are held in memory only)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        journal: Journal,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        queue_size: int = 100_000,
        metrics: Metrics | None = None,
        write_timeout: float = 5.0,
        retry_attempts: int = 3,
        probe_interval: float = 1.0,
        fail_closed: bool = False,
        write: WriteFn = write_lines,
    ) -> None:
        self._pool = pool
        self._journal = journal
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue_size = queue_size
        self._write_timeout = write_timeout
        self._retry_attempts = retry_attempts
        self._probe_interval = probe_interval
        self._fail_closed = fail_closed
        self._write_fn = write
        # (line, journal segment or None, time queued). Entries leave only once committed.
        self._queue: deque[tuple[bytes, Segment | None, float]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._head_tried = False  # the head batch's outcome is unknown: no fresh COPY for it
        self._failures = 0
        self._next_orphan_scan = 0.0
        self.health = Health(journal, metrics)

    @property
    def depth(self) -> int:
        """Events in memory, not yet written."""
        return len(self._queue)

    @property
    def degraded(self) -> bool:
        """PostgreSQL writes are failing."""
        return self.health.degraded

    @property
    def spool_failing(self) -> bool:
        """The journal cannot be written."""
        return self._journal.failing

    @property
    def dropped(self) -> int:
        """Events lost: neither the journal nor memory could hold them (counted)."""
        return self.health.dropped

    @property
    def written(self) -> int:
        """Rows written to PostgreSQL (a retried batch counts again)."""
        return self.health.written

    def oldest_age(self) -> float:
        """Seconds the oldest event not yet in PostgreSQL has waited (0 when none waits)."""
        return oldest_age(self._queue, self._journal)

    def can_record(self) -> bool:
        """Fail-closed check before minting: the journal takes writes and the queue has room."""
        return not self._journal.failing and len(self._queue) < self._queue_size

    def emit(self, event: AuditEvent) -> bool:
        """Journal and queue an event (see `emit_row`); False: answer 503 instead."""
        row = event.row()
        answer_ok = self.emit_row(row)
        if not answer_ok:
            event.event, event.status, event.token_sha256 = "unavailable", 503, None
            event.detail = dict(UNAVAILABLE_DETAIL)
        return answer_ok

    def emit_row(self, row: Row) -> bool:
        """Journal and queue a row; never blocks. False: in fail-closed mode, the row of a
        successful answer could not be journaled, was turned into `unavailable`, and the caller
        must answer 503 instead."""
        line = row_line(row)
        seg = self._journal.append(line)
        answer_ok = True
        if seg is None and self._fail_closed and row[3] < 400:
            # The token must not leave: the row says what the client will get instead.
            row = (*row[:2], "unavailable", 503, *row[4:11], None, *row[12:16], UNAVAILABLE_DETAIL)
            line = row_line(row)
            answer_ok = False
        queue = self._queue
        if len(queue) < self._queue_size:
            queue.append((line, seg, time.time()))
            if seg is not None:
                seg.pending += 1
            else:
                self.health.memory_only(1)
            if len(queue) == 1 or len(queue) == self._batch_size:
                self._wake.set()
        elif seg is not None:
            # The queue is full: the journal alone holds it; it is shipped from the file.
            if not seg.spilled:
                seg.first_spill = time.time()
            seg.spilled += 1
            self.health.spilled(1)
        else:
            self.health.lose(1, "the journal cannot be written and the queue is full", row)
        return answer_ok

    def start(self) -> None:
        """Start the background writer (it first replays what gone processes left)."""
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Write what memory holds within `timeout`; the rest stays in the journal for the next
        start (memory-only events are journaled now if the disk allows, else counted lost)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with asyncio.timeout(timeout):
                while self._queue:
                    size = max(self._batch_size, REPLAY_CHUNK)
                    await self._ship(size, retry=False)
                for seg in [s for s in self._journal.segments if s.spilled]:
                    await replay_segment(self._journal, seg, self._idem, on_done=self._replayed)
        except Exception as exc:  # noqa: BLE001 - whatever stops the flush, the journal keeps it
            log.warning(
                "audit flush at shutdown stopped (%s); %d events stay in the journal",
                type(exc).__name__,
                len(self._queue),
            )
        unjournaled = [line for line, seg, _ in self._queue if seg is None]
        lost = sum(self._journal.append(line) is None for line in unjournaled)
        if lost:
            self.health.lose(lost, "the journal cannot be written at shutdown")
        self._queue.clear()
        self._journal.close()
        self.health.close()

    async def _run(self) -> None:
        await self._scan_orphans()
        while True:
            try:
                await self._wait_for_batch()
                if self._queue:
                    await self._ship(self._batch_size, retry=True)
                elif self.degraded:
                    await self._probe()
                if not self.degraded:
                    await self._replay_backlog()
                if self._journal.fsync is Fsync.BATCH:
                    await asyncio.to_thread(self._journal.sync)
                self.health.publish(self._queue)
            except Exception:
                # A bug must not stop the trail: the batch stays in memory and is tried again.
                log.exception("audit writer error")
                await asyncio.sleep(self._probe_interval)

    async def _wait_for_batch(self) -> None:
        """Return once a batch is due: batch_size events, or the oldest is flush_interval old.

        With a backlog (an outage, journal-only rows) it also returns every probe_interval, so
        the backlog drains without new traffic.
        """
        backlog = self.degraded or any(s.spilled for s in self._journal.segments)
        idle = self._probe_interval if backlog or self._journal.failing else None
        if not self._queue:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await self._wake.wait()
        if not self._queue or len(self._queue) >= self._batch_size:
            return
        remaining = self._queue[0][2] + self._flush_interval - time.time()
        if remaining > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _ship(self, size: int, *, retry: bool) -> None:
        """Write the head of the queue; on success drop it from memory and free the journal."""
        batch = list(islice(self._queue, size))
        lines = [entry[0] for entry in batch]
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(self._write_timeout):
                    await self._write_fn(self._pool, lines, fresh=not self._head_tried)
                written = len(lines)
            except POISON_ERRORS:
                self._head_tried = True
                written, quarantined = await write_isolating_poison(
                    self._idem, lines, self._journal.directory
                )
                self.health.quarantined(quarantined)
        except WRITE_ERRORS as exc:
            # Keep the batch and retry: event ids make a retried batch harmless.
            self._head_tried = True
            self._failures += 1
            self.health.write_failed(exc, degraded=self._failures >= self._retry_attempts)
            if not retry:
                raise
            backoff = min(0.05 * 2 ** (self._failures - 1), self._probe_interval)
            await asyncio.sleep(backoff)
            return
        self.health.wrote(written, time.perf_counter() - started)
        self._head_tried = False
        if self._failures or self.degraded:
            self._failures = 0
            self.health.recovered()
            self._next_orphan_scan = 0.0  # an outage may have left gone workers' segments
        touched: set[Segment] = set()
        for _ in batch:
            _, seg, _ = self._queue.popleft()
            if seg is not None:
                seg.pending -= 1
                touched.add(seg)
        for seg in touched:
            self._journal.committed(seg)

    async def _replay_backlog(self) -> None:
        """Ship rows only the journal holds, and segments of gone processes now and then."""
        for seg in [s for s in self._journal.segments if s.spilled]:
            try:
                await replay_segment(self._journal, seg, self._idem, on_done=self._replayed)
            except WRITE_ERRORS as exc:
                self.health.write_failed(exc, degraded=True)
                self._failures = max(self._failures, self._retry_attempts)
                return
            seg.spilled = 0
        if time.monotonic() >= self._next_orphan_scan:
            await self._scan_orphans()

    async def _scan_orphans(self) -> None:
        self._next_orphan_scan = time.monotonic() + ORPHAN_SCAN_INTERVAL
        try:
            await replay_orphans(self._journal, self._idem, on_done=self._replayed)
        except WRITE_ERRORS as exc:
            self.health.write_failed(exc, degraded=True)
            self._failures = max(self._failures, self._retry_attempts)
        except OSError as exc:
            log.error("audit journal in %s cannot be read: %s", self._journal.directory, exc)

    async def _probe(self) -> None:
        """With nothing queued, find out whether PostgreSQL is back (no prepared statement)."""
        try:
            async with asyncio.timeout(self._write_timeout), self._pool.acquire() as conn:
                await conn.execute("SELECT 1")
        except WRITE_ERRORS:
            return
        self._failures = 0
        self.health.recovered()
        self._next_orphan_scan = 0.0

    async def _idem(self, lines: Sequence[bytes]) -> None:
        async with asyncio.timeout(self._write_timeout * max(1, len(lines) // 1000)):
            await self._write_fn(self._pool, lines, fresh=False)

    def _replayed(self, written: int, quarantined: int) -> None:
        self.health.replayed(written)
        self.health.quarantined(quarantined)
