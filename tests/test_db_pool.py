"""The request path's PostgreSQL pool: one round trip per lookup, no reset query on release."""

from __future__ import annotations

from gateway.app import create_db_pool


async def test_release_sends_no_reset_query(settings, database_url) -> None:
    """A lookup is one round trip: releasing the connection runs no RESET ALL / UNLISTEN."""
    pool = await create_db_pool(settings, database_url)
    seen: list[str] = []
    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda record: seen.append(record.query))
            assert await conn.fetchval("SELECT 41 + 1") == 42
        async with pool.acquire() as again:
            assert again.is_in_transaction() is False
    finally:
        await pool.close()
    assert seen == ["SELECT 41 + 1"]


async def test_an_open_transaction_is_still_rolled_back(settings, database_url) -> None:
    """Without the reset query, asyncpg still rolls back what a caller left open."""
    pool = await create_db_pool(settings, database_url)
    try:
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await pool.release(conn)
        async with pool.acquire() as again:
            assert again.is_in_transaction() is False
    finally:
        await pool.close()
