"""`gateway revoke`: purge a tenant's (or one dashboard's) cached tokens and audit it."""

from __future__ import annotations

import argparse

import asyncpg

from gateway.admin.purge import purge_and_record
from gateway.settings import ConfigError, database_url_from_env, redis_from_env


async def run(args: argparse.Namespace) -> int:
    if redis_from_env() is None:
        raise ConfigError("GATEWAY_REDIS_URL is required to revoke cached tokens")
    conn = await asyncpg.connect(database_url_from_env())
    try:
        purged = await purge_and_record(
            conn, args.tenant, dashboard_id=args.dashboard, source="revoke"
        )
    finally:
        await conn.close()
    what = args.tenant if args.dashboard is None else f"{args.tenant} / {args.dashboard}"
    print(f"revoked {purged} cached token(s) of {what}")
    return 0
