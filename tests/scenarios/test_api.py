"""The token endpoint over HTTP on the real app, PostgreSQL and Redis: answers, errors, audit."""

from __future__ import annotations

import asyncio
import base64
import json

import asyncpg
import pytest

from gateway.tokens.directory import add_mapping
from gateway.tokens.format import token_sha256, verify_v1
from tests.helpers import API_KEY_ID, SIGNING_SECRET, audit_rows, auth, make_jwt

V1 = "/api/v1/dashboards/iframe-token"
VENDOR = "/api/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    """The demo mapping plus a second, non-default dashboard and another tenant."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    await add_mapping(db, "org-123", "workspace-456", "dashboard-other", is_default=False)
    await add_mapping(db, "org-999", "workspace-456", "dashboard-999", is_default=True)
    return db


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token))


@pytest.mark.parametrize("path", [V1, VENDOR])
async def test_token_issued_at_both_paths(client, mapped, path: str) -> None:
    """Both paths answer 200 with token, dashboard_id and expires_at, no-store, a request id."""
    resp = await client.post(path, json=BODY, headers=auth())
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["X-Request-ID"]
    body = await resp.json()
    assert set(body) == {"token", "dashboard_id", "expires_at"}
    assert body["dashboard_id"] == "dashboard-789"
    claims = verify_v1(SIGNING_SECRET, body["token"], now=body["expires_at"] - 1)
    assert claims["valid_until"] == body["expires_at"]
    assert list(claims) == [
        "api_key_id",
        "workspace_id",
        "tenant_id",
        "dashboard_id",
        "valid_until",
        "signature",
    ]
    assert claims["api_key_id"] == API_KEY_ID
    assert claims["tenant_id"] == "org-123"


async def test_camel_case_body_and_named_dashboard(client, mapped) -> None:
    """camelCase fields work, and a named dashboard of the tenant is used."""
    body = {"tenantId": "org-123", "workspaceId": "workspace-456", "dashboardId": "dashboard-other"}
    resp = await client.post(V1, json=body, headers=auth())
    assert resp.status == 200
    data = await resp.json()
    assert data["dashboard_id"] == "dashboard-other"
    assert claims_of(data["token"])["dashboard_id"] == "dashboard-other"


async def test_second_call_reuses_the_token(client, mapped) -> None:
    """Two calls in a row give the same token and expires_at; the audit says issued then reused."""
    first = await client.post(V1, json=BODY, headers=auth())
    second = await client.post(V1, json=BODY, headers=auth(sub="someone-else"))
    a, b = await first.json(), await second.json()
    assert a == b
    (row_a,) = await audit_rows(mapped, first.headers["X-Request-ID"])
    (row_b,) = await audit_rows(mapped, second.headers["X-Request-ID"])
    assert (row_a["event"], row_a["cache_hit"]) == ("token_issued", False)
    assert (row_b["event"], row_b["cache_hit"]) == ("token_reused", True)
    assert row_b["subject"] == "someone-else"


async def test_default_and_named_requests_share_one_token(client, mapped) -> None:
    """Asking for the default dashboard, or naming it, hands out the same token."""
    named = await client.post(V1, json={**BODY, "dashboard_id": "dashboard-789"}, headers=auth())
    default = await client.post(V1, json=BODY, headers=auth())
    assert (await named.json()) == (await default.json())


async def test_token_refreshed_once_inside_the_buffer(make_client, settings, mapped) -> None:
    """With TTL 302 and the 300 s buffer, a token is reused for 2 s, then replaced."""
    client = await make_client(settings, token_ttl=302)
    first = await (await client.post(V1, json=BODY, headers=auth())).json()
    again = await (await client.post(V1, json=BODY, headers=auth())).json()
    assert again["token"] == first["token"]
    await asyncio.sleep(3)
    later = await (await client.post(V1, json=BODY, headers=auth())).json()
    assert later["token"] != first["token"]
    assert later["expires_at"] > first["expires_at"]


async def test_tenants_and_dashboards_never_share_a_token(client, mapped) -> None:
    """Different tenants or dashboards get different tokens."""
    t1 = await (await client.post(V1, json=BODY, headers=auth())).json()
    d2 = await (
        await client.post(V1, json={**BODY, "dashboard_id": "dashboard-other"}, headers=auth())
    ).json()
    t2 = await (
        await client.post(V1, json={**BODY, "tenant_id": "org-999"}, headers=auth(tenant="org-999"))
    ).json()
    assert len({t1["token"], d2["token"], t2["token"]}) == 3
    assert claims_of(t2["token"])["tenant_id"] == "org-999"


async def test_caller_request_id_is_echoed_and_audited(client, mapped) -> None:
    """A sane X-Request-ID comes back and names the audit row; an insane one is replaced."""
    resp = await client.post(V1, json=BODY, headers={**auth(), "X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    (row,) = await audit_rows(mapped, "abc-123")
    assert row["status"] == 200
    bad = await client.post(V1, json=BODY, headers={**auth(), "X-Request-ID": "x" * 500})
    assert bad.headers["X-Request-ID"] != "x" * 500
    assert len(bad.headers["X-Request-ID"]) <= 128


async def test_issued_audit_row_has_every_field(client, mapped) -> None:
    """The row for an issued token has subject, ids, expiry, the token's hash (never the token)."""
    resp = await client.post(
        V1, json=BODY, headers={**auth(sub="alice"), "User-Agent": "pytest-agent/1"}
    )
    data = await resp.json()
    (row,) = await audit_rows(mapped, resp.headers["X-Request-ID"])
    assert row["event"] == "token_issued"
    assert row["status"] == 200
    assert row["subject"] == "alice"
    assert (row["tenant_id"], row["workspace_id"], row["dashboard_id"]) == (
        "org-123",
        "workspace-456",
        "dashboard-789",
    )
    assert row["api_key_id"] == API_KEY_ID
    assert int(row["expires_at"].timestamp()) == data["expires_at"]
    assert row["token_sha256"] == token_sha256(data["token"])
    assert str(row["client_ip"]) == "127.0.0.1"
    assert row["user_agent"] == "pytest-agent/1"
    assert row["latency_ms"] >= 0
    assert row["event_id"] is not None
    everything = " ".join(str(v) for v in row.values())
    assert data["token"] not in everything


def _error_cases() -> list:
    big = {"tenant_id": "org-123", "workspace_id": "workspace-456", "pad": "x" * 17000}
    return [
        pytest.param({}, None, BODY, 401, "unauthenticated", "auth_failed", id="no-header"),
        pytest.param(
            {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"},
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="wrong-scheme",
        ),
        pytest.param(
            auth(make_jwt(secret=b"another-secret-of-sufficient-length!!")),
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="bad-signature",
        ),
        pytest.param(
            auth(make_jwt(lifetime=-120)),
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="expired",
        ),
        pytest.param(
            auth(make_jwt(exp=None)),
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="no-exp",
        ),
        pytest.param(
            auth(make_jwt(algorithm="HS512")),
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="alg-not-allowed",
        ),
        pytest.param(
            auth("not.a.jwt"),
            None,
            BODY,
            401,
            "unauthenticated",
            "auth_failed",
            id="malformed",
        ),
        pytest.param(
            auth(tenant="org-999"),
            None,
            BODY,
            403,
            "forbidden",
            "access_denied",
            id="other-tenant",
        ),
        pytest.param(
            auth(tenant=["org-1", "org-2"]),
            None,
            BODY,
            403,
            "forbidden",
            "access_denied",
            id="list-without-tenant",
        ),
        pytest.param(
            auth(),
            None,
            {**BODY, "workspace_id": "nope"},
            404,
            "dashboard_not_found",
            "dashboard_not_found",
            id="no-dashboard",
        ),
        pytest.param(
            auth(),
            None,
            {**BODY, "dashboard_id": "dashboard-999"},
            404,
            "dashboard_not_found",
            "dashboard_not_found",
            id="dashboard-of-another-tenant",
        ),
        pytest.param(
            auth(),
            b"{not json",
            None,
            400,
            "invalid_request",
            "invalid_request",
            id="not-json",
        ),
        pytest.param(auth(), b"[]", None, 400, "invalid_request", "invalid_request", id="array"),
        pytest.param(
            auth(),
            None,
            {"tenant_id": "org-123"},
            400,
            "invalid_request",
            "invalid_request",
            id="missing-field",
        ),
        pytest.param(
            auth(),
            None,
            {**BODY, "tenant_id": 123},
            400,
            "invalid_request",
            "invalid_request",
            id="wrong-type",
        ),
        pytest.param(
            auth(),
            None,
            {**BODY, "tenant_id": "bad tenant!"},
            400,
            "invalid_request",
            "invalid_request",
            id="fails-rule",
        ),
        pytest.param(
            {**auth(), "Content-Type": "text/plain"},
            json.dumps(BODY).encode(),
            None,
            415,
            "unsupported_media_type",
            "invalid_request",
            id="not-json-media-type",
        ),
        pytest.param(
            auth(),
            json.dumps(big).encode(),
            None,
            413,
            "payload_too_large",
            "invalid_request",
            id="too-large",
        ),
    ]


@pytest.mark.parametrize(("headers", "raw", "body", "status", "code", "event"), _error_cases())
async def test_error_table(client, mapped, headers, raw, body, status, code, event) -> None:
    """Each rejection has the contract's status, JSON error body and exactly one audit row."""
    if raw is not None:
        resp = await client.post(V1, data=raw, headers=headers)
    else:
        resp = await client.post(V1, json=body, headers=headers)
    assert resp.status == status
    data = await resp.json()
    request_id = resp.headers["X-Request-ID"]
    assert data["request_id"] == request_id
    assert data["error"]["code"] == code
    assert isinstance(data["error"]["message"], str)
    assert data["error"]["message"]
    assert "token" not in data
    assert resp.headers["Cache-Control"] == "no-store"
    if status == 401:
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    rows = await audit_rows(mapped, request_id)
    assert len(rows) == 1
    assert rows[0]["event"] == event
    assert rows[0]["status"] == status
    assert rows[0]["token_sha256"] is None
    assert json.loads(rows[0]["detail"])["code"] == code


async def test_forbidden_message_names_the_tenant(client, mapped) -> None:
    """403's message says which tenant was refused, as the contract's example does."""
    resp = await client.post(V1, json={**BODY, "tenant_id": "org-999"}, headers=auth())
    data = await resp.json()
    assert data["error"] == {
        "code": "forbidden",
        "message": "caller may not act for tenant org-999",
    }


async def test_ambiguous_default_is_404(client, db) -> None:
    """Two dashboards and no default: the caller must name one."""
    await add_mapping(db, "org-123", "workspace-456", "a", is_default=False)
    await add_mapping(db, "org-123", "workspace-456", "b", is_default=False)
    resp = await client.post(V1, json=BODY, headers=auth())
    assert resp.status == 404
    named = await client.post(V1, json={**BODY, "dashboard_id": "b"}, headers=auth())
    assert (await named.json())["dashboard_id"] == "b"


async def test_only_dashboard_is_the_default(client, db) -> None:
    """A tenant with a single, non-default dashboard gets it without naming it."""
    await add_mapping(db, "org-123", "workspace-456", "solo", is_default=False)
    resp = await client.post(V1, json=BODY, headers=auth())
    assert (await resp.json())["dashboard_id"] == "solo"


async def test_unknown_route_and_method_are_json_errors(client, mapped) -> None:
    """A wrong path or method still gets the JSON error shape and a request id."""
    resp = await client.get(V1)
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["request_id"] == resp.headers["X-Request-ID"]


async def test_health_ready_and_metrics(client, mapped) -> None:
    """healthz and readyz answer 200 with both dependencies up; metrics count a token request."""
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"postgresql": "ok", "redis": "ok"}
    await client.post(V1, json=BODY, headers=auth())
    text = await (await client.get("/metrics")).text()
    assert 'gateway_requests_total{event="token_issued",route="token",status="200"} 1.0' in text
