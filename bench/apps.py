"""The gateway with components switched off, for measuring what each costs (bench only).

`python -m bench.apps --off audit --off metrics [--workers N]` serves `create_app(settings)` from
the environment, as `gateway serve` does, with the named components replaced on the app by
stand-ins that do nothing. Nothing in gateway/ changes: the stand-ins go in through the app keys of
gateway/http/state.py. To add a switch, add one `Switch` to SWITCHES.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from gateway.app import create_app
from gateway.http.state import AUDIT, METRICS, REQUEST_LIMITER
from gateway.infra.ratelimit import RequestLimiter
from gateway.ops.logs import configure_logging
from gateway.ops.metrics import Metrics
from gateway.ops.serve import serve
from gateway.settings import Settings, load_settings


class _Sink:
    """Absorbs any attribute access and call: `x.labels("a").inc()` does nothing."""

    def __getattr__(self, _name: str) -> _Sink:
        return self

    def __call__(self, *_args: Any, **_kwargs: Any) -> _Sink:
        return self


class _NoSeries:
    """A series that keeps nothing."""

    def inc(self, _amount: float = 1.0) -> None:
        """Count nothing."""


def _count_nothing(*_args: str) -> None:
    pass


class NullMetrics(_Sink):
    """Metrics that count nothing; /metrics says they are off. What the token path touches on
    every request is a plain attribute or method here, so switching metrics off never costs
    more than counting (the sink's `__getattr__` would)."""

    cache_hits = cache_misses = _NoSeries()

    def token_request(self, *_args: Any) -> None:
        """The token path's count and latency: nothing."""

    def counting(self, *_labels: Any) -> Any:
        """Counting functions handed out at start-up (lookups, decisions): count nothing."""
        return _count_nothing

    def render(self) -> bytes:
        """A comment line instead of the exposition."""
        return b"# metrics switched off by bench/apps.py\n"


class NullAuditWriter:
    """Drops every event at `emit`; anything else goes to the real writer (which stays idle)."""

    def __init__(self, real: object) -> None:
        if not all(callable(getattr(real, name, None)) for name in ("emit", "emit_row")):
            # Fail loudly rather than measure a switch that no longer switches anything off.
            raise RuntimeError("bench: the audit writer's emit API changed; update bench/apps.py")
        self._real = real
        self.dropped = 0

    def emit(self, _event: object) -> bool:
        """Drop the event; True: the answer may go out (the writer's emit says so, fail-closed)."""
        self.dropped += 1
        return True

    def emit_row(self, _row: object) -> bool:
        """Drop the row (the token path's emit); True, as `emit`."""
        self.dropped += 1
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class NoRequestLimit:
    """A request limiter that lets every request through without keeping any state."""

    def check(self, *_args: Any, **_kwargs: Any) -> None:
        """Allow."""


def _metrics_off(app: web.Application) -> None:
    # Before start-up: every cleanup context reads app[METRICS] when it starts. The request
    # limiter, made with the app, was handed its counting function then.
    app[METRICS] = cast(Metrics, NullMetrics())
    app[REQUEST_LIMITER].on_decision = lambda _limiter, _decision: None


def _limiter_off(app: web.Application) -> None:
    app[REQUEST_LIMITER] = cast(RequestLimiter, NoRequestLimit())


async def _null_audit(app: web.Application) -> AsyncIterator[None]:
    # The writer is made by its own cleanup context; this one starts after it and puts a
    # stand-in in front. The real writer's queue stays empty, and it is closed as usual.
    app[AUDIT] = cast(Any, NullAuditWriter(app[AUDIT]))
    yield


def _audit_off(app: web.Application) -> None:
    app.cleanup_ctx.append(_null_audit)


class NoJournalWrites:
    """The writer's journal with its writes skipped: `append` hands back one in-memory segment.

    Only for the hot path's cost: a writer whose queue fills would ship from a file not written.
    """

    def __init__(self, real: Any) -> None:
        from gateway.audit.journal import Segment  # noqa: PLC0415 - builds with a journal only

        self._real = real
        self._seg = Segment(path=real.directory / "bench-no-journal", fd=-1)

    def append(self, _line: bytes) -> Any:
        """Pretend the line was written."""
        return self._seg

    def committed(self, seg: Any) -> None:
        """Nothing to free for the pretend segment."""
        if seg is not self._seg:
            self._real.committed(seg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def _no_journal(app: web.Application) -> AsyncIterator[None]:
    writer = app[AUDIT]
    if not hasattr(writer, "_journal"):
        raise RuntimeError("bench: the audit writer has no _journal; update bench/apps.py")
    # The writer keeps its journal privately; bench code may reach in, the gateway never does.
    writer._journal = NoJournalWrites(writer._journal)
    yield


def _journal_off(app: web.Application) -> None:
    app.cleanup_ctx.append(_no_journal)


async def _written_nowhere(_pool: object, _lines: object, *, fresh: bool = False) -> None:
    """A COPY that sends nothing: the batch counts as written."""


async def _no_copy(app: web.Application) -> AsyncIterator[None]:
    writer = app[AUDIT]
    if not hasattr(writer, "_write_fn"):
        raise RuntimeError("bench: the audit writer has no _write_fn; update bench/apps.py")
    writer._write_fn = _written_nowhere  # bench code may reach in, the gateway never does
    yield


def _copy_off(app: web.Application) -> None:
    app.cleanup_ctx.append(_no_copy)


def _has_journal() -> bool:
    return importlib.util.find_spec("gateway.audit.journal") is not None


@dataclass(frozen=True)
class Switch:
    """A component that can be switched off; `apply` is None while the build has no such part."""

    name: str
    removes: str
    apply: Callable[[web.Application], None] | None


SWITCHES = {
    s.name: s
    for s in (
        Switch(
            "audit",
            "the audit writer: queueing, COPY encoding and writing (the event is still built)",
            _audit_off,
        ),
        Switch(
            "copy",
            "the audit writer's COPY to PostgreSQL (rows still encoded, journaled and queued)",
            _copy_off,
        ),
        Switch(
            "metrics", "the metrics object: every count and observation per request", _metrics_off
        ),
        Switch("limiter", "the per-worker request limiter (its token buckets)", _limiter_off),
        Switch(
            "journal",
            "the audit journal's write per event (the event is still encoded and queued)"
            if _has_journal()
            else "the audit journal's write (placeholder: the journal is not in this build yet)",
            _journal_off if _has_journal() else None,
        ),
    )
}


def available() -> list[str]:
    """Names of the switches this build can apply."""
    return [name for name, s in SWITCHES.items() if s.apply is not None]


def factory(off: tuple[str, ...]) -> Callable[[Settings], web.Application]:
    """An app factory: `create_app(settings)` with the `off` components replaced."""
    unknown = [name for name in off if name not in SWITCHES]
    if unknown:
        raise SystemExit(f"bench.apps: unknown switch {unknown}; known: {', '.join(SWITCHES)}")
    placeholders = [name for name in off if SWITCHES[name].apply is None]
    if placeholders:
        raise SystemExit(f"bench.apps: {placeholders}: nothing to switch off in this build")

    def build(settings: Settings) -> web.Application:
        app = create_app(settings)
        for name in off:
            apply = SWITCHES[name].apply
            assert apply is not None  # checked above
            apply(app)
        return app

    return build


def main(argv: list[str] | None = None) -> int:
    """Serve the switched gateway from the environment, like `gateway serve`."""
    parser = argparse.ArgumentParser(prog="python -m bench.apps", description=__doc__)
    parser.add_argument("--off", action="append", default=[], choices=sorted(SWITCHES))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings, factory(tuple(args.off)), workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
