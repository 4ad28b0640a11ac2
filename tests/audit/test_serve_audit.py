"""`gateway serve` as a real process: SIGKILL with a journaled backlog, SIGTERM with a full queue,
and SIGKILL of two workers mid-burst, in both audit modes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from gateway.dev.wait import free_port
from gateway.tokens.directory import add_mapping
from tests import servers
from tests.audit.journal_files import journal_lines
from tests.helpers import auth, eventually

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


class Gateway:
    """One `python -m gateway serve` child process."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = int(env["GATEWAY_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *args],
            env=env,
            cwd=log.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own process group: the test kills the runner and its workers at once.
            start_new_session=True,
        )

    async def ready(self) -> None:
        await servers.wait_healthy(self.base, self.proc)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.kill_group()
        self.wait()

    def kill_group(self) -> None:
        """SIGKILL the whole process group (the runner and every worker), as an OOM killer or
        `kill -9 -PGID` would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def gateway_env(proxied, settings, tmp_path) -> dict[str, str]:
    """The environment of a gateway process talking to PostgreSQL through the proxy."""
    return servers.gateway_env(
        settings,
        free_port(),
        database_url=proxied[1],
        audit_spool_dir=tmp_path / "spool",
        audit_write_timeout=1,
        redis_timeout=2,
        log_format="text",
        # Thousands of requests from one caller: the per-worker limit must not refuse them.
        rate_limit_requests_per_second=100000,
        rate_limit_request_burst=100000,
    )


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    """The demo mapping."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def post(session: aiohttp.ClientSession, base: str, request_id: str) -> int:
    headers = {**auth(), "X-Request-ID": request_id}
    async with session.post(base + V1, json=BODY, headers=headers) as resp:
        await resp.read()
        return resp.status


async def rows_per_request(conn: asyncpg.Connection, prefix: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT request_id, count(*) AS n FROM audit_events WHERE request_id LIKE $1"
        " GROUP BY request_id",
        prefix + "%",
    )
    return {r["request_id"]: r["n"] for r in rows}


async def test_sigkill_with_journaled_events_then_restart_replays_each_once(
    proxied, gateway_env, mapped, tmp_path
) -> None:
    """Killed with SIGKILL while events wait in the journal (PostgreSQL away), a restarted
    gateway replays them: exactly one row per request, and the journal is emptied."""
    proxy, _ = proxied
    journal_dir = Path(gateway_env["GATEWAY_AUDIT_SPOOL_DIR"])
    log = tmp_path / "gateway.log"
    prefix = f"kill-{uuid.uuid4().hex[:8]}-"
    # Below the gateway's Redis pool size, so every request finds a Redis connection.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        first = Gateway(gateway_env, log)
        try:
            await first.ready()
            assert await post(session, first.base, prefix + "warm") == 200
            proxy.cut()
            statuses = await asyncio.gather(
                *(post(session, first.base, f"{prefix}{i}") for i in range(200))
            )
            assert statuses == [200] * 200  # cache hits need no database
            await eventually(lambda: _true(journal_lines(journal_dir) >= 200))
            assert await rows_per_request(mapped, prefix + "1") == {}
            first.proc.send_signal(signal.SIGKILL)
            assert first.wait() == -signal.SIGKILL
        finally:
            first.kill()

        proxy.restore()
        second = Gateway(gateway_env, log)
        try:
            await second.ready()
            expected = {f"{prefix}{i}": 1 for i in range(200)}

            async def replayed() -> bool:
                got = await rows_per_request(mapped, prefix)
                return all(got.get(k) for k in expected)

            await eventually(replayed)
            await eventually(lambda: _true(journal_lines(journal_dir) == 0))
            second.proc.send_signal(signal.SIGTERM)
            assert second.wait() == 0
        finally:
            second.kill()
    got = await rows_per_request(mapped, prefix)
    got.pop(prefix + "warm", None)
    assert got == expected
    assert journal_lines(journal_dir) == 0


async def _true(value: bool) -> bool:
    return value


async def test_sigterm_with_5000_events_queued_writes_all_and_exits_0(
    gateway_env, mapped, tmp_path
) -> None:
    """SIGTERM with 5,000 events held in memory: the process exits 0 and all 5,000 rows exist."""
    # One batch that only fills up and never ages out: everything waits in memory until SIGTERM.
    env = {
        **gateway_env,
        "GATEWAY_AUDIT_BATCH_SIZE": "100000",
        "GATEWAY_AUDIT_FLUSH_INTERVAL": "60",
    }
    prefix = f"term-{uuid.uuid4().hex[:8]}-"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        gateway = Gateway(env, tmp_path / "gateway.log")
        try:
            await gateway.ready()
            statuses = await asyncio.gather(
                *(post(session, gateway.base, f"{prefix}{i}") for i in range(5000))
            )
            assert statuses == [200] * 5000

            async def all_queued() -> bool:
                async with session.get(gateway.base + "/metrics") as resp:
                    return "gateway_audit_queue_depth 5000.0" in await resp.text()

            await eventually(all_queued)
            assert await rows_per_request(mapped, prefix) == {}
            gateway.proc.send_signal(signal.SIGTERM)
            assert gateway.wait() == 0
        finally:
            gateway.kill()
    got = await rows_per_request(mapped, prefix)
    assert len(got) == 5000
    assert set(got.values()) == {1}
    assert journal_lines(Path(env["GATEWAY_AUDIT_SPOOL_DIR"])) == 0


@pytest.mark.parametrize("required", [False, True], ids=["default", "fail-closed"])
async def test_sigkill_of_two_workers_mid_burst_loses_no_answered_event(
    required, database_url, gateway_env, db, tmp_path
) -> None:
    """`serve --workers 2`, 8 clients over 200 tenants, the process group SIGKILLed mid-burst,
    restarted: every answered request has exactly one row, in both audit modes. The writer is
    set to hold events in memory for seconds, so only the journal can have kept them."""
    for t in range(200):
        await add_mapping(db, f"org-{t}", "workspace-456", f"dash-{t}", is_default=True)
    env = {
        **gateway_env,
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_AUDIT_REQUIRED": "true" if required else "false",
        "GATEWAY_AUDIT_FLUSH_INTERVAL": "5",
        "GATEWAY_AUDIT_BATCH_SIZE": "100000",
    }
    journal_dir = Path(env["GATEWAY_AUDIT_SPOOL_DIR"])
    log = tmp_path / "gateway.log"
    prefix = f"burst-{uuid.uuid4().hex[:8]}-"
    answered: dict[str, int] = {}
    sent = 0
    killed = asyncio.Event()

    async def client(n: int, session: aiohttp.ClientSession, base: str) -> None:
        nonlocal sent
        for i in range(400):
            if killed.is_set():
                return
            rid, tenant = f"{prefix}{n}-{i}", f"org-{(n * 400 + i) % 200}"
            headers = {**auth(tenant=tenant, sub=f"user-{n}"), "X-Request-ID": rid}
            body = {"tenant_id": tenant, "workspace_id": "workspace-456"}
            sent += 1
            try:
                async with session.post(base + V1, json=body, headers=headers) as resp:
                    await resp.read()
                    answered[rid] = resp.status
            except aiohttp.ClientError:
                return  # killed: this one was never answered

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        first = Gateway(env, log, "--workers", "2")
        try:
            await first.ready()
            burst = asyncio.gather(*(client(n, session, first.base) for n in range(8)))
            await eventually(lambda: _true(len(answered) >= 300), timeout=60)

            async def journal_metrics() -> bool:
                # Summed over both workers (multiprocess mode), not stuck at 0.
                async with session.get(first.base + "/metrics") as resp:
                    text = await resp.text()
                return _value(text, "gateway_audit_spool_bytes") > 0 and (
                    _value(text, "gateway_audit_journal_segments") == 2
                )

            await eventually(journal_metrics)
            await eventually(lambda: _true(len(answered) >= 600), timeout=60)
            first.kill_group()
            killed.set()
            await burst
            assert first.wait() == -signal.SIGKILL
        finally:
            first.kill()
        assert journal_lines(journal_dir) >= len(answered) - 50  # shipped ones may be freed

        second = Gateway(env, log, "--workers", "2")
        try:
            await second.ready()

            async def all_rows() -> bool:
                got = await rows_per_request(db, prefix)
                return all(rid in got for rid in answered)

            await eventually(all_rows, timeout=30)
            await eventually(lambda: _true(journal_lines(journal_dir) == 0))
            second.proc.send_signal(signal.SIGTERM)
            assert second.wait() == 0
        finally:
            second.kill()
    got = await rows_per_request(db, prefix)
    statuses = collections.Counter(answered.values())
    print(  # quoted in the closing note
        f"audit_required={required}: sent {sent}, answered {len(answered)} {dict(statuses)},"
        f" rows of answered {sum(got.get(r, 0) for r in answered)}, rows {sum(got.values())}"
    )
    assert len(answered) >= 600
    assert statuses[200] >= 300
    assert {rid: got.get(rid) for rid in answered} == dict.fromkeys(answered, 1)
    assert set(got.values()) == {1}  # an unanswered request has at most one row too


def _value(text: str, name: str) -> float:
    for row in text.splitlines():
        if row.startswith(name + " "):
            return float(row.split()[1])
    return 0.0
