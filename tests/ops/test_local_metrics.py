"""Local metrics render exactly what prometheus-client would, in one process and across workers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.ops.local_metrics import LocalCounter, LocalGauge, LocalHistogram, LocalRegistry

BUCKETS = (0.001, 0.01, 0.1, 1.0)
OBSERVED = (0.0005, 0.001, 0.002, 0.05, 0.5, 3.0, 0.01)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def _exercise(counter, gauge, histogram, labelled) -> None:
    counter.inc()
    counter.inc(2.5)
    gauge.set(7)
    gauge.inc(-2)
    for value in OBSERVED:
        histogram.observe(value)
    labelled.labels("a", "200").inc()
    labelled.labels("a", "200").inc()
    labelled.labels("b", "503").inc(4)


def test_render_matches_prometheus_client() -> None:
    """Counters, gauges, histograms and labels come out as prometheus-client's own would."""
    local = LocalRegistry()
    _exercise(
        LocalCounter("t_count", "c", registry=local),
        LocalGauge("t_gauge", "g", registry=local),
        LocalHistogram("t_seconds", "h", buckets=BUCKETS, registry=local),
        LocalCounter("t_requests", "r", ["route", "status"], registry=local),
    )
    ours = CollectorRegistry()
    ours.register(local)

    real = CollectorRegistry()
    _exercise(
        Counter("t_count", "c", registry=real),
        Gauge("t_gauge", "g", registry=real),
        Histogram("t_seconds", "h", buckets=BUCKETS, registry=real),
        Counter("t_requests", "r", ["route", "status"], registry=real),
    )
    expected = _samples(generate_latest(real).decode())
    assert _samples(generate_latest(ours).decode()) == expected
    assert expected[("t_seconds_bucket", (("le", "0.01"),))] == 4  # the check is not vacuous


def test_gauge_function_is_read_at_scrape() -> None:
    """A gauge bound to a function reports the function's value when scraped."""
    local = LocalRegistry()
    depth = [3]
    LocalGauge("t_depth", "d", registry=local).set_function(lambda: depth[0])
    registry = CollectorRegistry()
    registry.register(local)
    depth[0] = 11
    assert _samples(generate_latest(registry).decode())[("t_depth", ())] == 11


def test_flush_adds_deltas_to_multiprocess_files(tmp_path) -> None:
    """Across workers: each flush adds only what changed, and the files sum to the truth."""
    script = textwrap.dedent(
        f"""
        import os, sys
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = {str(tmp_path)!r}
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from gateway.ops.local_metrics import LocalCounter, LocalHistogram, LocalRegistry
        local = LocalRegistry()
        c = LocalCounter("t_requests", "r", ["route"], registry=local)
        h = LocalHistogram("t_seconds", "h", buckets={BUCKETS!r}, registry=local)
        for v in {OBSERVED!r}:
            c.labels("a").inc()
            h.observe(v)
            local.flush()
            local.flush()  # nothing new: adds nothing
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path={str(tmp_path)!r})
        sys.stdout.write(generate_latest(reg).decode())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    found = _samples(out)
    assert found[("t_requests_total", (("route", "a"),))] == len(OBSERVED)
    assert found[("t_seconds_count", ())] == len(OBSERVED)
    assert found[("t_seconds_bucket", (("le", "0.01"),))] == 4
    assert abs(found[("t_seconds_sum", ())] - sum(OBSERVED)) < 1e-9
