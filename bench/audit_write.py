"""Audit write throughput into a real PostgreSQL: the gateway's writer with and without its
journal, vs executemany vs one INSERT per event, measured in the same run (median of --runs runs);
then the hot-path CPU cost per request of building the event, encoding it, and the journal write
(fsync off / always), each against a same-run baseline.

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
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gateway.audit.event import COLUMNS, AuditEvent, copy_line
from gateway.audit.journal import Fsync, Journal, Segment
from gateway.audit.partitions import ensure_partitions
from gateway.audit.writer import AuditWriter
from gateway.ops.migrate import migrate

# Built from the constant column list.
INSERT = (
    f"INSERT INTO audit_events ({', '.join(COLUMNS)})"  # noqa: S608
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 1))})"
)


def make_event(i: int, expires: float) -> AuditEvent:
    """A realistic token_reused event, as the middleware builds it."""
    return AuditEvent(
        event="token_reused",
        status=200,
        request_id=uuid.uuid4().hex,
        subject=f"user-{i % 500}",
        tenant_id=f"org-{i % 50}",
        workspace_id="workspace-456",
        dashboard_id="dashboard-789",
        api_key_id="key-1",
        expires_at=expires,
        token_sha256="ab" * 32,
        cache_hit=True,
        client_ip=f"10.0.{i % 250}.{i % 200}",
        user_agent="Mozilla/5.0 (bench)",
        latency_ms=1.25,
    )


def make_events(n: int) -> list[AuditEvent]:
    """Realistic token_reused events for a handful of tenants."""
    expires = time.time() + 3600
    return [make_event(i, expires) for i in range(n)]


class NoJournal(Journal):
    """The writer without its journal (the baseline): nothing reaches the disk."""

    def append(self, line: bytes) -> Segment | None:
        """Pretend the line was written."""
        return self._seg

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self._seg = Segment(path=self.directory / "none", fd=-1)

    def committed(self, seg: Segment) -> None:
        """Nothing to free."""


async def run_writer(
    pool: asyncpg.Pool, events: list[AuditEvent], journal_dir: str, journal: str = "off"
) -> float:
    """The gateway's AuditWriter with its production defaults (batch 500, 200 ms, queue 100k),
    with the journal (fsync off or batch) or without it ("none")."""
    store = (
        NoJournal(journal_dir) if journal == "none" else Journal(journal_dir, fsync=Fsync(journal))
    )
    writer = AuditWriter(pool, journal=store)
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


WRITER_METHODS = ("writer", "writer-batch", "writer-none")


async def bench(dsn: str, n: int, n_single: int, runs: int) -> None:
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    target = urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    methods = (*WRITER_METHODS, "executemany", "single")
    try:
        conn = await asyncpg.connect(target)
        await migrate(conn)
        await ensure_partitions(conn, days_ahead=1)
        pool = await asyncpg.create_pool(target, min_size=1, max_size=10)
        results: dict[str, list[float]] = {m: [] for m in methods}
        with tempfile.TemporaryDirectory() as journal_dir:
            for run in range(runs):
                for method in methods:
                    await conn.execute("TRUNCATE audit_events")
                    await conn.execute("CHECKPOINT")
                    count = n_single if method == "single" else n
                    events = make_events(count)
                    if method in WRITER_METHODS:
                        mode = {"writer": "off", "writer-batch": "batch"}.get(method, "none")
                        elapsed = await run_writer(pool, events, journal_dir, mode)
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
        ("writer", "AuditWriter with its journal (COPY, batches of 500; fsync off, the default)"),
        ("writer-batch", "AuditWriter with its journal, GATEWAY_AUDIT_FSYNC=batch"),
        ("writer-none", "AuditWriter without a journal (baseline)"),
        ("executemany", "executemany INSERT, 500 per call"),
        ("single", "one INSERT per event"),
    ):
        print(f"| {label} | {med[method]:,.0f} |")
    print(
        f"\nwriter / one-per-event = {med['writer'] / med['single']:.1f}x;"
        f" writer / executemany = {med['writer'] / med['executemany']:.1f}x;"
        f" with journal / without = {med['writer'] / med['writer-none']:.2f}x"
    )


def _cpu_us(step: Callable[[int], object], n: int, repeats: int) -> float:
    """Median CPU microseconds per call of step(i) over `repeats` rounds of n calls."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        for i in range(n):
            step(i)
        samples.append((time.process_time() - started) / n * 1e6)
    return statistics.median(samples)


def hot_path(n: int, repeats: int) -> None:
    """CPU per request on the request's path: event, line, journal write; same-run baselines."""
    expires = time.time() + 3600
    events = [make_event(i, expires) for i in range(n)]
    lines = [copy_line(e) for e in events]
    results = {}
    with tempfile.TemporaryDirectory() as journal_dir:
        for mode in ("off", "always"):
            journal = Journal(journal_dir, fsync=Fsync(mode))
            count = n if mode == "off" else max(200, n // 100)
            # Baseline in the same run: the same loop, the line taken from a list, nothing written.
            base = _cpu_us(lambda i: lines[i], count, repeats)
            write = _cpu_us(lambda i, j=journal: j.append(lines[i]), count, repeats)
            results[mode] = write - base
            wall = time.perf_counter()
            for i in range(count):
                journal.append(lines[i])
            results[f"{mode}-wall"] = (time.perf_counter() - wall) / count * 1e6
            journal.close()
        base = _cpu_us(lambda i: expires, n, repeats)
        build = _cpu_us(lambda i: make_event(i, expires), n, repeats)
        encode = _cpu_us(lambda i: copy_line(events[i]), n, repeats)
    print(f"\nhot path, CPU us per request (median of {repeats} rounds of {n}; same-run baseline):")
    print("| step | CPU us | wall us |")
    print("|---|---:|---:|")
    print(f"| build the AuditEvent (bench's field values included) | {build - base:.2f} | |")
    print(f"| encode its text-COPY line (copy_line) | {encode - base:.2f} | |")
    print(
        f"| journal write, fsync off (default) | {results['off']:.2f} | {results['off-wall']:.2f} |"
    )
    print(
        f"| journal write, GATEWAY_AUDIT_FSYNC=always | {results['always']:.2f}"
        f" | {results['always-wall']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single-events", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hot-path-events", type=int, default=100_000)
    args = parser.parse_args()
    hot_path(args.hot_path_events, repeats=5)
    try:
        import uvloop  # noqa: PLC0415 - the gateway runs on uvloop where available

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(bench(args.dsn, args.events, args.single_events, args.runs))


if __name__ == "__main__":
    main()
