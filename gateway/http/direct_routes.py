"""Routes answered ahead of aiohttp's router and middleware chain: the token paths' hot path.

For every request aiohttp resolves the route (a URL and a match object), stacks the app's
middlewares around the handler (its own `_fix_request_current_app` among them, for any app that
has a middleware) and awaits the lot: about a tenth of a local-tier hit's instructions
(`bench/inproc.py`). A handler marked `answers_itself` does the edge's work itself, and every
middleware of ours hands it the request untouched, so a POST to its exact path can go straight
to it with the match the router would have made. Anything else, a middleware that does not
declare itself skippable, or an `Expect` header (aiohttp answers 100-continue in its `_handle`)
takes aiohttp's own path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import ResourceRoute, UrlMappingMatchInfo

from gateway.http.middleware import skippable
from gateway.ops.runner import REQUEST_HANDLER, RequestHandlerFunc

__all__ = ["answer_directly"]


def answer_directly(app: web.Application, routes: Iterable[ResourceRoute]) -> None:
    """Have `gateway serve` call these POST routes' handlers without the router or middlewares
    (each must be marked `answers_itself`)."""
    chosen = tuple(routes)

    def wrap(handle: RequestHandlerFunc) -> RequestHandlerFunc:
        return direct_handler(app, chosen, handle)

    app[REQUEST_HANDLER] = wrap


def direct_handler(
    app: web.Application, routes: Iterable[ResourceRoute], handle: RequestHandlerFunc
) -> RequestHandlerFunc:
    """`handle` (the app's own handler) with the routes' POSTs answered ahead of it; `handle`
    itself while a middleware of the (frozen) app is not `skippable`."""
    if not all(skippable(m) for m in app.middlewares):
        return handle
    matches: dict[str, tuple[UrlMappingMatchInfo, RequestHandlerFunc]] = {}
    for route in routes:
        path = route.resource.canonical if route.resource is not None else None
        if route.method != hdrs.METH_POST or path is None or path in matches:
            raise ValueError(f"not a route to answer directly: {route!r}")
        # The match the router makes for this route (no variables), frozen once and shared: a
        # frozen match is read-only, and nothing here sets its current_app.
        match = UrlMappingMatchInfo({}, route)
        match.add_app(app)
        match.freeze()
        matches[path] = (match, route.handler)

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.method == hdrs.METH_POST:
            # The router's own key: the path with %2F and the like still encoded.
            found = matches.get(request.rel_url.path_safe)
            if found is not None and hdrs.EXPECT not in request.headers:
                match, handler = found
                # What Application._handle sets once it has resolved; aiohttp has no public
                # setter, and request.app, match_info and the response signals read it.
                request._match_info = match  # type: ignore[attr-defined]
                return handler(request)  # type: ignore[arg-type]
        return handle(request)

    return dispatch
