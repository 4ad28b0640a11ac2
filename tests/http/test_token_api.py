"""The token API route group: every request to a token path is audited by where it went, and the
contract's codes, events and id rule have one definition that the HTTP layer imports."""

from __future__ import annotations

import json
import logging

import asyncpg

from gateway import errors
from gateway.admin.audit import EVENTS
from gateway.errors import AUDIT_EVENTS, ERROR_CODES, TOKEN_EVENTS, GatewayError
from gateway.http.openapi import SPEC
from gateway.tokens.directory import add_mapping
from gateway.tokens.request import ID_RULE
from tests.helpers import audit_rows, auth

V1 = "/api/v1/dashboards/iframe-token"


async def test_wrong_method_on_token_path_is_audited(client, db: asyncpg.Connection) -> None:
    """A GET or PUT on a token path is 405 with `Allow: POST`, and has its audit row
    (invalid_request, reason method_not_allowed), as every request to the token endpoint must."""
    for method, path in (("GET", V1), ("PUT", "/api/dashboards/iframe-token")):
        resp = await client.request(method, path, headers={"User-Agent": "probe/1"})
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        body = await resp.json()
        assert body["error"]["code"] == "method_not_allowed"
        (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
        assert (row["event"], row["status"], row["user_agent"]) == (
            "invalid_request",
            405,
            "probe/1",
        )
        assert json.loads(row["detail"]) == {
            "code": "method_not_allowed",
            "reason": "method_not_allowed",
        }


async def test_other_paths_are_not_audited(client, db: asyncpg.Connection) -> None:
    """A 404 elsewhere and the health check write no audit row."""
    for path in ("/nope", "/healthz", "/api/v1/dashboards/iframe-token/x"):
        resp = await client.get(path)
        assert await audit_rows(db, resp.headers["X-Request-ID"], timeout=0.5) == []


async def test_preflight_is_not_a_token_request(make_client, settings, db) -> None:
    """With CORS on, a preflight to the token path is answered 204 and not audited."""
    client = await make_client(settings, cors_origins=("https://app.example",))
    resp = await client.options(
        V1,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Methods"] == "POST"
    assert await audit_rows(db, resp.headers["X-Request-ID"], timeout=0.5) == []


def test_codes_and_events_have_one_source() -> None:
    """Every domain error's code and event is in errors.py's lists; the OpenAPI enum, the id
    pattern and the audit CLI's choices are those lists, not copies."""
    classes = [getattr(errors, n) for n in dir(errors)]
    domain = [c for c in classes if isinstance(c, type) and issubclass(c, GatewayError)]
    assert {c.code for c in domain} <= set(ERROR_CODES)
    assert {c.event for c in domain} <= set(TOKEN_EVENTS)
    error = SPEC["components"]["schemas"]["Error"]["properties"]["error"]
    assert error["properties"]["code"]["enum"] == list(ERROR_CODES)
    assert SPEC["components"]["schemas"]["TokenRequest"]["properties"]["tenant_id"]["pattern"] == (
        ID_RULE.pattern
    )
    assert EVENTS is AUDIT_EVENTS


async def test_over_budget_caller_gets_body_errors_first_and_429_names_tenant(
    make_client, settings, db: asyncpg.Connection
) -> None:
    """Over its request budget, a caller still gets 415/413/400 for a bad body (the order the
    README documents), and the 429 for a good body records its tenant and workspace."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(
        settings, rate_limit_requests_per_second=0.01, rate_limit_request_burst=1
    )
    body = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
    assert (await client.post(V1, json=body, headers=auth())).status == 200
    bad_type = await client.post(V1, data=b"{}", headers={**auth(), "Content-Type": "text/plain"})
    assert bad_type.status == 415
    too_big = await client.post(V1, json={"x": "a" * 20_000}, headers=auth())
    assert too_big.status == 413
    bad_json = await client.post(
        V1, data=b"{", headers={**auth(), "Content-Type": "application/json"}
    )
    assert bad_json.status == 400
    limited = await client.post(V1, json=body, headers=auth())
    assert limited.status == 429
    (row,) = await audit_rows(db, limited.headers["X-Request-ID"])
    assert (row["event"], row["tenant_id"], row["workspace_id"]) == (
        "rate_limited",
        "org-123",
        "workspace-456",
    )


async def test_every_request_logs_one_line(make_client, settings, caplog) -> None:
    """A token request logs its line from the token API (with its event), anything else from
    the edge: a preflight to the token path and a 404 each log exactly one line."""
    caplog.set_level(logging.DEBUG, logger="gateway.http.middleware")
    client = await make_client(settings, cors_origins=("https://app.example",))
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    await client.options(V1, headers=preflight)
    await client.get("/nope")
    await client.get(V1)
    lines = [(r.method, r.status, r.event) for r in caplog.records]
    assert lines == [
        ("OPTIONS", 204, None),
        ("GET", 404, "invalid_request"),
        ("GET", 405, "invalid_request"),
    ]
