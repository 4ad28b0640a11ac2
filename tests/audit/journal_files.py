"""Looking at the audit journal's files from a test."""

from __future__ import annotations

from pathlib import Path


def journal_lines(directory: Path) -> int:
    """Complete event lines in the audit journal's segment files."""
    if not directory.is_dir():
        return 0
    return sum(p.read_bytes().count(b"\n") for p in directory.glob("audit-*.copy"))
