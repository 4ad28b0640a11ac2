"""py-spy stacks of one server worker under load, summarised as top functions (`--profile`)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.load import Wrk
from bench.servers import Server


def profile(wrk: Wrk, server: Server, script: Path, extra: list[str], out: Path):
    """Sample the server's stacks with py-spy under load; samples, self and total counts."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pid = server.processes()[-1].pid  # the worker, not a parent that waits
    rec = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", str(int(wrk.duration)), "-r", "250",
         "--nonblocking", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    wrk.run(server.port, script, extra)
    rec.wait()
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n
    return samples, own, total


def summarise(name: str, samples: int, own: dict, total: dict) -> list[str]:
    """Markdown lines: the top functions by self time, and gateway functions by total time."""

    def top(counts: dict, n: int) -> list[str]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
        return [f"    {100 * c / max(samples, 1):5.1f}%  {f}" for f, c in ranked]

    interesting = {f: c for f, c in total.items() if "(gateway/" in f or "(aiohttp/web.py)" in f}
    return [
        f"### {name}: {samples} samples",
        "",
        "self time, top 20:",
        "",
        *top(own, 20),
        "",
        "total time, gateway functions and the loop, top 25:",
        "",
        *top(interesting, 25),
        "",
    ]
