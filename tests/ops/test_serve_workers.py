"""`gateway serve --workers 2` as a user runs it: both workers answer, with one token per key."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import asyncpg
import psutil

from gateway.tokens.directory import add_mapping
from tests.helpers import auth
from tests.servers import free_port, gateway_env, wait_healthy

V1 = "/api/v1/dashboards/iframe-token"


async def test_two_workers_hand_out_the_same_token(
    settings, database_url: str, db: asyncpg.Connection, tmp_path
) -> None:
    """Many connections over two worker processes all get one token; both workers serve."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    port = free_port()
    env = gateway_env(
        settings,
        port,
        redis_timeout=2,
        # 400 requests from one caller: the per-worker limit must not refuse them.
        rate_limit_requests_per_second=100000,
        rate_limit_request_burst=100000,
        audit_spool_dir=tmp_path / "spool",
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "serve", "--workers", "2"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, proc, timeout=30.0, path="/readyz")
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        cpu_before = [w.cpu_times() for w in workers]
        body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
        headers = auth()
        # A connection per request, so the kernel spreads them over both workers' sockets.
        connector = aiohttp.TCPConnector(limit=50, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> str:
                async with session.post(url + V1, json=body, headers=headers) as resp:
                    assert resp.status == 200
                    return (await resp.json())["token"]

            tokens = await asyncio.gather(*(one() for _ in range(400)))
        assert len(set(tokens)) == 1
        used = [
            (a.user + a.system) - (b.user + b.system)
            for a, b in zip((w.cpu_times() for w in workers), cpu_before, strict=True)
        ]
        assert all(u > 0.0 for u in used), f"a worker served nothing: {used}"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()[-2000:]
