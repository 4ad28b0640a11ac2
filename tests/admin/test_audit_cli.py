"""`gateway audit tail` (filters, --follow) and `gateway audit status` (the journal's files)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.admin.audit import follow, format_table, recent_events
from gateway.audit.copy import write_batch
from gateway.audit.event import AuditEvent, copy_line
from gateway.audit.journal import Journal
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


async def test_tail_shows_workspace_and_reason_and_follow_prints_new_rows(
    db, database_url, capsys
) -> None:
    """The table has WORKSPACE and REASON columns; follow prints rows that arrive later, once."""
    now = datetime.now(UTC)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    conn = await asyncpg.connect(database_url)
    try:
        first = AuditEvent(
            event="auth_failed",
            status=401,
            request_id="f-0",
            occurred_at=now - timedelta(seconds=5),
            workspace_id="ws-9",
            detail={"reason": "expired", "code": "unauthenticated"},
        )
        await write_batch(pool, [first])
        rows = await recent_events(conn, tenant=None, event=None, limit=5)
        table = format_table(rows)
        assert "WORKSPACE" in table.splitlines()[0]
        assert "REASON" in table.splitlines()[0]
        assert "ws-9" in table.splitlines()[1]
        assert "expired" in table.splitlines()[1]
        capsys.readouterr()

        async def later() -> None:
            await asyncio.sleep(0.3)
            # Arrives after the follow started, stamped a little in the past (a batch's delay).
            late = AuditEvent(
                event="token_issued",
                status=200,
                request_id="f-1",
                occurred_at=now - timedelta(seconds=2),
            )
            await write_batch(pool, [late])

        await asyncio.gather(later(), follow(conn, rows, tenant=None, event=None, polls=3))
        printed = capsys.readouterr().out.splitlines()
        assert [line.split()[-1] for line in printed] == ["f-1"]
    finally:
        await conn.close()
        await pool.close()


def test_status_reads_the_journal_files_without_a_service(tmp_path, capsys) -> None:
    """`gateway audit status --dir` lists a gone process's segment as orphaned, with its lines,
    and a live journal's segment with its owner's pid, with no gateway or database running."""
    gone = Journal(tmp_path)
    for i in range(3):
        gone.append(copy_line(AuditEvent(event="token_reused", status=200, request_id=f"s{i}")))
    gone.close()
    live = Journal(tmp_path)
    live.append(copy_line(AuditEvent(event="token_reused", status=200, request_id="live")))
    try:
        assert main(["audit", "status", "--dir", str(tmp_path)]) == 0
    finally:
        live.close()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("audit-")]
    assert len(rows) == 2
    assert {row.split()[1] for row in rows} == {"orphan", str(os.getpid())}
    assert {row.split()[2] for row in rows} == {"3", "1"}
    assert "1 orphaned (replayed by the next worker to start)" in out
