"""`gateway migrate`: apply the SQL migrations to GATEWAY_DATABASE_URL."""

from __future__ import annotations

from gateway.admin.connect import connect_database
from gateway.ops.migrate import migrate


async def run() -> int:
    conn = await connect_database()
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + ", ".join(applied) if applied else "nothing to apply; schema is current")
    return 0
