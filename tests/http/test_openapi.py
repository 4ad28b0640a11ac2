"""GET /openapi.json describes the API, and schemathesis finds the running app keeps to it."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from gateway.app import TOKEN_PATHS
from gateway.http.openapi import SPEC
from gateway.tokens.directory import add_mapping
from tests.helpers import make_jwt
from tests.servers import free_port, gateway_env, start_gateway, stop_gateway, wait_healthy

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)


async def test_spec_lists_every_route(client) -> None:
    """/openapi.json is the SPEC, and every route the app serves is in it (and nothing else)."""
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert await resp.json() == SPEC
    served = {
        (route.resource.canonical, route.method.lower())
        for route in client.app.router.routes()
        if route.method != "HEAD"
    }
    described = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert served == described
    assert all(("post" in SPEC["paths"][p]) for p in TOKEN_PATHS)


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def test_schemathesis_finds_no_server_error_or_spec_violation(
    settings, mapped, tmp_path
) -> None:
    """schemathesis, stateless over every operation (examples, coverage and fuzzing phases,
    valid and invalid data) with a valid caller JWT: no 500 and no response outside the spec."""
    port = free_port()
    env = gateway_env(settings, port) | {
        # Generated requests come fast from one subject; the limits are tested elsewhere.
        "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND": "0",
        "GATEWAY_RATE_LIMIT_SUBJECT_MINTS": "0",
        "GATEWAY_RATE_LIMIT_TENANT_MINTS": "0",
        "GATEWAY_LOG_LEVEL": "error",
    }
    log = tmp_path / "gateway.log"
    proc = start_gateway(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--seed",
            "20261124",
            # One worker: concurrent hypothesis threads hit a CPython 3.11 ast.parse race.
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {make_jwt(lifetime=3600)}",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(run.communicate(), timeout=240)
    finally:
        stop_gateway(proc)
    report = out.decode()
    assert run.returncode == 0, report[-6000:]
    assert "No issues found" in report or "passed" in report, report[-3000:]
