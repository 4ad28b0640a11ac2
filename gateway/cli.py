"""The `gateway` command: serve, migrate, tenants, audit, dev."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import audit_cli
from gateway.config import ConfigError, database_url_from_env, load_settings, redis_from_env
from gateway.dashboards import add_mapping, list_mappings, remove_mapping
from gateway.logs import configure_logging
from gateway.migrate import migrate
from gateway.revoke import purge_tokens, record_event, revocation_event
from gateway.token_request import ID_RULE


def _id(value: str) -> str:
    if not ID_RULE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid id (1-128 of A-Z a-z 0-9 . _ : @ -, starting alphanumeric)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service from the environment")
    serve.add_argument(
        "--workers",
        default="1",
        help="worker processes sharing the port (a number, or 'auto' for one per CPU)",
    )

    sub.add_parser("migrate", help="apply the SQL files in sql/ once each")

    tenants = sub.add_parser("tenants", help="manage tenant-to-dashboard mappings")
    tsub = tenants.add_subparsers(dest="action", required=True)
    add = tsub.add_parser("add", help="map a dashboard to a tenant in a workspace")
    add.add_argument("--tenant", required=True, type=_id)
    add.add_argument("--workspace", required=True, type=_id)
    add.add_argument("--dashboard", required=True, type=_id)
    add.add_argument("--default", action="store_true", help="make it the tenant's default")
    lst = tsub.add_parser("list", help="list mappings")
    lst.add_argument("--tenant", type=_id)
    rm = tsub.add_parser("remove", help="remove a mapping")
    rm.add_argument("--tenant", required=True, type=_id)
    rm.add_argument("--workspace", required=True, type=_id)
    rm.add_argument("--dashboard", required=True, type=_id)

    audit_cli.add_parser(sub, _id)

    revoke = sub.add_parser(
        "revoke", help="purge a tenant's cached tokens (needs GATEWAY_REDIS_URL) and audit it"
    )
    revoke.add_argument("--tenant", required=True, type=_id)
    revoke.add_argument("--dashboard", type=_id, help="only this dashboard's tokens")

    dev = sub.add_parser("dev", help="one-command demo with embedded PostgreSQL and Redis")
    dev.add_argument("--data-dir", default=".gateway-dev", help="where the demo keeps its data")
    dev.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    dev.add_argument("--host", default="127.0.0.1")
    return parser


async def _run_migrate() -> int:
    conn = await asyncpg.connect(database_url_from_env())
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "nothing to apply; schema is current")
    return 0


async def _purge(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    workspace_id: str | None = None,
    dashboard_id: str | None = None,
    default_only: bool = False,
    source: str,
) -> int | None:
    """Purge cached tokens and audit it; None (with a note) when GATEWAY_REDIS_URL is unset."""
    target = redis_from_env()
    if target is None:
        print(
            "note: GATEWAY_REDIS_URL is not set, so cached tokens were not purged;"
            " they stay in use until they expire",
            file=sys.stderr,
        )
        return None
    url, prefix = target
    client = aioredis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        purged = await purge_tokens(
            client,
            prefix,
            tenant_id,
            workspace_id=workspace_id,
            dashboard_id=dashboard_id,
            default_only=default_only,
        )
    finally:
        await client.aclose()
    await record_event(
        conn,
        revocation_event(
            tenant_id,
            purged=purged,
            workspace_id=workspace_id,
            dashboard_id=dashboard_id,
            source=source,
        ),
    )
    return purged


async def _run_revoke(args: argparse.Namespace) -> int:
    if redis_from_env() is None:
        raise ConfigError("GATEWAY_REDIS_URL is required to revoke cached tokens")
    conn = await asyncpg.connect(database_url_from_env())
    try:
        purged = await _purge(conn, args.tenant, dashboard_id=args.dashboard, source="revoke")
    finally:
        await conn.close()
    what = args.tenant if args.dashboard is None else f"{args.tenant} / {args.dashboard}"
    print(f"revoked {purged} cached token(s) of {what}")
    return 0


async def _run_tenants(args: argparse.Namespace) -> int:
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
        purged = await _purge(
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
    purged = await _purge(
        conn,
        args.tenant,
        workspace_id=args.workspace,
        dashboard_id=args.dashboard,
        source="tenants remove",
    )
    if purged is not None:
        print(f"purged {purged} cached token(s)")
    return 0


def _workers(raw: str) -> int:
    import os  # noqa: PLC0415 - only `serve` needs it

    if raw == "auto":
        return os.cpu_count() or 1
    try:
        count = int(raw)
    except ValueError:
        raise ConfigError("--workers must be a number or 'auto'") from None
    if not 1 <= count <= 256:
        raise ConfigError("--workers must be between 1 and 256")
    return count


def _run_dev(args: argparse.Namespace) -> int:
    # Imported here: the embedded servers come with the `dev` extra, not with `serve`.
    from gateway.devserver import run_dev  # noqa: PLC0415
    from gateway.embedded import EmbeddedServerError  # noqa: PLC0415

    try:
        return run_dev(data_dir=args.data_dir, host=args.host, port=args.port)
    except EmbeddedServerError as exc:
        print(f"gateway: dev failed: {exc}", file=sys.stderr)
        return 1


def _run_serve(args: argparse.Namespace) -> int:
    from gateway.serve import serve  # noqa: PLC0415 - keeps admin commands light

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, workers=_workers(args.workers))


def _run_admin(args: argparse.Namespace) -> int:
    configure_logging("info", "text")
    if args.command == "migrate":
        return asyncio.run(_run_migrate())
    if args.command == "tenants":
        return asyncio.run(_run_tenants(args))
    if args.command == "revoke":
        return asyncio.run(_run_revoke(args))
    return asyncio.run(audit_cli.run(args))


COMMANDS = {
    "serve": _run_serve,
    "migrate": _run_admin,
    "tenants": _run_admin,
    "audit": _run_admin,
    "revoke": _run_admin,
    "dev": _run_dev,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, RedisError) as exc:
        print(f"gateway: {args.command} failed: {exc}", file=sys.stderr)
        return 1
