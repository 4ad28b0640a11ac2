"""`gateway serve`: run the app on uvloop, in one process or several sharing the port."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from typing import TypeAlias

from aiohttp import web

from gateway.ops.logs import configure_logging
from gateway.ops.multiproc import enable as enable_shared_metrics
from gateway.ops.multiproc import finish as finish_shared_metrics
from gateway.ops.runner import run
from gateway.settings import Settings

log = logging.getLogger(__name__)


AppFactory: TypeAlias = Callable[[Settings], web.Application]


def server_limits(settings: Settings) -> dict[str, int]:
    """Parser limits for the server runner (`gateway serve` and the tests use the same).

    The request line and each header are capped at GATEWAY_MAX_HEADER_SIZE (default 16 KiB):
    aiohttp's own 8,190 bytes would cut a legal 8 KiB bearer token short with a bare 400 that
    bypasses the middleware and the audit row.
    """
    return {
        "max_line_size": settings.max_header_size,
        "max_field_size": settings.max_header_size,
    }


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional on platforms without it
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# How often objects that outlived the young generations are frozen (see _freeze_survivors). Each
# collection stalls every request for as long as it takes, in proportion to what was made since
# the last: over one mix benchmark run, every second gave pauses of up to 16-21 ms (160-171 ms in
# all), every tenth of a second up to 3.6 ms (231 ms in all), timed with gc.callbacks.
GC_FREEZE_INTERVAL = 0.1


async def _settle_gc(_app: web.Application) -> AsyncIterator[None]:
    # Everything alive after start-up lives until shutdown: freezing it keeps the collector from
    # rescanning it, and a higher first threshold spaces out collections of per-request garbage.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    task = asyncio.create_task(_freeze_survivors(), name="gc-freeze")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _freeze_survivors() -> None:
    """Freeze, every GC_FREEZE_INTERVAL, what survived the young collections (cache entries).

    A full collection walks every tracked object, and the in-process caches hold hundreds of
    thousands (verified callers, tokens, buckets): measured, one stalled every request for
    ~140 ms under the mix benchmark. Frozen objects are still freed by reference counting when
    dropped; only a cycle that dies after it was frozen is never collected, and the objects that
    live that long here (cache entries) hold no cycles. Young cyclic garbage is collected first.
    """
    while True:
        await asyncio.sleep(GC_FREEZE_INTERVAL)
        gc.collect(1)
        gc.freeze()


def run_worker(
    settings: Settings,
    factory: AppFactory,
    sock: socket.socket | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and run every cleanup.

    `on_listening` runs once the socket accepts connections.
    """
    app = factory(settings)
    app.cleanup_ctx.append(_settle_gc)
    # Not web.run_app: it cannot give connections the app's own handler (ops/runner.py).
    run(
        app,
        loop=_new_loop(),
        host=None if sock else settings.host,
        port=None if sock else settings.port,
        sock=sock,
        on_listening=on_listening,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        **server_limits(settings),
    )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _child(settings: Settings, factory: AppFactory, sock: socket.socket | None, port: int) -> None:
    configure_logging(settings.log_level, settings.log_format)
    if sock is None:
        # A listening socket of this worker's own in the port's SO_REUSEPORT group: the kernel
        # spreads new connections over the group by a hash of the 4-tuple, where with one shared
        # socket the worker that wakes first takes each connection.
        sock = socket.create_server(
            (settings.host, port), family=_family(settings.host), reuse_port=True, backlog=1024
        )
    run_worker(settings, factory, sock)


def _reserve_port(settings: Settings) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: it resolves port 0 and fails early if taken."""
    sock = socket.socket(_family(settings.host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.host, settings.port))
    # Only listening sockets receive connections, so this one never takes any.
    return sock


def serve(settings: Settings, factory: AppFactory, *, workers: int = 1) -> int:
    """Run the service; with several workers, each is a process with its own pools."""
    if workers == 1:
        log.info("listening on %s:%d", settings.host, settings.port)
        run_worker(settings, factory)
        return 0
    shared: socket.socket | None = None
    if hasattr(socket, "SO_REUSEPORT"):
        holder = _reserve_port(settings)
    else:
        # No SO_REUSEPORT: one listening socket inherited by every worker.
        holder = shared = socket.create_server((settings.host, settings.port), backlog=1024)
        shared.set_inheritable(True)
    port = holder.getsockname()[1]
    # Every worker writes its metrics to shared files, so /metrics from any worker covers all.
    metrics_dir, created = enable_shared_metrics()
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_child, args=(settings, factory, shared, port), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    log.info("listening on %s:%d with %d workers", settings.host, port, workers)

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    holder.close()
    finish_shared_metrics(metrics_dir, created, (p.pid for p in procs))
    failed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    return 1 if failed else 0
