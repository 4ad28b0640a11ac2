"""Prometheus metrics, in a registry of the app's own (so apps in one process never clash).

With several worker processes (`gateway serve --workers N`) prometheus-client's multiprocess mode
is on: every worker writes its values to files under PROMETHEUS_MULTIPROC_DIR and whichever worker
answers `/metrics` adds up all of them. See gateway/multiproc.py for how that directory is set up.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.ops.local_metrics import LocalCounter as Counter
from gateway.ops.local_metrics import LocalGauge as Gauge
from gateway.ops.local_metrics import LocalHistogram as Histogram
from gateway.ops.local_metrics import LocalRegistry

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self.local = r = LocalRegistry()
        # What a one-process scrape renders: the local numbers, folded in at scrape time.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(r)
        self.requests = Counter(
            "gateway_requests", "Requests answered", ["route", "status", "event"], registry=r
        )
        self._token_series: dict[tuple[int, str], Any] = {}
        self.latency = Histogram(
            "gateway_request_seconds",
            "Time to answer a token request",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.cache = Counter("gateway_token_cache", "Token cache lookups", ["result"], registry=r)
        self.cache_hits = self.cache.labels("hit")
        self.cache_misses = self.cache.labels("miss")
        self.cache_lookups = Counter(
            "gateway_cache_lookups",
            "Cache lookups by tier (local, redis) and result (hit, miss, error, skipped)",
            ["tier", "result"],
            registry=r,
        )
        self.mints = Counter("gateway_tokens_minted", "Embed tokens minted", registry=r)
        self.parser_refusals = Counter(
            "gateway_parser_refusals",
            "Requests the HTTP parser refused before any handler ran, by reason",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "gateway_jwt_failures", "Caller JWT verification failures", ["reason"], registry=r
        )
        self.rate_limit = Counter(
            "gateway_rate_limit_decisions",
            "Rate limiter decisions (limiter: mint, request; decision: allowed, limited,"
            " failed_open, failed_closed)",
            ["limiter", "decision"],
            registry=r,
        )
        self.audit_written = Counter(
            "gateway_audit_events_written", "Audit events written to PostgreSQL", registry=r
        )
        self.audit_dropped = Counter(
            "gateway_audit_events_dropped",
            "Audit events lost: neither written nor spooled",
            registry=r,
        )
        self.audit_spooled = Counter(
            "gateway_audit_events_spooled",
            "Audit events kept in the journal only (the queue was full), shipped from the file",
            registry=r,
        )
        self.audit_replayed = Counter(
            "gateway_audit_events_replayed",
            "Audit events written to PostgreSQL from journal files",
            registry=r,
        )
        self.audit_memory_only = Counter(
            "gateway_audit_events_memory_only",
            "Audit events the journal could not take (full disk), held in memory only",
            registry=r,
        )
        self.audit_quarantined = Counter(
            "gateway_audit_events_quarantined",
            "Audit rows PostgreSQL refused for their content, set aside in quarantine.copy",
            registry=r,
        )
        self.audit_spool_bytes = Gauge(
            "gateway_audit_spool_bytes",
            "Bytes in the audit journal (the spool) not yet known to be in PostgreSQL",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.audit_journal_segments = Gauge(
            "gateway_audit_journal_segments",
            "Audit journal segment files held by the workers",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.audit_oldest_unshipped = Gauge(
            "gateway_audit_oldest_unshipped_seconds",
            "Age of the oldest audit event not yet in PostgreSQL (0 when none waits)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.audit_degraded = Gauge(
            "gateway_audit_degraded",
            "1 while audit writes to PostgreSQL fail (events wait in the journal and memory)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.audit_spool_failing = Gauge(
            "gateway_audit_spool_failing",
            "1 while the audit journal (the spool) cannot be written",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.audit_write_failures = Counter(
            "gateway_audit_write_failures", "Failed audit batch writes", registry=r
        )
        self.audit_write_seconds = Histogram(
            "gateway_audit_write_seconds",
            "Time to write one audit batch to PostgreSQL",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.audit_batch_size = Histogram(
            "gateway_audit_batch_events",
            "Events per audit batch written",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=r,
        )
        self.audit_queue = Gauge(
            "gateway_audit_queue_depth",
            "Audit events waiting to be written",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.dependency_errors = Counter(
            "gateway_dependency_errors", "Failed calls to a dependency", ["dependency"], registry=r
        )
        self.redis_config_errors = Counter(
            "gateway_redis_config_errors",
            "Redis errors meaning the topology does not match the configuration"
            " (moved, crossslot, readonly, unknown_command, clusterdown, cluster)",
            ["kind"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "gateway_breaker_state",
            "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open (worst worker)",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.breaker_transitions = Counter(
            "gateway_breaker_transitions",
            "Circuit breaker state changes",
            ["dependency", "state"],
            registry=r,
        )
        self.jwks_fetches = Gauge(
            "gateway_jwks_fetches",
            "JWKS fetches attempted since start (a running count, read at scrape)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.jwks_fetch_failures = Gauge(
            "gateway_jwks_fetch_failures",
            "JWKS fetches that failed since start (a running count, read at scrape)",
            registry=r,
            multiprocess_mode="livesum",
        )

    def count(self, counter: Counter, *labels: str) -> None:
        """Increment a labelled counter by one."""
        counter.labels(*labels).value += 1

    def counting(self, counter: Counter, *labels: str) -> Callable[..., None]:
        """A function counting one more in `counter`'s series of `labels` plus its arguments;
        each series is looked up once (the hot path's counts)."""
        series: dict[tuple[str, ...], Any] = {}

        def count(*rest: str) -> None:
            found = series.get(rest)
            if found is None:
                found = series[rest] = counter.labels(*labels, *rest)
            found.value += 1

        return count

    def token_request(self, status: int, event: str, seconds: float) -> None:
        """Count one token request and observe its latency (the series looked up by a dict)."""
        series = self._token_series.get((status, event))
        if series is None:
            series = self.requests.labels("token", str(status), event)
            self._token_series[(status, event)] = series
        series.value += 1
        self.latency.observe(seconds)

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Report the audit queue depth at scrape time."""
        self.audit_queue.set_function(depth)

    def track_journal(
        self,
        *,
        pending_bytes: Callable[[], int],
        segments: Callable[[], int],
        oldest_age: Callable[[], float],
        failing: Callable[[], bool],
    ) -> None:
        """Report the audit journal at scrape time (in every worker, with --workers N too)."""
        self.audit_spool_bytes.set_function(pending_bytes)
        self.audit_journal_segments.set_function(segments)
        self.audit_oldest_unshipped.set_function(oldest_age)
        self.audit_spool_failing.set_function(lambda: 1 if failing() else 0)

    def track_jwks(self, fetches: Callable[[], int], failures: Callable[[], int]) -> None:
        """Report the JWKS fetcher's attempts and failures at scrape time."""
        self.jwks_fetches.set_function(fetches)
        self.jwks_fetch_failures.set_function(failures)

    def refresh(self) -> None:
        """Several workers: copy this worker's numbers to the shared files (every second)."""
        if multiprocess():
            self.local.flush()

    def breaker_changed(self, dependency: str, _old: Enum, new: Enum) -> None:
        """Listener for CircuitBreaker state changes."""
        self.breaker_state.labels(dependency).set(new.value)
        self.breaker_transitions.labels(dependency, new.name.lower()).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition: this process's, or every worker's (multiprocess mode)."""
        if multiprocess():
            self.local.flush()
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])
            return generate_latest(registry)
        return generate_latest(self.registry)


def multiprocess() -> bool:
    """Is prometheus-client writing values to shared files (set before it was imported)?"""
    from prometheus_client import values  # noqa: PLC0415 - reads the class chosen at start

    return bool(os.environ.get(MULTIPROC_ENV)) and values.ValueClass is not values.MutexValue
