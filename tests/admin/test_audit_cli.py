"""`gateway audit tail`: recent events as a table, filtered by tenant and event."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.audit.copy import write_batch
from gateway.audit.event import AuditEvent
from gateway.cli import main


async def test_tail_prints_recent_events_oldest_first_with_filters(
    db, database_url, monkeypatch, capsys
) -> None:
    """tail shows the latest rows as an aligned table; --tenant and --event narrow them.

    The CLI runs its own event loop, so it is called from a thread.
    """
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    now = datetime.now(UTC)
    events = [
        AuditEvent(
            event="token_issued" if i % 2 else "auth_failed",
            status=200 if i % 2 else 401,
            request_id=f"req-{i}",
            occurred_at=now - timedelta(minutes=10 - i),
            tenant_id="org-1" if i < 6 else "org-2",
            subject=f"user-{i}",
            client_ip="192.0.2.7",
            latency_ms=1.25,
        )
        for i in range(10)
    ]
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await write_batch(pool, events)
    finally:
        await pool.close()

    assert await asyncio.to_thread(main, ["audit", "tail", "-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["TIME", "(UTC)", "EVENT", "ST"]
    assert [line.split()[-1] for line in lines[1:]] == ["req-7", "req-8", "req-9"]
    assert "192.0.2.7" in lines[1]
    assert "1.2" in lines[1]

    argv = ["audit", "tail", "--tenant", "org-1", "--event", "token_issued"]
    assert await asyncio.to_thread(main, argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["req-1", "req-3", "req-5"]
    assert all("org-1" in line and "token_issued" in line for line in lines[1:])
