"""`gateway dev`: the one-command demo on embedded PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

import asyncpg

from gateway.dev.demo import (
    BANNER_JWT_LIFETIME,
    DEMO_DASHBOARD,
    DEMO_SUBJECT,
    DEMO_TENANT,
    DEMO_WORKSPACE,
    demo_jwt,
)
from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis
from gateway.dev.environ import gateway_environ
from gateway.dev.routes import create_dev_app
from gateway.ops.logs import configure_logging
from gateway.ops.migrate import migrate
from gateway.ops.serve import run_worker
from gateway.settings import load_settings, value_from_env
from gateway.tokens.directory import add_mapping

# Settings from the shell that the demo's own caller JWT would not satisfy; the demo unsets them.
UNSATISFIABLE_BY_DEMO_JWT = (
    "signing_secret_file",
    "jwt_secret_file",
    "jwt_jwks_url",
    "jwt_algorithms",
    "jwt_issuer",
    "jwt_audience",
    "jwt_max_age",
)


def dev_secrets(data_dir: Path) -> dict[str, str]:
    """Development secrets, made once per data dir and kept there (mode 0600)."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {
        "signing_secret": secrets.token_urlsafe(48),
        "jwt_secret": secrets.token_urlsafe(48),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return values


async def prepare_database(dsn: str) -> None:
    """Migrate and add the demo mapping (idempotent)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await add_mapping(conn, DEMO_TENANT, DEMO_WORKSPACE, DEMO_DASHBOARD, is_default=True)
    finally:
        await conn.close()


def banner(url: str, token: str, dsn: str) -> str:
    """What `gateway dev` prints once it is ready."""
    body = json.dumps({"tenant_id": DEMO_TENANT, "workspace_id": DEMO_WORKSPACE})
    curl = (
        f"curl -s -X POST {url}/api/v1/dashboards/iframe-token"
        f" -H {shlex.quote('Authorization: Bearer ' + token)}"
        " -H 'Content-Type: application/json'"
        f" -d {shlex.quote(body)}"
    )
    return "\n".join(
        [
            "",
            f"embed-token gateway (dev) listening on {url}",
            f"  PostgreSQL: {dsn}",
            "  audit rows: psql \"$DSN\" -c 'TABLE audit_events'  (DSN as above)",
            f"  demo mapping: {DEMO_TENANT} / {DEMO_WORKSPACE} -> {DEMO_DASHBOARD}",
            "",
            f"Caller JWT ({DEMO_SUBJECT}, valid 24 h):",
            token,
            "",
            "Get a token:",
            curl,
            "",
            "Ctrl-C stops the gateway, PostgreSQL and Redis.",
            "",
        ]
    )


class PortInUseError(OSError):
    """The demo's port is taken by another process."""


def listen_address(host: str | None, port: int | None) -> tuple[str, int]:
    """--host/--port when given, else GATEWAY_HOST/GATEWAY_PORT, else 127.0.0.1:8080."""
    env = dict(os.environ)
    if host is not None:
        env["GATEWAY_HOST"] = host
    if port is not None:
        env["GATEWAY_PORT"] = str(port)
    return value_from_env("host", env), value_from_env("port", env)


def check_port_free(host: str, port: int) -> None:
    """Fail before starting PostgreSQL and Redis when the port is taken, saying what to do."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise _in_use(host, port) from None


def _in_use(host: str, port: int) -> PortInUseError:
    return PortInUseError(
        errno.EADDRINUSE,
        f"port {port} on {host} is already in use; choose another with --port N (or GATEWAY_PORT)",
    )


def _hangup_as_interrupt() -> None:
    # Closing the terminal sends SIGHUP, whose default ends the process without any cleanup and
    # orphans PostgreSQL and Redis (they run in sessions of their own): stop as on Ctrl-C.
    signal.signal(signal.SIGHUP, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGINT))


def run_dev(*, data_dir: str, host: str | None = None, port: int | None = None) -> int:
    """Start embedded servers, prepare the demo, print how to call it, serve until Ctrl-C."""
    host, port = listen_address(host, port)
    check_port_free(host, port)
    _hangup_as_interrupt()
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    values = dev_secrets(root)
    postgres = EmbeddedPostgres(root / "postgres")
    redis = EmbeddedRedis(root / "redis")
    try:
        print("starting embedded PostgreSQL and Redis ...", file=sys.stderr, flush=True)
        dsn = postgres.start()
        redis_url = redis.start()
        asyncio.run(prepare_database(dsn))
        # The environment may still tune the demo (GATEWAY_TOKEN_TTL, GATEWAY_LOG_LEVEL, ...),
        # except settings that would make the printed JWT fail.
        env = gateway_environ(
            keep_gateway=True,
            database_url=dsn,
            redis_url=redis_url,
            api_key_id=os.environ.get("GATEWAY_API_KEY_ID", "dev-api-key"),
            signing_secret=values["signing_secret"],
            jwt_secret=values["jwt_secret"],
            host=host,
            port=port,
            # The demo keeps everything it writes under its data dir.
            audit_spool_dir=os.environ.get("GATEWAY_AUDIT_SPOOL_DIR", str(root / "audit-spool")),
            **dict.fromkeys(UNSATISFIABLE_BY_DEMO_JWT),
        )
        settings = load_settings(env)
        configure_logging(settings.log_level, settings.log_format)
        token = demo_jwt(settings, time.time(), BANNER_JWT_LIFETIME)
        ready = banner(f"http://{host}:{port}", token, dsn)
        try:
            run_worker(settings, create_dev_app, on_listening=lambda: print(ready, flush=True))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _in_use(host, port) from None
            raise
    finally:
        redis.stop()
        postgres.stop()
    return 0
