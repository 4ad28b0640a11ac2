"""Waiting for local things: a free port, a port going up or down, any condition.

The one polling helper of `gateway dev`, the embedded servers and the tests (sync and async faces
over the same deadline rule). Public and stable: tests/topology.py builds on these names.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable

__all__ = ["HOST", "eventually", "free_port", "port_open", "wait_port", "wait_until"]

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 20.0
DEFAULT_INTERVAL = 0.02


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """Whether `host:port` accepts a TCP connection right now."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str = "condition",
) -> None:
    """Call `check()` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g}s")
        time.sleep(interval)


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    """Await `check()` (sync or async) until it is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(interval)


def wait_port(
    port: int, *, up: bool = True, host: str = HOST, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Wait until `host:port` accepts connections (up) or refuses them (not up)."""
    state = "up" if up else "down"
    wait_until(lambda: port_open(port, host) is up, timeout=timeout, what=f"port {port} {state}")
