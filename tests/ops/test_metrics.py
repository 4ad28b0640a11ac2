"""Metrics: exact counts after a scripted sequence, and /metrics covering every worker."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.tokens.directory import add_mapping
from tests.helpers import auth, make_jwt
from tests.servers import (
    eventually,
    free_port,
    gateway_env,
    start_gateway,
    stop_gateway,
    wait_healthy,
)

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def mapped(db: asyncpg.Connection) -> asyncpg.Connection:
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


async def test_counters_after_a_scripted_sequence(client, mapped) -> None:
    """Issued, reused, two auth failures, a forbidden and a not-found: /metrics shows exactly
    those requests, cache lookups per tier, mints, JWT failures and limiter decisions."""
    assert (await client.post(V1, json=BODY, headers=auth())).status == 200
    assert (await client.post(V1, json=BODY, headers=auth())).status == 200
    assert (await client.post(V1, json=BODY)).status == 401
    bad = make_jwt(secret=b"x" * 64)
    assert (await client.post(V1, json=BODY, headers=auth(bad))).status == 401
    assert (await client.post(V1, json=BODY, headers=auth(tenant="org-999"))).status == 403
    nowhere = {"tenant_id": "org-123", "workspace_id": "nowhere"}
    assert (await client.post(V1, json=nowhere, headers=auth())).status == 404

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    found = samples(await resp.text())
    requests = {
        ("200", "token_issued"): 1,
        ("200", "token_reused"): 1,
        ("401", "auth_failed"): 2,
        ("403", "access_denied"): 1,
        ("404", "dashboard_not_found"): 1,
    }
    for (status, event), count in requests.items():
        assert (
            value(found, "gateway_requests_total", route="token", status=status, event=event)
            == count
        )
    assert sum(v for (n, _), v in found.items() if n == "gateway_requests_total") == 6
    assert value(found, "gateway_request_seconds_count") == 6
    assert value(found, "gateway_tokens_minted_total") == 1
    assert value(found, "gateway_token_cache_total", result="hit") == 1
    assert value(found, "gateway_token_cache_total", result="miss") == 1
    # A miss looks up once (the share script, not a read, settles the rest): issued 1,
    # not-found 1.
    assert value(found, "gateway_cache_lookups_total", tier="redis", result="hit") == 1
    assert value(found, "gateway_cache_lookups_total", tier="redis", result="miss") == 2
    assert value(found, "gateway_jwt_failures_total", reason="missing_token") == 1
    assert value(found, "gateway_jwt_failures_total", reason="signature") == 1
    assert (
        value(found, "gateway_rate_limit_decisions_total", limiter="mint", decision="allowed") == 1
    )
    assert (
        value(found, "gateway_rate_limit_decisions_total", limiter="request", decision="allowed")
        == 4
    )
    assert value(found, "gateway_breaker_state", dependency="redis") == 0
    assert not [k for k in found if k[0] == "gateway_dependency_errors_total"]

    # The audit writer delivers the six rows in batches of whatever size the timing gives.
    async def written() -> bool:
        nonlocal found
        found = samples(await (await client.get("/metrics")).text())
        return value(found, "gateway_audit_events_written_total") >= 6

    await eventually(written, timeout=5, what="audit rows written")
    assert value(found, "gateway_audit_events_written_total") == 6
    assert value(found, "gateway_audit_queue_depth") == 0


async def test_each_request_looks_up_the_local_tier_once(make_client, settings, mapped) -> None:
    """With the per-worker tier on: a miss there is counted once (not again on the way to
    Redis), then the same request is a local hit."""
    client = await make_client(settings, local_cache_ttl=5.0)
    for _ in range(2):
        assert (await client.post(V1, json=BODY, headers=auth())).status == 200
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "gateway_cache_lookups_total", tier="local", result="miss") == 1
    assert value(found, "gateway_cache_lookups_total", tier="local", result="hit") == 1
    assert value(found, "gateway_cache_lookups_total", tier="redis", result="miss") == 1
    assert value(found, "gateway_token_cache_total", result="miss") == 1
    assert value(found, "gateway_token_cache_total", result="hit") == 1


@pytest.mark.parametrize("operator_dir", [True, False])
async def test_metrics_cover_every_worker(settings, mapped, tmp_path, operator_dir) -> None:
    """`gateway serve --workers 2`: 30 requests on separate connections, and every scrape (from
    whichever worker answers it) counts all 30; with PROMETHEUS_MULTIPROC_DIR set by the operator
    or without it (a temporary directory)."""
    port = free_port()
    env = gateway_env(settings, port)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if operator_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    log = tmp_path / "gateway.log"
    proc = start_gateway(env, log, "--workers", "2")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(base, proc)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for i in range(30):
                async with session.post(
                    base + V1, json=BODY, headers=auth(sub=f"user-{i}")
                ) as resp:
                    assert resp.status == 200

            # Each worker copies its numbers to the shared files about once a second: within a
            # few seconds every scrape, from either worker, counts all 30.
            async def all_counted() -> bool:
                async with session.get(base + "/metrics") as resp:
                    return _token_total(samples(await resp.text())) == 30

            await eventually(all_counted, timeout=5.0, interval=0.2, what="every worker's counts")
            for _ in range(6):
                async with session.get(base + "/metrics") as resp:
                    found = samples(await resp.text())
                assert _token_total(found) == 30
                assert value(found, "gateway_breaker_state", dependency="redis") == 0
    finally:
        code = stop_gateway(proc)
    assert code == 0, log.read_text()[-2000:]


def _token_total(found: dict) -> float:
    return sum(
        value(found, "gateway_requests_total", route="token", status="200", event=event)
        for event in ("token_issued", "token_reused")
    )
