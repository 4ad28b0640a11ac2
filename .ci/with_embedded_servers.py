"""Run a command with GATEWAY_TEST_DATABASE_URL / GATEWAY_TEST_REDIS_URL set to embedded servers.

For test steps that need PostgreSQL and Redis on a machine that runs neither (the Python suite
starts its own; the frontend suite does not). The servers are the ones `gateway dev` starts.
"""

from __future__ import annotations

import os
import subprocess
import sys

from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis


def main() -> int:
    """Start both servers, run argv[1:] with their URLs in the environment, stop them."""
    with EmbeddedPostgres() as postgres, EmbeddedRedis() as redis:
        env = {
            **os.environ,
            "GATEWAY_TEST_DATABASE_URL": postgres.url,
            "GATEWAY_TEST_REDIS_URL": redis.url,
        }
        return subprocess.call(sys.argv[1:], env=env)


if __name__ == "__main__":
    raise SystemExit(main())
