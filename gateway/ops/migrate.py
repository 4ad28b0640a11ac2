"""`gateway migrate`: apply the ordered SQL files once each, safely from several instances."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every instance of the gateway.
MIGRATION_LOCK_ID = 0x656D6264  # "embd"


def sql_dir() -> Path:
    """Where the migrations are: inside the installed package (wheel) or at the repository top."""
    packaged = Path(__file__).resolve().parents[1] / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file, to notice an applied migration edited afterwards."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The `.sql` files of the directory, in name order."""
    directory = directory or sql_dir()
    files = sorted(p for p in directory.glob("*.sql") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .sql files in {directory}")
    return [Migration(p.name, p.read_text(encoding="utf-8")) for p in files]


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations in one transaction under a transaction-level advisory lock.

    A concurrent `gateway migrate` waits on the lock, then finds everything recorded and does
    nothing. The lock ends with the transaction, so a pooler in transaction mode (PgBouncer)
    can never strand it on a server connection the way a session lock can; and a failing file
    leaves no migration half applied.
    """
    migrations = migrations if migrations is not None else load_migrations()
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")
        }
        for migration in migrations:
            if migration.name in done:
                if done[migration.name] != migration.checksum:
                    log.warning("migration %s changed after it was applied", migration.name)
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.name)
            log.info("applied migration %s", migration.name)
    return applied_now
