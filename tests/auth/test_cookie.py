"""The caller's JWT from the product's session cookie (GATEWAY_JWT_COOKIE), and its CSRF defence."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from gateway.auth.credentials import check_same_site, read_credential
from gateway.errors import Forbidden, Unauthenticated
from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, make_jwt

VENDOR_PATH = "/api/dashboards/iframe-token"
CAMEL = {"tenantId": "org-123", "workspaceId": "workspace-456", "dashboardId": "dashboard-789"}
COOKIE = "app_session"
FRIEND = "https://app.example.com"
JSON = {"Content-Type": "application/json"}


def cookie(token: str | None = None) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token or make_jwt(sub='cookie-user')}"}


@pytest.fixture
async def cookie_client(make_client: Any, settings: Any, db: asyncpg.Connection) -> Any:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return await make_client(settings, jwt_cookie=COOKIE, cors_origins=(FRIEND,))


def own_origin(client: Any) -> str:
    return str(client.make_url("/")).rstrip("/")


async def test_cookie_alone_with_the_vendors_body_and_path(cookie_client: Any, db: Any) -> None:
    """The guide's request as written (cookie, camelCase body, vendor path): 200, audited with
    the cookie JWT's subject."""
    resp = await cookie_client.post(VENDOR_PATH, json=CAMEL, headers=cookie())
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["dashboard_id"] == "dashboard-789"
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert row["event"] == "token_issued"
    assert row["subject"] == "cookie-user"
    assert row["tenant_id"] == "org-123"


async def test_cookie_with_a_bad_jwt_is_401(cookie_client: Any, db: Any) -> None:
    """A cookie whose JWT fails verification gets 401 and an auth_failed row."""
    bad = make_jwt(secret=b"another-secret-0123456789abcdef-0123456789abcdef")
    resp = await cookie_client.post(VENDOR_PATH, json=CAMEL, headers=cookie(bad))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert row["event"] == "auth_failed"


async def test_cookie_from_a_disallowed_origin_is_403_cross_site(cookie_client: Any, db) -> None:
    """A cookie riding a request from another site: 403 forbidden, audited with cross_site."""
    for headers in (
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Origin": FRIEND + ".evil.com"},
        {"Referer": "https://evil.example.com/page"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        resp = await cookie_client.post(VENDOR_PATH, json=CAMEL, headers={**cookie(), **headers})
        assert resp.status == 403, headers
        body = await resp.json()
        assert body["error"]["code"] == "forbidden"
        (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
        assert row["event"] == "access_denied"
        assert json.loads(row["detail"])["reason"] == "cross_site"


async def test_cookie_from_our_origin_or_a_listed_one_is_200(cookie_client: Any) -> None:
    """Same-origin (by Origin or Referer), a GATEWAY_CORS_ORIGINS origin, or no browser at all."""
    own = own_origin(cookie_client)
    for headers in (
        {"Origin": own},
        {"Referer": own + "/demo/react"},
        {"Origin": FRIEND},
        {"Sec-Fetch-Site": "same-origin"},
        {},  # curl or a backend: neither Origin nor Referer nor Sec-Fetch-Site
    ):
        resp = await cookie_client.post(VENDOR_PATH, json=CAMEL, headers={**cookie(), **headers})
        assert resp.status == 200, (headers, await resp.text())


async def test_text_plain_with_the_cookie_is_415_before_any_token_work(
    cookie_client: Any, db: Any
) -> None:
    """A text/plain POST (what a cross-site form can send) is 415 even from another site and with
    a JWT that would fail: the media type is checked before the origin and the JWT."""
    resp = await cookie_client.post(
        VENDOR_PATH,
        data=b'{"tenantId": "org-123", "workspaceId": "workspace-456"}',
        headers={
            **cookie("not-a-jwt"),
            "Content-Type": "text/plain",
            "Origin": "https://evil.example.com",
        },
    )
    assert resp.status == 415
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert row["event"] == "invalid_request"


async def test_cookie_is_ignored_when_not_configured(make_client, settings, db) -> None:
    """Without GATEWAY_JWT_COOKIE the cookie means nothing: 401 missing token."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(settings)
    resp = await client.post(VENDOR_PATH, json=CAMEL, headers=cookie())
    assert resp.status == 401
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert json.loads(row["detail"])["reason"] == "missing_token"


async def test_the_authorization_header_wins_over_the_cookie(cookie_client: Any, db) -> None:
    """Both present: the header's JWT is the caller (and no origin check applies to it)."""
    header_jwt = make_jwt(sub="header-user")
    resp = await cookie_client.post(
        VENDOR_PATH,
        json=CAMEL,
        headers={
            **cookie(),
            **JSON,
            "Authorization": f"Bearer {header_jwt}",
            "Origin": "https://evil.example.com",
        },
    )
    assert resp.status == 200
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert row["subject"] == "header-user"


def test_read_credential_prefers_the_header() -> None:
    """The header wins; the cookie is read only when configured; neither is Unauthenticated."""
    cookies = {COOKIE: "from-cookie"}
    assert read_credential(["Bearer from-header"], cookies, COOKIE).token == "from-header"
    assert not read_credential(["Bearer from-header"], cookies, COOKIE).from_cookie
    from_cookie = read_credential([], cookies, COOKIE)
    assert (from_cookie.token, from_cookie.from_cookie) == ("from-cookie", True)
    for name in (None, "other"):
        with pytest.raises(Unauthenticated) as err:
            read_credential([], cookies, name)
        assert err.value.reason == "missing_token"


@pytest.mark.parametrize(
    ("origin", "scheme", "allowed"),
    [
        ("https://gw.example.com", "http", True),  # TLS ends at the proxy: https page, http hop
        ("https://gw.example.com:443", "https", True),
        ("HTTPS://GW.example.com", "https", True),
        ("http://gw.example.com", "http", True),
        ("http://gw.example.com", "https", False),  # a downgraded page may be an attacker's
        ("https://gw.example.com:8443", "https", False),
        ("https://user@gw.example.com", "https", False),
        ("javascript:alert(1)", "https", False),
    ],
)
def test_same_origin_rules(origin: str, scheme: str, allowed: bool) -> None:
    """Same origin: host and port equal the request's Host; the scheme is https or the request's."""

    def check() -> None:
        check_same_site(
            origin=origin,
            referer=None,
            sec_fetch_site=None,
            host="gw.example.com",
            scheme=scheme,
            allowed_origins=(),
        )

    if allowed:
        check()
    else:
        with pytest.raises(Forbidden) as err:
            check()
        assert err.value.reason == "cross_site"
