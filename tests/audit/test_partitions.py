"""Day partitions of audit_events: created ahead, stranded rows moved in, old days dropped."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.audit.copy import write_batch
from gateway.audit.event import AuditEvent
from gateway.audit.partitions import ensure_partitions, list_partitions, partition_name, prune
from gateway.cli import main


@pytest.fixture
async def bare(db: asyncpg.Connection) -> asyncpg.Connection:
    """The test database with no day partitions at all (only the default one)."""
    for name in await list_partitions(db):
        await db.execute(f"DROP TABLE {name}")
    return db


def events_on(day: datetime, n: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            event="token_issued",
            status=200,
            request_id=f"{day:%Y%m%d}-{i}",
            occurred_at=day + timedelta(minutes=i),
        )
        for i in range(n)
    ]


async def counts_by_partition(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM audit_events GROUP BY 1"
    )
    return {r["part"]: r["n"] for r in rows}


async def test_maintain_creates_days_ahead_once(bare) -> None:
    """Today and the next N days get a partition; a second run creates nothing."""
    today = datetime(2030, 1, 10, tzinfo=UTC).date()
    created = await ensure_partitions(bare, days_ahead=3, today=today)
    assert created == [partition_name(today + timedelta(days=n)) for n in range(4)]
    assert await ensure_partitions(bare, days_ahead=3, today=today) == []
    bound = await bare.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1",
        "audit_events_p20300110",
    )
    assert "2030-01-10 00:00:00+00" in bound
    assert "2030-01-11 00:00:00+00" in bound


async def test_rows_spanning_days_move_from_default_into_their_partitions(
    bare, database_url
) -> None:
    """Rows written before their day had a partition are moved into it, none lost."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    days = [datetime(2030, 3, d, 6, tzinfo=UTC) for d in (1, 2, 3, 5)]
    try:
        for i, day in enumerate(days):
            await write_batch(pool, events_on(day, 10 + i))
    finally:
        await pool.close()
    assert await counts_by_partition(bare) == {"audit_events_default": 46}
    await ensure_partitions(bare, days_ahead=0, today=days[-1].date())
    assert await counts_by_partition(bare) == {
        "audit_events_p20300301": 10,
        "audit_events_p20300302": 11,
        "audit_events_p20300303": 12,
        "audit_events_p20300305": 13,
    }
    # The moved-in partitions carry the parent's indexes, the unique key among them.
    indexes = await bare.fetch(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'audit_events_p20300302'"
    )
    assert any("UNIQUE" in r["indexdef"] for r in indexes)
    assert any("brin" in r["indexdef"] for r in indexes)


async def test_prune_drops_only_whole_days_past_the_limit(bare, database_url) -> None:
    """prune --keep-days N drops the partitions that ended N days ago or earlier."""
    now = datetime(2030, 6, 10, 12, tzinfo=UTC)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        for back in range(6):
            await write_batch(pool, events_on(now - timedelta(days=back, hours=1), 5))
    finally:
        await pool.close()
    await ensure_partitions(bare, days_ahead=1, today=now.date())
    dry = await prune(bare, keep_days=3, now=now, dry_run=True)
    assert dry.dropped == ["audit_events_p20300605", "audit_events_p20300606"]
    assert len(await list_partitions(bare)) == 7
    result = await prune(bare, keep_days=3, now=now)
    assert result.dropped == dry.dropped
    left = await counts_by_partition(bare)
    assert sorted(left) == [f"audit_events_p203006{d:02d}" for d in (7, 8, 9, 10)]
    assert sum(left.values()) == 20
    assert await prune(bare, keep_days=3, now=now) == type(result)([], 0)


async def test_cli_maintain_and_prune(bare, database_url, monkeypatch, capsys) -> None:
    """`gateway audit maintain` creates today's partition onward; `prune` drops an old day.

    The CLI runs its own event loop, so it is called from a thread.
    """
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    today = datetime.now(UTC).date()
    old = today - timedelta(days=40)
    await ensure_partitions(bare, days_ahead=0, today=old)
    assert await asyncio.to_thread(main, ["audit", "maintain", "--days-ahead", "2"]) == 0
    assert partition_name(today + timedelta(days=2)) in capsys.readouterr().out
    assert set(await list_partitions(bare)) >= {partition_name(today), partition_name(old)}
    assert await asyncio.to_thread(main, ["audit", "prune", "--keep-days", "30"]) == 0
    assert capsys.readouterr().out.strip() == f"dropped: {partition_name(old)}"
    assert partition_name(old) not in await list_partitions(bare)
