"""One middleware for every response: request id, contract errors, security headers, audit row."""

from __future__ import annotations

import logging
import random
import re
import secrets
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.audit.event import AuditEvent, clean_text
from gateway.errors import GatewayError, PayloadTooLarge, Unavailable
from gateway.http.exchange import Exchange
from gateway.http.state import AUDIT, EXCHANGE, METRICS, REQUEST_ID, SETTINGS
from gateway.tokens.format import token_sha256

log = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
MAX_USER_AGENT = 512
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def request_id_for(header: str | None) -> str:
    """The caller's X-Request-ID when it is sane, else a new one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    # 128 random bits as hex, like uuid4().hex, without building a UUID object per request.
    return secrets.token_hex(16)


def error_body(code: str, message: str, request_id: str) -> bytes:
    """The contract's error JSON."""
    return orjson.dumps({"error": {"code": code, "message": message}, "request_id": request_id})


def error_response(exc: GatewayError, request_id: str) -> web.Response:
    """The contract's error response for a domain error (never cached: it is about one request)."""
    return web.Response(
        status=exc.status,
        body=error_body(exc.code, exc.message, request_id),
        content_type="application/json",
        headers={"Cache-Control": "no-store", **exc.headers()},
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _from_http_exception(exc: web.HTTPException, request_id: str) -> tuple[web.Response, str]:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        err = PayloadTooLarge("request body is over the 16 KiB limit")
        return error_response(err, request_id), err.code
    code = _HTTP_CODES.get(exc.status, "invalid_request" if exc.status < 500 else "internal_error")
    message = exc.reason.lower() if exc.status < 500 else "internal error"
    response = web.Response(
        status=exc.status,
        body=error_body(code, message, request_id),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response, code


@web.middleware
async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map errors to the contract, stamp headers, and audit token requests."""
    started = time.perf_counter()
    request_id = request_id_for(request.headers.get("X-Request-ID"))
    request[REQUEST_ID] = request_id
    event: str | None = None
    reason: str | None = None
    code: str | None = None
    try:
        response = await handler(request)
    except GatewayError as exc:
        response, event, reason, code = (
            error_response(exc, request_id),
            exc.event,
            exc.reason,
            exc.code,
        )
    except web.HTTPException as exc:
        response, code = _from_http_exception(exc, request_id)
        # Only reached by the token route for protocol-level refusals (413, a bad body encoding).
        event = "invalid_request" if response.status < 500 else "internal_error"
        reason = code
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        response = web.Response(
            status=500,
            body=error_body("internal_error", "internal error", request_id),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
        event, reason, code = "internal_error", "internal_error", "internal_error"
    exchange = request.get(EXCHANGE)
    if exchange is not None:
        event, recorded = _audit(request, response.status, exchange, started, event, reason, code)
        if not recorded:
            # Fail closed: the answer's audit event could not be journaled, so no token leaves.
            refusal = Unavailable("the audit trail is unavailable", reason="audit")
            response, reason = error_response(refusal, request_id), refusal.reason
    headers = response.headers
    headers["X-Request-ID"] = request_id
    headers.update(SECURITY_HEADERS)
    # Answers may differ by Origin (CORS), so shared caches must key on it, allowed or not.
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        headers["Vary"] = f"{vary}, Origin"

    _log_request(request, response.status, exchange, event, reason, started)
    return response


def _log_request(
    request: web.Request,
    status: int,
    exchange: Exchange | None,
    event: str | None,
    reason: str | None,
    started: float,
) -> None:
    # One line per request: debug when it went well, warning when it did not. Only the path is
    # logged (never the query string or a header), so no token or secret can reach the logs.
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
            "tenant_id": None if exchange is None else exchange.tenant_id,
            "event": event,
            "status": status,
            "reason": reason,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "method": request.method,
            "path": request.path,
        },
    )


def _audit(
    request: web.Request,
    status: int,
    exchange: Exchange,
    started: float,
    event: str | None,
    reason: str | None,
    code: str | None,
) -> tuple[str, bool]:
    latency = time.perf_counter() - started
    if event is None:
        # token_issued only for the request whose mint it was (the contract).
        event = "token_reused" if exchange.cache_hit or exchange.shared_mint else "token_issued"
    metrics = request.app[METRICS]
    metrics.count(metrics.requests, "token", str(status), event)
    metrics.latency.observe(latency)
    user_agent = request.headers.get("User-Agent")
    detail = None if reason is None else {"reason": reason, "code": code}
    if exchange.shared_mint:
        detail = {"shared_mint": True}
    audit_event = AuditEvent(
        event=event,
        status=status,
        request_id=request[REQUEST_ID],
        subject=clean_text(exchange.subject),
        tenant_id=exchange.tenant_id,
        workspace_id=exchange.workspace_id,
        dashboard_id=exchange.dashboard_id,
        api_key_id=exchange.api_key_id,
        expires_at=exchange.expires_at,  # Unix seconds: the audit line formats it
        token_sha256=None if exchange.token is None else token_sha256(exchange.token),
        cache_hit=exchange.cache_hit,
        client_ip=request.remote,
        user_agent=None if user_agent is None else clean_text(user_agent[:MAX_USER_AGENT]),
        latency_ms=round(latency * 1000, 3),
        detail=detail,
    )
    # False only in fail-closed mode: the event (now `unavailable`) could not be journaled.
    recorded = request.app[AUDIT].emit(audit_event)
    return audit_event.event, recorded
