"""The parser-refusal pieces without a server: the fixed reasons, the token path read from the
refused data, and the filter that keeps aiohttp's own lines (which quote headers) out."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidHeader, LineTooLong

from gateway.http.parser_refusals import (
    ParserLogFilter,
    RefusingRequestHandler,
    refusal_reason,
    setup_parser_refusals,
    token_path,
)
from gateway.ops.runner import GatewayRunner


def test_reasons_are_fixed_names() -> None:
    """Each parser exception maps to one short reason; the offending bytes never leak into it."""
    assert refusal_reason(BadHttpMethod("G\x01T")) == "bad_method"
    assert refusal_reason(LineTooLong(bytearray(b"/api/v1/x..."), 10)) == "request_line_too_long"
    assert refusal_reason(LineTooLong(b"Bearer abc...", 10)) == "header_too_long"
    assert refusal_reason(BadHttpMessage("Too many headers received")) == "too_many_headers"
    assert refusal_reason(BadHttpMessage("Duplicate 'Content-Length' header found.")) == (
        "bad_framing"
    )
    assert refusal_reason(InvalidHeader(b"X-\x00")) == "bad_header"
    assert refusal_reason(BadHttpMessage("Bearer secret-token")) == "bad_request"


def test_token_path_is_read_from_the_last_request_line() -> None:
    """The refused request's path counts only when it is a token path; a query is ignored and
    an earlier pipelined request does not decide it."""
    good = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    refused = b"POST /api/dashboards/iframe-token?x=1 HTTP/1.1\r\nAuthorization: Bearer a\x00"
    assert token_path(refused) == "/api/dashboards/iframe-token"
    assert token_path(good + refused) == "/api/dashboards/iframe-token"
    earlier = b"POST /api/v1/dashboards/iframe-token HTTP/1.1\r\nHost: x\r\n\r\n"
    assert token_path(earlier + b"GET /healthz HTTP/1.1\r\nX: \x00") is None
    assert token_path(b"Authorization: Bearer a\x00") is None


def test_filter_drops_aiohttp_lines_about_refusals() -> None:
    """A record carrying a parser exception is dropped; any other record passes."""
    flt = ParserLogFilter()

    def record(exc: BaseException | None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("aiohttp.server", logging.ERROR, "", 0, "x", None, info)

    assert flt.filter(record(BadHttpMessage("Authorization: Bearer t\x00"))) is False
    assert flt.filter(record(RuntimeError("boom"))) is True
    assert flt.filter(record(None)) is True


async def test_a_body_past_the_read_buffer_pauses_and_resumes_reading() -> None:
    """A body larger than the connection's read buffer pauses reading (flow control) and is
    still read whole: `resume_reading` skips only when nothing is paused."""
    seen: list[int] = []
    resumed: list[bool] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(len(body))
        return web.Response(text=str(len(body)))

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/echo", echo)
    setup_parser_refusals(app)
    original = RefusingRequestHandler.resume_reading

    def recording(self: RefusingRequestHandler, resume_parser: bool = True) -> None:
        resumed.append(self._reading_paused)
        original(self, resume_parser)

    RefusingRequestHandler.resume_reading = recording  # type: ignore[method-assign]
    runner = GatewayRunner(app, access_log=None, read_bufsize=1024)
    try:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        body = b"x" * (1024 * 1024)
        # A resume wrongly skipped would leave the body half read: the timeout says so.
        async with asyncio.timeout(10), aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/echo", data=body) as resp:
                assert resp.status == 200
                assert await resp.text() == str(len(body))
            small = await session.post(f"http://127.0.0.1:{port}/echo", data=b"{}")
            assert await small.text() == "2"
    finally:
        RefusingRequestHandler.resume_reading = original  # type: ignore[method-assign]
        await runner.cleanup()
    assert seen == [len(body), 2]
    assert True in resumed  # reading was paused, and resumed through aiohttp's own path
