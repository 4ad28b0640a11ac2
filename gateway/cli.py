"""The `gateway` command: serve, migrate, tenants, audit, revoke, dev.

The top of the import graph: each command's module is imported only when that command runs, so
`gateway serve` never loads `gateway.dev` and the admin commands never load the web app.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import asyncpg
from redis.exceptions import RedisError

from gateway import __version__
from gateway.admin import audit as audit_cli
from gateway.ops.dependencies import unreachable_line
from gateway.ops.logs import configure_logging
from gateway.settings import (
    ConfigError,
    load_settings,
    log_config_from_env,
    unknown_variable_warnings,
)
from gateway.tokens.request import ID_RULE

log = logging.getLogger("gateway")

_DB = "  GATEWAY_DATABASE_URL    PostgreSQL DSN (required)"
_REDIS = "  GATEWAY_REDIS_URL       Redis URL"
_PREFIX = "  GATEWAY_REDIS_PREFIX    the service's Redis key prefix (default gw:)"
_LOGS = "  GATEWAY_LOG_LEVEL, GATEWAY_LOG_FORMAT   logging (default info, text)"
# What each command reads from the environment, shown by its --help.
ENVIRONMENT = {
    "serve": [
        _DB,
        "  GATEWAY_REDIS_URL       Redis URL (required)",
        "  GATEWAY_API_KEY_ID      API key id put in every token (required)",
        "  GATEWAY_SIGNING_SECRET or _FILE   token signing secret, >= 32 bytes (required)",
        "  GATEWAY_JWT_SECRET or _FILE, or GATEWAY_JWT_JWKS_URL   caller JWT keys (one required)",
        "  every other GATEWAY_* variable: README, Configuration (logging default: info, json)",
    ],
    "migrate": [_DB, _LOGS],
    "tenants": [_DB, _REDIS + " (optional: purge replaced tokens)", _PREFIX, _LOGS],
    "audit": [_DB, _LOGS],
    "revoke": [_DB, _REDIS + " (required)", _PREFIX, _LOGS],
    "dev": [
        "  GATEWAY_HOST, GATEWAY_PORT   where it listens (--host/--port win)",
        "  GATEWAY_TOKEN_TTL, GATEWAY_LOG_LEVEL, ...   tune the demo as they tune `serve`",
    ],
}


def _id(value: str) -> str:
    if not ID_RULE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a valid id (1-128 of A-Z a-z 0-9 . _ : @ -, starting alphanumeric)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    dev.add_argument(
        "--port", type=int, default=None, help="HTTP port (default GATEWAY_PORT, else 8080)"
    )
    dev.add_argument(
        "--host", default=None, help="address to listen on (default GATEWAY_HOST, else 127.0.0.1)"
    )

    for name, lines in ENVIRONMENT.items():
        command = sub.choices[name]
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.epilog = "environment:\n" + "\n".join(lines)
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
    from gateway.dev.server import PortInUseError, run_dev  # noqa: PLC0415

    try:
        return run_dev(data_dir=args.data_dir, host=args.host, port=args.port)
    except (EmbeddedServerError, PortInUseError) as exc:
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


def _dependency_error(exc: BaseException) -> str:
    """Name the variable behind a failed connection (a wrong URL looks like an outage)."""
    import os  # noqa: PLC0415 - only failures need it

    if isinstance(exc, RedisError):
        variable, what = "GATEWAY_REDIS_URL", "Redis"
    else:
        variable, what = "GATEWAY_DATABASE_URL", "PostgreSQL"
    url = os.environ.get(variable, "")
    if isinstance(exc, asyncpg.PostgresError) and not isinstance(
        exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidCatalogNameError
    ):
        # The server answered: the problem is the statement, not the address.
        return f"{type(exc).__name__}: {exc}"
    cause = exc
    if isinstance(exc, RedisError):
        # redis-py wraps the socket error; the wrapped one says why.
        cause = exc.__cause__ or exc.__context__ or exc
    return unreachable_line(variable, what, url, cause)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        service = args.command in ("serve", "dev")
        try:
            # The service logs JSON by default (for collectors), the admin commands text.
            level, fmt = log_config_from_env("json" if service else "text")
        except ConfigError:
            if not service:
                raise
            level, fmt = "info", "json"  # load_settings reports it, with every other problem
        configure_logging(level, fmt)
        for line in unknown_variable_warnings():
            log.warning(line)
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"gateway: configuration error: {problem}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, RedisError) as exc:
        print(f"gateway: {args.command} failed: {_dependency_error(exc)}", file=sys.stderr)
        return 1
