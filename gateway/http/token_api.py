"""The token API as a route group: its paths, and the audit middleware that owns their audit.

Every request to a token path is audited because of where it went (a wrong method included),
not because of what its handler did: the middleware makes the request's `TokenRecord`, hands it
down, and writes the row and the metrics from it and the answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.audit.event import AuditEvent, clean_text
from gateway.errors import Unavailable
from gateway.http.middleware import log_request
from gateway.http.responses import contract_error, error_response
from gateway.http.state import AUDIT, ISSUER, METRICS, REQUEST_ID, TOKEN_RECORD
from gateway.http.token_record import TokenRecord
from gateway.tokens.format import token_sha256

TOKEN_PATHS = ("/api/v1/dashboards/iframe-token", "/api/dashboards/iframe-token")
TOKEN_PATH_SET = frozenset(TOKEN_PATHS)
MAX_USER_AGENT = 512


def setup_token_api(app: web.Application, issue_token: Handler) -> None:
    """Route POST on every token path to `issue_token`, under the token API's audit."""
    for path in TOKEN_PATHS:
        app.router.add_post(path, issue_token)
    app.middlewares.append(token_audit_middleware)


@web.middleware
def token_audit_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Audit, count and log every request to a token path; other paths pass through."""
    if request.path not in TOKEN_PATH_SET:
        # A plain function handing back the handler's own awaitable: the requests that are not
        # the token API's pay no coroutine of this middleware's.
        return handler(request)
    return _audited(request, handler)


async def _audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    app = request.app
    record = TokenRecord(api_key_id=app[ISSUER].api_key_id)
    request[TOKEN_RECORD] = record
    event = reason = code = None
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure is answered and audited
        response, event, reason, code = contract_error(exc, request[REQUEST_ID])
    status = response.status
    if event is None:
        # token_issued only for the request whose mint it was (the contract).
        event = "token_reused" if record.cache_hit or record.shared_mint else "token_issued"
    event, recorded = record_token_request(
        app,
        request[REQUEST_ID],
        status,
        event,
        started,
        record=record,
        reason=reason,
        code=code,
        client_ip=request.remote,
        user_agent=request.headers.get("User-Agent"),
    )
    if not recorded:
        # Fail closed: the answer's audit event could not be journaled, so no token leaves.
        refusal = Unavailable("the audit trail is unavailable", reason="audit")
        response, reason = error_response(refusal, request[REQUEST_ID]), refusal.reason
        status = response.status
    log_request(request, status, started, tenant_id=record.tenant_id, event=event, reason=reason)
    return response


def record_token_request(
    app: web.Application,
    request_id: str,
    status: int,
    event: str,
    started: float,
    *,
    record: TokenRecord,
    reason: str | None,
    code: str | None,
    client_ip: str | None,
    user_agent: str | None,
) -> tuple[str, bool]:
    """Count one token request and emit its audit row: the event recorded, and False when it
    could not be journaled (fail-closed mode; the event is then `unavailable`)."""
    latency = time.perf_counter() - started
    metrics = app[METRICS]
    metrics.count(metrics.requests, "token", str(status), event)
    metrics.latency.observe(latency)
    audit_event = AuditEvent(
        event=event,
        status=status,
        request_id=request_id,
        subject=clean_text(record.subject),
        tenant_id=record.tenant_id,
        workspace_id=record.workspace_id,
        dashboard_id=record.dashboard_id,
        api_key_id=record.api_key_id,
        expires_at=record.expires_at,  # Unix seconds: the audit line formats it
        token_sha256=None if record.token is None else token_sha256(record.token),
        cache_hit=record.cache_hit,
        client_ip=client_ip,
        user_agent=None if user_agent is None else clean_text(user_agent[:MAX_USER_AGENT]),
        latency_ms=round(latency * 1000, 3),
        detail=(
            {"shared_mint": True}
            if record.shared_mint
            else None
            if reason is None
            else {"reason": reason, "code": code}
        ),
    )
    recorded = app[AUDIT].emit(audit_event)
    return audit_event.event, recorded
