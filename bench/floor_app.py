"""The floor: a bare aiohttp app on uvloop answering a fixed ~300-byte JSON body, nothing else."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

# The size and shape of a real answer: a v1 token is ~260 bytes of base64.
BODY = b'{"token":"' + b"e" * 240 + b'","dashboard_id":"dashboard-789","expires_at":1700000000}'
PATHS = ("/api/v1/dashboards/iframe-token", "/healthz")


async def answer(_request: web.Request) -> web.Response:
    return web.Response(
        body=BODY, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def main() -> None:
    app = web.Application()
    app.router.add_post(PATHS[0], answer)
    app.router.add_get(PATHS[1], answer)
    # Same settings as `gateway serve`: uvloop, no access log.
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
