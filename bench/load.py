"""Driving load with wrk and reading what it cost the server: CPU time (psutil), RSS, latency."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from bench.servers import Server
from bench.workload import PATH


@dataclass(frozen=True)
class Wrk:
    """wrk's binary and the settings every scenario shares."""

    binary: str
    threads: int
    connections: int
    duration: float

    def run(self, port: int, script: Path, extra: list[str], secs: float | None = None) -> dict:
        """One wrk run; the figures done.lua prints (requests, duration, p50/p99, errors)."""
        argv = [
            self.binary,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(self.duration if secs is None else secs))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ]
        if extra:
            argv += ["--", *extra]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        match = re.search(r"^BENCH (\{.*\})$", out, re.MULTILINE)
        if not match:
            raise SystemExit(f"bench: no figures from wrk:\n{out}")
        return orjson.loads(match.group(1))


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed here when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("bench: wrk could not be installed")
    return found


@dataclass
class Run:
    """One wrk run's figures."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    rss_mb: float  # the largest server process's resident set after the run settled
    peak_rss_mb: float  # the largest server process's peak resident set (VmHWM) so far
    requests: int
    non2xx: int
    socket_errors: int
    miss_share: float | None = None


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server's processes (workers included)."""
    total = 0.0
    for p in server.processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def settle(server: Server) -> None:
    """Wait until the server is idle again, so work queued by a run (audit) is counted."""
    deadline = time.monotonic() + 10
    last = cpu_seconds(server)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_seconds(server)
        if now - last < 0.004:
            return
        last = now


def rss_mb(server: Server, field: str) -> float:
    """The largest value of /proc/PID/status `field` (VmRSS, VmHWM) over the server's processes."""
    largest = 0
    for p in server.processes():
        with contextlib.suppress(OSError, psutil.NoSuchProcess):
            status = Path(f"/proc/{p.pid}/status").read_text()
            match = re.search(rf"{field}:\s+(\d+) kB", status)
            if match:
                largest = max(largest, int(match.group(1)))
    return largest / 1024


def cache_counts(server: Server) -> tuple[float, float] | None:
    """The gateway's token cache hits and misses so far, from /metrics (None without them)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    counts = dict.fromkeys(("hit", "miss"), 0.0)
    for m in re.finditer(r'gateway_token_cache_total\{result="(\w+)"\} (\S+)', text):
        counts[m.group(1)] = float(m.group(2))
    return counts["hit"], counts["miss"]


def measure(wrk: Wrk, server: Server, script: Path, extra: list[str], *, counts: bool) -> Run:
    """One measured wrk run; CPU time is counted until the server is idle again."""
    before = cache_counts(server) if counts else None
    cpu0 = cpu_seconds(server)
    figures = wrk.run(server.port, script, extra)
    settle(server)
    cpu = cpu_seconds(server) - cpu0
    after = cache_counts(server) if counts else None
    requests = figures["requests"]
    miss_share = None
    if before and after:
        hits, misses = after[0] - before[0], after[1] - before[1]
        miss_share = misses / (hits + misses) if hits + misses else None
    return Run(
        rps=requests / (figures["duration_us"] / 1e6),
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        cpu_us=cpu * 1e6 / max(requests, 1),
        rss_mb=rss_mb(server, "VmRSS"),
        peak_rss_mb=rss_mb(server, "VmHWM"),
        requests=requests,
        non2xx=figures["non2xx"],
        socket_errors=figures["socket_errors"],
        miss_share=miss_share,
    )


def describe(name: str, index: int, run: Run) -> str:
    """One progress line for a run."""
    miss = "" if run.miss_share is None else f" miss {run.miss_share:.1%}"
    return (
        f"  {name} run {index + 1}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms,"
        f" p99 {run.p99_ms:.2f} ms, {run.cpu_us:.0f} us CPU/req, rss {run.rss_mb:.0f} MB,"
        f" non-2xx {run.non2xx}{miss}"
    )
