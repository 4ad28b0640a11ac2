"""The audit spool: append-only JSON-lines files that hold events PostgreSQL could not take.

Events go into segment files `audit-<uuid7>.jsonl` under one directory, one JSON object a line,
fsync'd once per appended batch. A process holds an exclusive `flock` on every segment it owns
for as long as it lives, so several workers can share the directory: a segment whose lock can be
taken belongs to a process that is gone and is adopted and replayed by whoever finds it. A segment
is deleted only after its rows are committed; until then a crash or restart replays it again,
which the idempotent write makes harmless.

Every method here does blocking file I/O: call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.infra.ids import uuid7

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "audit-"
SEGMENT_SUFFIX = ".jsonl"
# A segment is replayed and deleted whole; a bounded size keeps each replay step bounded too.
MAX_SEGMENT_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Segment:
    """One spool file this process holds the lock of."""

    path: Path
    fd: int
    size: int


class Spool:
    """A directory of segment files; safe to call from several threads, one file op at a time."""

    def __init__(
        self, directory: Path | str, *, max_segment_bytes: int = MAX_SEGMENT_BYTES
    ) -> None:
        self.directory = Path(directory)
        self._max_segment_bytes = max_segment_bytes
        self._lock = threading.Lock()
        self._active: Segment | None = None
        self._sealed: list[Segment] = []

    @property
    def pending_bytes(self) -> int:
        """Bytes in segments this process holds that are not yet replayed."""
        active = self._active.size if self._active is not None else 0
        return active + sum(s.size for s in self._sealed)

    @property
    def has_pending(self) -> bool:
        """Whether this process holds spooled events not yet replayed."""
        return self.pending_bytes > 0

    def append(self, lines: Iterable[bytes]) -> int:
        """Append JSON lines (each without its newline) and fsync; returns the bytes written.

        On failure the segment is cut back to its previous length, so a half-written line can
        never glue itself to the next batch; an OSError is raised for the caller to handle.
        """
        data = b"".join(line + b"\n" for line in lines)
        if not data:
            return 0
        with self._lock:
            if self._active is None or self._active.size >= self._max_segment_bytes:
                self._seal()
                self._active = self._open_segment()
            segment = self._active
            try:
                view = memoryview(data)
                while view:
                    written = os.write(segment.fd, view)
                    view = view[written:]
                os.fsync(segment.fd)
            except OSError:
                try:
                    os.ftruncate(segment.fd, segment.size)
                except OSError:
                    # Cannot restore a clean end: stop appending to this file at all.
                    self._seal()
                raise
            segment.size += len(data)
            return len(data)

    def claim(self) -> list[Segment]:
        """Seal the current segment and return every segment to replay, oldest first.

        That is this process's sealed segments plus any segment in the directory whose owner has
        died (its lock is free); those are locked now and become this process's to replay.
        """
        with self._lock:
            self._seal()
            owned = {s.path.name for s in self._sealed}
            if self.directory.is_dir():
                for path in sorted(self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
                    if path.name in owned:
                        continue
                    adopted = self._adopt(path)
                    if adopted is not None:
                        self._sealed.append(adopted)
            self._sealed.sort(key=lambda s: s.path.name)
            return list(self._sealed)

    def read(self, segment: Segment) -> list[bytes]:
        """The JSON lines of a segment, in order; a torn last line (crash mid-write) is skipped."""
        with segment.path.open("rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        if lines and lines[-1]:
            log.warning("audit spool %s ends in a partial line; skipped", segment.path.name)
        return [line for line in lines[:-1] if line]

    def done(self, segment: Segment) -> None:
        """The segment's rows are committed: delete it and release its lock."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            self._fsync_dir()
            os.close(segment.fd)
            self._sealed = [s for s in self._sealed if s is not segment]

    def close(self) -> None:
        """Release every lock; segments still holding events stay for the next start."""
        with self._lock:
            for segment in [*self._sealed, *([self._active] if self._active else [])]:
                with contextlib.suppress(OSError):
                    os.close(segment.fd)
            self._sealed = []
            self._active = None

    def _seal(self) -> None:
        if self._active is None:
            return
        if self._active.size > 0:
            self._sealed.append(self._active)
        else:
            # Nothing in it: delete rather than leave an empty file behind.
            with contextlib.suppress(OSError):
                self._active.path.unlink()
            os.close(self._active.fd)
        self._active = None

    def _open_segment(self) -> Segment:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"{SEGMENT_PREFIX}{uuid7().hex}{SEGMENT_SUFFIX}"
        # Locked under a hidden name first, then renamed: no other process can ever see the
        # segment unlocked and adopt it as an orphan while this one writes to it.
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path = self.directory / name
            tmp.rename(path)
            self._fsync_dir()
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return Segment(path=path, fd=fd, size=0)

    def _adopt(self, path: Path) -> Segment | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # another process replayed it just now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None  # its owner is alive
        # The lock is ours, but the previous holder may have deleted the file before we opened it.
        try:
            size = os.fstat(fd).st_size
            if not path.exists():
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        log.info("adopting audit spool segment %s (%d bytes) of a gone process", path.name, size)
        return Segment(path=path, fd=fd, size=size)

    def _fsync_dir(self) -> None:
        # The new or removed name is durable only once the directory itself is synced.
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
