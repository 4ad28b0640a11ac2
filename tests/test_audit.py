"""The audit writer: rows arrive with their fields, retries never duplicate, shutdown loses none."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from gateway.audit import AuditEvent, AuditWriter, uuid7, write_batch


def _event(i: int, **kw) -> AuditEvent:
    return AuditEvent(event="token_issued", status=200, request_id=f"req-{i}", **kw)


async def test_uuid7_is_time_ordered_and_version_7() -> None:
    """Ids made later sort later, and carry version 7."""
    a, b = uuid7(1_700_000_000.0), uuid7(1_700_000_000.002)
    assert a.version == 7
    assert a < b


async def test_batch_retried_after_commit_is_not_duplicated(database_url, db) -> None:
    """Writing the same batch twice (an unknown outcome, retried) leaves one row per event."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        batch = [
            _event(i, client_ip="10.0.0.1", detail={"reason": "x"}, cache_hit=False)
            for i in range(50)
        ]
        await write_batch(pool, batch)
        await write_batch(pool, batch)
        assert await db.fetchval("SELECT count(*) FROM audit_events") == 50
        row = await db.fetchrow("SELECT * FROM audit_events WHERE request_id = 'req-7'")
        assert str(row["client_ip"]) == "10.0.0.1"
        assert json.loads(row["detail"]) == {"reason": "x"}
        assert row["cache_hit"] is False
    finally:
        await pool.close()


async def test_close_flushes_everything_still_queued(database_url, db) -> None:
    """Events queued right before shutdown are all written by close(), none lost."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    writer = AuditWriter(pool, batch_size=100, flush_interval=5.0)
    writer.start()
    for i in range(2_000):
        writer.emit(_event(i))
    await writer.close(timeout=30)
    await pool.close()
    assert await db.fetchval("SELECT count(*) FROM audit_events") == 2_000
    assert await db.fetchval("SELECT count(DISTINCT request_id) FROM audit_events") == 2_000


async def test_flushes_by_age_without_filling_a_batch(database_url, db) -> None:
    """A lone event is written after the flush interval, not held until a batch fills."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    writer = AuditWriter(pool, batch_size=500, flush_interval=0.05)
    writer.start()
    try:
        writer.emit(_event(1))
        for _ in range(200):
            if await db.fetchval("SELECT count(*) FROM audit_events") == 1:
                break
            await asyncio.sleep(0.02)
        assert await db.fetchval("SELECT count(*) FROM audit_events") == 1
    finally:
        await writer.close()
        await pool.close()


async def test_full_queue_drops_loudly(database_url) -> None:
    """Over the bound, emit never blocks: it counts the dropped event."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    writer = AuditWriter(pool, queue_size=3)
    try:
        for i in range(5):
            writer.emit(_event(i))
        assert writer.depth == 3
        assert writer.dropped == 2
    finally:
        await writer.close()
        await pool.close()
