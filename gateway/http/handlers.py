"""HTTP handlers: parse, call the domain, shape the answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from types import MappingProxyType

import orjson
from aiohttp import web

from gateway.auth.credentials import check_same_site, read_credential
from gateway.auth.verifier import Caller, check_tenant
from gateway.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from gateway.http.state import (
    DB_POOL,
    METRICS,
    REDIS,
    SETTINGS,
    VERIFIER,
    TokenServices,
)
from gateway.http.token_record import TokenRecord
from gateway.infra.redis_client import RedisTopologyProblem, topology_problem
from gateway.ops.metrics import CONTENT_TYPE_LATEST
from gateway.settings import Settings
from gateway.tokens.format import EmbedToken
from gateway.tokens.request import (
    MAX_BODY_BYTES,
    TokenRequest,
    check_media_type,
    parse_token_request,
)

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
NO_COOKIES: Mapping[str, str] = MappingProxyType({})


def _body_now(request: web.Request) -> bytes | None:
    """The body when it came whole with the headers (the usual case), read without a
    coroutine; None when more of it is still to come."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body is over the 16 KiB limit")
    return body


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body is over the 16 KiB limit")  # before waiting for it
    # The app's client_max_size makes read() refuse a longer chunked body (HTTP 413).
    try:
        # A client trickling its body must not hold a connection and a handler forever.
        async with asyncio.timeout(request.app[SETTINGS].body_timeout):
            return await request.read()
    except TimeoutError:
        raise InvalidRequest("request body not received in time", reason="body_timeout") from None


def _check_cookie_request(request: web.Request) -> None:
    """A cookie-borne JWT: a JSON body (which a cross-site form cannot send), from our origin."""
    # Before any token work: a text/plain or form POST is how a cross-site page rides a cookie.
    check_media_type(request.headers.get("Content-Type", ""))
    check_same_site(
        origin=request.headers.get("Origin"),
        referer=request.headers.get("Referer"),
        sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
        host=request.host,
        scheme=request.scheme,
        allowed_origins=request.app[SETTINGS].cors_origins,
    )


def _credential(request: web.Request, settings: Settings) -> str:
    """The caller's JWT (Authorization, else the cookie when one is configured)."""
    authorization = request.headers.getall("Authorization", ())
    if len(authorization) == 1 and authorization[0].startswith("Bearer ") and authorization[0][7:]:
        # The usual spelling, as read_credential would read it, without building a Credential.
        return authorization[0][7:]
    # Cookies are parsed only when no Authorization header is there to win over them.
    cookies = request.cookies if not authorization and settings.jwt_cookie else NO_COOKIES
    credential = read_credential(authorization, cookies, settings.jwt_cookie)
    if credential.from_cookie:
        _check_cookie_request(request)
    return credential.token


def issue_token(
    services: TokenServices, request: web.Request, record: TokenRecord
) -> bytes | Awaitable[bytes]:
    """POST /api/v1/dashboards/iframe-token (and the vendor's path): the answer's JSON body, or
    an awaitable of it when I/O is due (a verification, a body still arriving, a local-tier miss).

    The token API's endpoint (http/token_api.py) answers, audits and logs; `record` is filled in
    here for it. A local-tier hit of a verified caller is answered without a coroutine.
    """
    try:
        token = _credential(request, services.settings)
    except Unauthenticated as exc:
        services.metrics.auth_failures.labels(exc.reason).inc()
        raise
    caller = services.jwt_cache.get(token, services.verifier.generation)
    if caller is None:
        return _verified(services, request, record, token)
    return _authorized(services, request, record, caller)


async def _verified(
    services: TokenServices, request: web.Request, record: TokenRecord, token: str
) -> bytes:
    """A JWT the cache of verified ones does not hold: verified and remembered, then answered."""
    verifier = services.verifier
    # A key-set generation (JWKS refreshes) empties the cache; a plain secret never changes.
    generation = verifier.generation
    try:
        caller = await verifier.verify(token)
    except Unauthenticated as exc:
        services.metrics.auth_failures.labels(exc.reason).inc()
        raise
    services.jwt_cache.put(token, caller, generation)
    answer = _authorized(services, request, record, caller)
    return answer if isinstance(answer, bytes) else await answer


def _authorized(
    services: TokenServices, request: web.Request, record: TokenRecord, caller: Caller
) -> bytes | Awaitable[bytes]:
    """The request limit, then the body (read now when it is all there)."""
    record.subject = caller.subject
    # The request limit is spent right after authentication, but a bad body is answered first
    # (415, 413, 400, then 429; README "Order of refusals"), and a 429 names the tenant when the
    # body was already received: an over-budget caller never waits for a trickling body.
    over_budget: RateLimited | None = None
    try:
        services.limiter.check(
            f"sub:{caller.subject}" if caller.subject is not None else f"ip:{request.remote}"
        )
    except RateLimited as exc:
        if not request.content.is_eof():
            raise
        over_budget = exc
    content_type = request.headers.get("Content-Type", "")
    if content_type != "application/json":  # the usual spelling needs no parsing
        check_media_type(content_type)
    raw = _body_now(request)
    if raw is None:
        return _body_read(services, request, record, caller, over_budget)
    return _answer(services, record, caller, parse_token_request(raw), over_budget)


async def _body_read(
    services: TokenServices,
    request: web.Request,
    record: TokenRecord,
    caller: Caller,
    over_budget: RateLimited | None,
) -> bytes:
    body = parse_token_request(await _read_body(request))
    answer = _answer(services, record, caller, body, over_budget)
    return answer if isinstance(answer, bytes) else await answer


def _answer(
    services: TokenServices,
    record: TokenRecord,
    caller: Caller,
    body: TokenRequest,
    over_budget: RateLimited | None,
) -> bytes | Awaitable[bytes]:
    """The tenant rule, then the token: this worker's copy now, else an awaitable issue."""
    record.tenant_id, record.workspace_id = body.tenant_id, body.workspace_id
    record.dashboard_id = body.dashboard_id
    if over_budget is not None:
        raise over_budget
    check_tenant(caller, body.tenant_id)
    if services.settings.audit_required and not services.audit.can_record():
        # Fail closed: no token leaves unless its event can be journaled now (journal writable,
        # queue not full); emit() turns a late journal failure into a 503 too.
        raise Unavailable("the audit trail is unavailable", reason="audit")
    held = services.issuer.held(body)
    if held is None:
        return _issued(services, record, caller, body)
    record.cache_hit = True  # this worker's copy: no round trip, nothing awaited
    services.metrics.cache_hits.inc()
    return _json(record, held)


async def _issued(
    services: TokenServices, record: TokenRecord, caller: Caller, body: TokenRequest
) -> bytes:
    metrics = services.metrics
    try:
        issued = await services.issuer.issue_shared(body, caller.subject)
    except Unavailable as exc:
        if exc.reason == "database":
            metrics.dependency_errors.labels("postgresql").inc()
        raise
    record.cache_hit, record.shared_mint = issued.cache_hit, issued.shared_mint
    (metrics.cache_hits if issued.cache_hit else metrics.cache_misses).inc()
    if issued.minted:  # the mint counter counts mints, not requests served by one
        metrics.mints.inc()
    return _json(record, issued.token)


def _json(record: TokenRecord, token: EmbedToken) -> bytes:
    record.dashboard_id, record.token = token.dashboard_id, token.token
    record.expires_at = token.valid_until
    return orjson.dumps(
        {"token": token.token, "dashboard_id": token.dashboard_id, "expires_at": token.valid_until}
    )


async def healthz(_request: web.Request) -> web.Response:
    """The process is alive."""
    return web.json_response({"status": "ok"}, headers=NO_STORE)


def _check_jwks(app: web.Application, checks: dict[str, str]) -> None:
    """Add the JWKS check when a JWKS URL is configured: not ready until its keys have loaded."""
    status = app[VERIFIER].jwks_status()
    if status is not None:
        checks["jwks"] = status


async def readyz(request: web.Request) -> web.Response:
    """PostgreSQL and Redis both answer; 503 naming whichever does not."""
    app = request.app
    timeout = max(app[SETTINGS].db_timeout, 0.5)
    checks: dict[str, str] = {}

    async def check(name: str, probe: Awaitable[object]) -> None:
        try:
            async with asyncio.timeout(timeout):
                await probe
            checks[name] = "ok"
        except RedisTopologyProblem as exc:
            checks[name] = f"misconfigured ({exc})"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the type is reported
            checks[name] = f"unreachable ({type(exc).__name__})"

    async def redis_ready() -> None:
        # Reachable is not enough: a cluster with slots uncovered, or a replica where the
        # primary should be (a failover the configuration missed), cannot take writes.
        problem = await topology_problem(app[REDIS], app[SETTINGS].redis_mode)
        if problem is not None:
            raise RedisTopologyProblem(problem)

    await asyncio.gather(
        check("postgresql", app[DB_POOL].fetchval("SELECT 1")),
        check("redis", redis_ready()),
    )
    _check_jwks(app, checks)
    ready = all(v == "ok" for v in checks.values())
    failing = [name for name, v in checks.items() if v != "ok"]
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    return web.json_response(body, status=200 if ready else 503, headers=NO_STORE)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    response = web.Response(body=request.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
