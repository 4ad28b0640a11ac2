"""Audit write throughput into a real PostgreSQL: the gateway's writer vs executemany vs one INSERT
per event, measured in the same run (median of --runs runs each).

    python bench/audit_write.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

It creates a throwaway database on that server, migrates it, and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.audit.partitions import ensure_partitions
from gateway.audit.spool import Spool
from gateway.audit.writer import COLUMNS, AuditEvent, AuditWriter
from gateway.ops.migrate import migrate

# Built from the constant column list.
INSERT = (
    f"INSERT INTO audit_events ({', '.join(COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
)


def make_events(n: int) -> list[AuditEvent]:
    """Realistic token_reused events for a handful of tenants."""
    now = datetime.now(UTC)
    return [
        AuditEvent(
            event="token_reused",
            status=200,
            request_id=uuid.uuid4().hex,
            subject=f"user-{i % 500}",
            tenant_id=f"org-{i % 50}",
            workspace_id="workspace-456",
            dashboard_id="dashboard-789",
            api_key_id="key-1",
            expires_at=now,
            token_sha256="ab" * 32,
            cache_hit=True,
            client_ip=f"10.0.{i % 250}.{i % 200}",
            user_agent="Mozilla/5.0 (bench)",
            latency_ms=1.25,
        )
        for i in range(n)
    ]


async def run_writer(pool: asyncpg.Pool, events: list[AuditEvent], spool_dir: str) -> float:
    """The gateway's AuditWriter with its production defaults (batch 500, 200 ms, queue 100k)."""
    writer = AuditWriter(pool, spool=Spool(spool_dir))
    writer.start()
    started = time.perf_counter()
    # Fed in request-sized trickles with the loop free in between, as a busy gateway would.
    for i in range(0, len(events), 1000):
        for event in events[i : i + 1000]:
            writer.emit(event)
        await asyncio.sleep(0)
    while writer.written < len(events):  # noqa: ASYNC110 - polling a counter is the measurement
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    await writer.close()
    assert writer.dropped == 0
    return elapsed


async def run_executemany(pool: asyncpg.Pool, events: list[AuditEvent]) -> float:
    """executemany INSERT, 500 events a call, each call its own transaction."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for i in range(0, len(events), 500):
            records = [e.record() for e in events[i : i + 500]]
            async with conn.transaction():
                await conn.executemany(INSERT, records)
    return time.perf_counter() - started


async def run_single(pool: asyncpg.Pool, events: list[AuditEvent]) -> float:
    """One INSERT (and commit) per event."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for event in events:
            await conn.execute(INSERT, *event.record())
    return time.perf_counter() - started


async def bench(dsn: str, n: int, n_single: int, runs: int) -> None:
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    target = urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    try:
        conn = await asyncpg.connect(target)
        await migrate(conn)
        await ensure_partitions(conn, days_ahead=1)
        pool = await asyncpg.create_pool(target, min_size=1, max_size=10)
        results: dict[str, list[float]] = {"writer": [], "executemany": [], "single": []}
        with tempfile.TemporaryDirectory() as spool_dir:
            for run in range(runs):
                for method in ("writer", "executemany", "single"):
                    await conn.execute("TRUNCATE audit_events")
                    await conn.execute("CHECKPOINT")
                    count = n_single if method == "single" else n
                    events = make_events(count)
                    if method == "writer":
                        elapsed = await run_writer(pool, events, spool_dir)
                    elif method == "executemany":
                        elapsed = await run_executemany(pool, events)
                    else:
                        elapsed = await run_single(pool, events)
                    rows = await conn.fetchval("SELECT count(*) FROM audit_events")
                    assert rows == count, (method, rows, count)
                    results[method].append(count / elapsed)
                    print(
                        f"run {run + 1} {method:<12} {count:>7} events {count / elapsed:>10,.0f}/s"
                    )
        await pool.close()
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    med = {m: statistics.median(v) for m, v in results.items()}
    version = "PostgreSQL " + urlsplit(dsn).netloc.rsplit("@", 1)[-1]
    print(f"\nmedian of {runs} runs ({version}, {n} events; one-per-event {n_single}):")
    print("| method | events/s |")
    print("|---|---:|")
    for method, label in (
        ("writer", "gateway AuditWriter (COPY, batches of 500)"),
        ("executemany", "executemany INSERT, 500 per call"),
        ("single", "one INSERT per event"),
    ):
        print(f"| {label} | {med[method]:,.0f} |")
    print(
        f"\nwriter / one-per-event = {med['writer'] / med['single']:.1f}x;"
        f" writer / executemany = {med['writer'] / med['executemany']:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single-events", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - the gateway runs on uvloop where available

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(bench(args.dsn, args.events, args.single_events, args.runs))


if __name__ == "__main__":
    main()
