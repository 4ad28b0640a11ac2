"""The audit writer through PgBouncer in transaction mode: no session state survives a batch."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.audit.copy import write_batch
from gateway.audit.event import AuditEvent
from gateway.audit.journal import Journal
from gateway.audit.writer import AuditWriter
from gateway.dev.embedded import free_port
from tests.audit.journal_files import journal_lines
from tests.helpers import eventually

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def bouncer_dsn(database_url: str) -> Iterator[str]:
    """A PgBouncer (pool_mode=transaction, ONE server connection) in front of the test database."""
    if not Path(PGBOUNCER).exists():
        pytest.fail("pgbouncer is not installed (.ci/run installs the Debian package)")
    parts = urlsplit(database_url)
    port = free_port()
    # PgBouncer refuses to run as root: it runs as nobody, so its files must be readable by all.
    home = Path(tempfile.mkdtemp(prefix="bouncer-"))
    home.chmod(0o755)
    (home / "users.txt").write_text(f'"{parts.username or "postgres"}" ""\n')
    (home / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={parts.hostname} port={parts.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {home / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (home / name).chmod(0o644)
    proc = subprocess.Popen(
        [PGBOUNCER, "-u", "nobody", str(home / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


async def _connect(dsn: str) -> asyncpg.Pool:
    async def attempt() -> bool:
        try:
            conn = await asyncpg.connect(dsn, statement_cache_size=0)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    await eventually(attempt)
    # asyncpg's default statement cache: the writer must not depend on prepared statements.
    return await asyncpg.create_pool(dsn, min_size=4, max_size=4)


async def test_writer_through_pgbouncer_transaction_mode(bouncer_dsn, db, tmp_path) -> None:
    """Four client connections share one server connection: concurrent idempotent batches, a
    fresh stream through the writer and a poisoned row all land once, and no staging table is
    left behind in the server session (ON COMMIT DROP)."""
    pool = await _connect(bouncer_dsn)
    try:
        batches = [
            [
                AuditEvent(event="token_reused", status=200, request_id=f"b{b}-{i}")
                for i in range(50)
            ]
            for b in range(12)
        ]
        # Each batch twice, concurrently: retries after an unknown outcome.
        await asyncio.gather(*(write_batch(pool, b) for b in batches + batches))
        journal_dir = tmp_path / "journal"
        writer = AuditWriter(pool, journal=Journal(journal_dir), flush_interval=0.05)
        writer.start()
        for i in range(300):
            status = 70_000 if i == 150 else 200
            writer.emit(AuditEvent(event="token_issued", status=status, request_id=f"w-{i}"))

        async def landed() -> bool:
            n = await db.fetchval("SELECT count(*) FROM audit_events WHERE request_id LIKE 'w-%'")
            return n == 299

        await eventually(landed)
        await eventually(lambda: _true(journal_lines(journal_dir) == 0))
        await writer.close()
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE request_id LIKE 'b%'") == 600
    stages = await db.fetchval("SELECT count(*) FROM pg_class WHERE relname = 'audit_events_stage'")
    assert stages == 0


async def _true(value: bool) -> bool:
    return value
