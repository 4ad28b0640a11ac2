"""`gateway tenants add|list|remove`: the tenant-to-dashboard mapping, revoking what it changes."""

from __future__ import annotations

import argparse
import sys

import asyncpg

from gateway.admin.connect import connect_database
from gateway.admin.purge import read_lag, record_mapping_change, redis_or_note, run_revocation
from gateway.infra.dependency_errors import REDIS_ERRORS
from gateway.tokens.directory import (
    add_mapping,
    default_dashboard,
    list_mappings,
    remove_mapping,
)
from gateway.tokens.revocation import mark_changed, revoke_dashboard, revoke_default_alias


async def run(args: argparse.Namespace) -> int:
    conn = await connect_database()
    try:
        return await _tenants(conn, args)
    except REDIS_ERRORS as exc:
        # The mapping change is committed and audited; only the revocation of cached tokens
        # failed.
        print(
            f"gateway: the change is saved, but cached tokens could not be revoked"
            f" ({type(exc).__name__}: {exc}); run `gateway revoke --tenant {args.tenant}`"
            " once Redis answers",
            file=sys.stderr,
        )
        return 3
    finally:
        await conn.close()


async def _tenants(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = await list_mappings(conn, args.tenant)
        print(f"{'TENANT':<24} {'WORKSPACE':<24} {'DASHBOARD':<24} DEFAULT  CREATED")
        for m in rows:
            print(
                f"{m.tenant_id:<24} {m.workspace_id:<24} {m.dashboard_id:<24} "
                f"{'yes' if m.is_default else 'no':<8} {m.created_at:%Y-%m-%d %H:%M:%S%z}"
            )
        return 0
    if args.action == "add":
        return await _add(conn, args)
    return await _remove(conn, args)


async def _add(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant, workspace = args.tenant, args.workspace
    before = await default_dashboard(conn, tenant, workspace)
    await add_mapping(conn, tenant, workspace, args.dashboard, is_default=args.default)
    after = await default_dashboard(conn, tenant, workspace)
    print(f"mapped {tenant} / {workspace} -> {args.dashboard}")
    # Only cached "default dashboard" tokens can go stale, and only when the answer to "which
    # dashboard by default?" changed: a new default, or a second dashboard making it ambiguous.
    # A first mapping changes nothing cached (a 404 is never cached).
    stale = before is not None and before != after
    await record_mapping_change(
        conn,
        tenant,
        workspace,
        args.dashboard,
        detail={
            "action": "add",
            "is_default": args.default,
            "default_before": before,
            "default_after": after,
            "revoked": "default_alias" if stale else None,
        },
    )
    if not stale:
        print("no cached token needed revoking: the default dashboard is unchanged")
    target = redis_or_note()
    if target is None:
        return 0
    if stale:
        await run_revocation(
            target,
            lambda c, layout, replicas: revoke_default_alias(
                c, layout, tenant, workspace, lag=read_lag(), replicas=replicas
            ),
        )
        print(f"revoked cached default-dashboard tokens of {tenant} / {workspace}")
    else:
        # Nothing to revoke, but a read replica may lag: the service reads the primary a while.
        await run_revocation(
            target, lambda c, layout, _r: mark_changed(c, layout, tenant, lag=read_lag())
        )
    return 0


async def _remove(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    tenant, workspace, dashboard = args.tenant, args.workspace, args.dashboard
    if not await remove_mapping(conn, tenant, workspace, dashboard):
        print(f"no mapping {tenant} / {workspace} -> {dashboard}", file=sys.stderr)
        return 1
    print(f"removed {tenant} / {workspace} -> {dashboard}")
    await record_mapping_change(
        conn, tenant, workspace, dashboard, detail={"action": "remove", "revoked": "dashboard"}
    )
    target = redis_or_note()
    if target is None:
        return 0
    await run_revocation(
        target,
        lambda c, layout, replicas: revoke_dashboard(
            c, layout, tenant, dashboard, lag=read_lag(), replicas=replicas
        ),
    )
    print(f"revoked cached tokens of {tenant} / {dashboard}")
    return 0
