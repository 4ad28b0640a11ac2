"""`gateway serve` as a real process: SIGKILL with a spooled backlog, SIGTERM with a full queue."""

from __future__ import annotations

import asyncio
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
from tests.helpers import auth, eventually, spooled_lines

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


class Gateway:
    """One `python -m gateway serve` child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["GATEWAY_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"],
            env=env,
            cwd=log.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
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
            self.proc.kill()
        self.wait()


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


async def test_sigkill_with_spooled_events_then_restart_replays_each_once(
    proxied, gateway_env, mapped, tmp_path
) -> None:
    """Killed with SIGKILL while events sit in the spool, a restarted gateway replays them:
    exactly one row per request, and the spool is emptied."""
    proxy, _ = proxied
    spool_dir = Path(gateway_env["GATEWAY_AUDIT_SPOOL_DIR"])
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
            await eventually(lambda: _true(spooled_lines(spool_dir) >= 200))
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
            await eventually(lambda: _true(spooled_lines(spool_dir) == 0))
            second.proc.send_signal(signal.SIGTERM)
            assert second.wait() == 0
        finally:
            second.kill()
    got = await rows_per_request(mapped, prefix)
    got.pop(prefix + "warm", None)
    assert got == expected
    assert spooled_lines(spool_dir) == 0


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
    assert spooled_lines(Path(env["GATEWAY_AUDIT_SPOOL_DIR"])) == 0
