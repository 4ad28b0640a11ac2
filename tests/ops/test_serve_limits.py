"""`gateway serve` limits a client cannot hold resources past: header size, keep-alive, body read,
and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from tests.helpers import make_jwt
from tests.servers import free_port, gateway_env, start_gateway, stop_gateway, wait_healthy

V1 = "/api/v1/dashboards/iframe-token"


@pytest.fixture
async def server(settings, db, tmp_path):
    """A gateway process with small limits: 2 KiB headers, 1 s keep-alive, 0.5 s body read."""
    port = free_port()
    env = gateway_env(settings, port) | {
        "GATEWAY_MAX_HEADER_SIZE": "2048",
        "GATEWAY_KEEPALIVE_TIMEOUT": "1",
        "GATEWAY_BODY_TIMEOUT": "0.5",
    }
    log = tmp_path / "gateway.log"
    proc = start_gateway(env, log)
    await wait_healthy(f"http://127.0.0.1:{port}", proc)
    yield port
    assert stop_gateway(proc) == 0, log.read_text()[-2000:]


@pytest.fixture
async def connect(server):
    """Open raw connections to the server; all closed at the end."""
    writers: list[asyncio.StreamWriter] = []

    async def exchange(request: bytes) -> tuple[asyncio.StreamReader, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server)
        writers.append(writer)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return reader, head

    yield exchange
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_oversized_header_is_refused(connect) -> None:
    """A header over GATEWAY_MAX_HEADER_SIZE is refused by aiohttp's parser before any handler
    runs, and still answered with the contract's JSON error (tests/scenarios/test_parser_*)."""
    request = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 4000}\r\n\r\n".encode()
    reader, head = await connect(request)
    assert head.split(b" ")[1] == b"400"
    body = json.loads(await asyncio.wait_for(reader.read(), 5))
    assert body["error"]["code"] == "invalid_request"
    assert b"aaaa" not in head


async def test_idle_keepalive_connection_is_closed(connect) -> None:
    """After a response, an idle connection is closed once GATEWAY_KEEPALIVE_TIMEOUT passes."""
    reader, head = await connect(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: the server closed
    assert b"HTTP/1.1" not in rest
    assert time.monotonic() - started < 4


async def test_trickled_body_times_out(connect) -> None:
    """A body that does not arrive within GATEWAY_BODY_TIMEOUT is answered 400 invalid_request."""
    request = (
        f"POST {V1} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {make_jwt()}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"tenant'
    ).encode()
    started = time.monotonic()
    reader, head = await connect(request)
    assert head.startswith(b"HTTP/1.1 400")
    assert time.monotonic() - started < 3
    body = await asyncio.wait_for(reader.read(300), 5)
    assert b"not received in time" in body
