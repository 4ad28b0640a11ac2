"""The app-wide middleware: a request id, the contract's error for anything raised, the headers
every answer carries, and the request's log line; each job is a function of its own.

A handler marked `answers_itself` (the token endpoint, http/token_api.py) does this work in its
own coroutine, and every middleware hands its awaitable back untouched.
"""

from __future__ import annotations

import logging
import os
import random
import re
import secrets
import time
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from gateway.http.responses import contract_error, error_body
from gateway.http.state import REQUEST_ID, SETTINGS, TOKEN_RECORD

__all__ = [
    "answers_itself",
    "edge_middleware",
    "error_body",
    "log_request",
    "mark_answers_itself",
    "request_id_for",
    "skippable",
    "skips_self_answering",
    "stamp_headers",
]

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_ANSWERS_ITSELF = "_gateway_answers_itself"
_SKIPS_SELF_ANSWERING = "_gateway_skips_self_answering"


def mark_answers_itself(handler: Handler) -> Handler:
    """Mark a route handler that makes its own request id, error answer, headers and log line."""
    setattr(handler, _ANSWERS_ITSELF, True)
    return handler


def answers_itself(request: web.Request) -> bool:
    """Whether the request's route handler was marked by `mark_answers_itself`."""
    return getattr(request.match_info.handler, _ANSWERS_ITSELF, False)


def skips_self_answering(middleware: Middleware) -> Middleware:
    """Mark a middleware that hands a request whose handler `answers_itself` straight to it, so
    such requests may skip it altogether (http/direct_routes.py)."""
    setattr(middleware, _SKIPS_SELF_ANSWERING, True)
    return middleware


def skippable(middleware: Middleware) -> bool:
    """Whether `middleware` was marked by `skips_self_answering`."""
    return getattr(middleware, _SKIPS_SELF_ANSWERING, False)


class _RequestIds:
    """New request ids: 64 random bits drawn once per process, then 64 more per request."""

    __slots__ = ("prefix",)

    def __init__(self) -> None:
        self.prefix = ""
        self.reset()

    def reset(self) -> None:
        """A new prefix (at start and in every forked worker)."""
        self.prefix = secrets.token_hex(8)

    def new(self) -> str:
        """32 hex digits, like uuid4().hex: the per-request half comes from `random` (reseeded
        in every forked child), which costs a tenth of a getrandom() syscall, and not a counter,
        which would tell callers how busy a worker is."""
        return f"{self.prefix}{random.getrandbits(64):016x}"


_IDS = _RequestIds()
os.register_at_fork(after_in_child=_IDS.reset)


def request_id_for(header: str | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return _IDS.new()


def stamp_headers(headers: CIMultiDict[str], request_id: str) -> None:
    """The request id, the security headers and `Vary: Origin` on one answer."""
    headers["X-Request-ID"] = request_id
    headers.update(SECURITY_HEADERS)
    # Answers may differ by Origin (CORS), so shared caches must key on it, allowed or not.
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        headers["Vary"] = f"{vary}, Origin"


def log_request(
    request: web.Request,
    status: int,
    started: float,
    request_id: str,
    sample: float,
    *,
    tenant_id: str | None = None,
    event: str | None = None,
    reason: str | None = None,
) -> None:
    """One line per request: debug when it went well (info for a sampled share), else warning.

    Only the method and path are logged (never the query string or a header), so no token or
    secret can reach the logs. `sample`: the share of successes logged at info (the access log).
    """
    if status >= 400:
        level = logging.WARNING
    elif sample > 0 and (sample >= 1 or random.random() < sample):  # noqa: S311 - sampling
        level = logging.INFO  # the optional access log: a sampled share of successes
    else:
        level = logging.DEBUG
    if not log.isEnabledFor(level):  # the hot path does not build a record nobody reads
        return
    log.log(
        level,
        "%s %s %d",
        request.method,
        request.path,
        status,
        extra={
            "request_id": request_id,
            "tenant_id": tenant_id,
            "event": event,
            "status": status,
            "reason": reason,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "method": request.method,
            "path": request.path,
        },
    )


@skips_self_answering
@web.middleware
def edge_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """The outermost middleware: request id, the contract's error for anything raised, the
    headers, and the log line (a token request's own middleware logs it, with its tenant)."""
    if answers_itself(request):
        # A plain function handing back the handler's awaitable: the hot path pays no coroutine.
        return handler(request)
    return _edged(request, handler)


async def _edged(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = request_id_for(request.headers.get("X-Request-ID"))
    request[REQUEST_ID] = request_id
    event = reason = None
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the contract's error
        response, event, reason, _code = contract_error(exc, request_id)
    stamp_headers(response.headers, request_id)
    if TOKEN_RECORD not in request:
        sample = request.app[SETTINGS].access_log_sample
        log_request(
            request, response.status, started, request_id, sample, event=event, reason=reason
        )
    return response
