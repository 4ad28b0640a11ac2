"""The audit trail: one event per request, queued in memory and written in COPY batches."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from gateway.metrics import Metrics

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


def uuid7(now: float | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): 48-bit milliseconds, then random bits."""
    ms = int((time.time() if now is None else now) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


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
        ip: Any = None
        if self.client_ip:
            with contextlib.suppress(ValueError):
                ip = ipaddress.ip_address(self.client_ip)
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


async def write_batch(pool: asyncpg.Pool, events: list[AuditEvent]) -> None:
    """Write events with one COPY; retrying after an unknown outcome cannot duplicate them.

    COPY goes to a temporary table first, then INSERT … ON CONFLICT DO NOTHING on event_id,
    all in one transaction.
    """
    records = [e.record() for e in events]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS audit_events_stage"
            " (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table("audit_events_stage", records=records, columns=COLUMNS)
        await conn.execute(
            "INSERT INTO audit_events SELECT * FROM audit_events_stage"
            " ON CONFLICT (event_id) DO NOTHING"
        )


class AuditWriter:
    """Accepts events without waiting and writes them in batches from one background task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        queue_size: int = 100_000,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        # The batch being written; on cancellation close() writes it again (idempotent).
        self._inflight: list[AuditEvent] = []
        self.dropped = 0
        self.written = 0

    @property
    def depth(self) -> int:
        """Events waiting to be written."""
        return self._queue.qsize()

    def emit(self, event: AuditEvent) -> None:
        """Queue an event; never blocks the request. A full queue drops it, loudly."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.audit_dropped.inc()
            log.error(
                "audit queue full, event dropped",
                extra={"event": event.event, "request_id": event.request_id},
            )

    def start(self) -> None:
        """Start the background writer."""
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Write everything still queued (within `timeout`), then stop the task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            async with asyncio.timeout(timeout):
                if self._inflight:
                    await self._write(self._inflight)
                    self._inflight = []
                while not self._queue.empty():
                    await self._write(self._take_batch([]))
        except TimeoutError:
            log.error("audit flush timed out; %d events not written", self._queue.qsize())

    def _take_batch(self, batch: list[AuditEvent]) -> list[AuditEvent]:
        while len(batch) < self._batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _next_batch(self) -> list[AuditEvent]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self._flush_interval
        while len(batch) < self._batch_size:
            self._take_batch(batch)
            remaining = deadline - time.monotonic()
            if len(batch) >= self._batch_size or remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _write(self, batch: list[AuditEvent]) -> None:
        await write_batch(self._pool, batch)
        self.written += len(batch)
        if self._metrics is not None:
            self._metrics.audit_written.inc(len(batch))

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._inflight:
                self._inflight = await self._next_batch()
            try:
                await self._write(self._inflight)
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                # A pooled connection caught mid-error by a server shutdown ("cannot switch to
                # state ...; another operation is in progress"): retry on another connection.
                asyncpg.exceptions.InternalClientError,
                OSError,
                TimeoutError,
            ) as exc:
                # Keep the batch and retry: event ids make a retried batch harmless.
                log.warning(
                    "audit write failed, retrying in %.2fs: %s", backoff, type(exc).__name__
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._inflight = []
            backoff = 0.05
