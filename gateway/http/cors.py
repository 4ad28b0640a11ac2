"""CORS for browser callers: exact allowed origins, preflight answered, `Vary: Origin` always."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.http.middleware import skips_self_answering

ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID"
# Date: the embed client corrects for the browser's clock with the server's.
EXPOSE_HEADERS = "Date, Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE = "600"
ALLOWED_ORIGINS = web.AppKey("cors_origins", frozenset)


def setup_cors(app: web.Application, origins: Iterable[str]) -> None:
    """Answer preflights and stamp CORS headers on every response of `app`.

    The preflight middleware runs inside the gateway middleware (so preflights get a request id
    and the security headers); the headers are added as the response is sent, so error answers
    made by the gateway middleware carry them too.
    """
    app[ALLOWED_ORIGINS] = frozenset(origins)
    if not app[ALLOWED_ORIGINS]:
        # No browser origin may call: nothing to answer or stamp beyond the gateway middleware's
        # `Vary: Origin`, and the hot path skips a middleware layer and a response signal.
        return
    app.middlewares.append(preflight_middleware)
    app.on_response_prepare.append(_stamp)


def _allowed_origin(request: web.Request) -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None and origin in request.app[ALLOWED_ORIGINS]:
        return origin
    return None


@skips_self_answering
@web.middleware
def preflight_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """OPTIONS with Access-Control-Request-Method on a known path: 204, allowed origins only."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        # A plain function handing back the handler's awaitable: other requests pay no coroutine.
        return handler(request)
    return _preflight(request, handler)


async def _preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    error = match.http_exception
    if isinstance(error, web.HTTPMethodNotAllowed):
        methods = set(error.allowed_methods)
    elif error is None:
        methods = {match.route.method}
    else:
        return await handler(request)  # unknown path: the usual 404
    response = web.Response(status=204)
    if _allowed_origin(request) is not None:
        response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(methods))
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    # `Vary: Origin` is set by the gateway middleware on every answer; this adds the allow-list.
    origin = _allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
