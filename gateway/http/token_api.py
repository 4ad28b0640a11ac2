"""The token API as a route group: its paths, the endpoint that answers and audits them, and
the middleware that audits the requests to them the router sent elsewhere (a wrong method).

Every request to a token path is audited because of where it went, not because of what its
handler did. The token endpoint does the edge's work itself (request id, the contract's error,
headers, log line) and writes the row and the metrics from its `TokenRecord` and the answer, in
one coroutine around its handler: no middleware coroutine or task sits on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from gateway.audit.event import new_event_id
from gateway.errors import Unavailable
from gateway.http.direct_routes import answer_directly
from gateway.http.middleware import (
    SECURITY_HEADERS,
    answers_itself,
    log_request,
    mark_answers_itself,
    request_id_for,
    skips_self_answering,
    stamp_headers,
)
from gateway.http.responses import contract_error, error_response
from gateway.http.state import REQUEST_ID, TOKEN_RECORD, TOKEN_SERVICES, TokenServices
from gateway.http.token_record import TokenRecord
from gateway.tokens.format import token_sha256

TOKEN_PATHS = ("/api/v1/dashboards/iframe-token", "/api/dashboards/iframe-token")
TOKEN_PATH_SET = frozenset(TOKEN_PATHS)
MAX_USER_AGENT = 512
# Every header of a token answer but its request id, built once (what `stamp_headers` adds).
# Copied per answer: a CIMultiDict's copy costs less than one built from a dict, and aiohttp
# takes a CIMultiDict as the answer's headers without building another.
ANSWER_HEADERS = CIMultiDict(
    {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        **SECURITY_HEADERS,
        "Vary": "Origin",
    }
)

# The token handler: fills in the request's record and answers the JSON body of a success, or
# an awaitable of it when it has I/O to wait for.
TokenHandler = Callable[[TokenServices, web.Request, TokenRecord], bytes | Awaitable[bytes]]


def setup_token_api(app: web.Application, issue_token: TokenHandler) -> None:
    """Route POST on every token path to an endpoint around `issue_token`, and audit the
    requests to those paths that other handlers answer."""
    endpoint = token_endpoint(app, issue_token)
    routes = [app.router.add_post(path, endpoint) for path in TOKEN_PATHS]
    app.middlewares.append(token_audit_middleware)
    # `gateway serve` answers a POST to a token path without the router or the middlewares.
    answer_directly(app, routes)


def token_endpoint(app: web.Application, issue_token: TokenHandler) -> Handler:
    """`app`'s handler of the token paths: `issue_token`, answered, audited and logged."""
    bound: TokenServices | None = None

    async def bind(app: web.Application) -> None:
        # After every cleanup context (aiohttp runs those first), so the parts are final.
        nonlocal bound
        bound = app[TOKEN_SERVICES] = TokenServices.of(app)

    app.on_startup.append(bind)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request_id_for(request.headers.get("X-Request-ID"))
        services = bound
        if services is None:
            raise RuntimeError("the token endpoint was called before its app started")
        record = TokenRecord(services.api_key_id)
        try:
            answer = issue_token(services, request, record)
            body = answer if isinstance(answer, bytes) else await answer
        except Exception as exc:  # noqa: BLE001 - every failure is answered and audited
            response, event, reason, code = contract_error(exc, request_id)
            stamp_headers(response.headers, request_id)
            return finish(
                request, services, record, request_id, response, started, event, reason, code
            )
        headers = ANSWER_HEADERS.copy()
        headers["X-Request-ID"] = request_id
        response = web.Response(body=body, headers=headers)
        # token_issued only for the request whose mint it was (the contract).
        event = "token_reused" if record.cache_hit or record.shared_mint else "token_issued"
        return finish(request, services, record, request_id, response, started, event, None, None)

    return mark_answers_itself(endpoint)


@skips_self_answering
@web.middleware
def token_audit_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Audit a request to a token path that another handler answers (a wrong method's 405);
    other paths and the token endpoint itself pass through."""
    if answers_itself(request) or request.path not in TOKEN_PATH_SET:
        # A plain function handing back the handler's own awaitable: no coroutine of this one's.
        return handler(request)
    return _audited(request, handler)


async def _audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Inside the edge middleware, which made the request id and stamps the headers.
    started = time.perf_counter()
    request_id = request[REQUEST_ID]
    services = request.app[TOKEN_SERVICES]
    record = TokenRecord(services.api_key_id)
    request[TOKEN_RECORD] = record  # the edge leaves the log line to this request's audit
    event = reason = code = None
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001 - every failure is answered and audited
        response, event, reason, code = contract_error(exc, request_id)
    return finish(
        request,
        services,
        record,
        request_id,
        response,
        started,
        event or "invalid_request",
        reason,
        code,
    )


def finish(
    request: web.Request,
    services: TokenServices,
    record: TokenRecord,
    request_id: str,
    response: web.StreamResponse,
    started: float,
    event: str,
    reason: str | None,
    code: str | None,
) -> web.StreamResponse:
    """Audit, count and log one token request; the answer (a 503 when fail-closed audit could not
    journal the row of a success)."""
    status = response.status
    event, recorded = record_token_request(
        services,
        request_id,
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
        response, reason = error_response(refusal, request_id), refusal.reason
        stamp_headers(response.headers, request_id)
        status = response.status
    log_request(
        request,
        status,
        started,
        request_id,
        services.settings.access_log_sample,
        tenant_id=record.tenant_id,
        event=event,
        reason=reason,
    )
    return response


def record_token_request(
    services: TokenServices,
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
    services.metrics.token_request(status, event, latency)
    token = record.token
    if user_agent is not None and len(user_agent) > MAX_USER_AGENT:
        user_agent = user_agent[:MAX_USER_AGENT]
    # Text as the caller sent it: the audit line escapes what COPY or PostgreSQL would refuse.
    recorded = services.audit.emit_row(
        (
            new_event_id(),
            time.time(),
            event,
            status,
            request_id,
            record.subject,
            record.tenant_id,
            record.workspace_id,
            record.dashboard_id,
            record.api_key_id,
            record.expires_at,  # Unix seconds: the audit line formats it
            None if token is None else token_sha256(token),
            record.cache_hit,
            client_ip,
            user_agent,
            round(latency * 1000, 3),
            (
                {"shared_mint": True}
                if record.shared_mint
                else None
                if reason is None
                else {"reason": reason, "code": code}
            ),
        )
    )
    return (event, True) if recorded else ("unavailable", False)
