"""Dev-only React pages: the vendor guide's code as written, and the gateway's own React binding.

Both sign in the way the vendor's picture assumes: a session cookie holding the caller's JWT
(GATEWAY_JWT_COOKIE), set here by a dev-only login route. React comes from npm packages vendored
at build time into static/vendor/ (tests/browser/vendor.mjs); nothing is fetched from a CDN.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.dev.demo import (
    DEMO_DASHBOARD,
    DEMO_JWT_LIFETIME,
    DEMO_TENANT,
    DEMO_WORKSPACE,
    demo_jwt,
)
from gateway.http.assets import asset_handler, load_asset
from gateway.http.state import SETTINGS
from gateway.settings import Settings

DEMO_COOKIE = "demo_session"
NO_STORE = {"Cache-Control": "no-store"}
# Where the login route may send the browser back to: only the React pages (no open redirect).
PAGES = ("/demo/react", "/demo/react-ours")
# Bare module names the pages' code imports, mapped to the vendored React and its shims.
IMPORT_MAP = orjson.dumps(
    {
        "imports": {
            "react": "/demo/vendor/react-shim.js",
            "react/jsx-runtime": "/demo/vendor/react-jsx-runtime.js",
            "react-dom/client": "/demo/vendor/react-dom-shim.js",
        }
    }
).decode()
_IMPORT_MAP_HASH = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()
# The inline import map is the only inline script, allowed by its hash.
REACT_CSP = (
    f"default-src 'self'; script-src 'self' 'sha256-{_IMPORT_MAP_HASH}'; "
    "style-src 'self' 'unsafe-inline'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'"
)
STATIC = (
    "vendor/react.production.min.js",
    "vendor/react-dom.production.min.js",
    "vendor/react-shim.js",
    "vendor/react-dom-shim.js",
    "vendor/react-jsx-runtime.js",
    "guide/guide.js",
    "react-guide-app.js",
    "react-ours-app.js",
)
_STYLE = (
    "body{margin:0;font:14px/1.45 system-ui,sans-serif;background:#eef1f6;color:#1d2433}"
    "header{background:#1d2433;color:#fff;padding:10px 20px;font-weight:600}"
    "#root{padding:4px 20px 20px}h2{font-size:15px;margin:10px 0}"
    "#manager{margin:0 0 12px}iframe{background:#fff;border:1px solid #c9d1de!important;"
    "border-radius:8px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}"
)


def _see_other(location: str) -> web.Response:
    # Returned, not raised: the gateway middleware turns raised HTTP errors into JSON bodies.
    return web.Response(status=303, headers={**NO_STORE, "Location": location})


def cookie_name(settings: Settings) -> str:
    """The session cookie the dev app reads the caller's JWT from."""
    return settings.jwt_cookie or DEMO_COOKIE


async def login(request: web.Request) -> web.Response:
    """GET /demo/login?next=/demo/react: set the session cookie to a demo caller JWT, go back."""
    settings = request.app[SETTINGS]
    target = request.query.get("next", PAGES[0])
    response = _see_other(target if target in PAGES else PAGES[0])
    # The attributes the README asks of a product: HttpOnly (no script reads it), SameSite=Lax
    # (not sent on cross-site POSTs), Secure whenever the page is served over TLS.
    response.set_cookie(
        cookie_name(settings),
        demo_jwt(settings, time.time()),
        max_age=DEMO_JWT_LIFETIME,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    return response


def react_page(settings: Settings, script: str, *, other: str | None = None) -> str:
    """The HTML of a React demo page: vendored React, the import map, and the page's module."""
    e = html.escape
    other_attr = f' data-other="{e(other)}"' if other else ""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>Embed gateway · React demo</title><style>{_STYLE}</style>"
        f"<script type=importmap>{IMPORT_MAP}</script>"
        # Classic scripts run before module scripts: the shims find React's globals in place.
        '<script src="/demo/vendor/react.production.min.js"></script>'
        '<script src="/demo/vendor/react-dom.production.min.js"></script>'
        "</head><body><header>Embed-token gateway · React demo (signed in by session cookie)"
        f'</header><div id=root data-tenant="{DEMO_TENANT}" data-workspace="{DEMO_WORKSPACE}" '
        f'data-dashboard="{DEMO_DASHBOARD}" data-buffer="{settings.refresh_buffer}"{other_attr}>'
        f'</div><script type=module src="/demo/{e(script)}"></script></body></html>\n'
    )


def _page_handler(script: str, path: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        settings = request.app[SETTINGS]
        if cookie_name(settings) not in request.cookies:
            return _see_other(f"/demo/login?next={path}")
        other = request.query.get("other")
        page = react_page(settings, script, other=other)
        headers = {**NO_STORE, "Content-Security-Policy": REACT_CSP}
        return web.Response(text=page, content_type="text/html", headers=headers)

    return handle


def setup_react_demo(app: web.Application) -> None:
    """Add the login route, the two React pages and their vendored files (gateway dev only)."""
    app.router.add_get("/demo/login", login)
    app.router.add_get("/demo/react", _page_handler("react-guide-app.js", "/demo/react"))
    app.router.add_get("/demo/react-ours", _page_handler("react-ours-app.js", "/demo/react-ours"))
    for name in STATIC:
        asset = load_asset(name, "text/javascript", "gateway.dev")
        # Pinned files, but the demo changes while one develops: revalidate by ETag.
        app.router.add_get(f"/demo/{name}", asset_handler(asset, "no-cache"))
