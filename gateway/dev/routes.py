"""Dev-only pages: a stand-in for the vendor's embed page that verifies v1 tokens, and the demo.

Added by `create_dev_app`, which only `gateway dev` (and the tests) use; `gateway serve` never
imports this package: the demo hands out caller JWTs to anyone who asks.
"""

from __future__ import annotations

import hashlib
import html
import time
from dataclasses import dataclass, replace

import orjson
from aiohttp import web

from gateway.app import create_app
from gateway.dev.demo import (
    DEMO_DASHBOARD,
    DEMO_JWT_LIFETIME,
    DEMO_SUBJECT,
    DEMO_TENANT,
    DEMO_WORKSPACE,
    demo_jwt,
)
from gateway.dev.react_demo import cookie_name, setup_react_demo
from gateway.http.assets import CLIENT_PATH, asset_handler, load_asset
from gateway.http.middleware import error_body
from gateway.http.state import CLIENT_INTEGRITY, REQUEST_ID, SETTINGS
from gateway.settings import Settings
from gateway.tokens.format import token_sha256, verify_v1

TOKEN_PARAM = "embedded-token"  # noqa: S105 - a query parameter name, not a secret
MAX_EMBED_TOKEN = 4096

NO_STORE = {"Cache-Control": "no-store"}
# The verifier page runs no script; the demo runs only its own module from this origin.
VERIFIER_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
DEMO_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class VerifiedPage:
    """What the verifier answers: the status and the HTML page."""

    status: int
    html: str


def _page(title: str, body: str, style: str) -> str:
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body>{body}</body></html>\n"
    )


_VERIFIER_STYLE = (
    "body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#f6f8fb;color:#1d2433}"
    "main{padding:16px 20px}h1{font-size:18px;margin:0 0 4px}"
    ".meta{color:#5a6478;margin:0 0 14px}.meta b{color:#1d2433}"
    ".ok{display:inline-block;background:#e3f6ea;color:#17693a;border-radius:10px;"
    "padding:1px 9px;font-weight:600;margin-left:8px;font-size:12px}"
    ".cards{display:flex;gap:12px;margin-bottom:14px}"
    ".card{flex:1;background:#fff;border:1px solid #e1e6ef;border-radius:8px;padding:10px 12px}"
    ".card small{color:#5a6478}.card div{font-size:20px;font-weight:600}"
    ".chart{display:flex;align-items:flex-end;gap:8px;height:120px;background:#fff;"
    "border:1px solid #e1e6ef;border-radius:8px;padding:12px}"
    ".bar{flex:1;background:linear-gradient(#4f7cff,#7aa2ff);border-radius:4px 4px 0 0}"
    ".note{color:#5a6478;font-size:12px;margin-top:10px}"
    ".err{background:#fdecec;border:1px solid #f3b4b4;border-radius:8px;padding:14px 16px;"
    "color:#8a1c1c}"
)


def _bars(seed: str, count: int = 12) -> list[int]:
    """Heights (percent) for the sample chart, fixed per dashboard so screenshots are stable."""
    digest = hashlib.sha256(seed.encode()).digest()
    return [25 + digest[i] * 70 // 255 for i in range(count)]


def verify_page(secret: bytes, token: str | None, now: float) -> VerifiedPage:
    """Verify a v1 embed token as the vendor's page does and render the result."""
    if not token:
        return _rejected(400, f"the {TOKEN_PARAM} query parameter is missing")
    if len(token) > MAX_EMBED_TOKEN:
        return _rejected(400, "the token is too long")
    try:
        claims = verify_v1(secret, token, now)
    except ValueError as exc:
        return _rejected(401, str(exc))
    tenant = str(claims.get("tenant_id", "?"))
    dashboard = str(claims.get("dashboard_id", "?"))
    workspace = str(claims["workspace_id"])
    valid_until = int(claims["valid_until"])  # type: ignore[call-overload]
    seconds_left = max(0, int(valid_until - now))
    fingerprint = token_sha256(token)[:12]
    e = html.escape
    bars = "".join(f'<div class=bar style="height:{h}%"></div>' for h in _bars(dashboard))
    body = (
        f'<main id=dashboard data-verified=true data-tenant="{e(tenant)}" '
        f'data-dashboard="{e(dashboard)}" data-workspace="{e(workspace)}" '
        f'data-valid-until="{valid_until}" data-token-sha="{fingerprint}">'
        f"<h1>Dashboard {e(dashboard)}<span class=ok>token verified</span></h1>"
        f"<p class=meta>tenant <b id=tenant>{e(tenant)}</b> · workspace <b>{e(workspace)}</b> · "
        f"<b id=seconds-left>{seconds_left}</b> s left · token <code>{fingerprint}</code></p>"
        "<div class=cards>"
        f"<div class=card><small>Active users</small><div>{sum(_bars(tenant)) * 7}</div></div>"
        f"<div class=card><small>Orders</small><div>{sum(_bars(workspace)) * 3}</div></div>"
        f"<div class=card><small>Conversion</small><div>{_bars(dashboard)[0] / 10:.1f}%</div>"
        "</div></div>"
        f"<div class=chart>{bars}</div>"
        "<p class=note>Development stand-in for the vendor's embed page: the HMAC over workspace "
        "and expiry was checked. v1 does not sign tenant_id or dashboard_id.</p></main>"
    )
    return VerifiedPage(200, _page(f"Dashboard {dashboard}", body, _VERIFIER_STYLE))


def _rejected(status: int, reason: str) -> VerifiedPage:
    body = (
        "<main id=dashboard-error data-verified=false><div class=err>"
        f"<h1>Embed token rejected</h1><p id=reason>{html.escape(reason)}</p>"
        "<p>Ask the gateway for a new token and load this page again.</p></div></main>"
    )
    return VerifiedPage(status, _page("Embed token rejected", body, _VERIFIER_STYLE))


async def embedded_dashboard(request: web.Request) -> web.Response:
    """GET /embedded/dashboard?embedded-token=…: the dev stand-in for the vendor's embed page."""
    page = verify_page(
        request.app[SETTINGS].signing_secret, request.query.get(TOKEN_PARAM), time.time()
    )
    headers = {**NO_STORE, "Content-Security-Policy": VERIFIER_CSP}
    return web.Response(
        status=page.status, text=page.html, content_type="text/html", headers=headers
    )


async def demo_session(request: web.Request) -> web.Response:
    """GET /demo/session: sign in as the demo caller (a JWT valid for ten minutes)."""
    now = time.time()
    try:
        token = demo_jwt(request.app[SETTINGS], now)
    except ValueError as exc:
        body = error_body("unavailable", str(exc), request[REQUEST_ID])
        return web.Response(status=503, body=body, content_type="application/json")
    body = {
        "jwt": token,
        "subject": DEMO_SUBJECT,
        "tenant_id": DEMO_TENANT,
        "expires_at": int(now) + DEMO_JWT_LIFETIME,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers=NO_STORE)


_DEMO_STYLE = (
    "body{margin:0;font:14px/1.45 system-ui,sans-serif;background:#eef1f6;color:#1d2433}"
    "header{background:#1d2433;color:#fff;padding:10px 20px;font-weight:600}"
    "section{padding:12px 20px;font-size:13px}#status span{margin-right:14px}"
    "#error{color:#8a1c1c;background:#fdecec;border-radius:6px;padding:6px 10px}"
    "iframe{display:block;margin:0 20px 20px;width:calc(100% - 40px);height:350px;"
    "border:1px solid #c9d1de;border-radius:8px;background:#fff}"
)


def demo_page(settings: Settings, client_integrity: str) -> str:
    """The demo's HTML; its module script (demo.js) does the work with the embed client."""
    e = html.escape
    body = (
        # Preloading with the SRI hash is how a page pins an imported module; here it also
        # proves in a real browser that the hash printed in the README is right.
        f'<link rel=modulepreload href="{CLIENT_PATH}" integrity="{e(client_integrity)}" '
        "crossorigin=anonymous>"
        "<header>Embed-token gateway · development demo</header>"
        f'<section id=status data-tenant="{DEMO_TENANT}" data-workspace="{DEMO_WORKSPACE}" '
        f'data-dashboard="{DEMO_DASHBOARD}" data-buffer="{settings.refresh_buffer}" '
        'data-endpoint="/api/v1/dashboards/iframe-token">'
        "<span>signed in as <b id=subject>…</b> of <b>"
        f"{e(DEMO_TENANT)}</b></span>"
        f"<span>dashboard <b>{e(DEMO_DASHBOARD)}</b></span>"
        "<span>token expires in <b id=countdown>-</b> s</span>"
        "<span>next refresh in <b id=next-refresh>-</b> s</span>"
        "<span>tokens mounted <b id=mounts>0</b></span>"
        "<span>token <code id=token-sha>-</code></span>"
        "<p id=error hidden></p></section>"
        '<iframe id=dashboard-frame title="Embedded dashboard"></iframe>'
        '<script type=module src="/demo/demo.js"></script>'
    )
    return _page("Embed gateway demo", body, _DEMO_STYLE)


async def demo(request: web.Request) -> web.Response:
    """GET /demo: sign in as the demo caller and mount the demo dashboard with the client."""
    headers = {**NO_STORE, "Content-Security-Policy": DEMO_CSP}
    page = demo_page(request.app[SETTINGS], request.app[CLIENT_INTEGRITY])
    return web.Response(text=page, content_type="text/html", headers=headers)


def create_dev_app(settings: Settings) -> web.Application:
    """The gateway's app with the dev routes added: what `gateway dev` serves."""
    # The demo signs in by session cookie as the vendor's frontend code expects (GATEWAY_JWT_COOKIE
    # names another cookie; `gateway serve` reads none unless it is set).
    app = create_app(replace(settings, jwt_cookie=cookie_name(settings)))
    setup_dev_routes(app)
    setup_react_demo(app)
    return app


def setup_dev_routes(app: web.Application) -> None:
    """Add the verifier, the demo page, its script and its sign-in; only for `gateway dev`."""
    app[CLIENT_INTEGRITY] = load_asset("embed-client.js", "text/javascript").integrity
    app.router.add_get("/embedded/dashboard", embedded_dashboard)
    app.router.add_get("/demo", demo)
    app.router.add_get("/demo/session", demo_session)
    # The demo script changes while one develops; never cache it.
    app.router.add_get(
        "/demo/demo.js",
        asset_handler(load_asset("demo.js", "text/javascript", "gateway.dev"), "no-cache"),
    )
