"""The app-wide middleware: a request id, the contract's error for anything raised, the headers
every answer carries, and the request's log line; each job is a function of its own."""

from __future__ import annotations

import logging
import random
import re
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from gateway.http.responses import contract_error, error_body
from gateway.http.state import REQUEST_ID, SETTINGS, TOKEN_RECORD

__all__ = ["edge_middleware", "error_body", "log_request", "request_id_for", "stamp_headers"]

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def request_id_for(header: str | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    # 128 random bits as hex, like uuid4().hex, without building a UUID object per request.
    return secrets.token_hex(16)


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
    *,
    tenant_id: str | None = None,
    event: str | None = None,
    reason: str | None = None,
) -> None:
    """One line per request: debug when it went well (info for a sampled share), else warning.

    Only the method and path are logged (never the query string or a header), so no token or
    secret can reach the logs.
    """
    level = logging.WARNING if status >= 400 else logging.DEBUG
    if level == logging.DEBUG:
        # The optional access log: a sampled share of successful requests at info.
        sample = request.app[SETTINGS].access_log_sample
        if sample > 0 and (sample >= 1 or random.random() < sample):  # noqa: S311 - sampling
            level = logging.INFO
    if not log.isEnabledFor(level):  # the hot path does not build a record nobody reads
        return
    log.log(
        level,
        "%s %s %d",
        request.method,
        request.path,
        status,
        extra={
            "request_id": request[REQUEST_ID],
            "tenant_id": tenant_id,
            "event": event,
            "status": status,
            "reason": reason,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "method": request.method,
            "path": request.path,
        },
    )


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: request id, the contract's error for anything raised, the
    headers, and the log line (a token request's own middleware logs it, with its tenant)."""
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
        log_request(request, response.status, started, event=event, reason=reason)
    return response
