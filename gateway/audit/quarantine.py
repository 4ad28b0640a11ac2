"""Rows PostgreSQL refuses for what they hold: found by halving the batch, set aside in a file.

A poisoned row is never retried forever and never blocks the rows behind it. It is appended to
`quarantine.copy` in the journal directory (same text-COPY format, so an operator can fix it and
`\\copy` it in), with a log line and gateway_audit_events_quarantined.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from gateway.audit.copy import POISON_ERRORS

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.copy"

WriteLines = Callable[[Sequence[bytes]], Awaitable[None]]


async def write_isolating_poison(
    write: WriteLines, lines: Sequence[bytes], directory: Path
) -> tuple[int, int]:
    """Write `lines` (idempotently), quarantining each row refused on its own.

    Returns (rows written, rows quarantined). Connection failures propagate: the caller keeps
    the whole batch and retries it, which the idempotent write makes harmless.
    """
    try:
        await write(lines)
    except POISON_ERRORS as exc:
        if len(lines) == 1:
            quarantine(directory, lines[0], exc)
            return 0, 1
        middle = len(lines) // 2
        w1, q1 = await write_isolating_poison(write, lines[:middle], directory)
        w2, q2 = await write_isolating_poison(write, lines[middle:], directory)
        return w1 + w2, q1 + q2
    return len(lines), 0


def quarantine(directory: Path, line: bytes, exc: BaseException) -> None:
    """Set one refused row aside in the quarantine file, and say so."""
    # The event id and the request id are the first and fifth fields; nothing secret is logged.
    fields = line.split(b"\t", 5)
    event_id = fields[0].decode(errors="replace")[:40]
    request_id = fields[4].decode(errors="replace")[:128] if len(fields) > 4 else "?"
    path = directory / QUARANTINE_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line if line.endswith(b"\n") else line + b"\n")
        finally:
            os.close(fd)
    except OSError as err:
        log.error(
            "audit row refused by PostgreSQL (%s) and LOST: quarantine file %s not writable (%s)",
            type(exc).__name__,
            path,
            err,
            extra={"event_id": event_id, "request_id": request_id},
        )
        return
    log.error(
        "audit row refused by PostgreSQL (%s: %s); quarantined to %s",
        type(exc).__name__,
        str(exc).splitlines()[0][:200] if str(exc) else "",
        path,
        extra={"event_id": event_id, "request_id": request_id},
    )
