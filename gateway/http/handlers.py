"""HTTP handlers: parse, call the domain, shape the answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import orjson
from aiohttp import web

from gateway.auth.credentials import check_same_site, read_credential
from gateway.auth.verifier import check_tenant
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
    TOKEN_RECORD,
    VERIFIER,
)
from gateway.infra.redis_client import RedisTopologyProblem, topology_problem
from gateway.ops.metrics import CONTENT_TYPE_LATEST
from gateway.tokens.request import MAX_BODY_BYTES, check_media_type, parse_token_request

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body is over the 16 KiB limit")
    # The app's client_max_size makes read() refuse a longer chunked body (HTTP 413).
    try:
        if request.content.is_eof():
            # The whole body came with the headers (the usual case): nothing to wait for.
            return await request.read()
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


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/v1/dashboards/iframe-token (and the vendor's path)."""
    app = request.app
    # Made and audited by the token API's middleware (http/token_api.py); filled in here.
    record = request[TOKEN_RECORD]
    try:
        credential = read_credential(
            request.headers.getall("Authorization", []), request.cookies, app[SETTINGS].jwt_cookie
        )
        if credential.from_cookie:
            _check_cookie_request(request)
        token = credential.token
        verifier, jwt_cache = app[VERIFIER], app[JWT_CACHE]
        # A key-set generation (JWKS refreshes) empties the cache; a plain secret never changes.
        generation = verifier.generation
        caller = jwt_cache.get(token, generation)
        if caller is None:
            caller = await verifier.verify(token)
            jwt_cache.put(token, caller, generation)
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
    body = parse_token_request(await _read_body(request))
    record.tenant_id, record.workspace_id = body.tenant_id, body.workspace_id
    record.dashboard_id = body.dashboard_id
    if over_budget is not None:
        raise over_budget
    check_tenant(caller, body.tenant_id)
    if app[SETTINGS].audit_required and not app[AUDIT].can_record():
        # Fail closed: no token leaves unless its event can be journaled now (journal writable,
        # queue not full); emit() turns a late journal failure into a 503 too.
        raise Unavailable("the audit trail is unavailable", reason="audit")

    try:
        issued = await app[ISSUER].issue(body, caller.subject)
    except Unavailable as exc:
        if exc.reason == "database":
            app[METRICS].dependency_errors.labels("postgresql").inc()
        raise
    token = issued.token
    record.dashboard_id, record.token = token.dashboard_id, token.token
    record.expires_at, record.cache_hit = token.valid_until, issued.cache_hit
    record.shared_mint = issued.shared_mint
    metrics = app[METRICS]
    metrics.count(metrics.cache, "hit" if issued.cache_hit else "miss")
    if issued.minted:  # the mint counter counts mints, not requests served by one
        app[METRICS].mints.inc()
    payload = {
        "token": token.token,
        "dashboard_id": token.dashboard_id,
        "expires_at": token.valid_until,
    }
    return web.Response(
        body=orjson.dumps(payload), content_type="application/json", headers=NO_STORE
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
