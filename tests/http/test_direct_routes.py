"""The token paths answered ahead of aiohttp's router: the same handler, match and app as the
router's, and aiohttp's own path for everything else."""

from __future__ import annotations

from collections.abc import Awaitable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler

from gateway.app import create_app
from gateway.http.direct_routes import direct_handler
from gateway.http.middleware import answers_itself, edge_middleware, mark_answers_itself
from gateway.http.token_api import TOKEN_PATHS
from gateway.ops.runner import REQUEST_HANDLER
from gateway.settings import Settings
from gateway.tokens.directory import add_mapping
from tests.helpers import auth, eventually

NAME = web.AppKey("name", str)


async def _answer(request: web.Request) -> web.StreamResponse:
    return web.Response(text=f"{request.match_info.route.method} {request.app[NAME]}")


class Recorder:
    """The app's own request handler, recording what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        self.seen.append(f"{request.method} {request.path}")
        return _answer(request)  # type: ignore[arg-type]


def _app(*middlewares: object) -> tuple[web.Application, web.AbstractRoute]:
    app = web.Application(middlewares=[edge_middleware, *middlewares])  # type: ignore[list-item]
    app[NAME] = "the app"
    route = app.router.add_post("/api/direct", mark_answers_itself(_answer))
    app.router.add_get("/api/direct", _answer)
    return app, route


def _request(app: web.Application, method: str, path: str, **headers: str) -> web.Request:
    return make_mocked_request(method, path, headers=headers, app=app)


async def test_a_post_to_the_path_goes_straight_to_its_handler_with_the_routers_match() -> None:
    app, route = _app()
    own = Recorder()
    dispatch = direct_handler(app, [route], own)
    request = _request(app, "POST", "/api/direct")
    request._match_info = None  # as aiohttp makes it, before its own handler resolves
    response = await dispatch(request)
    assert own.seen == []
    assert response.text == "POST the app"
    assert request.match_info.route is route
    assert request.match_info.apps == (app,)
    assert request.app is app


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/direct", {}),
        ("POST", "/other", {}),
        ("POST", "/api/direct/", {}),
        ("POST", "/api%2Fdirect", {}),  # the router's key keeps an encoded slash encoded
        ("POST", "/api/direct", {"Expect": "100-continue"}),  # aiohttp answers 100-continue
    ],
)
async def test_anything_else_takes_aiohttps_own_path(
    method: str, path: str, headers: dict[str, str]
) -> None:
    app, route = _app()
    own = Recorder()
    dispatch = direct_handler(app, [route], own)
    await dispatch(_request(app, method, path, **headers))
    assert len(own.seen) == 1


async def test_a_middleware_that_does_not_declare_itself_skippable_keeps_every_request() -> None:
    @web.middleware
    async def counting(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request)

    app, route = _app(counting)
    own = Recorder()
    assert direct_handler(app, [route], own) is own


def test_only_post_routes_can_be_answered_directly() -> None:
    app = web.Application()
    route = app.router.add_get("/x", _answer)
    with pytest.raises(ValueError, match="not a route to answer directly"):
        direct_handler(app, [route], Recorder())


async def test_the_gateway_answers_its_token_paths_directly_with_the_routers_own_route(
    settings: Settings,
) -> None:
    """A POST on each token path gets the route the router resolves it to (a handler that
    answers itself), without the app's own handler; none of the app's middlewares is skipped
    unless it declared itself skippable."""
    app = create_app(settings)
    own = Recorder()
    dispatch = app[REQUEST_HANDLER](own)
    for path in TOKEN_PATHS:
        routed = await app.router.resolve(_request(app, "POST", path))
        assert routed.http_exception is None
        request = _request(app, "POST", path)
        request._match_info = None
        pending = dispatch(request)
        pending.close()  # the endpoint's coroutine, not run: the app has not started
        assert own.seen == []
        assert request.match_info.route is routed.route
        assert answers_itself(request)


async def test_a_token_request_with_expect_continue_is_answered_through_aiohttps_path(
    make_client, settings: Settings, db: asyncpg.Connection
) -> None:
    """`Expect: 100-continue` takes aiohttp's own path (which answers the 100): the same token
    answer, headers and audit row as the direct path gives."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(settings)
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    for expect in (False, True):
        resp = await client.post(TOKEN_PATHS[0], json=body, headers=auth(), expect100=expect)
        assert resp.status == 200
        assert (await resp.json())["dashboard_id"] == "dashboard-789"
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert len(resp.headers["X-Request-ID"]) == 32

    async def audited() -> bool:
        return await db.fetchval("SELECT count(*) FROM audit_events") == 2

    await eventually(audited, timeout=5, what="both requests audited")
    events = await db.fetch("SELECT event, status FROM audit_events ORDER BY occurred_at")
    assert [tuple(e) for e in events] == [("token_issued", 200), ("token_reused", 200)]
