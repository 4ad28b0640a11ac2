"""Requests aiohttp's HTTP parser refuses, sent over raw sockets to a real `gateway serve`: each
gets the contract's JSON error with an X-Request-ID, echoes nothing, is counted in
gateway_parser_refusals_total, is audited when its request line named the token path, and is
logged as at most one bounded line per client per interval, never with a header's value."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import audit_rows, make_jwt
from tests.servers import free_port, gateway_env, start_gateway, stop_gateway, wait_healthy

V1 = "/api/v1/dashboards/iframe-token"
LIMIT = 2048
JWT = make_jwt()
BODY = b'{"tenant_id": "org-123", "workspace_id": "workspace-456"}'


def _post(*headers: str, path: str = V1, method: str = "POST", body: bytes = BODY) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gw", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


AUTH = f"Authorization: Bearer {JWT}"
CT = "Content-Type: application/json"
CL = f"Content-Length: {len(BODY)}"
# (name, reason counted, raw request, audited: its request line is readable and names the token
# path, so it reached the token endpoint)
FORMS = [
    ("nul_in_header", "bad_header", _post(AUTH + "\x00", CT, CL), True),
    ("bare_cr_in_header", "bad_header", _post(AUTH + "\rX: y", CT, CL), True),
    ("del_in_header", "bad_header", _post(AUTH + "\x7f", CT, CL), True),
    (
        "too_many_headers",
        "too_many_headers",
        _post(AUTH, CT, CL, *(f"X-H{i}: v" for i in range(130))),
        True,
    ),
    (
        "header_over_limit",
        "header_too_long",
        _post(AUTH, CT, CL, "X-Big: " + "a" * (LIMIT + 100)),
        True,
    ),
    (
        "request_line_over_limit",
        "request_line_too_long",
        _post(AUTH, CT, CL, path=V1 + "?" + "a" * (LIMIT + 100)),
        True,
    ),
    ("cl_and_te", "bad_framing", _post(AUTH, CT, CL, "Transfer-Encoding: chunked"), True),
    ("two_content_lengths", "bad_framing", _post(AUTH, CT, CL, "Content-Length: 5"), True),
    (
        "te_not_chunked_last",
        "bad_framing",
        _post(AUTH, CT, "Transfer-Encoding: chunked, identity"),
        True,
    ),
    ("space_before_colon", "bad_framing", _post(AUTH, CT, f"Content-Length : {len(BODY)}"), True),
    ("obs_fold", "bad_header", _post(AUTH, CT, CL, "X-Folded: a", " b"), True),
    ("odd_method", "bad_method", _post(AUTH, CT, CL, method="PO(ST"), False),
]


@pytest.fixture
async def gateway(settings, db, tmp_path) -> tuple[int, Path]:
    """A gateway process with 2 KiB header limits, logging at info to a file."""
    port = free_port()
    env = gateway_env(settings, port) | {
        "GATEWAY_MAX_HEADER_SIZE": str(LIMIT),
        "GATEWAY_LOG_LEVEL": "info",
    }
    log = tmp_path / "gateway.log"
    proc = start_gateway(env, log)
    await wait_healthy(f"http://127.0.0.1:{port}", proc)
    yield port, log
    assert stop_gateway(proc) == 0, log.read_text()[-2000:]


async def _exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # the server closes after a refusal
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, body


async def _metric(port: int) -> dict[str, float]:
    _, _, body = await _exchange(
        port, b"GET /metrics HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    found = re.findall(rb'gateway_parser_refusals_total\{reason="([a-z_]+)"\} ([0-9.e+]+)', body)
    return {k.decode(): float(v) for k, v in found}


async def test_every_refusal_is_the_contracts_error(gateway, db: asyncpg.Connection) -> None:
    """Each form: 400, the JSON error (invalid_request) whose request_id is the X-Request-ID,
    nothing of the request echoed, an audit row when the token path was named; one log line for
    this client in all (the interval), without the token; every refusal counted by reason."""
    port, log = gateway
    expected: dict[str, float] = {}
    for name, reason, raw, audited in FORMS:
        expected[reason] = expected.get(reason, 0) + 1
        status, headers, body = await _exchange(port, raw)
        assert status == 400, (name, body)
        assert headers["Content-Type"].startswith("application/json"), name
        error = json.loads(body)
        assert error["error"] == {
            "code": "invalid_request",
            "message": "the request could not be parsed",
        }, name
        assert error["request_id"] == headers["X-Request-ID"], name
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert JWT.encode() not in body
        rows = await audit_rows(db, headers["X-Request-ID"], timeout=3.0 if audited else 0.3)
        if audited:
            (row,) = rows
            assert (row["event"], row["status"]) == ("invalid_request", 400), name
            detail = json.loads(row["detail"])
            assert detail["code"] == "invalid_request"
            assert detail["reason"] == reason, name
        else:
            assert rows == [], name

    counted = await _metric(port)
    assert counted == expected
    text = log.read_text()
    assert JWT not in text
    assert JWT.split(".")[1] not in text  # not even the claims part
    refusal_lines = [line for line in text.splitlines() if "unparsable request" in line]
    assert len(refusal_lines) == 1, refusal_lines
    assert len(refusal_lines[0]) < 600
    assert "aiohttp.server" not in text
    assert "Traceback" not in text


async def test_a_broken_body_is_a_400_without_a_traceback(gateway, db) -> None:
    """Bad chunk framing or an undecodable Content-Encoding, found after the headers were
    accepted: 400 invalid_request (not 500), audited, and no traceback in the log."""
    port, log = gateway
    broken = (
        (
            "bad_framing",
            _post(AUTH, CT, "Transfer-Encoding: chunked", body=b"zz\r\nab\r\n0\r\n\r\n"),
        ),
        ("bad_body", _post(AUTH, CT, "Content-Encoding: gzip", "Content-Length: 5", body=b"abcde")),
    )
    for reason, raw in broken:
        status, headers, body = await _exchange(port, raw)
        assert status == 400, body
        assert json.loads(body)["error"]["code"] == "invalid_request"
        (row,) = await audit_rows(db, headers["X-Request-ID"])
        assert json.loads(row["detail"])["reason"] == reason
    text = log.read_text()
    assert "Traceback" not in text
    assert JWT not in text


async def test_a_refusal_names_no_header_in_its_answer(gateway) -> None:
    """A NUL after a bearer token: the 400's body and headers hold no part of the request."""
    port, _ = gateway
    status, headers, body = await _exchange(port, FORMS[0][2])
    assert status == 400
    assert b"Bearer" not in body
    assert b"Authorization" not in body
    assert all(JWT[:20] not in v for v in headers.values())
