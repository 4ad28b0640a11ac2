"""The `gateway` command as a user runs it: tenants admin, migrate, and start-up errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg

from gateway import __version__


def gateway(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_tenants_add_list_remove(database_url: str, db: asyncpg.Connection) -> None:
    """add maps (and --default sets the default), list shows it, remove deletes it."""
    env = {"GATEWAY_DATABASE_URL": database_url}
    add = gateway(
        "tenants", "add", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        "--default", env=env,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    row = await db.fetchrow("SELECT * FROM tenant_dashboards WHERE tenant_id = 'org-7'")
    assert (row["workspace_id"], row["dashboard_id"], row["is_default"]) == ("ws-7", "d-7", True)

    listed = gateway("tenants", "list", "--tenant", "org-7", env=env)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[1].split()[:4] == ["org-7", "ws-7", "d-7", "yes"]

    rm = gateway(
        "tenants", "remove", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        env=env,
    )  # fmt: skip
    assert rm.returncode == 0
    assert await db.fetchval("SELECT count(*) FROM tenant_dashboards") == 0
    again = gateway(
        "tenants", "remove", "--tenant", "org-7", "--workspace", "ws-7", "--dashboard", "d-7",
        env=env,
    )  # fmt: skip
    assert again.returncode == 1
    assert "no mapping" in again.stderr


def test_tenants_add_rejects_a_bad_id(database_url: str) -> None:
    """Ids follow the same rule as the API; a bad one is refused before touching the database."""
    result = gateway(
        "tenants", "add", "--tenant", "bad tenant", "--workspace", "w", "--dashboard", "d",
        env={"GATEWAY_DATABASE_URL": database_url},
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a valid id" in result.stderr


def test_migrate_twice(database_url: str) -> None:
    """On a migrated database, `gateway migrate` says there is nothing to do."""
    result = gateway("migrate", env={"GATEWAY_DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    assert "nothing to apply" in result.stdout


def test_serve_refuses_a_short_signing_secret() -> None:
    """A bad setting stops start-up with one line naming the variable, and no secret."""
    env = {
        "GATEWAY_DATABASE_URL": "postgresql://127.0.0.1/x",
        "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
        "GATEWAY_API_KEY_ID": "k",
        "GATEWAY_SIGNING_SECRET": "too-short-secret",
        "GATEWAY_JWT_SECRET": "j" * 40,
    }
    result = gateway("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "GATEWAY_SIGNING_SECRET" in lines[0]
    assert "too-short-secret" not in result.stderr


def _clean_env(**env: str) -> dict[str, str]:
    """Only the GATEWAY_* variables given (the test runner's own stay out)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | env


def run_clean(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_reports_every_problem_and_the_misspelt_twin() -> None:
    """One line per bad variable (all of them, not the first), a warning for the misspelling,
    the missing variable pointing at it, and no secret value anywhere."""
    result = run_clean(
        "serve",
        GATEWAY_DATABSE_URL="postgresql://u:pw-in-dsn@127.0.0.1/x",
        GATEWAY_REDIS_URL="redis://127.0.0.1:1/0",
        GATEWAY_API_KEY_ID="k",
        GATEWAY_SIGNING_SECRET="too-short-secret",
        GATEWAY_JWT_SECRET="j" * 40,
        GATEWAY_TOKEN_TTL="60",
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 3, result.stderr
    assert "GATEWAY_DATABASE_URL is required (GATEWAY_DATABSE_URL is set" in errors[0]
    assert "GATEWAY_SIGNING_SECRET" in errors[1]
    assert "GATEWAY_TOKEN_TTL (60) must be greater than GATEWAY_REFRESH_BUFFER (300)" in errors[2]
    assert "did you mean GATEWAY_DATABASE_URL?" in result.stderr
    assert "too-short-secret" not in result.stderr
    assert "pw-in-dsn" not in result.stderr


def test_admin_commands_warn_in_the_configured_log_format(database_url: str) -> None:
    """`gateway migrate` honours GATEWAY_LOG_FORMAT and GATEWAY_LOG_LEVEL for its log lines."""
    result = run_clean(
        "migrate",
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_TOKEN_TTLL="60",
        GATEWAY_LOG_FORMAT="json",
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert "did you mean GATEWAY_TOKEN_TTL?" in entry["message"]
    quiet = run_clean(
        "migrate",
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_TOKEN_TTLL="60",
        GATEWAY_LOG_LEVEL="error",
    )
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    bad = run_clean("migrate", GATEWAY_DATABASE_URL=database_url, GATEWAY_LOG_LEVEL="loud")
    assert bad.returncode == 2
    assert "GATEWAY_LOG_LEVEL" in bad.stderr


def test_migrate_names_the_variable_and_address_it_could_not_reach() -> None:
    """A closed port or an unknown host names GATEWAY_DATABASE_URL and host:port, no password."""
    closed = run_clean(
        "migrate", GATEWAY_DATABASE_URL=f"postgresql://u:pw-x@127.0.0.1:{_closed_port()}/x"
    )
    assert closed.returncode == 1
    assert "GATEWAY_DATABASE_URL" in closed.stderr
    assert "127.0.0.1:" in closed.stderr
    assert "connection refused" in closed.stderr
    unknown = run_clean("tenants", "list", GATEWAY_DATABASE_URL="postgresql://u:pw-x@db.invalid/x")
    assert unknown.returncode == 1
    assert "PostgreSQL unreachable at db.invalid:5432 (GATEWAY_DATABASE_URL)" in unknown.stderr
    assert "pw-x" not in closed.stderr + unknown.stderr


def test_revoke_names_the_redis_variable(database_url: str) -> None:
    """Redis behind a wrong URL: the error says GATEWAY_REDIS_URL and where it looked."""
    port = _closed_port()
    result = run_clean(
        "revoke",
        "--tenant",
        "org-1",
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_REDIS_URL=f"redis://:pw-r@127.0.0.1:{port}/0",
    )
    assert result.returncode == 1
    assert f"Redis unreachable at 127.0.0.1:{port} (GATEWAY_REDIS_URL)" in result.stderr
    assert "pw-r" not in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_lists_every_command_the_version_and_each_commands_environment() -> None:
    """--help lists revoke, --version answers, every command's --help names its variables."""
    top = run_clean("--help")
    assert top.returncode == 0
    for command in ("serve", "migrate", "tenants", "audit", "revoke", "dev"):
        assert f"    {command} " in top.stdout
    version = run_clean("--version")
    assert version.stdout.strip() == f"gateway {__version__}"
    needs = {
        "serve": ["GATEWAY_DATABASE_URL", "GATEWAY_SIGNING_SECRET", "GATEWAY_JWT_SECRET"],
        "migrate": ["GATEWAY_DATABASE_URL"],
        "tenants": ["GATEWAY_DATABASE_URL", "GATEWAY_REDIS_URL", "GATEWAY_REDIS_PREFIX"],
        "audit": ["GATEWAY_DATABASE_URL"],
        "revoke": ["GATEWAY_DATABASE_URL", "GATEWAY_REDIS_URL", "GATEWAY_REDIS_PREFIX"],
        "dev": ["GATEWAY_HOST", "GATEWAY_PORT"],
    }
    for command, names in needs.items():
        text = run_clean(command, "--help").stdout
        assert "environment:" in text, command
        for name in names:
            assert name in text, (command, name)
    dev = run_clean("dev", "--help").stdout
    host_help = dev[dev.index("  --host HOST") :].split("\n  -", 1)[0]
    assert "address to listen on" in host_help


def _start_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _closed_port()
    out = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=_clean_env(GATEWAY_PORT=str(port), **env),
        cwd=log.parent,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return proc, base
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(log.read_text())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


SERVE_ENV = {
    "GATEWAY_API_KEY_ID": "k",
    "GATEWAY_SIGNING_SECRET": "s" * 40,
    "GATEWAY_JWT_SECRET": "j" * 40,
    "GATEWAY_LOG_FORMAT": "text",
}


def test_serve_logs_one_line_per_unreachable_dependency(tmp_path: Path) -> None:
    """Wrong URLs: the service still starts, and says once which variable points where."""
    port = _closed_port()
    proc, _ = _start_serve(
        {
            **SERVE_ENV,
            "GATEWAY_DATABASE_URL": f"postgresql://u:pw-x@127.0.0.1:{port}/x",
            "GATEWAY_REDIS_URL": "redis://:pw-r@redis.invalid:6379/0",
            "GATEWAY_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        },
        tmp_path / "serve.log",
    )
    _stop(proc)
    log = (tmp_path / "serve.log").read_text()
    pg = [line for line in log.splitlines() if "(GATEWAY_DATABASE_URL)" in line]
    rd = [line for line in log.splitlines() if "(GATEWAY_REDIS_URL)" in line]
    assert len(pg) == 1, log
    assert f"PostgreSQL unreachable at 127.0.0.1:{port}" in pg[0]
    assert len(rd) == 1, log
    assert "Redis unreachable at redis.invalid:6379" in rd[0]
    assert "unknown host" in rd[0]
    assert "pw-x" not in log
    assert "pw-r" not in log


def test_debug_start_up_logs_redis_maintenance_notice_once(
    tmp_path: Path, database_url: str, redis_server: str
) -> None:
    """redis-py's per-connection maintenance-notification line appears at most once."""
    proc, _ = _start_serve(
        {
            **SERVE_ENV,
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_REDIS_URL": redis_server,
            "GATEWAY_LOG_LEVEL": "debug",
            "GATEWAY_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        },
        tmp_path / "serve.log",
    )
    _stop(proc)
    log = (tmp_path / "serve.log").read_text()
    assert log.count("maintenance notifications") <= 1, log
    assert "unreachable" not in log


def test_partial_request_headers_are_closed_after_the_keepalive_timeout(
    tmp_path: Path, database_url: str, redis_server: str
) -> None:
    """As the README says: headers still incomplete after GATEWAY_KEEPALIVE_TIMEOUT, even ones
    trickling in, get the connection closed."""
    proc, base = _start_serve(
        {
            **SERVE_ENV,
            "GATEWAY_DATABASE_URL": database_url,
            "GATEWAY_REDIS_URL": redis_server,
            "GATEWAY_KEEPALIVE_TIMEOUT": "1",
            "GATEWAY_AUDIT_SPOOL_DIR": str(tmp_path / "spool"),
        },
        tmp_path / "serve.log",
    )
    try:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8:
                time.sleep(0.3)
                try:
                    conn.sendall(b"a")
                    conn.settimeout(0.01)
                    closed = conn.recv(1) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    break
            elapsed = time.monotonic() - started
    finally:
        _stop(proc)
    assert closed
    assert 0.8 < elapsed < 4
