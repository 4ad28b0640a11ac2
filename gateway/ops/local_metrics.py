"""Metrics counted in plain Python numbers per worker, handed to prometheus-client at scrape time.

prometheus-client takes a lock and (with `--workers N`) writes a memory-mapped file on every
`inc()`/`observe()`: 3-12 µs per token request. Here a request only adds to an attribute of a
slots object; a scrape (one process) or a flush about once a second (several workers) turns the
numbers into prometheus-client's families or values. The constructors take prometheus-client's
arguments, so a metric is declared the same way as before.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

Labels = tuple[str, ...]


class _Value:
    """One labelled series: a number (counter, gauge) that callers add to or set."""

    __slots__ = ("function", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.function: Callable[[], float] | None = None

    def inc(self, amount: float = 1.0) -> None:
        """Add to a counter or gauge."""
        self.value += amount

    def set(self, value: float) -> None:
        """Set a gauge."""
        self.value = value

    def set_function(self, read: Callable[[], float]) -> None:
        """Read a gauge's value from `read` at scrape (and flush) time."""
        self.function = read

    def read(self) -> float:
        """The current value."""
        return self.value if self.function is None else float(self.function())


class _Buckets:
    """One labelled histogram series: cumulative counts per upper bound, and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount


class _Metric:
    """What every local metric shares: a name, labels, and one series per label values."""

    kind = ""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: LocalRegistry | None = None,
        **options: Any,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.options = options
        self.series: dict[Labels, Any] = {}
        self._unlabelled = None if self.labelnames else self.labels()
        if registry is not None:
            registry.register(self)

    def _new(self) -> Any:
        return _Value()

    def labels(self, *values: str) -> Any:
        """The series for these label values (made on first use, then the same object)."""
        series = self.series.get(values)
        if series is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            series = self.series[values] = self._new()
        return series


class LocalCounter(_Metric):
    """A counter; `inc()` on it or on `labels(...)`."""

    kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        """Add to the unlabelled counter."""
        self._unlabelled.value += amount  # type: ignore[union-attr]


class LocalGauge(_Metric):
    """A gauge; `set()`, `inc()` or `set_function()`."""

    kind = "gauge"

    def set(self, value: float) -> None:
        """Set the unlabelled gauge."""
        self._unlabelled.value = value  # type: ignore[union-attr]

    def inc(self, amount: float = 1.0) -> None:
        """Add to the unlabelled gauge."""
        self._unlabelled.value += amount  # type: ignore[union-attr]

    def set_function(self, read: Callable[[], float]) -> None:
        """Read the unlabelled gauge from `read` when scraped."""
        self._unlabelled.function = read  # type: ignore[union-attr]


class LocalHistogram(_Metric):
    """A histogram with fixed buckets; `observe()`."""

    kind = "histogram"

    def __init__(self, *args: Any, buckets: Sequence[float] = (), **kwargs: Any) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        super().__init__(*args, **kwargs)

    def _new(self) -> Any:
        return _Buckets(self.bounds)

    def observe(self, amount: float) -> None:
        """Count one observation of the unlabelled histogram."""
        self._unlabelled.observe(amount)  # type: ignore[union-attr]


def _bucket_label(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


class LocalRegistry(Collector):
    """The worker's local metrics, as a prometheus-client collector and as a flush source."""

    def __init__(self) -> None:
        self.metrics: list[_Metric] = []
        # Multiprocess mode only: the prometheus-client twin of each metric, and what was sent.
        self._twins: dict[str, Any] = {}
        self._sent: dict[tuple[str, Labels], Any] = {}

    def register(self, metric: _Metric) -> None:
        """Add a metric (its constructor does this when given the registry)."""
        self.metrics.append(metric)

    def collect(self) -> Iterator[Any]:
        """The families prometheus-client renders (one process: this worker's own numbers)."""
        for metric in self.metrics:
            yield self._family(metric)

    def _family(self, metric: _Metric) -> Any:
        labels = list(metric.labelnames)
        if isinstance(metric, LocalHistogram):
            family = HistogramMetricFamily(metric.name, metric.documentation, labels=labels)
            for values, series in metric.series.items():
                running, buckets = 0, []
                for bound, count in zip((*metric.bounds, math.inf), series.counts, strict=True):
                    running += count
                    buckets.append((_bucket_label(bound), running))
                family.add_metric(list(values), buckets, series.sum)
            return family
        cls = CounterMetricFamily if isinstance(metric, LocalCounter) else GaugeMetricFamily
        family = cls(metric.name, metric.documentation, labels=labels)
        for values, series in metric.series.items():
            family.add_metric(list(values), series.read())
        return family

    def flush(self) -> None:
        """Several workers: add what changed since the last flush to prometheus-client's files."""
        for metric in self.metrics:
            twin = self._twins.get(metric.name)
            if twin is None:
                twin = self._twins[metric.name] = _twin(metric)
            for values, series in list(metric.series.items()):
                child = twin.labels(*values) if values else twin
                key = (metric.name, values)
                if isinstance(metric, LocalHistogram):
                    self._flush_histogram(child, key, series)
                elif isinstance(metric, LocalCounter):
                    delta = series.value - self._sent.get(key, 0.0)
                    if delta:
                        child.inc(delta)
                        self._sent[key] = series.value
                else:
                    child.set(series.read())

    def _flush_histogram(self, child: Histogram, key: tuple[str, Labels], series: _Buckets) -> None:
        sent_counts, sent_sum = self._sent.get(key, ([0] * len(series.counts), 0.0))
        counts = list(series.counts)
        if counts == sent_counts:
            return
        # prometheus-client has no public "add these bucket counts": its child keeps one value
        # per bucket and one for the sum, and those are what its multiprocess files hold.
        for i, (now, before) in enumerate(zip(counts, sent_counts, strict=True)):
            if now != before:
                child._buckets[i].inc(now - before)
        child._sum.inc(series.sum - sent_sum)
        self._sent[key] = (counts, series.sum)


def _twin(metric: _Metric) -> Any:
    """The prometheus-client metric (default registry: multiprocess files) mirroring `metric`."""
    registry = CollectorRegistry()  # unused: a multiprocess scrape reads the files
    kwargs: dict[str, Any] = {"labelnames": metric.labelnames, "registry": registry}
    if isinstance(metric, LocalHistogram):
        return Histogram(metric.name, metric.documentation, buckets=metric.bounds, **kwargs)
    if isinstance(metric, LocalCounter):
        return Counter(metric.name, metric.documentation, **kwargs)
    mode = metric.options.get("multiprocess_mode", "all")
    return Gauge(metric.name, metric.documentation, multiprocess_mode=mode, **kwargs)
