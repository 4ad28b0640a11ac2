"""The audit writer on real PostgreSQL: completeness, idempotent retries, outages, fail closed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from gateway.audit.copy import write_batch, write_lines
from gateway.audit.event import AuditEvent
from gateway.audit.journal import Journal
from gateway.audit.writer import AuditWriter
from gateway.http.state import AUDIT
from gateway.infra.ids import uuid7
from gateway.ops.metrics import Metrics
from gateway.tokens.directory import add_mapping
from gateway.tokens.format import token_sha256
from tests.audit.journal_files import journal_lines
from tests.helpers import API_KEY_ID, audit_rows, auth, eventually, make_jwt

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


@pytest.fixture
async def pool(database_url: str, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test database (audit_events emptied by `db`)."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    """The demo mapping."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


def make_events(n: int, **fields: object) -> list[AuditEvent]:
    return [
        AuditEvent(event="token_reused", status=200, request_id=f"r-{i}", tenant_id="t", **fields)
        for i in range(n)
    ]


async def count_rows(conn: asyncpg.Connection, prefix: str = "") -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM audit_events WHERE request_id LIKE $1", prefix + "%"
    )


async def test_uuid7_is_time_ordered_and_version_7() -> None:
    """Event ids sort by creation time and carry version 7."""
    ids = [uuid7(1_700_000_000 + i / 1000) for i in range(50)]
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == 50


async def test_n_requests_in_n_rows_out(client, mapped) -> None:
    """Every request, accepted or refused, becomes exactly one row holding its fields."""
    responses = []
    for i in range(30):
        headers = auth(sub=f"user-{i % 3}")
        headers["X-Request-ID"] = f"n-in-{i}"
        headers["User-Agent"] = "audit-test/1"
        responses.append(await client.post(V1, json=BODY, headers=headers))
    bad = await client.post(V1, json=BODY, headers={"X-Request-ID": "n-in-bad"})
    assert bad.status == 401
    tokens = [(await r.json())["token"] for r in responses]
    await eventually(lambda: _has(mapped, "n-in-", 31))
    rows = await mapped.fetch("SELECT * FROM audit_events WHERE request_id LIKE 'n-in-%'")
    by_id = {r["request_id"]: r for r in rows}
    assert len(rows) == len(by_id) == 31
    first = by_id["n-in-0"]
    assert first["event"] == "token_issued"
    assert (first["status"], first["tenant_id"], first["workspace_id"]) == (
        200,
        "org-123",
        "workspace-456",
    )
    assert (first["dashboard_id"], first["api_key_id"]) == ("dashboard-789", API_KEY_ID)
    assert first["token_sha256"] == token_sha256(tokens[0])
    assert first["subject"] == "user-0"
    assert first["cache_hit"] is False
    assert str(first["client_ip"]) == "127.0.0.1"
    assert first["user_agent"] == "audit-test/1"
    assert first["latency_ms"] > 0
    assert first["event_id"].version == 7
    assert {by_id[f"n-in-{i}"]["event"] for i in range(1, 30)} == {"token_reused"}
    refused = by_id["n-in-bad"]
    assert (refused["event"], refused["status"]) == ("auth_failed", 401)
    assert refused["detail"] is not None
    assert refused["token_sha256"] is None


async def _has(conn: asyncpg.Connection, prefix: str, n: int) -> bool:
    return await count_rows(conn, prefix) >= n


async def test_write_batch_twice_writes_once(pool, db) -> None:
    """The same batch written twice (a retry after an unknown outcome) leaves one row per event."""
    events = make_events(700)
    await write_batch(pool, events, fresh=True)
    await write_batch(pool, events)
    await write_batch(pool, events, fresh=True)  # wrongly called fresh: still no duplicate
    assert await count_rows(db) == 700
    assert await db.fetchval("SELECT count(DISTINCT event_id) FROM audit_events") == 700


async def test_retry_after_commit_never_duplicates(pool, db, tmp_path) -> None:
    """A batch whose COPY committed but whose answer was lost is retried without duplicates."""
    calls = 0

    async def ack_lost_first(p: asyncpg.Pool, batch: list[bytes], *, fresh: bool) -> None:
        nonlocal calls
        calls += 1
        await write_lines(p, batch, fresh=fresh)  # committed for real...
        if calls == 1:
            # ...and seen by the database before the writer hears a thing:
            assert await count_rows(db) == len(batch)
            raise ConnectionResetError("connection lost before the commit was acknowledged")

    writer = AuditWriter(
        pool,
        journal=Journal(tmp_path / "journal"),
        batch_size=500,
        flush_interval=0.02,
        write=ack_lost_first,
    )
    writer.start()
    for event in make_events(1200):
        writer.emit(event)
    await eventually(lambda: _has(db, "", 1200))
    await writer.close()
    assert calls >= 4  # 3 batches of at most 500, the first one twice
    assert await count_rows(db) == 1200
    assert await db.fetchval("SELECT count(DISTINCT event_id) FROM audit_events") == 1200
    assert writer.written >= 1200  # the first batch counted twice: it was written twice
    assert not writer.degraded


async def test_batches_flush_by_size_and_by_age(pool, db, tmp_path) -> None:
    """A full batch goes at once; a lone event goes after flush_interval, not before."""
    sizes: list[int] = []

    async def recording(p: asyncpg.Pool, batch: list[bytes], *, fresh: bool) -> None:
        sizes.append(len(batch))
        await write_lines(p, batch, fresh=fresh)

    writer = AuditWriter(
        pool,
        journal=Journal(tmp_path / "journal"),
        batch_size=500,
        flush_interval=0.5,
        write=recording,
    )
    for event in make_events(1000):
        writer.emit(event)
    writer.start()
    await eventually(lambda: _has(db, "", 1000))
    assert sizes[:2] == [500, 500]
    started = time.monotonic()
    writer.emit(make_events(1)[0])
    await asyncio.sleep(0.2)
    assert await count_rows(db) == 1000  # younger than flush_interval: still waiting
    await eventually(lambda: _has(db, "", 1001))
    assert time.monotonic() - started >= 0.45
    await writer.close()


async def test_full_queue_keeps_events_in_the_journal_only_and_ships_them(
    pool, db, tmp_path
) -> None:
    """Events that find the queue full stay in the journal only and reach the table exactly once;
    the journal is empty afterwards."""
    journal_dir = tmp_path / "journal"
    metrics = Metrics()
    writer = AuditWriter(
        pool, journal=Journal(journal_dir), queue_size=10, probe_interval=0.1, metrics=metrics
    )
    # 10 fit the queue, 10 are journaled only; none is dropped.
    for event in make_events(20):
        assert writer.emit(event)
    assert writer.depth == 10
    assert journal_lines(journal_dir) == 20
    assert writer.dropped == 0
    writer.start()
    await eventually(lambda: _has(db, "", 20))
    await eventually(lambda: _async(lambda: journal_lines(journal_dir) == 0))
    await writer.close()
    assert await db.fetchval("SELECT count(DISTINCT request_id) FROM audit_events") == 20
    assert await count_rows(db) == 20
    sample = metrics.registry.get_sample_value
    assert sample("gateway_audit_events_spooled_total") == 10
    assert sample("gateway_audit_events_replayed_total") >= 10
    assert sample("gateway_audit_events_dropped_total") == 0


async def _async(fn: Callable[[], bool]) -> bool:
    return fn()


async def test_close_leaves_unwritten_events_in_the_journal_and_next_start_replays(
    proxied, db, tmp_path
) -> None:
    """Shutting down with PostgreSQL away leaves the events in the journal; the next writer
    (another process, as far as the flock is concerned) replays them exactly once."""
    proxy, dsn = proxied
    journal_dir = tmp_path / "journal"
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        writer = AuditWriter(
            pool, journal=Journal(journal_dir), write_timeout=1.0, probe_interval=0.1
        )
        writer.start()
        proxy.cut()
        for event in make_events(300):
            writer.emit(event)
        await writer.close(timeout=0.5)
        assert journal_lines(journal_dir) == 300
        assert await count_rows(db) == 0
        proxy.restore()
        again = AuditWriter(pool, journal=Journal(journal_dir), probe_interval=0.1)
        again.start()
        await eventually(lambda: _has(db, "", 300))
        await again.close()
    finally:
        await pool.close()
    assert await count_rows(db) == 300
    assert await db.fetchval("SELECT count(DISTINCT event_id) FROM audit_events") == 300
    assert journal_lines(journal_dir) == 0


async def test_postgres_cut_mid_stream_cache_hits_served_and_every_row_lands_once(
    make_client, settings, mapped, proxied
) -> None:
    """PostgreSQL unreachable mid-stream: cache hits stay 200; afterwards each has one row."""
    proxy, dsn = proxied
    client = await make_client(settings, database_url=dsn, audit_write_timeout=1.0)
    writer = client.server.app[AUDIT]
    writer._probe_interval = 0.2  # recover quickly in a test; production default is 1 s
    warm = await client.post(V1, json=BODY, headers=auth())
    assert warm.status == 200
    sent: list[tuple[str, int]] = []
    prefix = f"cut-{uuid.uuid4().hex[:8]}-"

    async def burst(n: int) -> None:
        for _ in range(n):
            rid = f"{prefix}{len(sent)}"
            resp = await client.post(V1, json=BODY, headers={**auth(), "X-Request-ID": rid})
            sent.append((rid, resp.status))

    await burst(40)
    proxy.cut()
    await burst(40)
    await eventually(lambda: _async(lambda: writer.degraded))
    await burst(40)  # served while the events wait in the journal
    assert journal_lines(Path(settings.audit_spool_dir)) >= 80
    proxy.restore()
    await burst(40)
    assert [status for _, status in sent] == [200] * 160
    await eventually(lambda: _has(mapped, prefix, 160), timeout=20)
    await eventually(lambda: _async(lambda: journal_lines(Path(settings.audit_spool_dir)) == 0))
    counts = await mapped.fetch(
        "SELECT request_id, count(*) AS n FROM audit_events WHERE request_id LIKE $1"
        " GROUP BY request_id",
        prefix + "%",
    )
    assert {r["request_id"]: r["n"] for r in counts} == {rid: 1 for rid, _ in sent}


async def test_audit_required_fails_closed_when_the_journal_cannot_be_written(
    make_client, settings, mapped, tmp_path
) -> None:
    """AUDIT_REQUIRED and a journal that cannot be written: 503 unavailable and no token, from
    the very first request; each refusal still has its row (held in memory, then written)."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the journal directory should be")
    client = await make_client(
        settings, audit_required=True, audit_spool_dir=str(blocker / "journal")
    )
    writer = client.server.app[AUDIT]
    for rid in ("req-first", "req-second"):
        refused = await client.post(V1, json=BODY, headers={**auth(), "X-Request-ID": rid})
        assert refused.status == 503
        body = await refused.json()
        assert body["error"]["code"] == "unavailable"
        assert "token" not in body
        assert refused.headers["Retry-After"]
    assert writer.spool_failing
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_audit_spool_failing 1.0" in metrics
    assert "gateway_audit_events_memory_only_total 2.0" in metrics
    await eventually(lambda: _has(mapped, "req-", 2), timeout=20)
    rows = await mapped.fetch(
        "SELECT request_id, event, status, token_sha256, detail->>'reason' AS reason"
        " FROM audit_events WHERE request_id LIKE 'req-%'"
    )
    assert {tuple(r) for r in rows} == {
        ("req-first", "unavailable", 503, None, "audit"),
        ("req-second", "unavailable", 503, None, "audit"),
    }


async def test_audit_required_keeps_serving_through_a_postgres_outage(
    make_client, settings, mapped, proxied
) -> None:
    """AUDIT_REQUIRED with PostgreSQL away but the journal writable: tokens flow (each event is
    journaled first), and every answered request has its row once PostgreSQL is back."""
    proxy, dsn = proxied
    client = await make_client(
        settings, database_url=dsn, audit_required=True, audit_write_timeout=1.0
    )
    client.server.app[AUDIT]._probe_interval = 0.2
    assert (await client.post(V1, json=BODY, headers=auth())).status == 200
    proxy.cut()
    statuses = [
        (await client.post(V1, json=BODY, headers={**auth(), "X-Request-ID": f"req-{i}"})).status
        for i in range(30)
    ]
    assert statuses == [200] * 30
    proxy.restore()
    await eventually(lambda: _has(mapped, "req-", 30), timeout=20)
    assert await count_rows(mapped, "req-") == 30


async def test_copy_line_round_trips_hostile_text_through_postgres(pool, db) -> None:
    """Tabs, newlines, backslashes, NUL, lone surrogates and non-ASCII survive the text-COPY line:
    PostgreSQL stores the text (NUL and surrogates escaped as clean_text does)."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    event = AuditEvent(
        event="token_issued",
        status=200,
        request_id="rt",
        subject="a\tb\\c\nd\re",
        tenant_id="tën-ant ✓",
        user_agent="bad\udcff ua\x00",
        client_ip="10.0.0.1",
        expires_at=expires.timestamp(),
        latency_ms=1.5,
        detail={"reason": "x\\y\t"},
        cache_hit=False,
    )
    await write_batch(pool, [event], fresh=True)
    row = await db.fetchrow("SELECT * FROM audit_events WHERE request_id = 'rt'")
    assert row["subject"] == "a\tb\\c\nd\re"
    assert row["tenant_id"] == "tën-ant ✓"
    assert row["user_agent"] == "bad\\udcff ua\\x00"
    assert str(row["client_ip"]) == "10.0.0.1"
    assert abs((row["expires_at"] - expires).total_seconds()) < 1e-5
    assert abs(row["occurred_at"].timestamp() - event.occurred_at) < 1e-5
    assert str(row["event_id"]) == event.event_id
    assert orjson.loads(row["detail"]) == {"reason": "x\\y\t"}
    assert (row["cache_hit"], row["latency_ms"]) == (False, 1.5)


async def test_hostile_text_is_stored_escaped_and_never_stops_the_trail(client, mapped) -> None:
    """A NUL in the JWT's sub and undecodable bytes in User-Agent (which PostgreSQL would refuse)
    are stored escaped; the trail keeps writing the requests after them."""
    body = orjson.dumps(BODY)
    raw = (
        b"POST /api/v1/dashboards/iframe-token HTTP/1.1\r\nHost: gateway\r\n"
        b"Authorization: Bearer " + make_jwt(sub="a\x00b").encode() + b"\r\n"
        b"Content-Type: application/json\r\nUser-Agent: bad\xff\xfeua\r\n"
        b"X-Request-ID: hostile-1\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n" + body
    )
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(raw)
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    (row,) = await audit_rows(mapped, "hostile-1")
    assert row["subject"] == "a\\x00b"
    assert row["user_agent"].startswith("bad\\u") or row["user_agent"].startswith("bad\\x")
    after = await client.post(V1, json=BODY, headers=auth())
    assert len(await audit_rows(mapped, after.headers["X-Request-ID"])) == 1
