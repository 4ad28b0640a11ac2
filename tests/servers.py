"""Gateway processes for the tests: their environment, start, stop, and waiting until healthy.

The servers themselves (PostgreSQL, Redis) come from gateway.dev.embedded, the waiting from
gateway.dev.wait; both are re-exported here for the tests' convenience.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from gateway.dev.environ import gateway_environ
from gateway.dev.wait import eventually, free_port, wait_port, wait_until
from gateway.settings import Settings

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "env_without_gateway",
    "eventually",
    "free_port",
    "gateway_env",
    "start_gateway",
    "stop_gateway",
    "wait_healthy",
    "wait_port",
    "wait_until",
]


def env_without_gateway() -> dict[str, str]:
    """This process's environment without GATEWAY_* variables (for CLI subprocesses)."""
    return gateway_environ()


def gateway_env(settings: Settings, port: int, **changes: object) -> dict[str, str]:
    """Environment for `python -m gateway serve` with the test's servers, prefix and secrets;
    `changes` add or override settings by field name (None unsets one)."""
    values: dict[str, object] = {
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "redis_prefix": settings.redis_prefix,
        "api_key_id": settings.api_key_id,
        "signing_secret": settings.signing_secret,
        "jwt_secret": settings.jwt_secret or b"",
        "port": port,
        "log_level": "warning",
    }
    return gateway_environ(**(values | changes))


def start_gateway(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """`python -m gateway serve ARGS` with this environment, its logs going to `log`."""
    with log.open("ab") as sink:  # a file, not a pipe: nobody has to drain it
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *args],
            env=env,
            stdout=sink,
            stderr=sink,
        )


def stop_gateway(proc: subprocess.Popen) -> int:
    """SIGTERM, wait for a graceful exit (kill after 20 s); the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


async def wait_healthy(
    base: str,
    proc: subprocess.Popen | asyncio.subprocess.Process,
    timeout: float = 20.0,
    path: str = "/healthz",
) -> None:
    """Wait until the gateway at `base` answers 200 on `path` (and has not exited)."""
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            exited = proc.poll() if isinstance(proc, subprocess.Popen) else proc.returncode
            assert exited is None, f"gateway exited with {exited}"
            try:
                async with session.get(base + path) as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(answers, timeout=timeout, interval=0.1, what=f"gateway answering {path}")
