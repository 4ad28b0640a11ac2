"""The audit journal: each worker's write-ahead log of audit events, one text-COPY line an event.

Every event is appended to the worker's active segment (`audit-<uuid7>.copy`) before its response
leaves, by a copy into a shared memory mapping of the file: the bytes are in the kernel's page
cache at once, so a SIGKILL, an OOM kill or a crash of the process loses nothing, and no system
call is made per event (GATEWAY_AUDIT_FSYNC adds machine-crash durability). Disk blocks are
reserved ahead in chunks (`posix_fallocate`), so a full disk is an error from that call and never
a SIGBUS from the mapping; the mapped file past its last line holds zeros, which readers skip.
The rows are shipped to PostgreSQL from memory; a segment is emptied (active: zeroed in place
with fsync off, else truncated) or deleted (sealed) only once every row in it is committed; under
steady load two segments take turns (see RECYCLE_AT), so the same pages are written over. A
process holds an exclusive flock on every segment it owns for as long as it lives; a segment
whose lock can be taken belongs to a process that is gone and is adopted and replayed by
whichever worker finds it (exactly once, thanks to the (event_id, occurred_at) key).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from gateway.audit.event import new_event_id

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "audit-"
SEGMENT_SUFFIX = ".copy"
# A sealed segment is replayed and deleted whole; a bounded size keeps each step bounded too.
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
# A segment's mapping reaches this far past its size limit: the line that crosses the limit still
# fits (a line is bounded by the request's limits, far below this). Unreserved, so it costs nothing.
LINE_HEADROOM = 1024 * 1024
# An emptied active segment up to this size is zeroed in place (its pages stay in memory, its
# blocks reserved); past it, as after an outage's backlog, truncated (both freed).
ZERO_IN_PLACE = 1024 * 1024
# Disk reserved at a time: one fallocate() per this many bytes of lines, not one write() a line.
RESERVE_CHUNK = 16 * 1024
# An active segment this long gives way to an emptied one (the spare) and drains: under steady
# load the segment holding the rows in flight is never wholly committed, so it could not be
# emptied and grew through fresh pages, each write-faulted in (~20 us on ext4, 2.5 us a line in
# all); two segments taking turns keep writing to the same pages, already mapped and reserved.
RECYCLE_AT = 256 * 1024


class Fsync(Enum):
    """When the journal is fsync'd (GATEWAY_AUDIT_FSYNC)."""

    OFF = "off"  # the kernel's page cache: survives any process death, not a machine crash
    BATCH = "batch"  # by the writer, every flush interval: loses at most that much on a crash
    ALWAYS = "always"  # before each response: nothing acknowledged is lost, at a disk flush each


@dataclass(slots=True, eq=False)
class Segment:
    """One journal file this process holds the lock of, and what its rows are waiting for."""

    path: Path
    fd: int
    size: int = 0
    mapped: mmap.mmap | None = None  # the active segment's mapping (None once sealed or adopted)
    reserved: int = 0  # bytes of disk reserved from the start of the file
    pending: int = 0  # rows also held in memory, not yet committed
    spilled: int = 0  # rows only here (the queue was full): replayed from the file
    first_spill: float = 0.0
    sealed: bool = False
    gone: bool = False


class Journal:
    """A directory of segments. Only the event loop's thread appends and accounts."""

    def __init__(
        self,
        directory: Path | str,
        *,
        fsync: Fsync = Fsync.OFF,
        max_segment_bytes: int = MAX_SEGMENT_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self._max = max_segment_bytes
        self.active: Segment | None = None
        self.sealed: list[Segment] = []
        self.draining: list[Segment] = []  # replaced while small, still mapped, rows in flight
        self.spare: Segment | None = None  # emptied, still mapped: the next active segment
        self.failing = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._unsynced: Segment | None = None

    @property
    def segments(self) -> list[Segment]:
        """Segments this process holds, oldest first."""
        spare = [self.spare] if self.spare is not None else []
        return [*self.sealed, *self.draining, *spare, *([self.active] if self.active else [])]

    @property
    def bytes(self) -> int:
        """Bytes in this process's segments (rows not yet known to be committed)."""
        return sum(s.size for s in self.segments)

    def append(self, line: bytes) -> Segment | None:
        """Copy one line into the active segment; the segment holding it, or None if the disk
        refused."""
        seg = self.active
        try:
            if (
                seg is None
                or seg.size >= self._max
                # Long enough to give way, to the spare or (none draining) to a new one.
                or (seg.size >= RECYCLE_AT and (self.spare is not None or not self.draining))
            ):
                seg = self._rotate()
            start = seg.size
            end = start + len(line)
            if end > seg.reserved:
                _reserve(seg, end)
            assert seg.mapped is not None  # the active segment is mapped
            seg.mapped[start:end] = line
            if self.fsync is Fsync.ALWAYS:
                os.fsync(seg.fd)
            elif self.fsync is Fsync.BATCH:
                self._unsynced = seg
        except (OSError, ValueError, IndexError) as exc:
            # ValueError/IndexError: a closed mapping, a line longer than the headroom.
            self._fail(exc if isinstance(exc, OSError) else OSError(errno.EFBIG, str(exc)))
            return None
        seg.size = end
        self.failing = False
        return seg

    def sync(self) -> None:
        """fsync what was appended since the last call (Fsync.BATCH; call from a thread)."""
        seg, self._unsynced = self._unsynced, None
        if seg is not None and not seg.gone:
            with contextlib.suppress(OSError):
                os.fsync(seg.fd)

    def committed(self, seg: Segment) -> None:
        """Every row of `seg` the process knew of is in PostgreSQL: free its space."""
        if seg.gone or seg.pending or seg.spilled:
            return
        if seg.sealed:
            self.delete(seg)
        elif seg.size and not self._empty(seg):
            return
        if seg in self.draining:
            self.draining.remove(seg)
            if self.spare is None:
                self.spare = seg
            else:
                self.delete(seg)
        # Space was freed: the next append is worth trying (it says again if it still fails).
        self.failing = False

    def _empty(self, seg: Segment) -> bool:
        """Empty an unsealed segment for its next lines; False (the journal failing) if not."""
        if self.fsync is Fsync.OFF and seg.mapped is not None and seg.size <= ZERO_IN_PLACE:
            try:
                _zero_in_place(seg.mapped, seg.size)
            except (ValueError, IndexError) as exc:  # a mapping closed under it
                self._fail(OSError(errno.EIO, str(exc)))
                return False
        else:
            try:
                # Truncated and grown again: zeros from the start, the reserved blocks freed.
                os.ftruncate(seg.fd, 0)
                os.ftruncate(seg.fd, self._max + LINE_HEADROOM)
            except OSError as exc:
                self._fail(exc)
                return False
            seg.reserved = 0
        seg.size = 0
        return True

    def seal(self, seg: Segment) -> None:
        """Stop appending to `seg` (to replay its file whole); the next append opens a new one."""
        if seg is self.active:
            self.active = None
        elif seg in self.draining:
            self.draining.remove(seg)
        else:
            return
        seg.sealed = True
        self.sealed.append(seg)
        _unmap(seg, trim=True)

    def delete(self, seg: Segment) -> None:
        """The segment's rows are all committed: remove it and release its lock."""
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        _unmap(seg, trim=False)
        with contextlib.suppress(OSError):
            os.close(seg.fd)
        seg.gone = True
        if seg is self.active:
            self.active = None
        if seg is self.spare:
            self.spare = None
        self.sealed = [s for s in self.sealed if s is not seg]
        self.draining = [s for s in self.draining if s is not seg]

    def release(self, seg: Segment) -> None:
        """Let go of an adopted segment without deleting it (it is replayed later)."""
        with contextlib.suppress(OSError):
            os.close(seg.fd)
        seg.gone = True

    def adopt_orphans(self) -> list[Segment]:
        """Lock and return the segments of processes that are gone, oldest first."""
        if not self.directory.is_dir():
            return []
        mine = {s.path.name for s in self.segments}
        paths = sorted(self.directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}"))
        adopted = [_adopt(path) for path in paths if path.name not in mine]
        return [seg for seg in adopted if seg is not None]

    def close(self) -> None:
        """Release every lock; segments still holding rows stay for the next start."""
        for seg in self.segments:
            if seg.size == 0 and not seg.gone:
                self.delete(seg)  # nothing in it: leave no empty file behind
            else:
                _unmap(seg, trim=not seg.gone)
                with contextlib.suppress(OSError):
                    os.close(seg.fd)
        self.active, self.sealed, self.draining, self.spare = None, [], [], None

    def _fail(self, exc: OSError) -> None:
        if not self.failing:
            log.error("audit journal in %s cannot be written: %s", self.directory, exc)
        self.failing = True
        self.last_error, self.last_error_at = f"{type(exc).__name__}: {exc}", time.time()

    def _rotate(self) -> Segment:
        """The next active segment: the spare, else a new one. The old one is deleted when it
        holds nothing in flight, drains while small (mapped, to become the spare), else is
        sealed (unmapped: an outage's backlog must not stay in memory)."""
        old = self.active
        if old is not None:
            if self.fsync is not Fsync.OFF:
                os.fsync(old.fd)
            if old.size == 0 or not (old.pending or old.spilled):
                self.delete(old)
            elif old.size <= ZERO_IN_PLACE and not old.spilled:
                self.active = None
                self.draining.append(old)
            else:
                self.seal(old)
        spare, self.spare = self.spare, None
        if spare is None:
            spare = _open_segment(self.directory, self._max + LINE_HEADROOM)
        self.active = spare
        return spare


def _zero_in_place(mapped: mmap.mmap, size: int) -> None:
    """Empty an active segment through its mapping, its blocks kept for the next lines.

    Truncating instead frees the blocks (a discard on such a mount), and the next lines fault
    every page back in and reserve the blocks again: measured at ~4 us of system time per line
    with 500-line batches, against 0.02 here. Only with fsync off: dirty pages reach the disk in
    no set order, so after a machine crash a zeroed page could sit beside one still holding old
    lines; a process death, all fsync off promises to survive, sees memory as it was left.
    """
    # The first byte first: a reader stops at the first NUL, so a process killed while the rest
    # is zeroed leaves an empty segment, never old lines joined to new ones.
    mapped[0] = 0
    mapped[1:size] = bytes(size - 1)


def _reserve(seg: Segment, end: int) -> None:
    # Blocks for the next chunk (or more, for a long line): writes through the mapping can then
    # never meet a full disk, which would kill the process with SIGBUS instead of raising.
    size = max(RESERVE_CHUNK, end - seg.reserved)
    os.posix_fallocate(seg.fd, seg.reserved, size)
    seg.reserved += size


def _unmap(seg: Segment, *, trim: bool) -> None:
    """Drop the mapping; `trim`: cut the file to its lines (no more are appended to it)."""
    if seg.mapped is None:
        return
    with contextlib.suppress(OSError, ValueError):
        seg.mapped.close()
    seg.mapped = None
    if trim:
        with contextlib.suppress(OSError):
            os.ftruncate(seg.fd, seg.size)


def _open_segment(directory: Path, capacity: int) -> Segment:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{SEGMENT_PREFIX}{new_event_id().replace('-', '')}{SEGMENT_SUFFIX}"
    # Locked under a hidden name first, then renamed: no other process can ever see the
    # segment unlocked and adopt it as an orphan while this one writes to it.
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, capacity)  # sparse: blocks are reserved as lines come (_reserve)
        mapped = mmap.mmap(fd, capacity)
        path = directory / name
        tmp.rename(path)
        fsync_dir(directory)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return Segment(path=path, fd=fd, mapped=mapped)


def _adopt(path: Path) -> Segment | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None  # another process replayed it just now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # its owner is alive
    # The lock is ours, but the previous holder may have deleted the file before we opened it.
    try:
        size = len(_lines_part(os.pread(fd, os.fstat(fd).st_size, 0)))
        if not path.exists():
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        return None
    log.info("adopting audit journal segment %s (%d bytes) of a gone process", path.name, size)
    return Segment(path=path, fd=fd, size=size, sealed=True)


def segment_data(path: Path) -> bytes:
    """A segment file's bytes up to the zeros a mapped segment has past its last line."""
    return _lines_part(path.read_bytes())


def _lines_part(data: bytes) -> bytes:
    # No line holds a NUL (the COPY text escapes it): the first one is where the lines stop.
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def read_lines(path: Path) -> list[bytes]:
    """A segment's complete lines, newline included; a torn last line is skipped."""
    data = segment_data(path)
    end = data.rfind(b"\n") + 1
    if end < len(data):
        log.warning("audit journal %s ends in a partial line; skipped", path.name)
    return data[:end].splitlines(keepends=True)


def fsync_dir(directory: Path) -> None:
    """Make a new or removed name in `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
