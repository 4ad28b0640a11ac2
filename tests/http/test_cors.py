"""CORS: exact origins only, preflight answered, Vary: Origin on every response."""

from __future__ import annotations

import asyncpg
import pytest

from gateway.tokens.directory import add_mapping
from tests.helpers import auth

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
APP = "https://app.example.com"


@pytest.fixture
async def cors_client(make_client, settings, db: asyncpg.Connection):
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return await make_client(settings, cors_origins=(APP,))


async def test_preflight_from_an_allowed_origin(cors_client) -> None:
    """A preflight from a listed origin: 204 allowing POST, Authorization and Content-Type."""
    resp = await cors_client.options(
        V1,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert resp.headers["Vary"] == "Origin"
    assert resp.headers["X-Request-ID"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_preflight_from_another_origin_gets_no_grant(cors_client) -> None:
    """An unlisted origin (or a look-alike) gets no Access-Control-Allow-* headers."""
    for origin in ("https://evil.example.com", APP + ".evil.com", "null"):
        resp = await cors_client.options(
            V1, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert resp.status == 204
        assert not [h for h in resp.headers if h.lower().startswith("access-control-allow")]


async def test_actual_requests_and_errors_carry_cors_headers(cors_client) -> None:
    """200 and error answers to an allowed origin carry the grant and expose X-Request-ID and
    Retry-After; every answer, to any origin or none, has Vary: Origin and the security headers."""
    ok = await cors_client.post(V1, json=BODY, headers={**auth(), "Origin": APP})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    denied = await cors_client.post(V1, json=BODY, headers={"Origin": APP})
    assert denied.status == 401
    assert denied.headers["Access-Control-Allow-Origin"] == APP
    other = await cors_client.post(V1, json=BODY, headers={**auth(), "Origin": "https://x.test"})
    assert "Access-Control-Allow-Origin" not in other.headers
    for resp in (ok, denied, other, await cors_client.get("/healthz")):
        assert resp.headers["Vary"] == "Origin"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_no_origins_configured_grants_nothing(client) -> None:
    """By default (GATEWAY_CORS_ORIGINS unset) no origin is granted."""
    resp = await client.options(
        V1, headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_date_is_exposed_for_the_clients_clock(cors_client) -> None:
    """The embed client corrects its clock with the response's Date: it must be exposed."""
    resp = await cors_client.post(V1, json=BODY, headers={**auth(), "Origin": APP})
    assert resp.status == 200
    exposed = {h.strip() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Date", "Retry-After", "X-Request-ID"} <= exposed
    assert resp.headers["Date"]
