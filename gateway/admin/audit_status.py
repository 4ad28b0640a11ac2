"""`gateway audit status`: the audit journal as an SRE sees it, read from the files alone.

Per worker (from the status file each running worker keeps beside its journal): queue depth,
journal segments and bytes, oldest unshipped event age and the last write errors. For the
directory: every segment with its owner (a live worker's pid, or "orphan" for a gone process's,
replayed by the next worker to start), lines, bytes and oldest event, and the quarantine file.
No running gateway and no database are needed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.journal import SEGMENT_PREFIX, SEGMENT_SUFFIX, segment_data
from gateway.audit.quarantine import QUARANTINE_FILE
from gateway.audit.worker_status import read_statuses


@dataclass(slots=True)
class SegmentView:
    """One journal segment file."""

    name: str
    bytes: int
    lines: int
    owner: int | None  # the pid holding its lock, None when its process is gone
    oldest: float | None  # Unix time of its first event


def lock_owners() -> dict[int, int]:
    """inode -> pid of every flock on this machine (Linux /proc/locks); empty elsewhere."""
    owners: dict[int, int] = {}
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return owners
    for row in text.splitlines():
        parts = row.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF" (a "->" marks a waiter: skip it)
        if len(parts) >= 6 and parts[1] == "FLOCK":
            try:
                owners[int(parts[5].rsplit(":", 1)[1])] = int(parts[4])
            except (ValueError, IndexError):
                continue
    return owners


def _first_event_time(path: Path) -> float | None:
    try:
        with path.open("rb") as f:
            first = f.readline()
    except OSError:
        return None
    fields = first.split(b"\t", 2)
    if len(fields) < 3:
        return None
    try:
        return datetime.fromisoformat(fields[1].decode()).timestamp()
    except ValueError:
        return None


def segments(directory: Path) -> list[SegmentView]:
    """Every segment in the journal directory, oldest first."""
    owners = lock_owners()
    found = []
    for path in sorted(directory.glob(f"{SEGMENT_PREFIX}*{SEGMENT_SUFFIX}")):
        try:
            stat = path.stat()
            data = segment_data(path)
        except OSError:
            continue  # replayed and deleted just now
        found.append(
            SegmentView(
                name=path.name,
                bytes=len(data),
                lines=data.count(b"\n"),
                owner=owners.get(stat.st_ino),
                oldest=_first_event_time(path) if data else None,
            )
        )
    return found


def _age(at: float | None, now: float) -> str:
    return "-" if at is None else f"{max(0.0, now - at):.1f}s"


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(directory: Path, now: float | None = None) -> str:
    """The report `gateway audit status` prints."""
    now = time.time() if now is None else now
    out = [f"audit journal: {directory.resolve()}"]
    if not directory.is_dir():
        out.append("  (no such directory: nothing journaled here yet)")
        return "\n".join(out)
    workers = read_statuses(directory)
    out.append("")
    out.append("WORKER   STATE      QUEUE  SEGMENTS      BYTES  OLDEST   LOST  LAST ERROR")
    out.extend(_worker_row(w, now) for w in workers)
    if not workers:
        out.append("(no worker status files: no gateway is running on this directory)")
    views = segments(directory)
    out.append("")
    out.append("SEGMENT                                      OWNER        LINES      BYTES  OLDEST")
    for s in views:
        owner = str(s.owner) if s.owner is not None else "orphan"
        out.append(f"{s.name:<44} {owner:<10} {s.lines:>7} {s.bytes:>10}  {_age(s.oldest, now)}")
    orphans = [s for s in views if s.owner is None and s.lines]
    out.append(
        f"total: {len(views)} segments, {sum(s.bytes for s in views)} bytes,"
        f" {sum(s.lines for s in views)} lines; {len(orphans)} orphaned"
        + (" (replayed by the next worker to start)" if orphans else "")
    )
    quarantine = directory / QUARANTINE_FILE
    if quarantine.exists():
        count = quarantine.read_bytes().count(b"\n")
        out.append(f"quarantine: {count} rows refused by PostgreSQL in {quarantine}")
    return "\n".join(out)


def _worker_row(w: dict[str, Any], now: float) -> str:
    if not w.get("alive"):
        state = "gone"
    elif w.get("journal_failing"):
        state = "disk-fail"
    elif w.get("degraded"):
        state = "degraded"
    else:
        state = "writing"
    errors = [
        (w.get("last_journal_error_at"), "journal", w.get("last_journal_error")),
        (w.get("last_db_error_at"), "postgres", w.get("last_db_error")),
    ]
    known = [e for e in errors if e[0] is not None]
    last = "-"
    if known:
        at, where, text = max(known, key=lambda e: e[0])
        last = f"{_when(at)} {where}: {text}"
    oldest = w.get("oldest_unshipped_age") or 0.0
    return (
        f"{w.get('pid', '?')!s:<8} {state:<10} {w.get('queue_depth', 0):>5}"
        f" {w.get('journal_segments', 0):>9} {w.get('journal_bytes', 0):>10}"
        f"  {oldest:>5.1f}s {w.get('dropped', 0):>5}  {last}"
    )
