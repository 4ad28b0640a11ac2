"""Run an aiohttp app the way `web.run_app` does, but with the app's own connection handler.

aiohttp answers requests its HTTP parser refuses (bad header bytes, too many headers, smuggling
forms...) from `RequestHandler.handle_error`, before any middleware runs, and `web.run_app` gives
no way to choose the handler class. So `gateway serve` runs the app through `GatewayRunner`,
whose server builds each connection's handler with the factory the app stored under
`CONNECTION_HANDLER` (gateway/http/parser_refusals.py sets it), and this module's `run` loop.
The server's request handler is the app's own, or what `REQUEST_HANDLER` makes of it (the token
paths answered ahead of aiohttp's router: gateway/http/direct_routes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

ConnectionHandler = Callable[..., RequestHandler]
CONNECTION_HANDLER: web.AppKey[ConnectionHandler] = web.AppKey("connection_handler")
RequestHandlerFunc = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# Given the app's own request handler (router, middlewares, handler), the one the server calls
# instead: an app may answer some requests ahead of the router (http/direct_routes.py).
REQUEST_HANDLER: web.AppKey[Callable[[RequestHandlerFunc], RequestHandlerFunc]] = web.AppKey(
    "request_handler"
)


class _Server(web.Server):
    """An aiohttp server calling `handler` for each request, whose connections are handled by
    `make_handler`'s handlers (aiohttp's own when None)."""

    def __init__(
        self,
        base: web.Server,
        handler: RequestHandlerFunc,
        make_handler: ConnectionHandler | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            **kwargs,
        )
        self._make_handler = make_handler
        self._handler_kwargs = kwargs

    def __call__(self) -> RequestHandler:
        """One connection's protocol (the loop calls this for each accepted connection)."""
        if self._make_handler is None:
            return super().__call__()
        return self._make_handler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner that uses the app's CONNECTION_HANDLER and REQUEST_HANDLER, when it set them."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # The connection handler's own options (parser limits, keep-alive, access log).
        self._handler_kwargs = {
            k: v
            for k, v in kwargs.items()
            if k not in ("handle_signals", "shutdown_timeout", "handler_cancellation")
        }

    async def _make_server(self) -> web.Server:
        # `_make_server` is BaseRunner's abstract hook for making the server: AppRunner's own
        # starts and freezes the app; the server is then rebuilt around the app's handlers.
        server = await super()._make_server()
        make_handler = self.app.get(CONNECTION_HANDLER)
        wrap = self.app.get(REQUEST_HANDLER)
        if make_handler is None and wrap is None:
            return server
        handler = server.request_handler if wrap is None else wrap(server.request_handler)
        return _Server(server, handler, make_handler, **self._handler_kwargs)


async def _serve_forever(
    runner: GatewayRunner,
    host: str | None,
    port: int | None,
    sock: socket.socket | None,
    on_listening: Callable[[], None] | None,
) -> None:
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.SockSite(runner, sock) if sock is not None else web.TCPSite(runner, host, port)
        )
        await site.start()
        if on_listening is not None:
            on_listening()
        await asyncio.Event().wait()  # until a signal raises GracefulExit in the loop
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    *,
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | None,
    sock: socket.socket | None,
    on_listening: Callable[[], None] | None,
    **runner_kwargs: Any,
) -> None:
    """Serve `app` on `loop` until SIGINT/SIGTERM, then run its cleanups (like web.run_app)."""
    runner = GatewayRunner(app, handle_signals=True, **runner_kwargs)
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve_forever(runner, host, port, sock, on_listening))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
