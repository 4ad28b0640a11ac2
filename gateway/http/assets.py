"""Files the gateway serves to browsers: the embed client, with its integrity hash."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler

CLIENT_PATH = "/static/embed-client.js"
REACT_PATH = "/static/embed-react.js"
# The file at a path never changes within a release; a new release is fetched with `?v=<version>`.
LONG_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file held in memory with the headers that describe it."""

    body: bytes
    content_type: str
    integrity: str
    etag: str


def load_asset(name: str, content_type: str, package: str = "gateway.http") -> Asset:
    """Read PACKAGE/static/NAME and compute its SRI hash (sha384) and ETag."""
    body = (resources.files(package) / "static" / name).read_bytes()
    digest = hashlib.sha384(body).digest()
    return Asset(
        body=body,
        content_type=content_type,
        integrity="sha384-" + base64.b64encode(digest).decode(),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
    )


def asset_handler(asset: Asset, cache_control: str = LONG_CACHE) -> Handler:
    """A GET handler answering with the asset, or 304 when the caller already has it."""

    async def handle(request: web.Request) -> web.Response:
        headers = {
            "Cache-Control": cache_control,
            "ETag": asset.etag,
            # Public code: any site may load it, with crossorigin="anonymous" for the SRI check.
            "Access-Control-Allow-Origin": "*",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
        )

    return handle


def setup_assets(app: web.Application) -> None:
    """Serve the embed client and its React binding under /static/ (in every mode)."""
    client = load_asset("embed-client.js", "text/javascript")
    app.router.add_get(CLIENT_PATH, asset_handler(client))
    # The React binding imports "./embed-client.js": it lives beside it.
    react = load_asset("embed-react.js", "text/javascript")
    app.router.add_get(REACT_PATH, asset_handler(react))
