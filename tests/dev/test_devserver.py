"""`gateway dev`: starts everything, answers the printed curl, leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from gateway.dev.wait import free_port, wait_until

pytestmark = pytest.mark.skipif(
    os.environ.get("GATEWAY_SKIP_DEV_TEST") == "1", reason="GATEWAY_SKIP_DEV_TEST=1"
)


def _descendants_and_data_users(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(proc)
    return found


def test_dev_serves_the_printed_curl_and_cleans_up(tmp_path: Path, server_dir: Path) -> None:
    """The printed JWT gets a token from the printed URL; Ctrl-C stops every process it started."""
    data_dir = server_dir / "devdata"
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "dev", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        curl_line = None
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("curl "):
                curl_line = line.strip()
                break
        assert curl_line, (tmp_path / "dev.log").read_text()
        args = shlex.split(curl_line)
        url = next(a for a in args if a.startswith("http://"))
        headers = dict(args[i + 1].split(": ", 1) for i, a in enumerate(args) if a == "-H")
        body = args[args.index("-d") + 1]
        # S310: the URL is the gateway's own loopback address, printed by the process under test.
        request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, data = resp.status, json.loads(resp.read())
        assert status == 200, data
        assert data["dashboard_id"] == "dashboard-789"
        started = _descendants_and_data_users(data_dir)
        assert started, "expected embedded servers using the data dir"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        proc.stdout.close()
        log.close()
    assert proc.returncode == 0
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not _descendants_and_data_users(data_dir), timeout=10, interval=0.1)
    assert _descendants_and_data_users(data_dir) == []
