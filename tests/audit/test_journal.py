"""The journal's files: one line per event, freed once committed, orphans adopted, torn lines."""

from __future__ import annotations

import os
import signal
from collections import deque
from pathlib import Path

from gateway.audit import journal as journal_module
from gateway.audit.event import AuditEvent, copy_line
from gateway.audit.journal import RECYCLE_AT, Fsync, Journal, Segment, read_lines
from tests.audit.journal_files import journal_lines

LINES = [
    copy_line(AuditEvent(event="token_reused", status=200, request_id=f"r-{n}")) for n in range(10)
]


def line(n: int) -> bytes:
    return LINES[n]


def test_appends_are_read_back_in_order_across_segments(tmp_path) -> None:
    """Lines come back in the order appended, even across rotated segments."""
    journal = Journal(tmp_path, max_segment_bytes=400)
    lines = [line(i) for i in range(10)]
    for data in lines:
        seg = journal.append(data)
        assert seg is not None
        seg.pending += 1
    assert len(journal.segments) > 1
    assert [x for s in journal.segments for x in read_lines(s.path)] == lines
    journal.close()


def test_committed_rows_free_the_journal(tmp_path) -> None:
    """Once every row of a segment is committed, a sealed one is deleted and the active one
    emptied: the journal goes back to zero bytes."""
    journal = Journal(tmp_path, max_segment_bytes=400)
    held = []
    for i in range(6):
        seg = journal.append(line(i))
        assert seg is not None
        seg.pending += 1
        held.append(seg)
    assert journal.bytes > 0
    for seg in held:
        seg.pending -= 1
    for seg in set(held):
        journal.committed(seg)
    assert journal.bytes == 0
    assert journal_lines(tmp_path) == 0
    # The active one and the spare (a small segment drains, then waits to be reused), empty.
    assert len(list(tmp_path.glob("audit-*.copy"))) <= 2
    journal.close()
    assert list(tmp_path.glob("audit-*.copy")) == []


def test_steady_load_takes_turns_on_two_segments(tmp_path) -> None:
    """Under steady load the rows in flight never all commit at once: the active segment gives
    way at RECYCLE_AT and the emptied one is reused, so two files take turns (no growth into
    fresh pages), and the files always hold every row not yet committed, in order."""
    journal = Journal(tmp_path)
    in_flight: deque[tuple[bytes, Segment]] = deque()
    for i in range(20_000):  # ~2 MB of lines: 8 times RECYCLE_AT
        data = copy_line(AuditEvent(event="token_reused", status=200, request_id=f"r-{i:06d}"))
        seg = journal.append(data)
        assert seg is not None
        seg.pending += 1
        in_flight.append((data, seg))
        if len(in_flight) >= 1000:  # the writer commits the oldest 500, the next 500 queued
            done = [in_flight.popleft()[1] for _ in range(500)]
            for seg in done:
                seg.pending -= 1
            for seg in set(done):
                journal.committed(seg)
        assert len(journal.segments) <= 2
    assert len(list(tmp_path.glob("audit-*.copy"))) == 2
    assert journal.bytes <= 2 * RECYCLE_AT + 1000
    on_disk = [x for s in sorted(journal.segments, key=_first_line) for x in read_lines(s.path)]
    assert on_disk == sorted(on_disk)  # zero-padded ids: appended order
    assert on_disk[-len(in_flight) :] == [data for data, _ in in_flight]
    journal.close()


def _first_line(seg: Segment) -> bytes:
    lines = read_lines(seg.path)
    return lines[0] if lines else b"~"  # an empty one sorts last


def test_freeing_a_segment_lets_a_failing_journal_try_again(tmp_path) -> None:
    """Once a committed segment is deleted (sealed) or emptied (drained), the space it held is
    free: a journal that had failed (a full disk) tries its next append again."""
    journal = Journal(tmp_path, max_segment_bytes=400)
    held = []
    for i in range(12):
        seg = journal.append(line(i % 10))
        assert seg is not None
        seg.pending += 1
        held.append(seg)
    assert len(journal.draining) >= 2
    first = journal.draining[0]
    journal.seal(first)  # as a replay does
    assert first.sealed
    for freed in (first, journal.draining[0]):
        journal.failing = True
        freed.pending = 0
        journal.committed(freed)
        assert not journal.failing
    assert first.gone
    journal.close()


def test_a_live_owners_segment_is_not_adopted_a_dead_ones_is(tmp_path) -> None:
    """Another live process's segment is left alone; once its owner is gone it is adopted."""
    owner = Journal(tmp_path)
    assert owner.append(line(1)) is not None
    other = Journal(tmp_path)
    assert other.adopt_orphans() == []
    owner.close()  # the owner dies: its lock goes with it
    (adopted,) = other.adopt_orphans()
    assert read_lines(adopted.path) == [line(1)]
    other.delete(adopted)
    assert journal_lines(tmp_path) == 0


def test_a_torn_last_line_is_skipped(tmp_path) -> None:
    """A line cut short (a crash mid-write) is dropped; the lines before it are kept."""
    journal = Journal(tmp_path)
    assert journal.append(line(1)) is not None
    journal.close()
    (path,) = tmp_path.glob("audit-*.copy")
    with path.open("ab") as f:
        f.write(line(2)[:20])
    assert read_lines(path) == [line(1)]


def test_unwritable_directory_fails_and_says_why(tmp_path) -> None:
    """A journal directory that cannot exist: append returns None and the journal is failing."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    journal = Journal(blocker / "journal")
    assert journal.append(line(1)) is None
    assert journal.failing
    assert journal.last_error is not None
    assert journal.segments == []


def test_fsync_modes_write_the_same_lines(tmp_path) -> None:
    """batch and always fsync (at the writer's pace, or before each answer) and keep every line."""
    for mode in (Fsync.BATCH, Fsync.ALWAYS):
        directory = tmp_path / mode.value
        journal = Journal(directory, fsync=mode, max_segment_bytes=400)
        for data in LINES:
            seg = journal.append(data)
            assert seg is not None
            seg.pending += 1  # still to be committed: rotation must keep it
        journal.sync()
        assert journal_lines(directory) == len(LINES)
        journal.close()


def test_a_killed_process_leaves_its_mapped_lines_on_disk(tmp_path) -> None:
    """The active segment is written through a memory mapping, not write(): a child process that
    appends and is SIGKILLed before any close leaves every line in the file, the zeros past them
    are not lines, and another journal adopts exactly those lines."""
    pid = os.fork()
    if pid == 0:  # the child: append, then die without closing or unmapping anything
        journal = Journal(tmp_path, max_segment_bytes=100_000)
        for data in LINES:
            journal.append(data)
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    (path,) = tmp_path.glob("audit-*.copy")
    assert path.stat().st_size > sum(map(len, LINES))  # the mapping's zeros are still there
    (adopted,) = Journal(tmp_path).adopt_orphans()
    assert adopted.size == sum(map(len, LINES))
    assert read_lines(adopted.path) == LINES


def _filled(journal: Journal) -> tuple[Segment, Path]:
    """Every one of LINES appended to one active segment: it, and its file."""
    for data in LINES:
        seg = journal.append(data)
        assert seg is not None
    (path,) = journal.directory.glob("audit-*.copy")
    return seg, path


def test_an_emptied_active_segment_keeps_its_blocks_and_no_old_line(tmp_path) -> None:
    """With fsync off the active segment is zeroed in place once committed: its disk blocks stay
    reserved (no truncate, no refault), and lines appended after read back alone."""
    journal = Journal(tmp_path)
    seg, path = _filled(journal)
    blocks = path.stat().st_blocks
    journal.committed(seg)
    assert read_lines(path) == []
    assert path.stat().st_blocks == blocks
    assert journal.append(line(3)) is seg
    assert read_lines(path) == [line(3)]
    journal.close()


def test_with_fsync_the_emptied_active_segment_is_truncated(tmp_path) -> None:
    """With fsync on, the committed active segment is truncated instead: its blocks are freed."""
    journal = Journal(tmp_path, fsync=Fsync.BATCH)
    seg, path = _filled(journal)
    journal.sync()
    assert path.stat().st_blocks > 0
    journal.committed(seg)
    assert path.stat().st_blocks == 0
    assert read_lines(path) == []
    assert journal.append(line(4)) is seg
    assert read_lines(path) == [line(4)]
    journal.close()


def test_a_large_emptied_segment_is_truncated_to_bound_its_memory(tmp_path, monkeypatch) -> None:
    """Past ZERO_IN_PLACE (a backlog after an outage) the segment is truncated even with fsync
    off, so the pages kept in memory stay bounded."""
    monkeypatch.setattr(journal_module, "ZERO_IN_PLACE", len(LINES[0]) * 2)
    journal = Journal(tmp_path)
    seg, path = _filled(journal)
    assert path.stat().st_blocks > 0
    journal.committed(seg)
    assert path.stat().st_blocks == 0
    assert journal.append(line(5)) is seg
    assert read_lines(path) == [line(5)]
    journal.close()


def test_a_segment_whose_mapping_is_gone_fails_the_journal_not_the_writer(tmp_path) -> None:
    """Emptying a segment whose mapping was closed under it says the journal is failing (and
    why) instead of raising into the writer."""
    journal = Journal(tmp_path)
    seg = journal.append(line(1))
    assert seg is not None
    assert seg.mapped is not None
    seg.mapped.close()
    journal.committed(seg)
    assert journal.failing
    assert journal.last_error is not None
    journal.close()
