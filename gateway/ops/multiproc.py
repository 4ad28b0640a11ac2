"""Metrics across worker processes: prometheus-client's multiprocess mode, set up by `serve`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gateway.ops.metrics import MULTIPROC_ENV


def enable() -> tuple[str, bool]:
    """Before the workers start: a metrics directory for them all, and values written there.

    Uses PROMETHEUS_MULTIPROC_DIR when the operator set it (emptied of a previous run's files),
    else a new temporary directory. Returns the path and whether we created it.
    """
    from prometheus_client import values  # noqa: PLC0415 - switched before any worker exists

    path = os.environ.get(MULTIPROC_ENV)
    created = not path
    if not path:
        path = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ[MULTIPROC_ENV] = path
    else:
        Path(path).mkdir(parents=True, exist_ok=True)
        # Files from a previous run would be added to this run's counters.
        for stale in Path(path).glob("*.db"):
            stale.unlink()
    # prometheus-client picks its value class at import; pick again now the directory is known.
    values.ValueClass = values.get_value_class()
    return path, created


def finish(path: str, created: bool, pids: Iterable[int | None]) -> None:
    """After the workers exit: drop their live gauges, and our temporary directory."""
    from prometheus_client import multiprocess  # noqa: PLC0415 - only in multiprocess mode

    for pid in pids:
        if pid is not None:
            multiprocess.mark_process_dead(pid, path)
    if created:
        shutil.rmtree(path, ignore_errors=True)
