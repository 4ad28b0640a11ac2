"""Day partitions of audit_events: create them ahead of time, drop them when they age out.

Days are UTC days; a partition is named audit_events_pYYYYMMDD and holds [midnight, next midnight).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from gateway.infra.dependency_errors import DATABASE_ERRORS

log = logging.getLogger(__name__)

PARENT = "audit_events"
DEFAULT_PARTITION = "audit_events_default"
_NAME = re.compile(r"^audit_events_p(\d{8})$")
# Serialises maintenance between instances: two creating the same day would otherwise collide.
PARTITION_LOCK_ID = 0x61756474  # "audt"
# DDL here takes strong locks; rather fail and retry next round than queue behind a long query
# and stall every writer waiting behind us.
LOCK_TIMEOUT = "5s"
MAINTAIN_INTERVAL = 3600.0
RETRY_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What prune removed."""

    dropped: list[str]
    default_rows_deleted: int


def partition_name(day: date) -> str:
    """The partition holding `day`."""
    return f"{PARENT}_p{day:%Y%m%d}"


def _bounds(day: date) -> tuple[str, str]:
    low = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return low.isoformat(), (low + timedelta(days=1)).isoformat()


async def list_partitions(conn: asyncpg.Connection) -> dict[str, date]:
    """The day partitions that exist, by name."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass",
        PARENT,
    )
    found = {}
    for row in rows:
        match = _NAME.match(row["relname"])
        if match:
            found[row["relname"]] = date.fromisoformat(match.group(1))
    return found


async def _create_day(conn: asyncpg.Connection, day: date) -> bool:
    name = partition_name(day)
    low, high = _bounds(day)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
        if name in await list_partitions(conn):
            return False
        # Parent first, as every INSERT does, so this cannot deadlock with the writer; then no row
        # for this day can reach the default partition between the move and the attach.
        await conn.execute(f"LOCK TABLE ONLY {PARENT} IN SHARE ROW EXCLUSIVE MODE")
        await conn.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        # Names and bounds come from a date, never from input, so formatting them in is safe.
        await conn.execute(
            f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        # Rows that arrived before their day had a partition move into it, in the same transaction.
        moved = await conn.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION}"  # noqa: S608 - see above
            " WHERE occurred_at >= $1 AND occurred_at < $2 RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved",
            datetime.fromisoformat(low),
            datetime.fromisoformat(high),
        )
        await conn.execute(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')"
        )
    count = int(moved.split()[-1])
    log.info("created audit partition %s%s", name, f" ({count} rows moved in)" if count else "")
    return True


async def ensure_partitions(
    conn: asyncpg.Connection,
    *,
    days_ahead: int = 7,
    days_back: int = 0,
    today: date | None = None,
) -> list[str]:
    """Create the partitions from `days_back` days ago to `days_ahead` days ahead, and one for
    each day that has rows waiting in the default partition; returns the names created."""
    today = today or datetime.now(UTC).date()
    days = {today + timedelta(days=n) for n in range(-days_back, days_ahead + 1)}
    stranded = await conn.fetch(
        f"SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date AS day FROM {DEFAULT_PARTITION}"  # noqa: S608 - constant name
    )
    days.update(row["day"] for row in stranded)
    existing = set((await list_partitions(conn)).values())
    return [partition_name(d) for d in sorted(days - existing) if await _create_day(conn, d)]


async def prune(
    conn: asyncpg.Connection, *, keep_days: int, now: datetime | None = None, dry_run: bool = False
) -> PruneResult:
    """Drop the partitions whose whole day ended more than `keep_days` days ago.

    Rows that old still sitting in the default partition are deleted too.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    doomed = sorted(
        name
        for name, day in (await list_partitions(conn)).items()
        if datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1) <= cutoff
    )
    if dry_run:
        count = await conn.fetchval(
            f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE occurred_at < $1",  # noqa: S608 - constant name
            cutoff,
        )
        return PruneResult(doomed, int(count))
    for name in doomed:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            # A transaction lock, like creation's: a pooler (PgBouncer) cannot strand it.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_ID)
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        log.info("dropped audit partition %s", name)
    status = await conn.execute(
        f"DELETE FROM {DEFAULT_PARTITION} WHERE occurred_at < $1",  # noqa: S608 - constant name
        cutoff,
    )
    return PruneResult(doomed, int(status.split()[-1]))


async def maintain_forever(pool: asyncpg.Pool, *, days_ahead: int) -> None:
    """The service's background task: keep partitions `days_ahead` days ahead, hourly."""
    while True:
        try:
            async with pool.acquire() as conn:
                await ensure_partitions(conn, days_ahead=days_ahead, days_back=1)
            delay = MAINTAIN_INTERVAL
        except DATABASE_ERRORS as exc:
            # The default partition takes rows meanwhile; nothing is lost, only tidiness.
            log.warning("audit partition maintenance failed: %s", type(exc).__name__)
            delay = RETRY_INTERVAL
        await asyncio.sleep(delay)
