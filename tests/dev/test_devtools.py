"""The dev-only verifier and demo: present in the dev app, absent otherwise, and correct."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import asyncpg
import jwt
import pytest

from gateway.dev.demo import DEMO_JWT_LIFETIME, demo_jwt
from gateway.dev.react_demo import IMPORT_MAP
from gateway.dev.react_demo import STATIC as REACT_FILES
from gateway.dev.routes import create_dev_app, verify_page
from gateway.tokens.directory import add_mapping
from gateway.tokens.format import mint_v1, sign_v1, token_sha256
from tests.helpers import JWT_SECRET, SIGNING_SECRET

V1 = "/api/v1/dashboards/iframe-token"
DEV_PATHS = (
    "/demo",
    "/demo/session",
    "/demo/demo.js",
    "/embedded/dashboard?embedded-token=x",
    "/demo/login",
    "/demo/react",
    "/demo/vendor/react.production.min.js",
)
STATIC = Path(__file__).resolve().parents[2] / "gateway" / "dev" / "static"


def token_for(valid_until: int, *, tenant: str = "org-123", secret: bytes = SIGNING_SECRET) -> str:
    return mint_v1(
        secret,
        api_key_id="key-test",
        workspace_id="workspace-456",
        tenant_id=tenant,
        dashboard_id="dashboard-789",
        valid_until=valid_until,
    )


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    """The demo mapping."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


def test_verify_page_names_tenant_dashboard_and_seconds_left() -> None:
    """A valid token renders 200 with its tenant, dashboard, seconds left and fingerprint."""
    now = 1_700_000_000.4
    token = token_for(1_700_000_090)
    page = verify_page(SIGNING_SECRET, token, now)
    assert page.status == 200
    assert 'data-verified=true data-tenant="org-123" data-dashboard="dashboard-789"' in page.html
    assert "<b id=seconds-left>89</b> s left" in page.html
    assert token_sha256(token)[:12] in page.html


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (None, 400, "the embedded-token query parameter is missing"),
        ("not-a-token", 401, "token is not base64url-encoded JSON"),
        ("x" * 5000, 400, "the token is too long"),
        (token_for(1_700_000_090, secret=b"another-secret-0123456789abcdef!!"), 401, "signature"),
        (token_for(1_700_000_000), 401, "token has expired"),
    ],
)
def test_verify_page_rejects_with_a_clear_error(
    token: str | None, status: int, reason: str
) -> None:
    """Missing, malformed, forged and expired tokens get an error page saying why."""
    page = verify_page(SIGNING_SECRET, token, 1_700_000_000.0)
    assert page.status == status
    assert "data-verified=false" in page.html
    assert "Embed token rejected" in page.html
    assert reason in page.html


def test_verify_page_escapes_unsigned_claims() -> None:
    """tenant_id is not covered by the v1 signature, so it is escaped, never trusted as HTML."""
    page = verify_page(SIGNING_SECRET, token_for(1_700_000_090, tenant="<img src=x>"), 1.7e9)
    assert page.status == 200
    assert "<img src=x>" not in page.html
    assert "&lt;img src=x&gt;" in page.html


def test_demo_jwt_is_short_lived_for_the_demo_caller(settings) -> None:
    """The demo JWT names demo-user of org-123, with the configured issuer and audience."""
    now = time.time()
    s = replace(settings, jwt_issuer="https://issuer.test", jwt_audience="gateway")
    claims = jwt.decode(demo_jwt(s, now), JWT_SECRET, algorithms=["HS256"], audience="gateway")
    assert claims["sub"] == "demo-user"
    assert claims["organization_id"] == "org-123"
    assert claims["iss"] == "https://issuer.test"
    assert claims["exp"] - claims["iat"] == DEMO_JWT_LIFETIME
    with pytest.raises(ValueError, match="GATEWAY_JWT_SECRET"):
        demo_jwt(replace(settings, jwt_secret=None), now)


@pytest.mark.parametrize("path", DEV_PATHS)
async def test_dev_routes_absent_by_default(client, path: str) -> None:
    """In create_app (what `gateway serve` builds) the demo and verifier do not exist."""
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_demo_page_and_script_in_dev_mode(make_client, settings) -> None:
    """/demo is an uncached page with a CSP that loads its module and the embed client."""
    client = await make_client(settings, factory=create_dev_app, refresh_buffer=7)
    page = await client.get("/demo")
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src" not in page.headers["Content-Security-Policy"]  # 'self' via default-src
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert 'data-buffer="7"' in html
    assert '<script type=module src="/demo/demo.js">' in html
    script = await client.get("/demo/demo.js")
    assert script.status == 200
    assert 'from "/static/embed-client.js"' in await script.text()


async def test_demo_session_token_gets_a_token_the_verifier_accepts(
    make_client, settings, mapped
) -> None:
    """The demo caller's JWT works at the token endpoint; the verifier accepts that token."""
    client = await make_client(settings, factory=create_dev_app)
    session = await client.get("/demo/session")
    assert session.status == 200
    assert session.headers["Cache-Control"] == "no-store"
    caller = (await session.json())["jwt"]
    resp = await client.post(
        V1,
        json={"tenant_id": "org-123", "workspace_id": "workspace-456"},
        headers={"Authorization": f"Bearer {caller}"},
    )
    assert resp.status == 200
    token = (await resp.json())["token"]
    page = await client.get("/embedded/dashboard", params={"embedded-token": token})
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    text = await page.text()
    assert "<b id=tenant>org-123</b>" in text
    assert "Dashboard dashboard-789" in text


async def test_verifier_route_rejects_a_forged_token(make_client, settings) -> None:
    """A token whose signature does not match answers 401 with the error page."""
    client = await make_client(settings, factory=create_dev_app)
    valid_until = int(time.time()) + 600
    claims = json.loads(base64.urlsafe_b64decode(token_for(valid_until)))
    # Move the expiry an hour on but keep the old signature: what a tampering caller would try.
    claims["valid_until"] = valid_until + 3600
    assert claims["signature"] == sign_v1(SIGNING_SECRET, "workspace-456", valid_until)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    resp = await client.get("/embedded/dashboard", params={"embedded-token": forged})
    assert resp.status == 401
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Embed token rejected" in await resp.text()


async def test_login_sets_the_session_cookie_and_goes_back(make_client, settings, mapped) -> None:
    """/demo/login sets an HttpOnly, SameSite=Lax cookie holding the demo caller's JWT and
    redirects to a React page (never elsewhere); that cookie alone gets a token."""
    client = await make_client(settings, factory=create_dev_app)
    resp = await client.get("/demo/login?next=/demo/react-ours", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/demo/react-ours"
    morsel = resp.cookies["demo_session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    claims = jwt.decode(morsel.value, JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["organization_id"]) == ("demo-user", "org-123")
    evil = await client.get("/demo/login?next=https://evil.example.com/", allow_redirects=False)
    assert evil.headers["Location"] == "/demo/react"
    token = await client.post(
        "/api/dashboards/iframe-token",
        json={"tenantId": "org-123", "workspaceId": "workspace-456"},
        headers={"Cookie": f"demo_session={morsel.value}"},
    )
    assert token.status == 200


async def test_react_pages_need_the_cookie_and_pin_their_import_map(make_client, settings) -> None:
    """Without the cookie a React page sends the browser to the login; with it, the page loads
    the vendored React, maps the bare names, and its CSP allows that one inline script by hash."""
    client = await make_client(settings, factory=create_dev_app)
    bare = await client.get("/demo/react", allow_redirects=False)
    assert bare.status == 303
    assert bare.headers["Location"] == "/demo/login?next=/demo/react"
    page = await client.get("/demo/react", headers={"Cookie": "demo_session=x"})
    assert page.status == 200
    html = await page.text()
    assert f"<script type=importmap>{IMPORT_MAP}</script>" in html
    assert '<script src="/demo/vendor/react.production.min.js"></script>' in html
    assert '<script type=module src="/demo/react-guide-app.js">' in html
    digest = base64.b64encode(hashlib.sha256(IMPORT_MAP.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    for name in REACT_FILES:
        asset = await client.get(f"/demo/{name}")
        assert asset.status == 200, name
        assert await asset.read() == (STATIC / name).read_bytes()


def test_vendored_react_carries_its_license_and_stays_small() -> None:
    """React is vendored with its MIT license; the vendored files stay under 200 KiB in all."""
    assert "MIT License" in (STATIC / "vendor" / "LICENSE-react.txt").read_text()
    react = (STATIC / "vendor" / "react.production.min.js").read_text()
    assert react.startswith("/**\n * @license React")
    total = sum(p.stat().st_size for p in (STATIC / "vendor").iterdir())
    assert total < 200 * 1024


def test_the_guide_bundle_is_the_guide_code() -> None:
    """guide.js is compiled from the guide's files: both classes, the vendor's path and body."""
    bundle = (STATIC / "guide" / "guide.js").read_text()
    assert bundle.startswith("// GENERATED by tests/browser/vendor.mjs")
    assert "class {" in bundle
    assert "export {\n  DashboardEmbed,\n  DashboardTokenManager\n};" in bundle
    assert bundle.count('fetch("/api/dashboards/iframe-token"') == 2
    assert bundle.count("JSON.stringify({ tenantId, workspaceId, dashboardId })") == 2
    assert "Authorization" not in bundle


async def test_the_react_binding_is_served_beside_the_client(client) -> None:
    """`gateway serve` serves /static/embed-react.js, which imports ./embed-client.js beside it."""
    resp = await client.get("/static/embed-react.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/javascript")
    body = await resp.text()
    assert 'from "./embed-client.js"' in body
    assert "export function useEmbedToken(tenantId, workspaceId, dashboardId)" in body
