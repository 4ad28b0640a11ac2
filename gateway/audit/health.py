"""What the audit writer has been through: counters, states, metrics, and its status file."""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from typing import Any

from gateway.audit.event import Row
from gateway.audit.journal import Journal
from gateway.audit.worker_status import StatusFile
from gateway.ops.metrics import Metrics

log = logging.getLogger(__name__)

# The status file is rewritten at most this often (and on a change of state).
PUBLISH_INTERVAL = 1.0


class Health:
    """Counts and states of one worker's audit trail, mirrored to metrics and its status file."""

    def __init__(self, journal: Journal, metrics: Metrics | None) -> None:
        self._journal = journal
        self._metrics = metrics
        self._status = StatusFile(journal.directory)
        self._published = 0.0
        self._lost_logged = 0.0
        self.degraded = False
        self.dropped = 0
        self.written = 0
        self.counts = {"memory_only": 0, "spilled": 0, "replayed": 0, "quarantined": 0}
        self.last_db_error: str | None = None
        self.last_db_error_at: float | None = None

    def memory_only(self, count: int) -> None:
        """Events the journal refused, held in memory only."""
        self.counts["memory_only"] += count
        if self._metrics is not None:
            self._metrics.audit_memory_only.inc(count)

    def spilled(self, count: int) -> None:
        """Events the full queue refused, held in the journal only."""
        self.counts["spilled"] += count
        if self._metrics is not None:
            self._metrics.audit_spooled.inc(count)

    def replayed(self, count: int) -> None:
        """Rows written from journal files."""
        self.counts["replayed"] += count
        if self._metrics is not None and count:
            self._metrics.audit_replayed.inc(count)
            self._metrics.audit_written.inc(count)
        self.written += count

    def quarantined(self, count: int) -> None:
        """Rows PostgreSQL refused, set aside."""
        if count:
            self.counts["quarantined"] += count
            if self._metrics is not None:
                self._metrics.audit_quarantined.inc(count)

    def lose(self, count: int, why: str, row: Row | None = None) -> None:
        """Events neither the journal nor memory could hold."""
        self.dropped += count
        if self._metrics is not None:
            self._metrics.audit_dropped.inc(count)
        # One line a second at most: a full disk under load would otherwise log every request.
        now = time.monotonic()
        if now - self._lost_logged >= 1.0:
            self._lost_logged = now
            extra = {} if row is None else {"event": row[2], "request_id": row[4]}
            log.error("audit events lost: %s (%d lost so far)", why, self.dropped, extra=extra)

    def wrote(self, count: int, seconds: float) -> None:
        """A batch is committed."""
        self.written += count
        if self._metrics is not None:
            self._metrics.audit_written.inc(count)
            self._metrics.audit_write_seconds.observe(seconds)
            self._metrics.audit_batch_size.observe(count)

    def write_failed(self, exc: BaseException, *, degraded: bool) -> None:
        """A write to PostgreSQL failed; after a few in a row the writer is degraded."""
        self.last_db_error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_db_error_at = time.time()
        if self._metrics is not None:
            self._metrics.audit_write_failures.inc()
        if degraded and not self.degraded:
            log.error("audit writes to PostgreSQL failing; events wait in the journal")
            self._set_degraded(True)
        else:
            log.warning("audit write failed: %s", type(exc).__name__)

    def recovered(self) -> None:
        """PostgreSQL took a write again."""
        if self.degraded:
            log.warning("audit writes to PostgreSQL recovered")
            self._set_degraded(False)

    def _set_degraded(self, value: bool) -> None:
        self.degraded = value
        if self._metrics is not None:
            self._metrics.audit_degraded.set(1 if value else 0)
        self._published = 0.0  # a change of state is worth a status file update now

    def publish(self, queue: deque[tuple[bytes, Any, float]]) -> None:
        """Rewrite the status file, at most once a PUBLISH_INTERVAL."""
        now = time.monotonic()
        if now - self._published < PUBLISH_INTERVAL:
            return
        self._published = now
        self._status.write(self.snapshot(queue))

    def snapshot(self, queue: deque[tuple[bytes, Any, float]]) -> dict[str, Any]:
        """This worker's state, as `gateway audit status` prints it."""
        journal = self._journal
        return {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "queue_depth": len(queue),
            "journal_segments": len(journal.segments),
            "journal_bytes": journal.bytes,
            "oldest_unshipped_age": oldest_age(queue, journal),
            "degraded": self.degraded,
            "journal_failing": journal.failing,
            "last_journal_error": journal.last_error,
            "last_journal_error_at": journal.last_error_at,
            "last_db_error": self.last_db_error,
            "last_db_error_at": self.last_db_error_at,
            "written": self.written,
            "dropped": self.dropped,
            **self.counts,
        }

    def close(self) -> None:
        """The worker stopped cleanly: its status file goes."""
        self._status.close()


def oldest_age(queue: deque[tuple[bytes, Any, float]], journal: Journal) -> float:
    """Seconds since the oldest event not yet in PostgreSQL was made (0 when none waits)."""
    times = [s.first_spill for s in journal.segments if s.spilled]
    if queue:
        times.append(queue[0][2])
    return max(0.0, time.time() - min(times)) if times else 0.0
