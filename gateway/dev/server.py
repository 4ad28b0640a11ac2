"""`gateway dev`: the one-command demo on embedded PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shlex
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
from gateway.dev.routes import create_dev_app
from gateway.ops.logs import configure_logging
from gateway.ops.migrate import migrate
from gateway.ops.serve import run_worker
from gateway.settings import load_settings
from gateway.tokens.directory import add_mapping


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


def run_dev(*, data_dir: str, host: str, port: int) -> int:
    """Start embedded servers, prepare the demo, print how to call it, serve until Ctrl-C."""
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
        # The environment may still tune the demo (GATEWAY_TOKEN_TTL, GATEWAY_LOG_LEVEL, ...).
        env = {
            **os.environ,
            "GATEWAY_DATABASE_URL": dsn,
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_API_KEY_ID": os.environ.get("GATEWAY_API_KEY_ID", "dev-api-key"),
            "GATEWAY_SIGNING_SECRET": values["signing_secret"],
            "GATEWAY_JWT_SECRET": values["jwt_secret"],
            "GATEWAY_HOST": host,
            "GATEWAY_PORT": str(port),
            # The demo keeps everything it writes under its data dir.
            "GATEWAY_AUDIT_SPOOL_DIR": os.environ.get(
                "GATEWAY_AUDIT_SPOOL_DIR", str(root / "audit-spool")
            ),
        }
        # The demo signs its own caller JWT: settings from the shell that it would not satisfy
        # (a JWKS, an issuer, a maximum age...) must not make the printed JWT fail.
        for name in (
            "GATEWAY_SIGNING_SECRET_FILE",
            "GATEWAY_JWT_SECRET_FILE",
            "GATEWAY_JWT_JWKS_URL",
            "GATEWAY_JWT_ALGORITHMS",
            "GATEWAY_JWT_ISSUER",
            "GATEWAY_JWT_AUDIENCE",
            "GATEWAY_JWT_MAX_AGE",
        ):
            env.pop(name, None)
        settings = load_settings(env)
        configure_logging(settings.log_level, settings.log_format)
        token = demo_jwt(settings, time.time(), BANNER_JWT_LIFETIME)
        ready = banner(f"http://{host}:{port}", token, dsn)
        run_worker(settings, create_dev_app, on_listening=lambda: print(ready, flush=True))
    finally:
        redis.stop()
        postgres.stop()
    return 0
