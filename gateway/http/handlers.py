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
    AUDIT,
    DB_POOL,
    ISSUER,
    JWT_CACHE,
    METRICS,
    REDIS,
    REQUEST_LIMITER,
    SETTINGS,
    VERIFIER,
)
from gateway.http.token_record import TokenRecord
from gateway.infra.redis_client import RedisTopologyProblem, topology_problem
from gateway.ops.metrics import CONTENT_TYPE_LATEST
from gateway.settings import Settings
from gateway.tokens.request import MAX_BODY_BYTES, check_media_type, parse_token_request

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
NO_COOKIES: Mapping[str, str] = MappingProxyType({})


def _body_now(request: web.Request) -> bytes | None:
    """The body when it came whole with the headers (the usual case), read without a
    coroutine; None when more of it is still to come."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body is over the 16 KiB limit")
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > MAX_BODY_BYTES:  # a chunked body carries no Content-Length to check first
        raise PayloadTooLarge("request body is over the 16 KiB limit")
    return body


async def _read_body(request: web.Request) -> bytes:
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


async def _verify(app: web.Application, token: str) -> Caller:
    """A JWT the cache of verified ones does not hold: verified, then remembered."""
    verifier = app[VERIFIER]
    # A key-set generation (JWKS refreshes) empties the cache; a plain secret never changes.
    generation = verifier.generation
    caller = await verifier.verify(token)
    app[JWT_CACHE].put(token, caller, generation)
    return caller


async def issue_token(request: web.Request, record: TokenRecord) -> bytes:
    """POST /api/v1/dashboards/iframe-token (and the vendor's path): the answer's JSON body.

    The token API's endpoint (http/token_api.py) answers, audits and logs; `record` is filled in
    here for it. Awaits happen only where I/O is due: a local-tier hit awaits nothing.
    """
    app = request.app
    settings = app[SETTINGS]
    try:
        token = _credential(request, settings)
        caller = app[JWT_CACHE].get(token, app[VERIFIER].generation)
        if caller is None:
            caller = await _verify(app, token)
    except Unauthenticated as exc:
        app[METRICS].auth_failures.labels(exc.reason).inc()
        raise
    record.subject = caller.subject
    # The request limit is spent right after authentication, but a bad body is answered first
    # (415, 413, 400, then 429; README "Order of refusals"), and a 429 names the tenant when the
    # body was already received: an over-budget caller never waits for a trickling body.
    over_budget: RateLimited | None = None
    try:
        app[REQUEST_LIMITER].check(
            f"sub:{caller.subject}" if caller.subject is not None else f"ip:{request.remote}"
        )
    except RateLimited as exc:
        if not request.content.is_eof():
            raise
        over_budget = exc
    check_media_type(request.headers.get("Content-Type", ""))
    raw = _body_now(request)
    body = parse_token_request(raw if raw is not None else await _read_body(request))
    record.tenant_id, record.workspace_id = body.tenant_id, body.workspace_id
    record.dashboard_id = body.dashboard_id
    if over_budget is not None:
        raise over_budget
    check_tenant(caller, body.tenant_id)
    if settings.audit_required and not app[AUDIT].can_record():
        # Fail closed: no token leaves unless its event can be journaled now (journal writable,
        # queue not full); emit() turns a late journal failure into a 503 too.
        raise Unavailable("the audit trail is unavailable", reason="audit")

    metrics = app[METRICS]
    issuer = app[ISSUER]
    held = issuer.held(body)
    if held is not None:  # this worker's copy: no round trip, nothing awaited
        record.cache_hit = True
        metrics.count(metrics.cache, "hit")
    else:
        try:
            issued = await issuer.issue(body, caller.subject)
        except Unavailable as exc:
            if exc.reason == "database":
                metrics.dependency_errors.labels("postgresql").inc()
            raise
        held = issued.token
        record.cache_hit, record.shared_mint = issued.cache_hit, issued.shared_mint
        metrics.count(metrics.cache, "hit" if issued.cache_hit else "miss")
        if issued.minted:  # the mint counter counts mints, not requests served by one
            metrics.mints.inc()
    record.dashboard_id, record.token = held.dashboard_id, held.token
    record.expires_at = held.valid_until
    return orjson.dumps(
        {"token": held.token, "dashboard_id": held.dashboard_id, "expires_at": held.valid_until}
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
