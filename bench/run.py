"""`python -m bench.run`: one same-run benchmark of the floor, the naive flow and the gateway.

Every scenario's server runs at once, with the same wrk settings against PostgreSQL and Redis on
this machine (or embedded ones), and each of --runs rounds runs every scenario once, right after
a floor run. Figures are medians; ratios are medians of each run's ratio to that floor run. The
gateway is also measured with components switched off (bench/apps.py) to show where its time
goes. See README `## Benchmarks`.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench import apps
from bench.load import Run, Wrk, cache_counts, describe, ensure_wrk, measure, settle
from bench.profile import profile, summarise
from bench.report import (
    Scenario,
    components_table,
    detail_table,
    machine,
    target_checks,
    targets_table,
)
from bench.servers import Launcher, Server, scratch, services
from bench.workload import HERE, MIX_TENANTS, Workload, build_workload, seed

PLAN = (
    ("floor", "floor: bare aiohttp, fixed JSON"),
    ("floor2", "floor, 2 processes sharing the port"),
    ("naive", "naive: PyJWT + lookup + mint, no cache"),
    ("hit", "gateway, cache hit"),
    ("mix", "gateway, realistic mix"),
    ("miss", "gateway, cache miss"),
    ("workers2", "gateway --workers 2, cache hit"),
)
MAX_WARM_PASSES = 4
SCENARIOS = (*(name for name, _ in PLAN), "components")
QUICK = {
    "duration": 2.0,
    "runs": 1,
    "miss_tenants": 20_000,
    "mix_len": 60_000,
    "component_rounds": 2,
    "component_duration": 1.0,
}
STANDARD = {
    "duration": 6.0,
    "runs": 3,
    "miss_tenants": 90_000,
    "mix_len": 300_000,
    "component_rounds": 9,
    "component_duration": 2.0,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; --quick changes the defaults of duration, runs and workload size."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--quick", action="store_true", help="2 s x 1 run, smaller workload")
    parser.add_argument("--duration", type=float, help="seconds per run (6; --quick 2)")
    parser.add_argument("--runs", type=int, help="runs per scenario (3; --quick 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--miss-tenants", type=int, help="never-seen tenants (90,000)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway")
    parser.add_argument("--profile", action="store_true", help="also profile hit and mix")
    parser.add_argument(
        "--only", help=f"comma-separated scenarios ({', '.join(SCENARIOS)}); floor always runs"
    )
    parser.add_argument(
        "--switches",
        default=",".join(apps.SWITCHES),
        help=f"components to switch off one at a time, then together ({', '.join(apps.SWITCHES)})",
    )
    parser.add_argument(
        "--components-on", default="hit", help="paths measured with switches (hit, mix, miss)"
    )
    parser.add_argument(
        "--component-rounds", type=int, help="interleaved rounds of the components (9; --quick 2)"
    )
    parser.add_argument(
        "--component-duration", type=float, help="seconds per component run (2; --quick 1)"
    )
    parser.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else STANDARD
    for name in ("duration", "runs", "miss_tenants", "component_rounds", "component_duration"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    args.mix_len = preset["mix_len"]
    unknown = set(args.switches.split(",")) - set(apps.SWITCHES)
    if unknown:
        parser.error(f"unknown switch {sorted(unknown)}; known: {', '.join(apps.SWITCHES)}")
    if not set(args.components_on.split(",")) <= {"hit", "mix", "miss"}:
        parser.error("--components-on takes hit, mix and miss")
    if args.only and not set(args.only.split(",")) <= set(SCENARIOS):
        parser.error(f"--only takes {', '.join(SCENARIOS)}")
    return args


class Bench:
    """One benchmark run: the wrk settings, the servers' launcher and the workload."""

    def __init__(self, args: argparse.Namespace, wrk: Wrk, launch: Launcher, load: Workload):
        self.args, self.wrk, self.launch, self.load = args, wrk, launch, load

    def _stride(
        self, length: int, args_at: Callable[[int, int], list[str]], runs: int
    ) -> list[list[str]]:
        # Each run starts at its own place in the sequence, so runs do not repeat each other.
        return [args_at(length * i // runs, self.wrk.threads) for i in range(runs)]

    def _warm_mix(self, server: Server) -> None:
        # One wrk thread walks the tenants in order (several threads split a pass unevenly and
        # skip some); passes repeat until one mints for under 1 % of the tenants (read from
        # /metrics; a loaded machine makes some Redis reads time out, and those mint again), or
        # twice when the metrics are switched off.
        one = replace(self.wrk, threads=1)
        for attempt in range(1, MAX_WARM_PASSES + 1):
            before = cache_counts(server)
            warmed = 0
            while warmed < MIX_TENANTS:  # until every tenant has been asked once
                extra = self.load.warm_args(warmed, 1)
                warmed += one.run(server.port, self.load.list_script, extra, 5)["requests"]
            after = cache_counts(server)
            misses = None if not before or not after or not sum(after) else after[1] - before[1]
            shown = "unknown (no metrics)" if misses is None else f"{misses:.0f}"
            print(f"  warming pass {attempt}: a request per mix tenant, mints {shown}", flush=True)
            if (misses is not None and misses < MIX_TENANTS / 100) or (
                misses is None and attempt >= 2
            ):
                return

    def path(
        self, server: Server, path: str, runs: int
    ) -> tuple[Path, list[list[str]], Callable[[], None]]:
        """The script, each run's arguments and the warm-up for `path` (hit, mix, miss)."""
        load = self.load

        def warm() -> None:
            if path == "mix":
                self._warm_mix(server)
            # Another tenant than the measured ones: pools and code paths, not the cache.
            self.wrk.run(server.port, load.warm_script, [], 1)

        if path == "mix":
            return load.list_script, self._stride(load.mix_seq_len, load.mix_args, runs), warm
        if path == "miss":
            return load.list_script, self._stride(load.miss_seq_len, load.miss_args, runs), warm
        return load.hit_script, [[]] * runs, warm

    def _start(self, name: str) -> tuple[Server, str]:
        """PLAN's scenario `name`: its server, started, and the path it is measured on."""
        launch = self.launch
        starts: dict[str, tuple[Callable[[], Server], str]] = {
            "floor": (lambda: launch.floor("floor"), "hit"),
            "floor2": (lambda: launch.floor("floor2", workers=2), "hit"),
            "naive": (lambda: launch.naive("naive"), "hit"),
            "hit": (lambda: launch.gateway("hit"), "hit"),
            "mix": (lambda: launch.gateway("mix"), "mix"),
            "miss": (lambda: launch.gateway("miss"), "miss"),
            "workers2": (lambda: launch.gateway("workers2", workers=2), "hit"),
        }
        start, path = starts[name]
        return start(), path

    def rounds(self, plan: list[tuple[str, str]]) -> dict[str, Scenario]:
        """Every scenario of `plan` at once, round by round: each round runs each scenario once,
        right after a run of its base (the floor; the 2-process floor for 2 workers, itself
        after a floor run), and each run is divided by that base run (a server that fails to
        start is recorded)."""
        found = {name: Scenario(name, label) for name, label in plan}
        servers: dict[str, Server] = {}
        plans = {}
        try:
            for name, label in plan:
                print(label, flush=True)
                try:
                    server, path = self._start(name)
                except SystemExit as exc:
                    found[name].error = f"did not start ({exc})"
                    print(f"  {found[name].error}", flush=True)
                    continue
                servers[name] = server
                plans[name] = self.path(server, path, self.args.runs)
                plans[name][2]()  # warm
                settle(server)
            chains = _chains([name for name, _ in plan if name in servers])
            for i in range(self.args.runs):
                # Each round starts with another scenario, so none always runs first or last.
                shift = i % len(chains) if chains else 0
                for chain in chains[shift:] + chains[:shift]:
                    base: Run | None = None
                    for name in chain:
                        script, per_run, _ = plans[name]
                        counts = name in ("hit", "mix", "miss")
                        run = measure(self.wrk, servers[name], script, per_run[i], counts=counts)
                        found[name].runs.append(run)
                        if base is not None:
                            found[name].bases.append(base)
                        base = run
                        print(describe(name, i, run), flush=True)
        finally:
            for server in servers.values():
                server.stop()
        return found

    def components(self) -> tuple[dict[str, list[Scenario]], dict[str, str]]:
        """Per path: the gateway with everything on, each switch off alone, then all of them."""
        wanted = self.args.switches.split(",")
        usable = [n for n in wanted if apps.SWITCHES[n].apply is not None]
        placeholders = {n: apps.SWITCHES[n].removes for n in wanted if n not in usable}
        configs: list[tuple[str, tuple[str, ...]]] = [("all on (bench/apps.py)", ())]
        configs += [(f"{n} off: {apps.SWITCHES[n].removes}", (n,)) for n in usable]
        if len(usable) > 1:
            configs.append((f"{' + '.join(usable)} off", tuple(usable)))
        groups: dict[str, list[Scenario]] = {}
        for path in self.args.components_on.split(","):
            groups[path] = [
                Scenario(f"components-{path}-{'-'.join(off) or 'on'}", label, off=off)
                for label, off in configs
            ]
            self._interleaved(path, groups[path])
        return groups, placeholders

    def _interleaved(self, path: str, scenarios: list[Scenario]) -> None:
        """Measure every configuration at once, round by round, so drift hits them alike."""
        print(f"components, {path}: {len(scenarios)} servers, runs interleaved", flush=True)
        servers: dict[str, Server] = {}
        try:
            for s in scenarios:
                try:
                    servers[s.name] = self.launch.switched(s.name, s.off)
                except SystemExit as exc:
                    s.error = f"did not start ({exc})"
                    print(f"  {s.name}: {s.error}", flush=True)
            rounds = self.args.component_rounds
            plans = {name: self.path(server, path, rounds) for name, server in servers.items()}
            # Short runs, many rounds: more pairs make the median difference robust to bursts.
            wrk = replace(self.wrk, duration=self.args.component_duration)
            for name, (_, _, warm) in plans.items():
                warm()
                settle(servers[name])
            live = [s for s in scenarios if s.name in servers]
            for i in range(rounds):
                # Each round starts with another configuration, so none always runs first.
                for s in live[i % len(live) :] + live[: i % len(live)]:
                    script, per_run, _ = plans[s.name]
                    run = measure(wrk, servers[s.name], script, per_run[i], counts=False)
                    s.runs.append(run)
                    print(describe(s.name, i, run), flush=True)
        finally:
            for server in servers.values():
                server.stop()

    def profiles(self) -> list[str]:
        """py-spy summaries of hit and mix."""
        lines: list[str] = []
        for name, script, extra in (
            ("hit", self.load.hit_script, []),
            ("mix", self.load.list_script, self.load.mix_args(7, self.wrk.threads)),
        ):
            server = self.launch.gateway(f"profile-{name}")
            try:
                if name == "mix":  # the measured mix's warm cache, not a cold one of misses
                    self._warm_mix(server)
                self.wrk.run(server.port, self.load.warm_script, [], 1)
                stacks = self.load.work / f"{name}.spy"
                found = profile(self.wrk, server, script, extra, stacks)
            finally:
                server.stop()
            lines += summarise(name, *found)
            # The raw stacks, beside the report, for a closer look (py-spy's "raw" format).
            kept = Path(self.args.results).with_suffix(f".{name}.spy")
            shutil.copyfile(stacks, kept)
            lines += [f"raw stacks: `{kept}`", ""]
        return lines


def _chains(live: list[str]) -> list[list[str]]:
    """What one round runs, as chains of (base, ..., scenario): each scenario right after a run
    of its base, so the host's drift between the two is seconds, not minutes."""
    if "floor" not in live:
        return [[name] for name in live]
    chains = []
    for name in live:
        if name == "floor" or (name == "floor2" and "workers2" in live):
            continue  # the floor runs before each scenario; floor2 before workers2
        if name == "workers2" and "floor2" in live:
            chains.append(["floor", "floor2", "workers2"])
        else:
            chains.append(["floor", name])
    return chains or [["floor"]]


def report(args: argparse.Namespace, argv: list[str], took: float, found: dict) -> list[str]:
    """RESULTS.md's lines: the setting, issue 15's table, every scenario, the components."""
    by: dict[str, Scenario] = found["by"]
    floor = by["floor"]
    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in argv)
    lines = [
        "# Benchmark results",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}",
        f"- machine: {machine()}",
        f"- command: `{command.strip()}`{' (quick mode)' if args.quick else ''}",
        f"- load: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s,"
        f" {args.runs} round(s), each running every scenario once (rotated order) right after a"
        " run of its floor; figures are medians, ratios are medians of each run's ratio to that"
        " floor run;"
        " PostgreSQL, Redis and wrk share the machine with the server",
        f"- components: {args.component_rounds} interleaved rounds of {args.component_duration:g} s"
        " per configuration",
        f"- took {took:.0f} s",
        "",
        "## Issue 15's table",
        "",
        *targets_table(by),
        "",
        *target_checks(by),
        "",
        "## Every scenario",
        "",
        *detail_table(list(by.values()), floor),
        "",
        "CPU us/req is the server's user+system time (all its processes) over a run, divided by",
        "the requests wrk completed in it, counted until the server is idle again (so it includes",
        "the audit writer's COPY of those requests, not PostgreSQL's or Redis's own CPU). RSS is",
        "the largest server process's VmRSS after the runs settled (median), peak VmHWM after.",
        "",
    ]
    groups, placeholders = found["components"]
    if groups:
        lines += [
            "## Where the time goes: components switched off (bench/apps.py)",
            "",
            *components_table(groups, floor, placeholders),
            "",
        ]
    if found["profiles"]:
        lines += ["## Profile (py-spy, one worker, under the same load)", "", *found["profiles"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, print the report and write it to --results."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    wrk = Wrk(ensure_wrk(), args.threads, args.connections, args.duration)
    started = time.monotonic()
    only = set(args.only.split(",")) | {"floor"} if args.only else set(SCENARIOS)
    if "workers2" in only:
        only.add("floor2")  # 2 workers are reported against the floor's own 2-process scaling
    found: dict = {"by": {}, "components": ({}, {}), "profiles": []}
    with (
        tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp,
        services(args.database_url, args.redis_url, Path(tmp)) as (pg, redis_url),
        scratch(pg, redis_url) as (dsn, prefix),
    ):
        work = Path(tmp)
        print(f"preparing: wrk {args.threads} threads {args.connections} connections"
              f" {args.duration:g}s x {args.runs} runs", flush=True)  # fmt: skip
        load = build_workload(work, args.miss_tenants, mix_len=args.mix_len)
        asyncio.run(seed(dsn, load.tenants))
        bench = Bench(args, wrk, Launcher(dsn, redis_url, prefix, work, args.env), load)
        found["by"] = bench.rounds([(name, label) for name, label in PLAN if name in only])
        if "components" in only:
            found["components"] = bench.components()
        if args.profile:
            found["profiles"] = bench.profiles()
    lines = report(args, argv, time.monotonic() - started, found)
    print("\n".join(lines))
    Path(args.results).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
