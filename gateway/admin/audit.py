"""`gateway audit maintain|prune|tail|status`: partitions, retention, recent events, the journal."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from gateway.admin.audit_status import render
from gateway.admin.connect import connect_database
from gateway.audit.partitions import ensure_partitions, prune
from gateway.errors import AUDIT_EVENTS as EVENTS

# (header, column, width); the last column takes what it needs.
TAIL_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("TIME (UTC)", "occurred_at", 23),
    ("EVENT", "event", 19),
    ("ST", "status", 3),
    ("TENANT", "tenant_id", 16),
    ("WORKSPACE", "workspace_id", 16),
    ("SUBJECT", "subject", 16),
    ("DASHBOARD", "dashboard_id", 16),
    ("CLIENT IP", "client_ip", 15),
    ("MS", "latency_ms", 7),
    ("REASON", "reason", 18),
    ("REQUEST ID", "request_id", 0),
)


def add_parser(sub: Any, id_type: Callable[[str], str]) -> None:
    """Register `gateway audit ...` on the top-level sub-parsers."""
    audit = sub.add_parser("audit", help="audit trail: partitions, retention, recent events")
    asub = audit.add_subparsers(dest="action", required=True)
    maintain = asub.add_parser("maintain", help="create the daily partitions for the coming days")
    maintain.add_argument(
        "--days-ahead", type=_positive, default=7, help="days ahead to create (default 7)"
    )
    pr = asub.add_parser("prune", help="drop whole daily partitions older than --keep-days")
    pr.add_argument("--keep-days", type=_positive, required=True, help="days of events to keep")
    pr.add_argument("--dry-run", action="store_true", help="show what would be dropped")
    tail = asub.add_parser("tail", help="print recent audit events as a table")
    tail.add_argument("--tenant", type=id_type, help="only this tenant")
    tail.add_argument("--event", choices=EVENTS, help="only this event")
    tail.add_argument("-n", "--limit", type=_positive, default=20, help="rows (default 20)")
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new events as they arrive"
    )
    status = asub.add_parser(
        "status", help="the audit journal: per-worker backlog, segments, errors (no database)"
    )
    status.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="journal directory (default: GATEWAY_AUDIT_SPOOL_DIR, else ./audit-spool)",
    )


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column == "occurred_at":
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    if column == "latency_ms":
        return f"{value:.1f}"
    return str(value)


def format_table(rows: Sequence[asyncpg.Record | dict[str, Any]]) -> str:
    """Rows of audit_events as a fixed-width table, long values cut with '…'."""
    lines = [
        " ".join(head.ljust(width) if width else head for head, _, width in TAIL_COLUMNS).rstrip()
    ]
    for row in rows:
        cells = []
        for _, column, width in TAIL_COLUMNS:
            text = _cell(row[column], column)
            if width and len(text) > width:
                text = text[: width - 1] + "…"
            cells.append(text.ljust(width) if width else text)
        lines.append(" ".join(cells).rstrip())
    return "\n".join(lines)


_SELECT = (
    "SELECT event_id, occurred_at AT TIME ZONE 'UTC' AS occurred_at, event, status, tenant_id,"
    " workspace_id, subject, dashboard_id, host(client_ip) AS client_ip, latency_ms,"
    " detail ->> 'reason' AS reason, request_id, occurred_at AS at"
    " FROM audit_events"
    " WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR event = $2)"
)
# Rows reach the table in batches, a little after they happened: --follow looks back this far
# on each poll and skips the event ids it has printed.
FOLLOW_WINDOW = timedelta(seconds=30)
FOLLOW_POLL = 1.0


async def recent_events(
    conn: asyncpg.Connection, *, tenant: str | None, event: str | None, limit: int
) -> list[asyncpg.Record]:
    """The latest `limit` events (optionally of one tenant / one event), oldest first."""
    rows = await conn.fetch(_SELECT + " ORDER BY occurred_at DESC LIMIT $3", tenant, event, limit)
    return rows[::-1]


async def follow(
    conn: asyncpg.Connection,
    rows: list[asyncpg.Record],
    *,
    tenant: str | None,
    event: str | None,
    polls: int | None = None,
) -> None:
    """Print events newer than `rows` as they arrive (forever, or `polls` times)."""
    seen = {r["event_id"] for r in rows}
    since = max((r["at"] for r in rows), default=None)
    while polls is None or polls > 0:
        await asyncio.sleep(FOLLOW_POLL)
        fresh = await conn.fetch(
            _SELECT + " AND ($3::timestamptz IS NULL OR occurred_at > $3) ORDER BY occurred_at",
            tenant,
            event,
            None if since is None else since - FOLLOW_WINDOW,
        )
        new = [r for r in fresh if r["event_id"] not in seen]
        if new:
            print(format_table(new).split("\n", 1)[1], flush=True)
            seen.update(r["event_id"] for r in new)
            since = max(since or new[-1]["at"], new[-1]["at"])
            if len(seen) > 100_000:  # bounded memory on a long follow
                seen = {r["event_id"] for r in fresh}
        if polls is not None:
            polls -= 1


def journal_dir(args: argparse.Namespace) -> Path:
    """The journal directory `status` reads: --dir, else the gateway's setting."""
    if args.dir is not None:
        return args.dir
    return Path(os.environ.get("GATEWAY_AUDIT_SPOOL_DIR", "").strip() or "audit-spool")


async def run(args: argparse.Namespace) -> int:
    """Run one `gateway audit` action; returns the exit status."""
    if args.action == "status":
        print(render(journal_dir(args)))
        return 0
    conn = await connect_database()
    try:
        if args.action == "maintain":
            created = await ensure_partitions(conn, days_ahead=args.days_ahead)
            print("created: " + ", ".join(created) if created else "partitions are in place")
        elif args.action == "prune":
            result = await prune(conn, keep_days=args.keep_days, dry_run=args.dry_run)
            verb = "would drop" if args.dry_run else "dropped"
            print(f"{verb}: {', '.join(result.dropped) if result.dropped else 'nothing'}")
            if result.default_rows_deleted:
                print(f"{verb} {result.default_rows_deleted} old rows from audit_events_default")
        else:
            rows = await recent_events(conn, tenant=args.tenant, event=args.event, limit=args.limit)
            print(format_table(rows), flush=True)
            if args.follow:
                await follow(conn, rows, tenant=args.tenant, event=args.event)
    finally:
        await conn.close()
    return 0
