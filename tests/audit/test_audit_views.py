"""The SRE views of sql/0003_audit_views.sql against a hand-made data set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.audit.copy import write_batch
from gateway.audit.event import AuditEvent


@pytest.fixture
async def pool(database_url: str, db: asyncpg.Connection):
    """A pool on the test database, audit_events emptied."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield p
    await p.close()


def ev(event: str, at: datetime, **fields) -> AuditEvent:
    status = {"token_issued": 200, "token_reused": 200, "auth_failed": 401}.get(event, 403)
    return AuditEvent(
        event=event, status=status, request_id=f"{event}-{at.timestamp()}", occurred_at=at, **fields
    )


async def test_audit_hourly_counts_subjects_and_latency_percentiles(pool, db) -> None:
    """Per hour, tenant and event: count, distinct subjects, p50 and p95 latency."""
    hour = datetime(2030, 2, 1, 14, tzinfo=UTC)
    events = [
        ev(
            "token_issued",
            hour + timedelta(minutes=m),
            tenant_id="org-a",
            subject=s,
            latency_ms=lat,
        )
        for m, s, lat in ((1, "u1", 10.0), (2, "u1", 20.0), (3, "u2", 30.0), (4, "u3", 40.0))
    ]
    events.append(
        ev(
            "token_reused",
            hour + timedelta(minutes=5),
            tenant_id="org-a",
            subject="u1",
            latency_ms=2.0,
        )
    )
    events.append(
        ev(
            "token_issued",
            hour + timedelta(minutes=70),
            tenant_id="org-a",
            subject="u9",
            latency_ms=5.0,
        )
    )
    await write_batch(pool, events)
    rows = await db.fetch(
        "SELECT * FROM audit_hourly WHERE tenant_id = 'org-a' ORDER BY hour, event"
    )
    got = [
        (r["hour"], r["event"], r["events"], r["subjects"], r["p50_ms"], r["p95_ms"]) for r in rows
    ]
    assert got == [
        (hour, "token_issued", 4, 3, 25.0, pytest.approx(38.5)),
        (hour, "token_reused", 1, 1, 2.0, 2.0),
        (hour + timedelta(hours=1), "token_issued", 1, 1, 5.0, 5.0),
    ]


async def test_audit_denials_recent_shows_last_day_refusals_only(pool, db) -> None:
    """auth_failed, access_denied and rate_limited of the last 24 h, newest first, with reason."""
    now = datetime.now(UTC)
    await write_batch(
        pool,
        [
            ev(
                "auth_failed",
                now - timedelta(hours=1),
                client_ip="10.0.0.1",
                detail={"reason": "expired", "code": "unauthenticated"},
            ),
            ev(
                "access_denied",
                now - timedelta(hours=23),
                subject="u2",
                tenant_id="org-b",
                client_ip="10.0.0.2",
                detail={"reason": "forbidden", "code": "forbidden"},
            ),
            ev(
                "rate_limited",
                now - timedelta(minutes=5),
                subject="u3",
                tenant_id="org-c",
                client_ip="10.0.0.3",
                detail={"reason": "caller", "code": "rate_limited"},
            ),
            ev("rate_limited", now - timedelta(hours=25), subject="old", tenant_id="org-c"),
            ev("token_issued", now - timedelta(hours=1), subject="ok", tenant_id="org-a"),
            ev("dashboard_not_found", now - timedelta(hours=1), subject="nf"),
        ],
    )
    rows = await db.fetch("SELECT * FROM audit_denials_recent")
    got = [
        (r["event"], r["subject"], r["tenant_id"], str(r["client_ip"]), r["reason"]) for r in rows
    ]
    assert got == [
        ("rate_limited", "u3", "org-c", "10.0.0.3", "caller"),
        ("auth_failed", None, None, "10.0.0.1", "expired"),
        ("access_denied", "u2", "org-b", "10.0.0.2", "forbidden"),
    ]


async def test_audit_unusual_issuance_flags_bursts_over_three_times_baseline(pool, db) -> None:
    """Last hour above 3x the trailing 7-day hourly average, and at least 20: flagged."""
    now = datetime.now(UTC)
    events: list[AuditEvent] = []

    def issued(tenant: str, count: int, start: timedelta, span: timedelta) -> None:
        for i in range(count):
            at = now - start + span * (i / count)
            events.append(ev("token_issued", at, tenant_id=tenant, subject=f"{tenant}-{i}"))

    week = timedelta(days=7)
    ago = timedelta(hours=1, minutes=5)  # the baseline window ends an hour before now
    last_hour = (timedelta(minutes=55), timedelta(minutes=50))
    issued("spiky", 168, ago + week - timedelta(hours=1), week - timedelta(hours=1))  # 1/h
    issued("spiky", 25, *last_hour)  # 25 > 3 x 1
    issued("steady", 1680, ago + week - timedelta(hours=1), week - timedelta(hours=1))  # 10/h
    issued("steady", 25, *last_hour)  # 25 <= 3 x 10
    issued("newcomer", 20, *last_hour)  # no history, 20: flagged
    issued("quiet", 19, *last_hour)  # no history but under 20
    # Reuses are not issuance.
    events.extend(
        ev("token_reused", now - timedelta(minutes=10), tenant_id="reuser", subject=f"r{i}")
        for i in range(40)
    )
    await write_batch(pool, events)
    rows = await db.fetch("SELECT * FROM audit_unusual_issuance")
    got = {r["tenant_id"]: (r["issued_last_hour"], r["hourly_avg_7d"], r["ratio"]) for r in rows}
    assert got == {"spiky": (25, 1, 25), "newcomer": (20, 0, None)}
    assert [r["tenant_id"] for r in rows] == ["spiky", "newcomer"]
