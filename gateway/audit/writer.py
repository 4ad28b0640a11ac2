"""The audit trail: one event per request, queued in memory and written in COPY batches.

Nothing is lost quietly: when PostgreSQL keeps failing, or the queue is full, events go to the
spool on local disk (gateway/spool.py) and are replayed once PostgreSQL is back or at the next
start; only an event that can be neither written nor spooled is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import orjson

from gateway.audit.spool import Spool
from gateway.infra.dependency_errors import DATABASE_ERRORS
from gateway.infra.ids import uuid7
from gateway.ops.metrics import Metrics

__all__ = ["COLUMNS", "AuditEvent", "AuditWriter", "uuid7", "write_batch"]

log = logging.getLogger(__name__)

COLUMNS = (
    "event_id",
    "occurred_at",
    "event",
    "status",
    "request_id",
    "subject",
    "tenant_id",
    "workspace_id",
    "dashboard_id",
    "api_key_id",
    "expires_at",
    "token_sha256",
    "cache_hit",
    "client_ip",
    "user_agent",
    "latency_ms",
    "detail",
)
_TIMES = ("occurred_at", "expires_at")
# What a write to an unreachable, restarting or too slow PostgreSQL raises.
WRITE_ERRORS = DATABASE_ERRORS
# Spooled events are replayed in bigger COPY batches than live ones: there is a backlog to clear.
REPLAY_CHUNK = 5000


@functools.lru_cache(maxsize=4096)
def _client_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Parsing an address costs ~3 us and clients repeat: a small cache pays on every event.
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def clean_text(value: str | None) -> str | None:
    """Text PostgreSQL and the spool accept: lone surrogates (undecodable header bytes) escaped,
    NUL spelled out. A caller controls these strings; one bad byte must not poison a batch."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@dataclass(slots=True)
class AuditEvent:
    """One row of audit_events."""

    event: str
    status: int
    request_id: str
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    event_id: uuid.UUID = field(default_factory=uuid7)
    subject: str | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    dashboard_id: str | None = None
    api_key_id: str | None = None
    expires_at: datetime | None = None
    token_sha256: str | None = None
    cache_hit: bool | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    latency_ms: float | None = None
    detail: dict[str, Any] | None = None

    def record(self) -> tuple[Any, ...]:
        """The row in COLUMNS order, encoded for asyncpg's COPY."""
        ip = _client_ip(self.client_ip) if self.client_ip else None
        return (
            self.event_id,
            self.occurred_at,
            self.event,
            self.status,
            self.request_id,
            self.subject,
            self.tenant_id,
            self.workspace_id,
            self.dashboard_id,
            self.api_key_id,
            self.expires_at,
            self.token_sha256,
            self.cache_hit,
            ip,
            self.user_agent,
            self.latency_ms,
            None if self.detail is None else orjson.dumps(self.detail).decode(),
        )

    def to_json(self) -> bytes:
        """One spool line (without its newline)."""
        return orjson.dumps({name: getattr(self, name) for name in COLUMNS})

    @classmethod
    def from_json(cls, line: bytes) -> AuditEvent:
        """The event a spool line holds."""
        data = orjson.loads(line)
        data["event_id"] = uuid.UUID(data["event_id"])
        for name in _TIMES:
            if data.get(name) is not None:
                data[name] = datetime.fromisoformat(data[name])
        return cls(**data)


async def write_batch(pool: asyncpg.Pool, events: list[AuditEvent], *, fresh: bool = False) -> None:
    """Write events with one COPY; retrying after an unknown outcome cannot duplicate them.

    The idempotent path COPYs into a temporary table, then INSERT … ON CONFLICT DO NOTHING on the
    event's key, in one transaction. A `fresh` batch, one never sent before, cannot hold a row
    that is already there (its ids were just made), so it is COPYed straight into audit_events:
    half the work. Any retry, replay or shutdown flush must pass fresh=False.
    """
    records = [e.record() for e in events]
    async with pool.acquire() as conn:
        if fresh:
            try:
                await conn.copy_records_to_table("audit_events", records=records, columns=COLUMNS)
            except asyncpg.UniqueViolationError:
                pass  # not so fresh after all: fall through to the idempotent path
            else:
                return
        async with conn.transaction():
            await conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS audit_events_stage"
                " (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await conn.copy_records_to_table("audit_events_stage", records=records, columns=COLUMNS)
            await conn.execute(
                "INSERT INTO audit_events SELECT * FROM audit_events_stage"
                " ON CONFLICT (event_id, occurred_at) DO NOTHING"
            )


class WriteFn(Protocol):
    """How the writer writes a batch (write_batch, or a test's wrapper around it)."""

    def __call__(
        self, pool: asyncpg.Pool, events: list[AuditEvent], *, fresh: bool = False
    ) -> Awaitable[None]: ...


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _parse_lines(lines: list[bytes], source: str) -> list[AuditEvent]:
    events = []
    for number, line in enumerate(lines, 1):
        try:
            events.append(AuditEvent.from_json(line))
        except (ValueError, TypeError, KeyError) as exc:
            log.error("audit spool %s line %d is not an event, skipped: %s", source, number, exc)
    return events


class AuditWriter:
    """Accepts events without waiting and writes them in batches from one background task.

    A second task moves events that find the queue full into the spool. States, as SREs see
    them in /metrics: writing (normal), degraded (PostgreSQL failing: batches go to the spool,
    PostgreSQL is probed every `probe_interval`), and spool failing (the disk refuses too).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        spool: Spool,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        queue_size: int = 100_000,
        metrics: Metrics | None = None,
        write_timeout: float = 5.0,
        retry_attempts: int = 3,
        probe_interval: float = 1.0,
        write: WriteFn = write_batch,
    ) -> None:
        self._pool = pool
        self._spool = spool
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue_size = queue_size
        self._write_timeout = write_timeout
        self._retry_attempts = retry_attempts
        self._probe_interval = probe_interval
        self._write_fn = write
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(maxsize=queue_size)
        # The batch being gathered or written. It lives on the object, not in a local, so that
        # close() finds it whatever point the cancelled task had reached.
        self._inflight: list[AuditEvent] = []
        # Events that found the queue full, waiting for the spooler task.
        self._overflow: list[AuditEvent] = []
        self._overflow_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._next_probe = 0.0
        self.degraded = False
        self.spool_failing = False
        self.dropped = 0
        self.written = 0

    @property
    def depth(self) -> int:
        """Events held in memory, not yet written or spooled."""
        return self._queue.qsize() + len(self._inflight) + len(self._overflow)

    def can_record(self) -> bool:
        """Whether an event made now would be written or spooled; false means it could be lost."""
        if not self.spool_failing:
            return True
        return not self.degraded and not self._queue.full()

    def emit(self, event: AuditEvent) -> None:
        """Queue an event; never blocks the request. A full queue sends it to the spool."""
        if not self._queue.full():
            self._queue.put_nowait(event)
            return
        if len(self._overflow) < self._queue_size:
            self._overflow.append(event)
            self._overflow_wake.set()
            return
        self.dropped += 1
        if self._metrics is not None:
            self._metrics.audit_dropped.inc()
        log.error(
            "audit event lost: queue and spool backlog full",
            extra={"event": event.event, "request_id": event.request_id},
        )

    def start(self) -> None:
        """Start the background writer and spooler."""
        self._tasks = [
            asyncio.create_task(self._run(), name="audit-writer"),
            asyncio.create_task(self._spool_overflow(), name="audit-spooler"),
        ]

    async def close(self, timeout: float = 10.0) -> None:
        """Write what memory holds within `timeout`, spool the rest, then stop.

        The spool append is not bounded by `timeout`: it is local disk, and the alternative is
        losing the events.
        """
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        pending = self._inflight + self._drain_queue() + self._overflow
        self._inflight, self._overflow = [], []
        deadline = time.monotonic() + timeout
        if not self.degraded:
            try:
                async with asyncio.timeout(timeout):
                    while pending:
                        chunk = pending[: max(self._batch_size, REPLAY_CHUNK)]
                        await self._write(chunk)
                        pending = pending[len(chunk) :]
            except Exception as exc:  # noqa: BLE001 - whatever stops the flush, the rest is spooled
                log.warning(
                    "audit flush at shutdown stopped (%s); spooling %d events",
                    type(exc).__name__,
                    len(pending),
                )
        if pending:
            try:
                await asyncio.to_thread(self._spool.append, [e.to_json() for e in pending])
                self._count_spooled(len(pending))
            except OSError as exc:
                self._lose(len(pending), exc)
        remaining = deadline - time.monotonic()
        if self._spool.has_pending and remaining > 0 and not self.degraded:
            # Best effort: what is not replayed now is replayed at the next start.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._replay()
        await asyncio.to_thread(self._spool.close)

    def _drain_queue(self) -> list[AuditEvent]:
        events = []
        while not self._queue.empty():
            events.append(self._queue.get_nowait())
        return events

    def _lose(self, count: int, exc: BaseException) -> None:
        self.dropped += count
        if self._metrics is not None:
            self._metrics.audit_dropped.inc(count)
        log.error("%d audit events lost: the spool cannot be written (%s)", count, exc)

    def _count_spooled(self, count: int) -> None:
        if self._metrics is not None:
            self._metrics.audit_spooled.inc(count)

    def _set_degraded(self, value: bool) -> None:
        if value != self.degraded:
            if value:
                log.error("audit writes to PostgreSQL failing; spooling events to disk")
            else:
                log.warning("audit writes to PostgreSQL recovered")
        self.degraded = value
        if self._metrics is not None:
            self._metrics.audit_degraded.set(1 if value else 0)

    def _set_spool_failing(self, value: bool, exc: BaseException | None = None) -> None:
        if value and not self.spool_failing:
            log.error("audit spool in %s cannot be written: %s", self._spool.directory, exc)
        self.spool_failing = value
        if self._metrics is not None:
            self._metrics.audit_spool_failing.set(1 if value else 0)

    async def _fill_batch(self) -> None:
        """Gather into self._inflight until batch_size events or flush_interval after the first."""
        # While a backlog waits on disk, wake up even with no traffic so it gets replayed.
        idle = self._probe_interval if (self.degraded or self._spool.has_pending) else None
        try:
            async with asyncio.timeout(idle):
                self._inflight.append(await self._queue.get())
        except TimeoutError:
            return
        deadline = time.monotonic() + self._flush_interval
        while len(self._inflight) < self._batch_size:
            while len(self._inflight) < self._batch_size and not self._queue.empty():
                self._inflight.append(self._queue.get_nowait())
            remaining = deadline - time.monotonic()
            if len(self._inflight) >= self._batch_size or remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    self._inflight.append(await self._queue.get())
            except TimeoutError:
                break

    async def _write(self, batch: list[AuditEvent], *, fresh: bool = False) -> None:
        started = time.perf_counter()
        async with asyncio.timeout(self._write_timeout):
            await self._write_fn(self._pool, batch, fresh=fresh)
        self.written += len(batch)
        if self._metrics is not None:
            self._metrics.audit_written.inc(len(batch))
            self._metrics.audit_write_seconds.observe(time.perf_counter() - started)
            self._metrics.audit_batch_size.observe(len(batch))

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._pool.fetchval("SELECT 1")
        except WRITE_ERRORS:
            return False
        return True

    async def _replay(self) -> bool:
        """Write every spooled segment, oldest first, deleting each once committed.

        Returns whether the spool is empty now; a failure marks the writer degraded.
        """
        try:
            segments = await asyncio.to_thread(self._spool.claim)
        except OSError as exc:
            log.error("audit spool in %s cannot be read: %s", self._spool.directory, exc)
            return False
        for segment in segments:
            try:
                lines = await asyncio.to_thread(self._spool.read, segment)
            except OSError as exc:
                log.error("audit spool segment %s cannot be read: %s", segment.path.name, exc)
                return False
            events = _parse_lines(lines, segment.path.name)
            try:
                for chunk in _chunks(events, REPLAY_CHUNK):
                    await self._write(chunk)
            except WRITE_ERRORS as exc:
                log.warning("audit spool replay failed: %s", type(exc).__name__)
                self._set_degraded(True)
                return False
            await asyncio.to_thread(self._spool.done, segment)
            if self._metrics is not None:
                self._metrics.audit_replayed.inc(len(events))
            log.info("replayed %d spooled audit events from %s", len(events), segment.path.name)
        self._set_degraded(False)
        return True

    async def _spool_batch(self, batch: list[AuditEvent]) -> bool:
        try:
            await asyncio.to_thread(self._spool.append, [e.to_json() for e in batch])
        except OSError as exc:
            self._set_spool_failing(True, exc)
            return False
        self._set_spool_failing(False)
        self._count_spooled(len(batch))
        return True

    async def _deliver(self) -> None:
        """Write self._inflight to PostgreSQL, or to the spool when PostgreSQL keeps failing."""
        if not self.degraded:
            backoff = 0.05
            for attempt in range(self._retry_attempts):
                try:
                    # Only the first attempt is fresh: after a failure its outcome is unknown.
                    await self._write(self._inflight, fresh=attempt == 0)
                except WRITE_ERRORS as exc:
                    # Keep the batch and retry: event ids make a retried batch harmless.
                    if self._metrics is not None:
                        self._metrics.audit_write_failures.inc()
                    log.warning("audit write failed (%d): %s", attempt + 1, type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff *= 2
                    continue
                self._inflight = []
                return
            self._set_degraded(True)
            self._next_probe = time.monotonic() + self._probe_interval
        if await self._spool_batch(self._inflight):
            self._inflight = []
        else:
            # Neither database nor disk: keep the batch in memory and try both again shortly.
            await asyncio.sleep(self._probe_interval)

    async def _recover(self) -> None:
        """While degraded, probe PostgreSQL now and then; once it answers, replay the spool."""
        if time.monotonic() < self._next_probe:
            return
        self._next_probe = time.monotonic() + self._probe_interval
        if self.degraded and not await self._ping():
            return
        await self._replay()

    async def _run(self) -> None:
        # Events a previous process left in the spool (it was killed, or lost PostgreSQL).
        await self._replay()
        while True:
            try:
                if not self._inflight:
                    await self._fill_batch()
                if self.degraded or self._spool.has_pending:
                    await self._recover()
                if self._inflight:
                    await self._deliver()
            except Exception:
                # A bug must not stop the trail: the batch stays in memory and is tried again.
                log.exception("audit writer error")
                await asyncio.sleep(self._probe_interval)

    async def _spool_overflow(self) -> None:
        while True:
            await self._overflow_wake.wait()
            self._overflow_wake.clear()
            while self._overflow:
                batch = self._overflow[:]
                if await self._spool_batch(batch):
                    # emit() may have added more meanwhile; only what was written goes.
                    del self._overflow[: len(batch)]
                else:
                    await asyncio.sleep(self._probe_interval)
