"""`python -m bench.run`: one same-run benchmark of the floor, the naive flow and the gateway.

Every scenario runs one after another with the same wrk settings against PostgreSQL and Redis on
this machine (or embedded ones). Figures are medians of --runs runs; see README `## Benchmarks`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import jwt
import orjson
import psutil
import redis

from gateway.ops.migrate import migrate

HERE = Path(__file__).resolve().parent
PATH = "/api/v1/dashboards/iframe-token"
WORKSPACE = "ws-bench"
JWT_SECRET = "bench-caller-jwt-secret-" + "x" * 40
SIGNING_SECRET = "bench-signing-secret-" + "y" * 40
API_KEY_ID = "key-bench"
MIX_TENANTS, MIX_CALLERS, MIX_MISS_SHARE, ZIPF_S = 10_000, 50_000, 0.05, 1.0


@dataclass
class Run:
    """One wrk run's figures."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    rss_mb: float
    requests: int
    non2xx: int
    socket_errors: int
    miss_share: float | None = None


@dataclass
class Scenario:
    """A named scenario and its runs."""

    name: str
    label: str
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else float("nan")


# --- setup -------------------------------------------------------------------------------------


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


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def services(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, str]]:
    """URLs of PostgreSQL and Redis: the machine's when they answer, else embedded ones."""
    stack = contextlib.ExitStack()
    with stack:
        pg, rd = args.database_url, args.redis_url
        if not _reachable(pg, 5432) or not _reachable(rd, 6379):
            from gateway.dev.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: PLC0415

            if not _reachable(pg, 5432):
                server = EmbeddedPostgres(work / "pg")
                pg = server.start()
                stack.callback(server.stop)
            if not _reachable(rd, 6379):
                rserver = EmbeddedRedis(work / "redis")
                rd = rserver.start()
                stack.callback(rserver.stop)
        yield pg, rd


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


async def seed(dsn: str, tenants: list[str]) -> None:
    """Migrate and map one default dashboard to every tenant (one COPY)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.copy_records_to_table(
            "tenant_dashboards",
            records=[(t, WORKSPACE, f"dash-{t}", True) for t in tenants],
            columns=("tenant_id", "workspace_id", "dashboard_id", "is_default"),
        )
    finally:
        await conn.close()


async def admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def caller_jwt(tenant: str, sub: str) -> str:
    now = int(time.time())
    claims = {"sub": sub, "organization_id": tenant, "iat": now, "exp": now + 4 * 3600}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def body(tenant: str) -> str:
    return orjson.dumps({"tenant_id": tenant, "workspace_id": WORKSPACE}).decode()


def write_callers(path: Path, callers: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{caller_jwt(t, s)}\t{body(t)}\n" for t, s in callers))


def static_script(path: Path, tenant: str) -> None:
    """A fixed POST: wrk builds it once, as a frontend repeating one call would."""
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = '{body(tenant)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {caller_jwt(tenant, "user-hit")}"\n'
    )
    path.write_text(lua + (HERE / "done.lua").read_text())


@dataclass
class Workload:
    """Files wrk reads, and what the scenarios need to know about them."""

    hit_script: Path
    warm_script: Path
    list_script: Path
    mix_callers: Path
    mix_seq: Path
    mix_seq_len: int
    miss_callers: Path
    miss_seq: Path
    miss_seq_len: int
    tenants: list[str]


def build_workload(work: Path, miss_tenants: int, mix_len: int) -> Workload:
    """Tenants, caller JWTs and request sequences (Zipf over callers, a share of never-seen)."""
    rng = random.Random(6)
    mix = [f"mix-{i:05d}" for i in range(MIX_TENANTS)]
    mix_miss_count = int(mix_len * MIX_MISS_SHARE * 1.2) + 1
    mix_miss = [f"mixmiss-{i:06d}" for i in range(mix_miss_count)]
    miss = [f"miss-{i:06d}" for i in range(miss_tenants)]
    tenants = ["bench-hit", "bench-warm", *mix, *mix_miss, *miss]

    # 50,000 callers, five per tenant; callers after them are the never-seen tenants' ones.
    callers = [(mix[i % MIX_TENANTS], f"user-{i}") for i in range(MIX_CALLERS)]
    callers += [(t, f"user-{t}") for t in mix_miss]
    write_callers(work / "mix_callers.txt", callers)
    ranks = list(range(1, MIX_CALLERS + 1))
    rng.shuffle(ranks)  # popularity is not ordered by tenant name
    cum = list(accumulate(1.0 / (r**ZIPF_S) for r in ranks))
    seq: list[int] = []
    next_miss = MIX_CALLERS
    draws = iter(rng.choices(range(1, MIX_CALLERS + 1), cum_weights=cum, k=mix_len))
    for _ in range(mix_len):
        if rng.random() < MIX_MISS_SHARE and next_miss < len(callers):
            next_miss += 1
            seq.append(next_miss)
        else:
            seq.append(next(draws))
    (work / "mix_seq.txt").write_text("\n".join(map(str, seq)) + "\n")
    # Steady state: every mix tenant already has a token in Redis, as an hour into the day.
    (work / "mix_warm.txt").write_text("\n".join(str(i + 1) for i in range(MIX_TENANTS)) + "\n")

    write_callers(work / "miss_callers.txt", [(t, f"user-{t}") for t in miss])
    (work / "miss_seq.txt").write_text("\n".join(str(i + 1) for i in range(len(miss))) + "\n")

    static_script(work / "hit.lua", "bench-hit")
    static_script(work / "warm.lua", "bench-warm")
    (work / "list.lua").write_text(
        (HERE / "requests.lua").read_text() + (HERE / "done.lua").read_text()
    )
    return Workload(
        hit_script=work / "hit.lua",
        warm_script=work / "warm.lua",
        list_script=work / "list.lua",
        mix_callers=work / "mix_callers.txt",
        mix_seq=work / "mix_seq.txt",
        mix_seq_len=mix_len,
        miss_callers=work / "miss_callers.txt",
        miss_seq=work / "miss_seq.txt",
        miss_seq_len=len(miss),
        tenants=tenants,
    )


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess: started, waited for, measured (CPU, RSS, metrics), stopped."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {argv[-1]} exited early; see {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: server not ready; see {log}") from None
                time.sleep(0.1)

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def settle(self) -> None:
        """Wait until the server is idle again, so work queued by a run (audit) is counted."""
        deadline = time.monotonic() + 10
        last = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.cpu_seconds()
            if now - last < 0.004:
                return
            last = now

    def peak_rss_mb(self) -> float:
        """The largest peak RSS (VmHWM) of any one process of the server."""
        peak = 0
        for p in self.processes():
            with contextlib.suppress(OSError, psutil.NoSuchProcess):
                status = Path(f"/proc/{p.pid}/status").read_text()
                match = re.search(r"VmHWM:\s+(\d+) kB", status)
                if match:
                    peak = max(peak, int(match.group(1)))
        return peak / 1024

    def cache_counts(self) -> tuple[float, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        counts = dict.fromkeys(("hit", "miss"), 0.0)
        for m in re.finditer(r'gateway_token_cache_total\{result="(\w+)"\} (\S+)', text):
            counts[m.group(1)] = float(m.group(2))
        return counts["hit"], counts["miss"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


RAISED_LIMITS = (
    "GATEWAY_RATE_LIMIT_SUBJECT_MINTS",
    "GATEWAY_RATE_LIMIT_TENANT_MINTS",
    "GATEWAY_RATE_LIMIT_REQUESTS_PER_SECOND",
    "GATEWAY_RATE_LIMIT_REQUEST_BURST",
)


def gateway_env(args: argparse.Namespace, dsn: str, redis_url: str, prefix: str) -> dict[str, str]:
    """The environment a user would set, plus rate limits (when this build has any) raised."""
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": dsn,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_API_KEY_ID": API_KEY_ID,
        "GATEWAY_SIGNING_SECRET": SIGNING_SECRET,
        "GATEWAY_JWT_SECRET": JWT_SECRET,
        "GATEWAY_REDIS_PREFIX": prefix,
    }
    # Measure the path, not the limiter: every rate limit is raised out of the way.
    for name in RAISED_LIMITS:
        env.setdefault(name, "1000000")
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    return env


# --- measuring ---------------------------------------------------------------------------------


def wrk(args: argparse.Namespace, port: int, script: Path, extra: list[str], secs: float) -> dict:
    argv = [
        args.wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(1, round(secs))}s",
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


def measure(
    args: argparse.Namespace, server: Server, script: Path, extra: list[str], gateway: bool
) -> Run:
    before = server.cache_counts() if gateway else None
    cpu0 = server.cpu_seconds()
    figures = wrk(args, server.port, script, extra, args.duration)
    server.settle()
    cpu = server.cpu_seconds() - cpu0
    after = server.cache_counts() if gateway else None
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
        rss_mb=server.peak_rss_mb(),
        requests=requests,
        non2xx=figures["non2xx"],
        socket_errors=figures["socket_errors"],
        miss_share=miss_share,
    )


def run_scenario(
    args: argparse.Namespace,
    scenario: Scenario,
    server: Server,
    script: Path,
    extra_for_run: list[list[str]],
    warm: Path,
    *,
    gateway: bool,
) -> None:
    """Warm the server up for a second (pools, code paths), then measure each run."""
    wrk(args, server.port, warm, [], 1)
    server.settle()
    for i, extra in enumerate(extra_for_run):
        run = measure(args, server, script, extra, gateway)
        scenario.runs.append(run)
        miss = "" if run.miss_share is None else f" miss {run.miss_share:.1%}"
        print(
            f"  {scenario.name} run {i + 1}: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms,"
            f" p99 {run.p99_ms:.2f} ms, {run.cpu_us:.0f} us CPU/req, rss {run.rss_mb:.0f} MB,"
            f" non-2xx {run.non2xx}{miss}",
            flush=True,
        )


def profile(args: argparse.Namespace, server: Server, script: Path, extra: list[str], out: Path):
    """Sample the server's stacks with py-spy under load; the top functions by self and total."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pids = [p.pid for p in server.processes()][-1:]  # the worker, not a parent that waits
    rec = subprocess.Popen(
        [spy, "record", "-p", str(pids[0]), "-d", str(int(args.duration)), "-r", "250",
         "--nonblocking", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    wrk(args, server.port, script, extra, args.duration)
    rec.wait()
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n
    return samples, own, total


# --- report ------------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} vCPU ({model}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def table(scenarios: list[Scenario]) -> list[str]:
    floor = scenarios[0]
    f_rps, f_cpu, f_p99 = floor.median("rps"), floor.median("cpu_us"), floor.median("p99_ms")
    rows = [
        "| scenario | req/s | x floor | p50 ms | p99 ms | p99 x floor | CPU us/req"
        " | CPU x floor | peak RSS MB | miss share | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        miss = s.median("miss_share")
        rows.append(
            f"| {s.label} | {s.median('rps'):,.0f} | {s.median('rps') / f_rps:.2f} |"
            f" {s.median('p50_ms'):.2f} | {s.median('p99_ms'):.2f} |"
            f" {s.median('p99_ms') / f_p99:.2f} | {s.median('cpu_us'):.0f} |"
            f" {s.median('cpu_us') / f_cpu:.2f} | {max(r.rss_mb for r in s.runs):.0f} |"
            f" {'' if math.isnan(miss) else f'{miss:.1%}'} | {sum(r.non2xx for r in s.runs)} |"
        )
    return rows


def targets(by: dict[str, Scenario]) -> list[str]:
    f = by["floor"]

    def ratio(name: str, attr: str, base: Scenario) -> float:
        return by[name].median(attr) / base.median(attr)

    mix_rss = [r.rss_mb for r in by["mix"].runs]
    checks = [
        ("cache hit req/s >= 0.65x floor", ratio("hit", "rps", f), 0.65, True),
        ("cache hit CPU/req <= 1.6x floor", ratio("hit", "cpu_us", f), 1.6, False),
        ("cache hit p99 <= 2x floor", ratio("hit", "p99_ms", f), 2.0, False),
        ("realistic mix >= 0.5x floor", ratio("mix", "rps", f), 0.5, True),
        ("cache miss >= 0.25x floor", ratio("miss", "rps", f), 0.25, True),
        ("cache hit >= 4x naive", ratio("hit", "rps", by["naive"]), 4.0, True),
        ("2 workers >= 1.6x one worker", ratio("workers2", "rps", by["hit"]), 1.6, True),
        ("peak RSS after the mix <= 150 MB", max(mix_rss), 150.0, False),
    ]
    lines = []
    for text, value, limit, at_least in checks:
        ok = value >= limit if at_least else value <= limit
        lines.append(f"- {'met' if ok else 'MISSED'}: {text}: {value:.2f}")
    growth = mix_rss[-1] - mix_rss[0]
    lines.append(
        f"- RSS over the mix's runs: {' -> '.join(f'{r:.1f}' for r in mix_rss)} MB"
        f" ({'+' if growth >= 0 else ''}{growth:.1f} MB from the first run's peak to the last's)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912 - one linear script
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--miss-tenants", type=int, default=90_000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    parser.add_argument("--profile", action="store_true", help="also profile hit and mix")
    parser.add_argument("--only", help="comma-separated scenarios to run (floor always runs)")
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    args.wrk = ensure_wrk()
    started = time.monotonic()
    gateway_bin = Path(sys.executable).parent / "gateway"
    gateway_argv = [str(gateway_bin)] if gateway_bin.exists() else [sys.executable, "-m", "gateway"]
    only = set(args.only.split(",")) | {"floor"} if args.only else None

    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp, services(args, Path(tmp)) as urls:
        work = Path(tmp)
        pg, redis_url = urls
        db_name = f"gw_bench_{uuid.uuid4().hex[:10]}"
        prefix = f"gwbench:{uuid.uuid4().hex[:10]}:"
        print(f"preparing: database {db_name}, wrk {args.threads} threads {args.connections}"
              f" connections {args.duration:g}s x {args.runs} runs", flush=True)  # fmt: skip
        load = build_workload(work, args.miss_tenants, mix_len=300_000)
        asyncio.run(admin(pg, f'CREATE DATABASE "{db_name}"'))
        dsn = _with_db(pg, db_name)
        scenarios: list[Scenario] = []
        profiles: list[str] = []
        try:
            asyncio.run(seed(dsn, load.tenants))
            runs = range(args.runs)
            stride = lambda n: [[str(n * i // args.runs), str(args.threads)] for i in runs]  # noqa: E731

            def want(name: str) -> bool:
                return only is None or name in only

            def start_gateway(tag: str, *extra: str) -> Server:
                env = gateway_env(args, dsn, redis_url, f"{prefix}{tag}:")
                return Server(
                    [*gateway_argv, "serve", *extra],
                    {**env, "GATEWAY_PORT": str(port)},
                    port,
                    work / f"{tag}.log",
                )

            plan = [
                ("floor", "floor: bare aiohttp, fixed JSON"),
                ("naive", "naive: PyJWT + lookup + mint, no cache"),
                ("hit", "gateway, cache hit"),
                ("mix", "gateway, realistic mix"),
                ("miss", "gateway, cache miss"),
                ("workers2", "gateway --workers 2, cache hit"),
            ]
            for name, label in plan:
                if not want(name):
                    continue
                scenario = Scenario(name, label)
                scenarios.append(scenario)
                port = free_port()
                print(f"{label}", flush=True)
                if name in ("floor", "naive"):
                    env = gateway_env(args, dsn, redis_url, prefix)
                    module = "bench.floor_app" if name == "floor" else "bench.naive_app"
                    server = Server(
                        [sys.executable, "-m", module, str(port)], env, port, work / f"{name}.log"
                    )
                    try:
                        run_scenario(
                            args, scenario, server, load.hit_script, [[]] * args.runs,
                            load.hit_script, gateway=False,
                        )  # fmt: skip
                    finally:
                        server.stop()
                    continue
                extra = ("--workers", "2") if name == "workers2" else ()
                server = start_gateway(name, *extra)
                try:
                    if name in ("hit", "workers2"):
                        script, per_run = load.hit_script, [[]] * args.runs
                    elif name == "mix":
                        print("  warming: one request per mix tenant", flush=True)
                        warmed = 0
                        while warmed < MIX_TENANTS:  # until every tenant has been asked once
                            warm = [str(load.mix_callers), str(work / "mix_warm.txt")]
                            warm += [str(warmed), str(args.threads)]
                            warmed += wrk(args, server.port, load.list_script, warm, 5)["requests"]
                        script, per_run = (
                            load.list_script,
                            [
                                [str(load.mix_callers), str(load.mix_seq), *a]
                                for a in stride(load.mix_seq_len)
                            ],
                        )
                    else:
                        script, per_run = (
                            load.list_script,
                            [
                                [str(load.miss_callers), str(load.miss_seq), *a]
                                for a in stride(load.miss_seq_len)
                            ],
                        )
                    run_scenario(
                        args, scenario, server, script, per_run, load.warm_script,
                        gateway=name != "workers2",
                    )  # fmt: skip
                finally:
                    server.stop()

            if args.profile:
                for name, script, extra in (
                    ("hit", load.hit_script, []),
                    (
                        "mix",
                        load.list_script,
                        [str(load.mix_callers), str(load.mix_seq), "7", str(args.threads)],
                    ),
                ):
                    port = free_port()
                    server = start_gateway(f"profile-{name}")
                    try:
                        wrk(args, server.port, load.warm_script, [], 1)
                        samples, own, total = profile(
                            args, server, script, extra, work / f"{name}.spy"
                        )
                    finally:
                        server.stop()
                    profiles += summarise_profile(name, samples, own, total)
        finally:
            asyncio.run(admin(pg, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            client = redis.Redis.from_url(redis_url)
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)
            client.close()

    rows = table(scenarios)
    by = {s.name: s for s in scenarios}
    checks = targets(by) if len(by) == 6 else []
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report = [
        "# Benchmark results",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- command: `{command.strip()}`",
        f"- load: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s,"
        f" {args.runs} runs per scenario, figures are medians; PostgreSQL, Redis and wrk share"
        " the machine with the server",
        f"- took {time.monotonic() - started:.0f} s",
        "",
        *rows,
        "",
        "CPU us/req is the server's user+system time (all its processes) over a run, divided by",
        "the requests wrk completed in it; it includes the audit writer's COPY of those requests.",
        "",
    ]
    if checks:
        report += ["## Targets", "", *checks, ""]
    if profiles:
        report += ["## Profile (py-spy, one worker, under the same load)", "", *profiles, ""]
    print("\n".join(report))
    Path(args.results).write_text("\n".join(report))
    print(f"wrote {args.results}")
    return 0


def summarise_profile(name: str, samples: int, own: dict, total: dict) -> list[str]:
    def top(counts: dict, n: int) -> list[str]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return [f"    {100 * c / samples:5.1f}%  {f}" for f, c in ranked]

    interesting = {f: c for f, c in total.items() if "(gateway/" in f or "(aiohttp/web.py)" in f}
    return [
        f"### {name}: {samples} samples",
        "",
        "self time, top 20:",
        "",
        *top(own, 20),
        "",
        "total time, gateway functions and the loop, top 25:",
        "",
        *top(interesting, 25),
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
