"""The `gateway` command: serve, migrate, tenants, audit, revoke, dev.

The top of the import graph: each command's module is imported only when that command runs, so
`gateway serve` never loads `gateway.dev` and the admin commands never load the web app.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg
from redis.exceptions import RedisError

from gateway.admin import audit as audit_cli
from gateway.ops.logs import configure_logging
from gateway.settings import ConfigError, load_settings
from gateway.tokens.request import ID_RULE


def _id(value: str) -> str:
    if not ID_RULE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid id (1-128 of A-Z a-z 0-9 . _ : @ -, starting alphanumeric)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
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
    from gateway.dev.embedded import EmbeddedServerError  # noqa: PLC0415
    from gateway.dev.server import run_dev  # noqa: PLC0415

    try:
        return run_dev(data_dir=args.data_dir, host=args.host, port=args.port)
    except EmbeddedServerError as exc:
        print(f"gateway: dev failed: {exc}", file=sys.stderr)
        return 1


def _run_serve(args: argparse.Namespace) -> int:
    # Imported here: the web app is what `serve` runs, and only `serve` needs it.
    from gateway.app import create_app  # noqa: PLC0415
    from gateway.ops.serve import serve  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, create_app, workers=_workers(args.workers))


def _run_admin(args: argparse.Namespace) -> int:
    # Only the chosen command's module is imported (admin modules never load the web app).
    configure_logging("info", "text")
    if args.command == "migrate":
        from gateway.admin import schema  # noqa: PLC0415

        return asyncio.run(schema.run())
    if args.command == "tenants":
        from gateway.admin import tenants  # noqa: PLC0415

        return asyncio.run(tenants.run(args))
    if args.command == "revoke":
        from gateway.admin import revoke  # noqa: PLC0415

        return asyncio.run(revoke.run(args))
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
