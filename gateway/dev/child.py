"""The lifecycle every local server shares: a foreground child in its own session, a data dir,
a readiness probe, a stop that leaves no process behind, and cleanup at exit.

Subclasses say how to start (`_argv`) and when the server is ready (`_probe`). tests/topology.py
may build Redis Cluster, Sentinel or PgBouncer processes on it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

from gateway.dev.wait import free_port, wait_until

if TYPE_CHECKING:
    import pwd
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["ChildServer", "EmbeddedServerError"]

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
POLL_INTERVAL = 0.02
LOG_TAIL_LINES = 30

_running: set[ChildServer] = set()


class EmbeddedServerError(RuntimeError):
    """A local server could not be initialised, started or reached."""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


class ChildServer:
    """A server process of the caller's own.

    `data_dir=None` makes a private temporary dir (outside pytest's temp root, whose mode a
    concurrent pytest session resets) that `close()` deletes; a given dir is the caller's and kept.
    The port (given, or free at the first start) is kept across stop()/start(), so clients
    configured with the URL reconnect to the restarted server.
    """

    _stop_signal = signal.SIGTERM
    _temp_prefix = "gw-server-"

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self._owns_dir = data_dir is None
        given = Path(tempfile.mkdtemp(prefix=self._temp_prefix)) if data_dir is None else data_dir
        self.data_dir = Path(given).absolute()
        self._chosen_port = port
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        _running.add(self)  # so the exit hook stops it and deletes a dir it made

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

    @property
    def url(self) -> str:
        """Connection URL of the running server."""
        raise NotImplementedError

    def start(self) -> str:
        """Start the server (again, on the same port), wait until it is ready; its URL."""
        if self._process is not None:
            return self.url
        user = self._prepare()
        self._chosen_port = self._chosen_port or free_port()
        self._port = self._chosen_port
        self._launch(self._argv(), user)
        self._wait_ready()
        return self.url

    def _prepare(self) -> pwd.struct_passwd | None:
        """Make the data dir ready; the system user to run as, if any."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return None

    def _argv(self) -> Sequence[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        """Whether the server serves sessions now (not merely accepts connections)."""
        raise NotImplementedError

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

    def _wait_ready(self) -> None:
        process = self._process

        def ready() -> bool:
            if process is not None and process.poll() is not None:
                self._fail(f"exited with code {process.returncode} during startup")
            return self._probe()

        try:
            wait_until(ready, timeout=STARTUP_TIMEOUT, interval=POLL_INTERVAL)
        except TimeoutError:
            self._fail(f"was not ready within {STARTUP_TIMEOUT:.0f}s")

    def _fail(self, what: str) -> None:
        msg = f"{type(self).__name__} on port {self._port} {what}; log {self.log_path}:\n"
        self.stop()
        raise EmbeddedServerError(msg + _tail(self.log_path))

    def stop(self) -> None:
        """Stop the server and every process it started; safe to call more than once."""
        process, self._process = self._process, None
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

    def close(self) -> None:
        """Stop, and delete the data dir if this server made it."""
        self.stop()
        _running.discard(self)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _close_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.close()


atexit.register(_close_all)
