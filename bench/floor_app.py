"""The floor: a bare aiohttp app on uvloop answering a fixed ~300-byte JSON body, nothing else.

`python -m bench.floor_app PORT [WORKERS]`: with WORKERS > 1, that many processes each listen on
the port in one SO_REUSEPORT group, as `gateway serve --workers N` does, so the gateway's workers
can be compared with the floor's own scaling on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

import uvloop
from aiohttp import web

# The size and shape of a real answer: a v1 token is ~260 bytes of base64.
BODY = b'{"token":"' + b"e" * 240 + b'","dashboard_id":"dashboard-789","expires_at":1700000000}'
PATHS = ("/api/v1/dashboards/iframe-token", "/healthz")
HOST = "127.0.0.1"


async def answer(_request: web.Request) -> web.Response:
    """The fixed answer, with the one header a token answer always has."""
    return web.Response(
        body=BODY, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def run(port: int, sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM/SIGINT, set up as `gateway serve` is: uvloop, no access log."""
    app = web.Application()
    app.router.add_post(PATHS[0], answer)
    app.router.add_get(PATHS[1], answer)
    web.run_app(
        app,
        host=None if sock else HOST,
        port=None if sock else port,
        sock=sock,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def run_workers(port: int, workers: int) -> None:
    """Fork `workers` processes, each with its own listening socket in the port's group."""
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            sock = socket.create_server((HOST, port), reuse_port=True, backlog=1024)
            run(port, sock)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)


def main() -> None:
    """Run one process, or WORKERS of them."""
    port = int(sys.argv[1])
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    if workers == 1:
        run(port)
    else:
        run_workers(port, workers)


if __name__ == "__main__":
    main()
