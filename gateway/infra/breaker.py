"""A circuit breaker: after repeated failures, stop calling a dependency for a while.

While it is open no caller waits for a timeout: `allow()` answers False at once and the caller
takes its fallback (a cache miss, a fail-open limiter). After `cooldown` seconds one call is let
through as a probe (half-open); its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

log = logging.getLogger(__name__)


class State(Enum):
    """Breaker states; the value is what the state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


StateListener = Callable[[str, State, State], None]
T = TypeVar("T")

# Breakers whose dependency already failed in the current request (each request is a task with
# its own context): later calls in the same request skip at once, so no request waits more than
# one deadline per dependency, even before enough failures have opened the breaker.
_failed_in_request: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "failed_in_request", default=frozenset()
)


class CircuitOpen(Exception):
    """The breaker is open: the dependency was not called."""


class CircuitBreaker:
    """Counts consecutive failures of one dependency; one log line per state change."""

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._on_failure = on_failure
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._last_error: BaseException | None = None

    @property
    def state(self) -> State:
        """The current state (an open breaker past its cooldown still reads OPEN until probed)."""
        return self._state

    def allow(self) -> bool:
        """May a call go to the dependency now? At most one probe at a time while half-open."""
        if self._state is State.CLOSED:
            return True
        if self._state is State.OPEN:
            if self._clock() - self._opened_at < self._cooldown:
                return False
            self._change(State.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        """The call worked: a probe's success closes the breaker."""
        self._failures = 0
        self._probing = False
        self._last_error = None
        if self._state is not State.CLOSED:
            self._change(State.CLOSED)

    def failure(self, error: BaseException | None = None) -> None:
        """A call failed: open after `threshold` failed round trips in a row or a failed probe.

        Calls that shared one round trip (a Redis batch) fail with one error object: the
        dependency failed once, so it counts once; otherwise one late batch of concurrent
        requests would open the breaker by itself. `on_failure` still hears of every call.
        """
        if self._on_failure is not None:
            self._on_failure(self.name)
        if error is not None and error is self._last_error:
            return
        self._last_error = error
        self._failures += 1
        self._probing = False
        if self._state is State.HALF_OPEN or (
            self._state is State.CLOSED and self._failures >= self._threshold
        ):
            self._opened_at = self._clock()
            self._change(State.OPEN)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        timeout: float | None,
        errors: tuple[type[BaseException], ...],
    ) -> T:
        """Await `fn()` within `timeout`, counting `errors` and the deadline as failures.

        `timeout=None` when `fn` keeps its own deadline (a batch of Redis commands shares one
        timer, raising TimeoutError). Raises CircuitOpen without calling `fn` while open.
        """
        if id(self) in _failed_in_request.get() or not self.allow():
            raise CircuitOpen(self.name)
        try:
            if timeout is None:
                result = await fn()
            else:
                async with asyncio.timeout(timeout):
                    result = await fn()
        except (*errors, TimeoutError) as exc:
            self.failure(exc)
            _failed_in_request.set(_failed_in_request.get() | {id(self)})
            raise
        except BaseException:
            # Cancelled (the client went away) or a bug: no verdict, but free the probe slot.
            self._probing = False
            raise
        self.success()
        return result

    def _change(self, new: State) -> None:
        old, self._state = self._state, new
        level = logging.WARNING if new is State.OPEN else logging.INFO
        log.log(
            level,
            "circuit breaker %s: %s -> %s",
            self.name,
            old.name.lower(),
            new.name.lower(),
            extra={"dependency": self.name, "state": new.name.lower()},
        )
        if self._on_change is not None:
            self._on_change(self.name, old, new)
