"""The servers a benchmark needs: PostgreSQL and Redis, and the floor, naive and gateway apps."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
import redis

from bench.workload import API_KEY_ID, JWT_SECRET, SIGNING_SECRET

RAISED_LIMITS = (
    "GATEWAY_RATE_LIMIT_SUBJECT_MINTS",
    "GATEWAY_RATE_LIMIT_TENANT_MINTS",
    "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND",
    "GATEWAY_RATE_LIMIT_REQUEST_BURST",
)


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def services(database_url: str, redis_url: str, work: Path) -> Iterator[tuple[str, str]]:
    """URLs of PostgreSQL and Redis: the machine's when they answer, else embedded ones."""
    with contextlib.ExitStack() as stack:
        pg, rd = database_url, redis_url
        if not _reachable(pg, 5432) or not _reachable(rd, 6379):
            from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: PLC0415

            if not _reachable(pg, 5432):
                server = EmbeddedPostgres(work / "pg")
                pg = server.start()
                stack.callback(server.stop)
            if not _reachable(rd, 6379):
                rserver = EmbeddedRedis(work / "redis")
                rd = rserver.start()
                stack.callback(rserver.stop)
        yield pg, rd


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch(pg: str, redis_url: str) -> Iterator[tuple[str, str]]:
    """A database and a Redis key prefix of the run's own, both removed at the end."""
    name = f"gw_bench_{uuid.uuid4().hex[:10]}"
    prefix = f"gwbench:{uuid.uuid4().hex[:10]}:"
    asyncio.run(_admin(pg, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(pg)._replace(path="/" + name)), prefix
    finally:
        asyncio.run(_admin(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
        client.close()


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess: started, waited for until /healthz answers, stopped."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {' '.join(argv[-3:])} exited early; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"bench: server not ready; see {log}") from None
                time.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        """The server's process and every process it started (workers)."""
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@dataclass
class Launcher:
    """Starts the run's servers with one environment: database, Redis, the bench's secrets."""

    dsn: str
    redis_url: str
    prefix: str
    work: Path
    overrides: list[str]

    def env(self, tag: str) -> dict[str, str]:
        """The environment a user would set, plus rate limits (when this build has any) raised."""
        env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": self.dsn,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_API_KEY_ID": API_KEY_ID,
            "GATEWAY_SIGNING_SECRET": SIGNING_SECRET,
            "GATEWAY_JWT_SECRET": JWT_SECRET,
            "GATEWAY_REDIS_PREFIX": _prefix(self.prefix, tag),
        }
        # Measure the path, not the limiter: every rate limit is raised out of the way.
        for name in RAISED_LIMITS:
            env.setdefault(name, "1000000")
        for item in self.overrides:
            name, _, value = item.partition("=")
            env[name] = value
        return env

    def floor(self, tag: str, workers: int = 1) -> Server:
        """bench/floor_app.py with `workers` processes sharing the port."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.floor_app", str(port), str(workers)]
        return Server(argv, self.env(tag), port, self.work / f"{tag}.log")

    def naive(self, tag: str) -> Server:
        """bench/naive_app.py: the vendor's flow, no cache."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.naive_app", str(port)]
        return Server(argv, self.env(tag), port, self.work / f"{tag}.log")

    def gateway(self, tag: str, workers: int = 1) -> Server:
        """`gateway serve`, as a user runs it."""
        port = free_port()
        exe = Path(sys.executable).parent / "gateway"
        argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway"]
        argv += ["serve", "--workers", str(workers)]
        env = {**self.env(tag), "GATEWAY_PORT": str(port)}
        return Server(argv, env, port, self.work / f"{tag}.log")

    def switched(self, tag: str, switches: tuple[str, ...], workers: int = 1) -> Server:
        """The gateway built by bench/apps.py with the named components switched off."""
        port = free_port()
        argv = [sys.executable, "-m", "bench.apps", "--workers", str(workers)]
        for name in switches:
            argv += ["--off", name]
        env = {**self.env(tag), "GATEWAY_PORT": str(port)}
        return Server(argv, env, port, self.work / f"{tag}.log")


def _prefix(run: str, tag: str) -> str:
    """The server's Redis key prefix: the run's, then its tag, or the tag's digest where the tag
    would take it past the gateway's 64 characters (a long list of components switched off)."""
    prefix = f"{run}{tag}:"
    if len(prefix) > 64:
        prefix = f"{run}{hashlib.sha256(tag.encode()).hexdigest()[:16]}:"
    return prefix
