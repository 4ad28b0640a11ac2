"""Requests aiohttp's HTTP parser refuses, answered like every other error.

aiohttp answers a request it cannot parse (a NUL, bare CR or DEL in a header, too many headers,
a header or request line over the limit, Content-Length with Transfer-Encoding, obs-fold, an odd
method...) from `RequestHandler.handle_error`, before any middleware runs: a text/plain 400 whose
body echoes the offending bytes, and an ERROR line with a traceback on `aiohttp.server` that
carries the whole header line, a caller's bearer token included. Here each connection's handler
answers instead with the contract's JSON error and an X-Request-ID, counts the refusal, audits it
when its request line named a token path, and logs one bounded line without header values, at
most once per client per interval. `ParserLogFilter` on `aiohttp.server` is the safety net.
"""

from __future__ import annotations

import logging
import re
import time
from functools import partial
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from gateway.http.middleware import request_id_for, stamp_headers
from gateway.http.responses import json_error
from gateway.http.state import METRICS, TOKEN_SERVICES
from gateway.http.token_api import TOKEN_PATH_SET, record_token_request
from gateway.http.token_record import TokenRecord
from gateway.infra.lru import ExpiringLru
from gateway.ops.runner import CONNECTION_HANDLER

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two log lines about one client's refused requests
MAX_CLIENTS_TRACKED = 4096
# Enough of the refused data to find its request line; nothing else of it is ever kept.
MAX_HEAD = 512
_REQUEST_LINE = re.compile(rb"(?:^|\r?\n\r?\n)[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32} (/[^ \r\n?#]*)")
MESSAGE = "the request could not be parsed"


# (text in the parser's message, reason); the first match wins: framing before header, since
# "Duplicate 'Content-Length' header" is a framing (smuggling) refusal.
_RULES = (
    ("too many headers", "too_many_headers"),
    ("content-length", "bad_framing"),
    ("transfer-encoding", "bad_framing"),
    ("chunk", "bad_framing"),
    ("header", "bad_header"),
    ("version", "bad_request_line"),
    ("url", "bad_request_line"),
    ("method", "bad_method"),
)


def refusal_reason(exc: HttpProcessingError) -> str:
    """A short, fixed name for what the parser refused (never the offending bytes)."""
    if isinstance(exc, BadHttpMethod):
        return "bad_method"
    if isinstance(exc, LineTooLong):
        # Its first argument is the start of the long line: a request target starts with "/".
        line = exc.args[0] if exc.args else b""
        start = bytes(line[:1]) if isinstance(line, bytes | bytearray) else str(line)[:1].encode()
        return "request_line_too_long" if start == b"/" else "header_too_long"
    text = str(exc.message).lower()
    return next((reason for needle, reason in _RULES if needle in text), "bad_request")


class ParserRefusals:
    """Answers, counts, audits and (sparingly) logs the parser's refusals for one app."""

    def __init__(self, app: web.Application, *, log_interval: float = LOG_INTERVAL) -> None:
        self._app = app
        self._log_interval = log_interval
        self._logged: ExpiringLru[str, bool] = ExpiringLru(MAX_CLIENTS_TRACKED)

    def answer(self, client: str | None, exc: HttpProcessingError, head: bytes) -> web.Response:
        """The contract's 400 for a refused request from `client`; the connection closes."""
        started = time.perf_counter()
        request_id = request_id_for(None)
        reason = refusal_reason(exc)
        app = self._app
        metrics = app[METRICS]
        metrics.count(metrics.parser_refusals, reason)
        path = token_path(head)
        if path is not None:
            services = app[TOKEN_SERVICES]
            record_token_request(
                services,
                request_id,
                400,
                "invalid_request",
                started,
                record=TokenRecord(api_key_id=services.api_key_id),
                reason=reason,
                code="invalid_request",
                client_ip=client,
                user_agent=None,
            )
        self._log(client, reason, type(exc).__name__, request_id, path)
        response = json_error(400, "invalid_request", MESSAGE, request_id)
        stamp_headers(response.headers, request_id)
        response.force_close()
        return response

    def _log(
        self, client: str | None, reason: str, kind: str, request_id: str, path: str | None
    ) -> None:
        now = time.monotonic()
        key = client or "-"
        if self._logged.get(key, now) is not None:
            return  # this client was logged about less than an interval ago; the metric counts
        self._logged.put(key, True, now + self._log_interval)
        # Bounded and fixed: the reason, the exception's class and the client, never its data.
        log.warning(
            "refused an unparsable request from %s: %s (%s)",
            key,
            reason,
            kind,
            extra={
                "request_id": request_id,
                "status": 400,
                "reason": reason,
                "client_ip": client,
                "path": path,
            },
        )


def token_path(head: bytes) -> str | None:
    """The token path the refused request's line named, when the refused data holds it."""
    path = None
    for match in _REQUEST_LINE.finditer(head):
        path = match.group(1)
    if path is None:
        return None
    text = path.decode("ascii", "replace")
    return text if text in TOKEN_PATH_SET else None


class RefusingRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the parser's refusals answered by `ParserRefusals`."""

    __slots__ = ("_refusals", "_refused_head")

    def __init__(self, manager: web.Server, *, refusals: ParserRefusals, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._refusals = refusals
        self._refused_head = b""

    def data_received(self, data: bytes) -> None:
        """Parse as aiohttp does; keep the start of the data the parser refused, if it did."""
        super().data_received(data)
        messages = self._messages
        # One identity check per chunk; only a refused chunk is sliced and kept.
        if messages and type(messages[-1][0]) is _ErrInfo and not self._refused_head:
            self._refused_head = data[:MAX_HEAD]

    def resume_reading(self, resume_parser: bool = True) -> None:
        """Resume what `pause_reading` paused; a no-op when nothing is paused.

        A body's StreamReader calls this on every read that leaves it under its low-water mark,
        paused or not (a token request's whole body, every time), and aiohttp then feeds the
        parser an empty chunk and asks the transport to resume: 5.5 k instructions of a local
        hit's 297 k (bench/inproc.py) for nothing. The parser only holds unparsed data after
        `pause_reading`, which sets `_reading_paused`, so the skip changes no outcome.
        """
        if self._reading_paused:
            super().resume_reading(resume_parser)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's refusals get the contract's error; anything else aiohttp's answer."""
        if isinstance(exc, HttpProcessingError):
            return self._refusals.answer(request.remote, exc, self._refused_head)
        return super().handle_error(request, status, exc, message)


class ParserLogFilter(logging.Filter):
    """Drops `aiohttp.server` records about parser refusals: their text holds header bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record whose exception is a parser or body-framing refusal."""
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError | RequestPayloadError)


_FILTER = ParserLogFilter()


def setup_parser_refusals(app: web.Application) -> None:
    """Have `gateway serve` answer the parser's refusals for `app` (see ops/runner.py)."""
    app[CONNECTION_HANDLER] = partial(RefusingRequestHandler, refusals=ParserRefusals(app))
    # addFilter ignores a filter already there, so apps built twice in a process add it once.
    logging.getLogger("aiohttp.server").addFilter(_FILTER)
