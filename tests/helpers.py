"""Helpers the tests share: caller JWTs, request headers, waiting for audit rows (and the one
wait helper, `eventually`, from gateway.dev.wait)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import jwt

from gateway.dev.wait import eventually
from gateway.ops.migrate import migrate

__all__ = [
    "API_KEY_ID",
    "JWT_SECRET",
    "SIGNING_SECRET",
    "VECTORS_FILE",
    "audit_rows",
    "auth",
    "eventually",
    "make_jwt",
    "spooled_lines",
]

# The team's shared folder sits beside the repository (as in CI); the vectors are also vendored
# in tests/vectors so a lone clone still tests against them.
SHARED = Path(__file__).resolve().parents[2] / "shared"
VECTORS_FILE = next(
    p
    for p in (
        SHARED / "vectors" / "iframe-token-v1.json",
        Path(__file__).parent / "vectors" / "iframe-token-v1.json",
    )
    if p.exists()
)
JWT_SECRET = b"test-caller-jwt-secret-0123456789abcdef-0123456789abcdef-0123456"
SIGNING_SECRET = b"test-signing-secret-0123456789abcdef!!"
API_KEY_ID = "key-test"


def make_jwt(
    tenant: Any = "org-123",
    *,
    sub: Any = "user-1",
    secret: bytes = JWT_SECRET,
    algorithm: str = "HS256",
    lifetime: int = 600,
    claim: str = "organization_id",
    **extra: Any,
) -> str:
    """A caller JWT; pass extra claims to add or override (None removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, claim: tenant, "iat": now, "exp": now + lifetime}
    claims.update(extra)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm=algorithm)


def auth(token: str | None = None, **kwargs: Any) -> dict[str, str]:
    """Headers for a JSON request with a caller JWT."""
    return {
        "Authorization": f"Bearer {token or make_jwt(**kwargs)}",
        "Content-Type": "application/json",
    }


async def audit_rows(
    conn: asyncpg.Connection, request_id: str, *, expect: int = 1, timeout: float = 5.0
) -> list[asyncpg.Record]:
    """The audit rows of one request, waiting for the background writer to deliver them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await conn.fetch(
            "SELECT * FROM audit_events WHERE request_id = $1 ORDER BY event_id", request_id
        )
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.02)


def spooled_lines(directory: Path) -> int:
    """Complete event lines in the audit spool's segment files."""
    if not directory.is_dir():
        return 0
    return sum(p.read_bytes().count(b"\n") for p in directory.glob("audit-*.jsonl"))


def database_on(server: str, name: str) -> str:
    """The DSN of database `name` on the server `server` names."""
    return urlunsplit(urlsplit(server)._replace(path="/" + name))


@contextlib.contextmanager
def throwaway_database(server: str, prefix: str, sql: str | None = None) -> Iterator[str]:
    """A migrated database of its own on `server` (then `sql` run in it), dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    dsn = database_on(server, name)

    async def run(target: str, *statements: str, migrated: bool = False) -> None:
        conn = await asyncpg.connect(target)
        try:
            if migrated:
                await migrate(conn)
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(server, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(run(dsn, *([sql] if sql else []), migrated=True))
        yield dsn
    finally:
        asyncio.run(run(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def tenants_args(
    action: str,
    dashboard: str,
    *,
    tenant: str = "org-123",
    workspace: str = "workspace-456",
    default: bool = False,
) -> list[str]:
    """`gateway tenants add|remove` arguments for one mapping (the demo tenant by default)."""
    args = ["tenants", action, "--tenant", tenant, "--workspace", workspace]
    return [*args, "--dashboard", dashboard, *(["--default"] if default else [])]
