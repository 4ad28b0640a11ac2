"""`gateway dev` at its edges: where it listens, a taken port, a closed terminal, a stale lock."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from gateway.dev.embedded import EmbeddedPostgres, free_port, remove_stale_postmaster_pid
from gateway.dev.server import listen_address


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A folder outside pytest's temp root: a concurrent pytest session resets that root to mode
    0700, locking out the user PostgreSQL runs as (when root) mid-test."""
    root = Path(tempfile.mkdtemp(prefix="gw-dev-test-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _gateway_dev(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "dev", *args],
        env=clean | env,
        text=True,
        **kwargs,
    )


def test_listen_address_takes_flags_then_the_environment(monkeypatch) -> None:
    """--host/--port win; otherwise GATEWAY_HOST/GATEWAY_PORT; otherwise 127.0.0.1:8080."""
    monkeypatch.delenv("GATEWAY_HOST", raising=False)
    monkeypatch.delenv("GATEWAY_PORT", raising=False)
    assert listen_address(None, None) == ("127.0.0.1", 8080)
    monkeypatch.setenv("GATEWAY_HOST", "192.0.2.1")
    monkeypatch.setenv("GATEWAY_PORT", "9191")
    assert listen_address(None, None) == ("192.0.2.1", 9191)
    assert listen_address("127.0.0.2", 9292) == ("127.0.0.2", 9292)


@pytest.mark.parametrize("via", ["flag", "environment"])
def test_taken_port_fails_fast_and_suggests_port(tmp_path: Path, via: str) -> None:
    """A taken port (from --port or GATEWAY_PORT) stops before any server starts, saying --port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        args = ["--data-dir", str(tmp_path / "dev")]
        env = {}
        if via == "flag":
            args += ["--port", str(port)]
        else:
            env["GATEWAY_PORT"] = str(port)
        proc = _gateway_dev(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert not (tmp_path / "dev" / "postgres").exists()


def _users_of(data_dir: Path) -> list[psutil.Process]:
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(proc.info["cmdline"] or [])
    ]


def test_sighup_stops_everything_like_ctrl_c(tmp_path: Path, data_root: Path) -> None:
    """Closing the terminal (SIGHUP) leaves no embedded PostgreSQL or Redis behind."""
    data_dir = data_root / "dev"
    log = (tmp_path / "dev.log").open("w")
    proc = _gateway_dev(
        "--data-dir", str(data_dir), "--port", str(free_port()),
        env={}, stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("curl "):
                break
        assert line.startswith("curl "), (tmp_path / "dev.log").read_text()
        assert _users_of(data_dir)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()
    deadline = time.monotonic() + 10
    while _users_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _users_of(data_dir) == []


def test_a_stale_postmaster_pid_whose_owner_is_gone_is_recovered(data_root: Path) -> None:
    """A lock naming a PID now used by an unrelated process no longer stops PostgreSQL; a live
    server's own lock is kept."""
    server = EmbeddedPostgres(data_root / "pg")
    server.start()
    try:
        assert remove_stale_postmaster_pid(server.data_dir) is False
        assert (server.data_dir / "postmaster.pid").exists()
    finally:
        server.stop()
    lock = server.data_dir / "postmaster.pid"
    # As after a `gateway dev` killed outright: the lock stays, its PID goes to someone else.
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{stranger.pid}\n{server.data_dir}\n")
        server.start()
        server.stop()
    finally:
        stranger.kill()
        stranger.wait()
