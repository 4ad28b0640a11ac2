"""Start a real gateway for the JavaScript tests and print how to reach it as one JSON line.

It creates a database of its own on the test PostgreSQL server, migrates it with `gateway
migrate`, adds mappings with `gateway tenants add`, starts `gateway serve` (or, with --dev, the
same app with the dev routes on, as `gateway dev` runs it) on a free port and waits until
/readyz answers 200. It stops the server and drops the database and its Redis keys when its
standard input closes (the test ended or died) or on SIGTERM.

    python tests/js/gateway_server.py [--dev] [--ttl 3600] [--buffer 300]

GATEWAY_TEST_DATABASE_URL / GATEWAY_TEST_REDIS_URL choose the servers (default: the local ones).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

from gateway.dev.environ import gateway_environ
from gateway.dev.wait import free_port, wait_until

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAPPINGS = (
    ("org-123", "workspace-456", "dashboard-789", True),
    ("org-123", "workspace-456", "dashboard-other", False),
    ("org-999", "workspace-456", "dashboard-999", True),
)
READY_TIMEOUT = 60.0


def _admin(dsn: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _gateway(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise SystemExit(f"gateway {' '.join(args)} failed: {result.stderr.strip()}")


def _ready(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise SystemExit(f"the gateway exited with {server.returncode} before it was ready")
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    try:
        wait_until(lambda: _ready(url, server), timeout=READY_TIMEOUT, interval=0.1)
    except TimeoutError:
        raise SystemExit(f"the gateway was not ready within {READY_TIMEOUT:.0f} s") from None


def _run_dev_child() -> int:
    """Serve the app with the dev routes on, from the environment (what `gateway dev` serves)."""
    from gateway.dev.routes import create_dev_app  # noqa: PLC0415
    from gateway.ops.logs import configure_logging  # noqa: PLC0415
    from gateway.ops.serve import serve  # noqa: PLC0415
    from gateway.settings import load_settings  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, create_dev_app)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    """Start everything, print one JSON line, wait for stdin to close, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="turn on the dev-only routes")
    parser.add_argument("--ttl", type=int, default=3600)
    parser.add_argument("--buffer", type=int, default=300)
    parser.add_argument("--child-dev", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_dev:
        return _run_dev_child()

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)

    admin_dsn = os.environ.get("GATEWAY_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("GATEWAY_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    run_id = uuid.uuid4().hex[:12]
    db_name = f"gw_js_{run_id}"
    prefix = f"gwjs:{run_id}:"
    jwt_secret = secrets.token_urlsafe(48)
    signing_secret = secrets.token_urlsafe(48)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = gateway_environ(
        keep_gateway=True,
        database_url=urlunsplit(urlsplit(admin_dsn)._replace(path="/" + db_name)),
        redis_url=redis_url,
        redis_prefix=prefix,
        api_key_id="key-js-test",
        signing_secret=signing_secret,
        jwt_secret=jwt_secret,
        token_ttl=args.ttl,
        refresh_buffer=args.buffer,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        # A loaded CI machine can stall loopback round trips past the production timeouts.
        redis_timeout=2,
        db_timeout=5,
    )
    _admin(admin_dsn, f'CREATE DATABASE "{db_name}"')
    server: subprocess.Popen[bytes] | None = None
    try:
        _gateway("migrate", env=env)
        for tenant, workspace, dashboard, default in MAPPINGS:
            extra = ["--default"] if default else []
            _gateway(
                "tenants",
                "add",
                "--tenant",
                tenant,
                "--workspace",
                workspace,
                "--dashboard",
                dashboard,
                *extra,
                env=env,
            )
        command = [sys.executable, "-m", "gateway", "serve"]
        if args.dev:
            command = [sys.executable, __file__, "--child-dev"]
        server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        _wait_ready(url, server)
        info = {
            "url": url,
            "jwt_secret": jwt_secret,
            "signing_secret": signing_secret,
            "ttl": args.ttl,
            "buffer": args.buffer,
            "dev": args.dev,
        }
        print(json.dumps(info), flush=True)
        # The test holds our stdin open for as long as it needs the gateway.
        sys.stdin.read()
    finally:
        if server is not None:
            _stop(server)
        _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        client = redis.Redis.from_url(redis_url)
        try:
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
        finally:
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
