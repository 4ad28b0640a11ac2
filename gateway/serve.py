"""`gateway serve`: run the app on uvloop, in one process or several sharing the port."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket

from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.logs import configure_logging
from gateway.multiproc import enable as enable_shared_metrics
from gateway.multiproc import finish as finish_shared_metrics

log = logging.getLogger(__name__)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # noqa: PLC0415 - optional on platforms without it
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_worker(settings: Settings, sock: socket.socket | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and run every cleanup."""
    app = create_app(settings)
    web.run_app(
        app,
        host=None if sock else settings.host,
        port=None if sock else settings.port,
        sock=sock,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        # Request line and each header are capped; a larger one gets 400 before any handler runs.
        max_line_size=settings.max_header_size,
        max_field_size=settings.max_header_size,
        loop=_new_loop(),
        print=None,
        handle_signals=True,
    )


def _child(settings: Settings, sock: socket.socket) -> None:
    configure_logging(settings.log_level, settings.log_format)
    run_worker(settings, sock)


def serve(settings: Settings, *, workers: int = 1) -> int:
    """Run the service; with several workers, each is a process with its own pools."""
    if workers == 1:
        log.info("listening on %s:%d", settings.host, settings.port)
        run_worker(settings)
        return 0
    # One listening socket inherited by every worker: the kernel hands each connection to one.
    sock = socket.create_server(
        (settings.host, settings.port), reuse_port=hasattr(socket, "SO_REUSEPORT"), backlog=1024
    )
    sock.set_inheritable(True)
    # Every worker writes its metrics to shared files, so /metrics from any worker covers all.
    metrics_dir, created = enable_shared_metrics()
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_child, args=(settings, sock), daemon=False) for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    log.info("listening on %s:%d with %d workers", settings.host, settings.port, workers)

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    sock.close()
    finish_shared_metrics(metrics_dir, created, (p.pid for p in procs))
    failed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGTERM, -signal.SIGINT)]
    return 1 if failed else 0
