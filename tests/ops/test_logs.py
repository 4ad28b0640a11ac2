"""Logs: one JSON line per request (debug) or error (warning), with the fields SREs filter on,
and never a token, a secret or the Authorization header."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest

from gateway.ops.logs import JsonFormatter, TextFormatter
from gateway.tokens.directory import add_mapping
from tests.helpers import JWT_SECRET, SIGNING_SECRET, auth, make_jwt

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def test_one_line_per_request_and_no_secrets(client, mapped, caplog) -> None:
    """A 200 logs one debug line, a 403 one warning line, each with request_id, tenant_id,
    event, status and latency_ms; nothing logged contains the caller JWT, the minted token or a
    secret, in JSON or in text."""
    caplog.set_level(logging.DEBUG)
    jwt = make_jwt()
    ok = await client.post(V1, json=BODY, headers=auth(jwt))
    token = (await ok.json())["token"]
    bad = await client.post(V1, json={**BODY, "tenant_id": "org-999"}, headers=auth(jwt))
    assert bad.status == 403

    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    per_request = [line for line in lines if line["logger"] == "gateway.http.middleware"]
    assert [(x["level"], x["status"], x["event"]) for x in per_request] == [
        ("debug", 200, "token_issued"),
        ("warning", 403, "access_denied"),
    ]
    for line, resp in zip(per_request, (ok, bad), strict=True):
        assert line["request_id"] == resp.headers["X-Request-ID"]
        assert line["tenant_id"] in ("org-123", "org-999")
        assert line["latency_ms"] >= 0
    text = "\n".join(
        [JsonFormatter().format(r) for r in caplog.records]
        + [TextFormatter().format(r) for r in caplog.records]
    )
    assert "request_id=" in text
    for secret in (jwt, token, SIGNING_SECRET.decode(), JWT_SECRET.decode(), "Bearer"):
        assert secret not in text


async def test_sampled_access_log_at_info(make_client, settings, mapped, caplog) -> None:
    """GATEWAY_ACCESS_LOG_SAMPLE=1 logs every successful request at info; the default (0) logs
    none at info, so production stays quiet unless asked."""
    caplog.set_level(logging.INFO, logger="gateway.http.middleware")
    quiet = await make_client(settings)
    await quiet.post(V1, json=BODY, headers=auth())
    assert [r for r in caplog.records if r.name == "gateway.http.middleware"] == []
    loud = await make_client(settings, access_log_sample=1.0)
    resp = await loud.post(V1, json=BODY, headers=auth())
    (record,) = [r for r in caplog.records if r.name == "gateway.http.middleware"]
    assert record.levelno == logging.INFO
    assert record.request_id == resp.headers["X-Request-ID"]
