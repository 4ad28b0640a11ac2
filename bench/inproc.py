"""CPU per request of the server's own code, without sockets or a load generator.

`python -m bench.inproc [--path hit|miss] [--requests N] [--rounds R]`: the floor app
(bench/floor_app.py) and the gateway (`create_app(settings)`, run through `gateway serve`'s
runner) each get their requests as raw HTTP bytes fed to aiohttp's connection handler, whose
answers go to a transport that only counts them. Every layer of aiohttp, the gateway's code and
its real PostgreSQL/Redis run; what is left out is the kernel's socket work and wrk, which cost
the same for both and are the noise of `bench.run` on a shared machine. Rounds alternate floor
and gateway, and the figures are medians of process CPU time per request and their ratio.

`--path hit` (the default): one caller and tenant, answered by the local tier. `--path miss`:
every request is a tenant never seen, with a caller JWT never seen (JWT verify, the PostgreSQL
lookup, Redis, the mint, the share script); tenants and JWTs are all made before timing starts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import uvloop
from aiohttp import web

from bench.apps import SWITCHES, available, factory
from bench.floor_app import PATHS, answer
from bench.servers import Launcher, scratch, services
from bench.workload import PATH, WORKSPACE, caller_jwt, seed
from gateway.ops.runner import GatewayRunner
from gateway.settings import load_settings

CONCURRENCY = 50  # connections, as wrk -c50
WARM_REQUESTS = CONCURRENCY * 4
PEER = ("127.0.0.1", 40000)


class SinkTransport(asyncio.Transport):
    """A connection's transport that counts the answers written to it and keeps nothing."""

    def __init__(self, on_answer: Callable[[], None]) -> None:
        super().__init__()
        self._on_answer = on_answer
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Count each status line (aiohttp writes an answer's head in one piece)."""
        if bytes(data[:9]) == b"HTTP/1.1 ":
            if not bytes(data[9:10]) == b"2":
                raise SystemExit(f"bench: non-2xx answer: {bytes(data[:200])!r}")
            self._on_answer()

    def writelines(self, chunks: object) -> None:
        """Each chunk as write() would take it."""
        for chunk in chunks:  # type: ignore[attr-defined]
            self.write(chunk)

    def is_closing(self) -> bool:
        """Open until closed."""
        return self._closing

    def close(self) -> None:
        """Closed: nothing more is written."""
        self._closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        """The peer and socket addresses a TCP connection from 127.0.0.1 would report."""
        return {"peername": PEER, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def get_write_buffer_size(self) -> int:
        """Nothing is ever buffered."""
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """No buffer, no limits."""

    def pause_reading(self) -> None:
        """Nothing to pause."""

    def resume_reading(self) -> None:
        """Nothing to resume."""


def raw_request(body: bytes, token: str) -> bytes:
    """One keep-alive POST to the token path, as wrk's hit script sends it."""
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Driver:
    """`CONCURRENCY` connections to one app; each round sends one request on every one.

    `raw` gives each request's bytes in turn: the same one (hit) or a new one each time (miss).
    """

    def __init__(self, runner: web.BaseRunner, raw: Iterator[bytes]) -> None:
        assert runner.server is not None
        self._raw = raw
        self._answered = 0
        self._done: asyncio.Future[None] | None = None
        self._want = 0
        self._protocols = []
        for _ in range(CONCURRENCY):
            proto = runner.server()
            proto.connection_made(SinkTransport(self._on_answer))
            self._protocols.append(proto)

    def _on_answer(self) -> None:
        self._answered += 1
        if self._answered == self._want and self._done is not None:
            self._done.set_result(None)

    async def run(self, requests: int) -> float:
        """CPU seconds per request over `requests` requests."""
        loop = asyncio.get_running_loop()
        started = time.process_time()
        sent = 0
        while sent < requests:
            self._done = loop.create_future()
            self._want = self._answered + len(self._protocols)
            for proto in self._protocols:
                proto.data_received(next(self._raw))
            await asyncio.wait_for(self._done, 30)
            sent += len(self._protocols)
        return (time.process_time() - started) / sent


class Callgrind:
    """Instruction counts of this process run under `valgrind --tool=callgrind`: repeatable
    whatever else the machine is doing, where CPU time is not."""

    def __init__(self, out_dir: Path) -> None:
        self._dir = out_dir
        self._dumps = 0

    def _command(self, *args: str) -> None:
        # callgrind_control talks to the valgrind core, which only listens while this process
        # runs code: spin (a few million instructions, against billions measured) until it ends.
        command = ["callgrind_control", *args, str(os.getpid())]
        control = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while control.poll() is None:
            sum(range(1000))

    def zero(self) -> None:
        """Start counting from zero."""
        self._command("--zero")

    def count(self) -> int:
        """Instructions since the last zero (a dump resets the counters too)."""
        before = set(self._dir.glob("callgrind.out.*"))
        self._command("--dump")
        (dump,) = set(self._dir.glob("callgrind.out.*")) - before
        totals = re.search(r"^(?:totals|summary): (\d+)", dump.read_text(), re.MULTILINE)
        dump.unlink()
        if totals is None:
            raise SystemExit(f"bench: no totals in {dump}")
        return int(totals.group(1))


def tenant_request(tenant: str, subject: str) -> bytes:
    """`tenant`'s token request from `subject`, with a caller JWT of its own."""
    body = f'{{"tenant_id":"{tenant}","workspace_id":"{WORKSPACE}"}}'.encode()
    return raw_request(body, caller_jwt(tenant, subject))


def miss_tenants(timed: int) -> list[str]:
    """One never-seen tenant per request: the warm-up's and the `timed` ones."""
    return [f"miss-{i:07d}" for i in range(WARM_REQUESTS + timed)]


def timed_requests(requests: int, rounds: int) -> int:
    """Requests each app gets after its warm-up (Driver.run sends whole rounds of connections)."""
    return -(-requests // CONCURRENCY) * CONCURRENCY * rounds


async def count_instructions(
    env: dict[str, str], off: tuple[str, ...], requests: int, out_dir: Path, path: str
) -> None:
    """Instructions per request of the floor and the gateway (run under callgrind)."""
    grind = Callgrind(out_dir)
    runners, drivers = await _start(env, off, path, timed_requests(requests, 1))
    try:
        for driver in drivers:  # warm
            await driver.run(WARM_REQUESTS)
        counts = []
        for driver in drivers:
            grind.zero()
            await driver.run(requests)
            counts.append(grind.count() / requests)
        f, g = counts
        print(f"path: {path}")
        print(f"floor   {f / 1000:8.1f} k instructions/request")
        print(f"gateway {g / 1000:8.1f} k instructions/request; {g / f:.2f} x floor")
    finally:
        for runner in runners:
            await runner.cleanup()


async def _start(
    env: dict[str, str], off: tuple[str, ...], path: str, timed: int
) -> tuple[list[web.BaseRunner], list[Driver]]:
    floor = web.Application()
    floor.router.add_post(PATHS[0], answer)
    gateway = factory(off)(load_settings(env))
    if path == "miss":
        # Built before timing: the floor is sent the same bytes (it reads none of them).
        raws = [tenant_request(t, f"user-{t}") for t in miss_tenants(timed)]
        feeds: list[Iterator[bytes]] = [iter(raws), iter(raws)]
    else:
        raw = tenant_request("bench-hit", "user-1")
        feeds = [itertools.repeat(raw), itertools.repeat(raw)]
    runners: list[web.BaseRunner] = [
        GatewayRunner(app, access_log=None) for app in (floor, gateway)
    ]
    for runner in runners:
        await runner.setup()
    return runners, [Driver(runner, feed) for runner, feed in zip(runners, feeds, strict=True)]


async def measure(
    env: dict[str, str], off: tuple[str, ...], requests: int, rounds: int, path: str
) -> None:
    """Alternate floor and gateway rounds; print medians and the ratio."""
    runners, drivers = await _start(env, off, path, timed_requests(requests, rounds))
    try:
        for driver in drivers:  # warm (hit: the first request mints, later ones hit the local tier)
            await driver.run(WARM_REQUESTS)
        figures: list[list[float]] = [[], []]
        for _ in range(rounds):
            for i, driver in enumerate(drivers):
                figures[i].append(await driver.run(requests) * 1e6)
        f, g = (statistics.median(x) for x in figures)
        print(f"path: {path}")
        print(f"floor   {f:6.1f} us CPU/request (median of {rounds} rounds of {requests})")
        print(f"gateway {g:6.1f} us CPU/request; {g / f:.2f} x floor, {g - f:.1f} us over it")
        ratios = [b / a for a, b in zip(*figures, strict=True)]
        print("ratio per round: " + " ".join(f"{r:.2f}" for r in ratios))
        # Another process only ever adds CPU time (cache misses, frequency): the quietest round
        # of each is the steadiest figure on a shared machine.
        fb, gb = min(figures[0]), min(figures[1])
        print(f"best rounds: floor {fb:.1f} us, gateway {gb:.1f} us; {gb / fb:.2f} x floor")
    finally:
        for runner in runners:
            await runner.cleanup()


def components(args: argparse.Namespace) -> None:
    """Instructions per request with each component switched off (bench/apps.py), one
    callgrind process per configuration, two at a time: where the hit's instructions go."""
    if shutil.which("valgrind") is None:
        raise SystemExit("bench: --components needs valgrind (apt-get install valgrind)")
    names = available()
    configs = [(), *((name,) for name in names), tuple(names)]

    def count(off: tuple[str, ...]) -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="gw-grind-") as out:
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out.%p",
                    sys.executable, "-m", "bench.inproc", "--callgrind", "--out", out,
                    "--path", args.path, "--requests", str(args.requests),
                    "--database-url", args.database_url, "--redis-url", args.redis_url,
                    *(f"--env={item}" for item in args.env),
                    *(f"--off={name}" for name in off)]  # fmt: skip
            text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        found = re.findall(r"^(floor|gateway)\s+([\d.]+) k instructions", text, re.MULTILINE)
        figures = dict(found)
        if set(figures) != {"floor", "gateway"}:
            raise SystemExit(f"bench: no counts for --off {off}:\n{text}")
        return float(figures["floor"]), float(figures["gateway"])

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(configs, pool.map(count, configs), strict=True))
    floor, on = results[()]
    print(f"\n{args.path}, k instructions per request (callgrind, {args.requests} requests each):")
    print("| configuration | gateway | saved vs all on | x floor |")
    print("|---|---:|---:|---:|")
    for off, (floor_k, gateway_k) in results.items():
        name = "all on" if not off else " + ".join(off) + " off"
        saved = "" if not off else f"{on - gateway_k:.1f}"
        print(f"| {name} | {gateway_k:.1f} | {saved} | {gateway_k / floor_k:.2f} |")
    print(f"| the floor (bench/floor_app.py) | {floor:.1f} | | 1.00 |")


def main() -> None:
    """Set up PostgreSQL, Redis and the tenants, then measure the chosen path in process."""
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--path", choices=("hit", "miss"), default="hit")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count instructions instead (run as: valgrind --tool=callgrind --callgrind-out-file="
        "DIR/callgrind.out.%%p python -m bench.inproc --callgrind --out DIR)",
    )
    parser.add_argument("--out", default=".", help="where callgrind writes its dumps")
    parser.add_argument("--off", action="append", default=[], choices=sorted(SWITCHES))
    parser.add_argument(
        "--components",
        action="store_true",
        help="count instructions with each component off in turn (runs valgrind itself)",
    )
    args = parser.parse_args()
    if args.components:
        components(args)
        return
    off = tuple(args.off)
    with tempfile.TemporaryDirectory(prefix="gw-inproc-") as tmp:
        work = Path(tmp)
        with (
            services(args.database_url, args.redis_url, work) as (pg, rd),
            scratch(pg, rd) as (dsn, prefix),
        ):
            tenants = ["bench-hit"]
            if args.path == "miss":
                rounds = 1 if args.callgrind else args.rounds
                tenants = miss_tenants(timed_requests(args.requests, rounds))
            asyncio.run(seed(dsn, tenants))
            env = Launcher(dsn, rd, prefix, work, args.env).env("inproc")
            env.setdefault("GATEWAY_AUDIT_SPOOL_DIR", str(work / "journal"))
            if args.callgrind:
                # Valgrind runs ~50x slower: batches by time would be ~20 rows, where under load
                # they are 500; by size only, a count does not depend on the machine's speed.
                env.setdefault("GATEWAY_AUDIT_FLUSH_INTERVAL", "60")
                # Likewise the local tier's bound: refills from Redis by the clock, not by count.
                env.setdefault("GATEWAY_LOCAL_CACHE_TTL", "300")
                uvloop.run(count_instructions(env, off, args.requests, Path(args.out), args.path))
            else:
                uvloop.run(measure(env, off, args.requests, args.rounds, args.path))


if __name__ == "__main__":
    main()
