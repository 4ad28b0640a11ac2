"""`gateway tenants add|list|remove`: the tenant-to-dashboard mapping, with cache purges."""

from __future__ import annotations

import argparse
import sys

import asyncpg
from redis.exceptions import RedisError

from gateway.admin.purge import purge_and_record
from gateway.settings import database_url_from_env
from gateway.tokens.directory import add_mapping, list_mappings, remove_mapping


async def run(args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(database_url_from_env())
    try:
        return await _tenants(conn, args)
    except RedisError as exc:
        # The mapping change is committed; only the purge of cached tokens failed.
        print(
            f"gateway: the change is saved, but cached tokens could not be purged ({exc});"
            f" run `gateway revoke --tenant {args.tenant}` once Redis answers",
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
        await add_mapping(
            conn, args.tenant, args.workspace, args.dashboard, is_default=args.default
        )
        print(f"mapped {args.tenant} / {args.workspace} -> {args.dashboard}")
        # Tokens cached for "the default dashboard" may now name the wrong one: a new default,
        # or a second dashboard that makes the old only-one ambiguous.
        purged = await purge_and_record(
            conn,
            args.tenant,
            workspace_id=args.workspace,
            default_only=True,
            source="tenants add --default" if args.default else "tenants add",
        )
        if purged is not None:
            print(f"purged {purged} cached default-dashboard token(s)")
        return 0
    if not await remove_mapping(conn, args.tenant, args.workspace, args.dashboard):
        print(f"no mapping {args.tenant} / {args.workspace} -> {args.dashboard}", file=sys.stderr)
        return 1
    print(f"removed {args.tenant} / {args.workspace} -> {args.dashboard}")
    purged = await purge_and_record(
        conn,
        args.tenant,
        workspace_id=args.workspace,
        dashboard_id=args.dashboard,
        source="tenants remove",
    )
    if purged is not None:
        print(f"purged {purged} cached token(s)")
    return 0
