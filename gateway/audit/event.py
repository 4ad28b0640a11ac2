"""One audit event and its encoding: a line of PostgreSQL's text COPY format.

The line is made once, on the request's path; the same bytes go to the journal on disk and, from
memory, to `COPY audit_events FROM STDIN`. Building it costs a few microseconds: the id comes from
uuid-utils (Rust), timestamps are numbers formatted with a per-second cache, and text is escaped
only when it holds a character that needs it.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import uuid_utils

__all__ = ["COLUMNS", "AuditEvent", "clean_text", "copy_line", "new_event_id"]

COLUMNS = (
    "event_id",
    "occurred_at",
    "event",
    "status",
    "request_id",
    "subject",
    "tenant_id",
    "workspace_id",
    "dashboard_id",
    "api_key_id",
    "expires_at",
    "token_sha256",
    "cache_hit",
    "client_ip",
    "user_agent",
    "latency_ms",
    "detail",
)
NULL = "\\N"
# What text COPY reads as a delimiter, a row end or an escape; everything else passes as is.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def new_event_id() -> str:
    """A time-ordered UUIDv7 as text (uuid-utils: ~0.2 us, against ~2 us for a uuid.UUID)."""
    return str(uuid_utils.uuid7())


def clean_text(value: str | None) -> str | None:
    """Text PostgreSQL accepts: lone surrogates (undecodable header bytes) escaped, NUL spelled
    out. A caller controls these strings; one bad byte must not poison a batch."""
    if value is None or (value.isascii() and "\x00" not in value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


@dataclass(slots=True)
class AuditEvent:
    """One row of audit_events. Times are Unix seconds (a datetime is accepted too)."""

    event: str
    status: int
    request_id: str
    occurred_at: float | datetime = field(default_factory=time.time)
    event_id: str = field(default_factory=new_event_id)
    subject: str | None = None
    tenant_id: str | None = None
    workspace_id: str | None = None
    dashboard_id: str | None = None
    api_key_id: str | None = None
    expires_at: float | datetime | None = None
    token_sha256: str | None = None
    cache_hit: bool | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    latency_ms: float | None = None
    detail: dict[str, Any] | None = None

    def record(self) -> tuple[Any, ...]:
        """The row in COLUMNS order as Python values (for a plain INSERT)."""
        ip = self.client_ip if self.client_ip and _is_ip(self.client_ip) else None
        return (
            self.event_id,
            _as_datetime(self.occurred_at),
            self.event,
            self.status,
            self.request_id,
            self.subject,
            self.tenant_id,
            self.workspace_id,
            self.dashboard_id,
            self.api_key_id,
            None if self.expires_at is None else _as_datetime(self.expires_at),
            self.token_sha256,
            self.cache_hit,
            ip,
            self.user_agent,
            self.latency_ms,
            None if self.detail is None else orjson.dumps(self.detail).decode(),
        )


def copy_line(e: AuditEvent) -> bytes:
    """The event as one text-COPY row, newline included."""
    ip = e.client_ip
    detail = e.detail
    line = "\t".join(
        (
            e.event_id,
            _timestamp(e.occurred_at),
            _text(e.event),
            str(e.status),
            _text(e.request_id),
            NULL if e.subject is None else _text(e.subject),
            NULL if e.tenant_id is None else _text(e.tenant_id),
            NULL if e.workspace_id is None else _text(e.workspace_id),
            NULL if e.dashboard_id is None else _text(e.dashboard_id),
            NULL if e.api_key_id is None else _text(e.api_key_id),
            NULL if e.expires_at is None else _timestamp(e.expires_at),
            NULL if e.token_sha256 is None else _text(e.token_sha256),
            NULL if e.cache_hit is None else ("t" if e.cache_hit else "f"),
            ip if ip is not None and _is_ip(ip) else NULL,
            NULL if e.user_agent is None else _text(e.user_agent),
            NULL if e.latency_ms is None else repr(float(e.latency_ms)),
            NULL if detail is None else _text(orjson.dumps(detail).decode()),
        )
    )
    return (line + "\n").encode()


def _text(value: str) -> str:
    if value.isprintable() and "\\" not in value:
        return value  # the common case: nothing to escape
    cleaned = clean_text(value) or ""
    return cleaned.translate(_COPY_ESCAPES)


# (second, "YYYY-MM-DD HH:MM:SS") of the last timestamp formatted: events of one second share it.
_second: list[Any] = [-1, ""]


def _timestamp(value: float | datetime) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    second = int(value)
    cached = _second
    if cached[0] != second:
        cached[1] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        cached[0] = second
    return f"{cached[1]}.{int((value - second) * 1_000_000):06d}+00"


def _as_datetime(value: float | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


@functools.lru_cache(maxsize=4096)
def _is_ip(value: str) -> bool:
    # An address PostgreSQL's inet would refuse would poison the row; clients repeat, so cache.
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
