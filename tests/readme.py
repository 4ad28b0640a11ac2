"""The README's marked examples: find them, compare them with real output, rewrite them.

A fenced block right after `<!-- example: NAME -->` is an example; tests/test_readme.py makes
the real output of each and compares it with the block, after `normalise` has replaced what
changes from run to run (times, ids, tokens, ports). `README_WRITE=1 python -m pytest
tests/test_readme.py` writes the fresh outputs into the README instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n(```[a-z]*\n)(.*?)(```)", re.DOTALL)
# What differs between two honest runs, each with a stand-in.
_VOLATILE = [
    (re.compile(r"eyJ[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*"), "<token>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?(\+00(:00)?)?"), "<time>"),
    (re.compile(r"_p\d{8}"), "_p<day>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r'"expires_at":( ?)\d+'), r'"expires_at":\1<epoch>'),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"gw_readme_[0-9a-f]+"), "<database>"),
]


def examples(text: str | None = None) -> dict[str, str]:
    """Example name -> the block's text."""
    text = README.read_text() if text is None else text
    return {m.group(1): m.group(3) for m in _BLOCK.finditer(text)}


def normalise(text: str) -> str:
    """The text with every run-to-run difference replaced by a stand-in."""
    for pattern, stand_in in _VOLATILE:
        text = pattern.sub(stand_in, text)
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines()) + "\n"


def check(name: str, actual: str) -> None:
    """Assert the README's example `name` is `actual` (or, with README_WRITE=1, make it so)."""
    # Trailing blanks (psql pads its header) would not survive an editor.
    actual = "\n".join(line.rstrip() for line in actual.rstrip().splitlines()) + "\n"
    if os.environ.get("README_WRITE") == "1":
        text = README.read_text()

        def put(m: re.Match[str]) -> str:
            if m.group(1) != name:
                return m.group(0)
            return f"<!-- example: {name} -->\n{m.group(2)}{actual}{m.group(4)}"

        README.write_text(_BLOCK.sub(put, text))
        return
    documented = examples().get(name)
    assert documented is not None, f"README has no <!-- example: {name} --> block"
    assert normalise(documented) == normalise(actual), (
        f"README example {name!r} is not what the command prints; run"
        " README_WRITE=1 python -m pytest tests/test_readme.py to refresh it. Real output:\n"
        + actual
    )
