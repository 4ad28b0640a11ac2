"""`gateway revoke`: revoke a tenant's (or one dashboard's) cached tokens and audit it."""

from __future__ import annotations

import argparse
import sys

from gateway.admin.connect import connect_database, connect_redis, describe
from gateway.admin.purge import run_revocation
from gateway.audit.admin import operator_event, record_event
from gateway.settings import ConfigError, redis_target_from_env
from gateway.tokens.keys import KeyLayout
from gateway.tokens.revocation import prefix_in_use, revoke_dashboard, revoke_tenant


async def run(args: argparse.Namespace) -> int:
    target = redis_target_from_env()
    if target is None:
        raise ConfigError("GATEWAY_REDIS_URL is required to revoke cached tokens")
    client = connect_redis(target)
    try:
        in_use = await prefix_in_use(client, KeyLayout(target.prefix))
    finally:
        await client.aclose()
    if args.dashboard is None:
        generation = await run_revocation(
            target,
            lambda c, layout, replicas: revoke_tenant(c, layout, args.tenant, replicas=replicas),
        )
    else:
        generation = await run_revocation(
            target,
            lambda c, layout, replicas: revoke_dashboard(
                c, layout, args.tenant, args.dashboard, replicas=replicas
            ),
        )
    what = args.tenant if args.dashboard is None else f"{args.tenant} / {args.dashboard}"
    print(f"revoked every cached token of {what} (generation {generation}) on {describe(target)}")
    if not in_use:
        print(
            f"warning: no gateway has used prefix {target.prefix!r} on this Redis; if the"
            " service runs with another GATEWAY_REDIS_PREFIX (or Redis), nothing was revoked",
            file=sys.stderr,
        )
    conn = await connect_database()
    try:
        await record_event(
            conn,
            operator_event(
                "tokens_revoked",
                args.tenant,
                dashboard_id=args.dashboard,
                detail={"generation": generation, "source": "revoke"},
            ),
        )
    finally:
        await conn.close()
    return 0
