"""The figures as tables: medians, ratios to the floor run just before each run, the targets."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.load import Run

# (path, attribute, limit, at least?): issue 15's targets, as ratios to the same run's floor.
TARGETS = (
    ("hit", "rps", 0.55, True),
    ("hit", "cpu_us", 1.8, False),
    ("hit", "p99_ms", 2.5, False),
    ("mix", "rps", 0.25, True),
    ("mix", "cpu_us", 4.0, False),
    ("mix", "p99_ms", 10.0, False),
    ("miss", "rps", 0.12, True),
    ("miss", "cpu_us", 8.0, False),
)
WORKERS_SCALING_TARGET = 0.9  # x the 2-process floor's own scaling
RSS_LIMIT_MB = 150.0
RSS_FLAT_MB = 5.0  # "flat": the last mix run's RSS at most this much above the first's
PATH_LABELS = {"hit": "hit", "mix": "realistic mix", "miss": "miss"}
ATTR_LABELS = {"rps": "req/s", "cpu_us": "CPU/request", "p99_ms": "p99"}


@dataclass
class Scenario:
    """A named scenario and its runs; `error` when its server could not be measured."""

    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    off: tuple[str, ...] = ()  # the components switched off (bench/apps.py)
    bases: list[Run] = field(default_factory=list)  # the base's run just before each run

    def median(self, attr: str) -> float:
        """The median of one figure over the runs (NaN without runs)."""
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else float("nan")

    def ratio(self, attr: str, base: Scenario) -> float:
        """This scenario's median over `base`'s median."""
        return self.median(attr) / base.median(attr)

    def per_round(self, attr: str, base: Scenario) -> list[float]:
        """This scenario's figure over `base`'s, run by run: over the base run made just before
        each run where there is one (`bases`), else over `base`'s run of the same round."""
        if self is base:
            return [1.0] * len(self.runs)
        theirs = self.bases if self.bases else base.runs
        pairs = zip(self.runs, theirs, strict=False)
        return [getattr(mine, attr) / getattr(other, attr) for mine, other in pairs]

    def paired(self, attr: str, base: Scenario) -> float:
        """The median of the per-round ratios to `base` (NaN without runs)."""
        ratios = self.per_round(attr, base)
        return statistics.median(ratios) if ratios else float("nan")


def machine() -> str:
    """CPU count and model, memory, kernel."""
    model = platform.processor() or "unknown cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} vCPU ({model}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def _fmt(value: float, spec: str = ".2f") -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def detail_table(scenarios: list[Scenario], floor: Scenario) -> list[str]:
    """Every scenario's medians and their ratios to the floor."""
    rows = [
        "| scenario | req/s | x floor | p50 ms | p99 ms | p99 x floor | CPU us/req"
        " | CPU x floor | RSS MB (peak) | miss share | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        if s.error or not s.runs:
            rows.append(f"| {s.label} | {s.error or 'no runs'} |" + " |" * 9)
            continue
        miss = s.median("miss_share")
        rows.append(
            f"| {s.label} | {s.median('rps'):,.0f} | {s.paired('rps', floor):.2f} |"
            f" {s.median('p50_ms'):.2f} | {s.median('p99_ms'):.2f} |"
            f" {s.paired('p99_ms', floor):.2f} | {s.median('cpu_us'):.0f} |"
            f" {s.paired('cpu_us', floor):.2f} | {s.median('rss_mb'):.0f}"
            f" ({max(r.peak_rss_mb for r in s.runs):.0f}) |"
            f" {'' if math.isnan(miss) else f'{miss:.1%}'} | {sum(r.non2xx for r in s.runs)} |"
        )
    return rows


def workers_scaling(by: dict[str, Scenario]) -> tuple[float, float, float] | None:
    """2 gateway workers' req/s over one's and the 2-process floor's over the floor's (medians
    of the rounds), and the median over rounds of their quotient, each side read against its
    own base run: (2 workers / the 2-process floor run before) / (hit / the floor run before),
    which is (2 workers / hit) / (2-process floor / floor) with the drift between runs out."""
    if not all(n in by and by[n].runs for n in ("floor", "floor2", "hit", "workers2")):
        return None
    floor, hit, w2, f2 = by["floor"], by["hit"], by["workers2"], by["floor2"]
    own = [w.rps / h.rps for w, h in zip(w2.runs, hit.runs, strict=False)]
    quotients = [
        w / h for w, h in zip(w2.per_round("rps", f2), hit.per_round("rps", floor), strict=False)
    ]
    return statistics.median(own), f2.paired("rps", floor), statistics.median(quotients)


def targets_table(by: dict[str, Scenario]) -> list[str]:
    """Issue 15's table: each path's req/s, CPU/request and p99 as multiples of the floor."""
    floor = by["floor"]
    rows = ["| path | req/s x floor | CPU/request x floor | p99 x floor |", "|---|---:|---:|---:|"]
    for name, label in PATH_LABELS.items():
        if name in by and by[name].runs:
            s = by[name]
            rows.append(
                f"| {label} | {_fmt(s.paired('rps', floor))} | {_fmt(s.paired('cpu_us', floor))}"
                f" | {_fmt(s.paired('p99_ms', floor))} |"
            )
    scaling = workers_scaling(by)
    if scaling is not None:
        w2, f2 = by["workers2"], by["floor2"]
        own, floors, value = scaling
        rows.append(
            f"| 2 workers, hit (x 2-process floor) | {_fmt(value)} x the floor's scaling"
            f" ({own:.2f} vs {floors:.2f}); {_fmt(w2.paired('rps', f2))} x its req/s |"
            f" {_fmt(w2.paired('cpu_us', f2))} | {_fmt(w2.paired('p99_ms', f2))} |"
        )
    return rows


def target_checks(by: dict[str, Scenario]) -> list[str]:
    """One line per issue 15 target: met or MISSED, with the measured value."""
    floor = by["floor"]
    lines = []
    for name, attr, limit, at_least in TARGETS:
        if name not in by or not by[name].runs:
            continue
        value = by[name].paired(attr, floor)
        ok = value >= limit if at_least else value <= limit
        sign = ">=" if at_least else "<="
        rounds = ", ".join(f"{r:.2f}" for r in by[name].per_round(attr, floor))
        lines.append(
            f"- {'met' if ok else 'MISSED'}: {PATH_LABELS[name]} {ATTR_LABELS[attr]}"
            f" {sign} {limit:g} x floor: {_fmt(value, '.3f')} (runs: {rounds}; ratio of the medians"
            f" {_fmt(by[name].ratio(attr, floor))})"
        )
    scaling = workers_scaling(by)
    if scaling is not None:
        own, floors, value = scaling
        ok = value >= WORKERS_SCALING_TARGET
        lines.append(
            f"- {'met' if ok else 'MISSED'}: 2 workers' scaling >= {WORKERS_SCALING_TARGET} x"
            f" the 2-process floor's: {_fmt(value)} (median of the rounds' quotients; medians"
            f" {own:.2f} and {floors:.2f})"
        )
    if "mix" in by and by["mix"].runs:
        rss = [r.rss_mb for r in by["mix"].runs]
        growth = rss[-1] - rss[0]
        peak = max(r.peak_rss_mb for r in by["mix"].runs)
        ok = max(rss) <= RSS_LIMIT_MB and growth <= RSS_FLAT_MB
        lines.append(
            f"- {'met' if ok else 'MISSED'}: RSS after each mix run <= {RSS_LIMIT_MB:g} MB and"
            f" flat (the last at most {RSS_FLAT_MB:g} MB above the first):"
            f" {' -> '.join(f'{r:.1f}' for r in rss)} MB ({growth:+.1f} MB; largest worker's"
            f" VmRSS after the run settled; peak VmHWM {peak:.1f} MB)"
        )
    return lines


def components_table(
    groups: dict[str, list[Scenario]], floor: Scenario, placeholders: dict[str, str]
) -> list[str]:
    """Per path, each switched-off configuration against the same build with everything on."""
    rows = [
        "| path | configuration | req/s x floor | CPU us/req | CPU us saved vs all on (paired)"
        " | CPU/request x floor | p99 x floor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for path, scenarios in groups.items():
        base = scenarios[0]
        for s in scenarios:
            if s.error or not s.runs:
                rows.append(f"| {path} | {s.label} | {s.error or 'no runs'} | | | | |")
                continue
            saved = paired_saving(base, s)
            rows.append(
                f"| {path} | {s.label} | {_fmt(s.ratio('rps', floor))} |"
                f" {s.median('cpu_us'):.0f} | {'' if s is base else f'{saved:.0f}'} |"
                f" {_fmt(s.ratio('cpu_us', floor))} | {_fmt(s.ratio('p99_ms', floor))} |"
            )
        for name, why in placeholders.items():
            rows.append(f"| {path} | {name} off | not measured: {why} | | | | |")
        if base.runs:
            notes.append(_breakdown(path, scenarios, floor))
    return [*rows, "", *notes]


def _breakdown(path: str, scenarios: list[Scenario], floor: Scenario) -> str:
    """One sentence: the path's CPU over the floor, what the single switches save, the rest."""
    base, f_cpu = scenarios[0], floor.median("cpu_us")
    over = base.median("cpu_us") - f_cpu
    singles = [s for s in scenarios if s.runs and len(s.off) == 1]
    saved = sum(paired_saving(base, s) for s in singles)
    line = (
        f"- {path}: all on costs {base.median('cpu_us'):.0f} us CPU/request, {over:.0f} over the"
        f" floor's {f_cpu:.0f}; the switches one at a time save {saved:.0f} in all"
    )
    if saved < 0 or saved > over:
        return line + (
            ": the run-to-run variation is larger than what the switches save, so no split is"
            " read from this run (more --component-rounds, or a quieter machine)."
        )
    return line + (
        f", leaving {over - saved:.0f} us for what no switch covers (aiohttp's request handling"
        " beyond the floor, the middleware, the handler, body parsing, the caches)."
    )


def paired_saving(base: Scenario, other: Scenario) -> float:
    """The median over rounds of base's CPU/request minus other's, run by run (interleaved)."""
    pairs = list(zip(base.runs, other.runs, strict=False))
    if not pairs:
        return float("nan")
    return statistics.median(b.cpu_us - o.cpu_us for b, o in pairs)
