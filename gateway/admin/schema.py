"""`gateway migrate`: apply the SQL migrations to GATEWAY_DATABASE_URL."""

from __future__ import annotations

import asyncpg

from gateway.ops.migrate import migrate
from gateway.settings import database_url_from_env


async def run() -> int:
    conn = await asyncpg.connect(database_url_from_env())
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "nothing to apply; schema is current")
    return 0
