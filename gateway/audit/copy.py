"""Writing rows to audit_events: one text COPY per batch, safe to repeat.

Works through PgBouncer in transaction mode: no statement here is prepared, and the staging
table lives only inside its own transaction (`ON COMMIT DROP`), so no state outlives a transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Protocol

import asyncpg

from gateway.audit.event import COLUMNS, AuditEvent, copy_line

__all__ = ["POISON_ERRORS", "WriteFn", "write_batch", "write_lines"]

# What PostgreSQL answers when a row itself is wrong (bad text, out of range, a constraint):
# retrying the same bytes can never succeed, so such a row is quarantined instead.
POISON_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)
_STAGE = (
    "CREATE TEMP TABLE audit_events_stage (LIKE audit_events INCLUDING DEFAULTS) ON COMMIT DROP"
)
_MERGE = (
    "INSERT INTO audit_events SELECT * FROM audit_events_stage"
    " ON CONFLICT (event_id, occurred_at) DO NOTHING"
)


async def _source(data: bytes) -> AsyncIterator[bytes]:
    # asyncpg reads a plain file object through a thread; an async iterable stays on the loop.
    yield data


async def write_lines(pool: asyncpg.Pool, lines: Sequence[bytes], *, fresh: bool = False) -> None:
    """COPY text-format rows; a retry after an unknown outcome cannot duplicate them.

    The idempotent path COPYs into a staging table, then INSERT … ON CONFLICT DO NOTHING on the
    event's key, in one transaction. A `fresh` batch, one never sent before, cannot hold a row
    that is already there, so it is COPYed straight into audit_events: half the work. Any retry,
    replay or shutdown flush must pass fresh=False.
    """
    data = b"".join(lines)
    async with pool.acquire() as conn:
        if fresh:
            try:
                await conn.copy_to_table("audit_events", source=_source(data), columns=COLUMNS)
            except asyncpg.UniqueViolationError:
                pass  # not so fresh after all: fall through to the idempotent path
            else:
                return
        async with conn.transaction():
            await conn.execute(_STAGE)
            await conn.copy_to_table("audit_events_stage", source=_source(data), columns=COLUMNS)
            await conn.execute(_MERGE)


class WriteFn(Protocol):
    """How the audit writer writes lines (write_lines, or a test's wrapper around it)."""

    def __call__(
        self, pool: asyncpg.Pool, lines: Sequence[bytes], *, fresh: bool = False
    ) -> Awaitable[None]: ...


async def write_batch(
    pool: asyncpg.Pool, events: Sequence[AuditEvent], *, fresh: bool = False
) -> None:
    """write_lines for AuditEvent objects (operators' tools and tests)."""
    await write_lines(pool, [copy_line(e) for e in events], fresh=fresh)
