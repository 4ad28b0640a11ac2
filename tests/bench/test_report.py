"""bench/run.py's rounds and bench/report.py's ratios: each run against the floor run before it."""

from __future__ import annotations

import pytest

from bench.load import Run
from bench.report import Scenario, target_checks, workers_scaling
from bench.run import _chains


def _run(rps: float, cpu_us: float, p99_ms: float = 5.0) -> Run:
    return Run(
        rps=rps,
        p50_ms=1.0,
        p99_ms=p99_ms,
        cpu_us=cpu_us,
        rss_mb=50.0,
        peak_rss_mb=50.0,
        requests=int(rps),
        non2xx=0,
        socket_errors=0,
    )


def test_each_scenario_runs_right_after_its_base() -> None:
    assert _chains(["floor", "floor2", "hit", "mix", "workers2"]) == [
        ["floor", "hit"],
        ["floor", "mix"],
        ["floor", "floor2", "workers2"],
    ]
    assert _chains(["floor", "floor2"]) == [["floor", "floor2"]]
    assert _chains(["floor"]) == [["floor"]]


def test_a_ratio_is_the_median_of_each_run_over_the_floor_run_before_it() -> None:
    """The floor drifts 2x between rounds; each hit run costs 1.5x its own floor run. Paired, the
    ratio is 1.5; the ratio of the medians would read the drift instead."""
    floor = Scenario("floor", "floor", runs=[_run(10_000, 50), _run(5_000, 100), _run(10_000, 50)])
    hit = Scenario(
        "hit",
        "hit",
        runs=[_run(3_000, 150), _run(3_000, 150), _run(6_000, 75)],
        bases=[_run(5_000, 100), _run(5_000, 100), _run(10_000, 50)],
    )
    assert hit.per_round("cpu_us", floor) == [1.5, 1.5, 1.5]
    assert hit.paired("cpu_us", floor) == 1.5
    assert hit.ratio("cpu_us", floor) == 3.0  # 150 over the floor's median 50
    (line,) = [x for x in target_checks({"floor": floor, "hit": hit}) if "CPU/request" in x]
    assert line.startswith("- met: hit CPU/request <= 1.8 x floor: 1.500 (runs: 1.50, 1.50, 1.50")


def test_two_workers_scale_against_their_own_base_runs() -> None:
    floor = Scenario("floor", "floor", runs=[_run(10_000, 50)] * 2)
    floor2 = Scenario(
        "floor2", "floor2", runs=[_run(18_000, 50), _run(9_000, 50)], bases=[_run(10_000, 50)] * 2
    )
    hit = Scenario("hit", "hit", runs=[_run(6_000, 80)] * 2, bases=[_run(10_000, 50)] * 2)
    workers2 = Scenario(
        "workers2",
        "workers2",
        runs=[_run(9_000, 80), _run(4_500, 80)],
        bases=[_run(18_000, 50), _run(9_000, 50)],
    )
    by = {"floor": floor, "floor2": floor2, "hit": hit, "workers2": workers2}
    scaling = workers_scaling(by)
    assert scaling is not None
    own, floors, value = scaling
    # Each round: 2 workers did half their 2-process floor run, the hit 0.6 of its floor run.
    assert value == pytest.approx(0.5 / 0.6)
    assert own == pytest.approx((1.5 + 0.75) / 2)
    assert floors == pytest.approx((1.8 + 0.9) / 2)
