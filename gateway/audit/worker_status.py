"""Each worker's state in a small file beside its journal, for `gateway audit status`.

The file is allocated once at start and then overwritten in place, so it can still be updated
when the disk is full (that is exactly when an operator wants to read it). The worker holds an
flock on it while it lives: a file whose lock can be taken is a gone worker's.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

STATUS_PREFIX = ".worker-"
STATUS_SUFFIX = ".json"
STATUS_BYTES = 2048


class StatusFile:
    """This worker's status file; every method is a no-op once the file could not be made."""

    def __init__(self, directory: Path) -> None:
        self._fd: int | None = None
        self.path = directory / f"{STATUS_PREFIX}{os.getpid()}{STATUS_SUFFIX}"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _remove_gone(directory)
            # Locked under a hidden name, then renamed: a sibling starting at the same moment
            # never sees it unlocked and removes it as a gone worker's.
            tmp = directory / f".{self.path.name}.tmp"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.pwrite(fd, b" " * STATUS_BYTES, 0)
            tmp.rename(self.path)
            self._fd = fd
        except OSError as exc:
            log.warning("audit status file %s not written: %s", self.path, exc)

    def write(self, state: dict[str, Any]) -> None:
        """Overwrite the file with `state` (JSON, padded to its fixed size)."""
        if self._fd is None:
            return
        data = orjson.dumps(state)
        if len(data) > STATUS_BYTES:
            data = orjson.dumps({**state, "last_error": str(state.get("last_error"))[:200]})
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, data[:STATUS_BYTES].ljust(STATUS_BYTES), 0)

    def close(self) -> None:
        """Remove the file: a worker that stopped cleanly has nothing to report."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def read_statuses(directory: Path) -> list[dict[str, Any]]:
    """Every worker status file in `directory`, each with `alive` (whether its worker lives)."""
    found = []
    for path in sorted(directory.glob(f"{STATUS_PREFIX}*{STATUS_SUFFIX}")):
        try:
            data = orjson.loads(path.read_bytes().rstrip() or b"{}")
        except (OSError, orjson.JSONDecodeError):
            continue
        data["alive"] = _locked(path)
        found.append(data)
    return found


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove_gone(directory: Path) -> None:
    for path in directory.glob(f"{STATUS_PREFIX}*{STATUS_SUFFIX}"):
        if not _locked(path):
            with contextlib.suppress(OSError):
                path.unlink()
