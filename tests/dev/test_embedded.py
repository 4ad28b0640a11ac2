"""Tests for the throwaway PostgreSQL and Redis servers in gateway.dev.embedded."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

import asyncpg
import psutil
import pytest
import redis

from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError, free_port

if TYPE_CHECKING:
    from pathlib import Path


def _process_tree(pid: int | None) -> list[psutil.Process]:
    assert pid is not None
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _processes_mentioning(text: str) -> list[psutil.Process]:
    found = [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if any(text in part for part in proc.info["cmdline"] or [])
    ]
    return _alive(found)


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_free_port_is_bindable() -> None:
    """free_port() returns a port on 127.0.0.1 that can be bound right away."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_postgres_serves_queries_and_stop_leaves_no_process(server_dir: Path) -> None:
    """start() returns a working DSN; stop() ends the postmaster and all its backends."""
    data_dir = server_dir / "pgdata"
    pg = EmbeddedPostgres(data_dir)
    dsn = pg.start()
    try:
        assert dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        assert pg.dsn == dsn
        assert (data_dir / "PG_VERSION").exists()
        assert asyncio.run(_fetchval(dsn, "SELECT 1")) == 1
        tree = _process_tree(pg.pid)
        assert len(tree) > 1, "postmaster should have auxiliary processes"
    finally:
        pg.stop()
    assert _alive(tree) == []
    assert _processes_mentioning(str(data_dir)) == []
    assert pg.pid is None


def test_postgres_restart_reuses_data_dir(
    server_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second start on an initialised data dir skips initdb and keeps the stored data."""
    data_dir = server_dir / "pgdata"
    with EmbeddedPostgres(data_dir) as pg:
        asyncio.run(_fetchval(pg.dsn, "CREATE TABLE kept AS SELECT 'still here' AS marker"))

    def no_initdb(*_args: object) -> None:
        pytest.fail("initdb must not run on an initialised data dir")

    monkeypatch.setattr(EmbeddedPostgres, "_initdb", no_initdb)
    with EmbeddedPostgres(data_dir) as pg:
        assert asyncio.run(_fetchval(pg.dsn, "SELECT marker FROM kept")) == "still here"
    assert _processes_mentioning(str(data_dir)) == []


def test_postgres_stop_is_idempotent_and_dsn_requires_start(server_dir: Path) -> None:
    """stop() may be called before start and repeatedly; dsn is unavailable when stopped."""
    pg = EmbeddedPostgres(server_dir / "pgdata")
    pg.stop()
    with pytest.raises(EmbeddedServerError):
        _ = pg.dsn
    pg.start()
    pg.stop()
    pg.stop()
    with pytest.raises(EmbeddedServerError):
        _ = pg.dsn


def test_postgres_start_failure_reports_log_and_cleans_up(server_dir: Path) -> None:
    """When the port is taken, start() raises with the server log tail and leaves nothing."""
    data_dir = server_dir / "pgdata"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        pg = EmbeddedPostgres(data_dir, port=blocker.getsockname()[1])
        with pytest.raises(EmbeddedServerError, match=r"(?s)on port \d+ .*Address already in use"):
            pg.start()
    assert pg.pid is None
    assert _processes_mentioning(str(data_dir)) == []


def test_redis_serves_commands_and_stop_leaves_no_process(server_dir: Path) -> None:
    """start() returns a working URL (PING/SET/GET); stop() ends the server and is idempotent."""
    with EmbeddedRedis(server_dir / "redis") as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping() is True
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("save") == {"save": ""}
        finally:
            client.close()
        tree = _process_tree(server.pid)
    assert _alive(tree) == []
    assert server.pid is None
    server.stop()
