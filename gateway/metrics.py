"""Prometheus metrics, in a registry of the app's own (so apps in one process never clash)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Every metric the gateway exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gateway_requests", "Requests answered", ["route", "status", "event"], registry=r
        )
        self.latency = Histogram(
            "gateway_request_seconds",
            "Time to answer a token request",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.cache = Counter("gateway_token_cache", "Token cache lookups", ["result"], registry=r)
        self.mints = Counter("gateway_tokens_minted", "Embed tokens minted", registry=r)
        self.auth_failures = Counter(
            "gateway_jwt_failures", "Caller JWT verification failures", ["reason"], registry=r
        )
        self.audit_written = Counter(
            "gateway_audit_events_written", "Audit events written to PostgreSQL", registry=r
        )
        self.audit_dropped = Counter(
            "gateway_audit_events_dropped", "Audit events lost (queue full)", registry=r
        )
        self.audit_queue = Gauge(
            "gateway_audit_queue_depth", "Audit events waiting to be written", registry=r
        )
        self.dependency_errors = Counter(
            "gateway_dependency_errors", "Failed calls to a dependency", ["dependency"], registry=r
        )

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Report the audit queue depth at scrape time."""
        self.audit_queue.set_function(depth)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
