"""Run a command with GATEWAY_TEST_DATABASE_URL / GATEWAY_TEST_REDIS_URL set to embedded servers.

For test steps that need PostgreSQL and Redis on a machine that runs neither (the Python suite
starts its own; the frontend suite does not).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis


def main() -> int:
    """Start both servers, run argv[1:] with their URLs in the environment, stop them."""
    root = Path(tempfile.mkdtemp(prefix="gw-ci-"))
    postgres, redis = EmbeddedPostgres(root / "postgres"), EmbeddedRedis(root / "redis")
    try:
        env = {
            **os.environ,
            "GATEWAY_TEST_DATABASE_URL": postgres.start(),
            "GATEWAY_TEST_REDIS_URL": redis.start(),
        }
        return subprocess.call(sys.argv[1:], env=env)
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
