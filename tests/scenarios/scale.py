"""Gateway instances (real `gateway serve` processes) for the scale scenarios, and their calls."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from gateway.dev.wait import free_port
from gateway.settings import Settings
from tests.helpers import auth
from tests.servers import (
    env_without_gateway,
    gateway_env,
    start_gateway,
    stop_gateway,
    wait_healthy,
)

V1 = "/api/v1/dashboards/iframe-token"


class Instances:
    """N gateway processes sharing one configuration; every answer's status is tallied."""

    def __init__(self, urls: list[str], session: aiohttp.ClientSession) -> None:
        self.urls = urls
        self.session = session
        self.statuses: collections.Counter[int] = collections.Counter()

    async def token(self, index: int, body: dict, **jwt: object) -> tuple[int, dict]:
        """POST the token endpoint of instance `index`; (status, JSON answer)."""
        async with self.session.post(self.urls[index] + V1, json=body, headers=auth(**jwt)) as resp:
            self.statuses[resp.status] += 1
            return resp.status, await resp.json()

    async def metric(self, index: int, name: str) -> float:
        """The sum of one metric's samples on instance `index`."""
        async with self.session.get(self.urls[index] + "/metrics") as resp:
            text = await resp.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )

    async def ready(self, index: int) -> tuple[int, dict]:
        """GET /readyz of instance `index`."""
        async with self.session.get(self.urls[index] + "/readyz") as resp:
            return resp.status, await resp.json()


@contextlib.asynccontextmanager
async def instances(
    settings: Settings, count: int, logs: Path, **env: str
) -> AsyncIterator[Instances]:
    """Start `count` gateways with the test's settings plus `env`; stop them afterwards."""
    procs: list[subprocess.Popen] = []
    urls = []
    try:
        for i in range(count):
            port = free_port()
            procs.append(start_gateway(gateway_env(settings, port) | env, logs / f"gw-{i}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            await wait_healthy(url, proc, timeout=30.0)
        async with aiohttp.ClientSession() as session:
            yield Instances(urls, session)
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                stop_gateway(proc)


async def cli(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    """`python -m gateway ARGS` against the test's database and Redis, plus `env`."""
    full = env_without_gateway() | {
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_REDIS_URL": settings.redis_url,
        "GATEWAY_REDIS_PREFIX": settings.redis_prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env=full | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
