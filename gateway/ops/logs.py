"""Logging set-up: JSON lines by default, plain text on request."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

# Fields a log call may pass in `extra`; anything else in a record is internal to logging.
EXTRA_FIELDS = (
    "request_id",
    "tenant_id",
    "event",
    "status",
    "latency_ms",
    "reason",
    "dependency",
    "state",
    "method",
    "path",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """A human-readable line, with the same extra fields as key=value pairs."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one line of text."""
        line = super().format(record)
        pairs = [
            f"{name}={record.__dict__[name]}"
            for name in EXTRA_FIELDS
            if record.__dict__.get(name) is not None
        ]
        return f"{line} {' '.join(pairs)}" if pairs else line


class OnceFilter(logging.Filter):
    """Lets the first record containing `needle` through and drops the repeats."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        """False for every repeat of the message."""
        if self.needle not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        return True


# redis-py asks every new connection to enable maintenance notifications and logs each refusal
# at debug: one line per pooled connection, the same words each time.
_REDIS_MAINT = OnceFilter("maintenance notifications")


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Send the gateway's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log costs per request; it stays off unless asked for at debug.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for name in ("redis.asyncio.connection", "redis.connection"):
        logger = logging.getLogger(name)
        if _REDIS_MAINT not in logger.filters:
            logger.addFilter(_REDIS_MAINT)
